"""Inner product manipulation (IPM): send a negatively scaled benign mean.

Xie, Koyejo, Gupta. "Fall of Empires: Breaking Byzantine-tolerant SGD by Inner Product
Manipulation." UAI 2019.

    u' = -epsilon * (1/n) sum_i g_i        (g_i: the benign updates the attackers know)

With a small ``epsilon`` (about 0.1) the malicious rows stay close to the benign ones
and pass Krum/median, while the aggregate's inner product with the true gradient turns
negative; a large ``epsilon`` (e.g. 100) overwhelms plain averaging. All attackers send
the same vector.
"""

from __future__ import annotations

from torch import Tensor

from fedshield.aggregators.checks import check_updates
from fedshield.attacks._checks import check_real


def ipm(benign_updates: Tensor, *, epsilon: float) -> Tensor:
    """The IPM malicious update.

    Args:
        benign_updates: ``[n, d]`` benign updates known to the attackers.
        epsilon: Scale ``epsilon > 0``.

    Returns:
        ``[d]`` ``-epsilon * mean(benign_updates)``.

    Raises:
        ValueError: Bad matrix (empty, not 2-D, non-float, NaN/Inf) or ``epsilon`` not a
            finite number > 0.
    """
    check_updates(benign_updates)
    eps = check_real("epsilon", epsilon, positive=True)
    return benign_updates.mean(dim=0).mul_(-eps)


__all__ = ["ipm"]
