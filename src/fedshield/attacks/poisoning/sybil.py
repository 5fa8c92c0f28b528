"""Sybil clones: one adversary controls several identities that upload the same update.

Douceur. "The Sybil Attack." IPTPS 2002; in FL: Fung, Yoon, Beschastnikh. "The
Limitations of Federated Learning in Sybil Settings." RAID 2020 (FoolsGold).

    U' = 1_num u^T        (num identical rows)

Identical rows are what similarity-based defenses (FoolsGold, FLAME) look for, and what
makes distance-based rules (Krum) favour the clones; combine with any single-update
attack (e.g. ``sybil(alie(...), f)``).
"""

from __future__ import annotations

from torch import Tensor

from fedshield.attacks._checks import check_int, check_vector


def sybil(update: Tensor, num: int) -> Tensor:
    """Stack ``num`` copies of one update.

    Args:
        update: ``[d]`` the update every Sybil identity uploads (float, finite).
        num: Number of identities (0 gives an empty ``[0, d]`` tensor).

    Returns:
        ``[num, d]`` matrix whose rows all equal ``update``: a new tensor with its own
        memory (not a broadcast view), so editing one row leaves the others unchanged.

    Raises:
        ValueError: ``update`` not a finite non-empty float 1-D tensor, or ``num < 0``.
    """
    check_vector("update", update)
    k = check_int("num", num, minimum=0)
    return update.unsqueeze(0).repeat(k, 1)


__all__ = ["sybil"]
