"""What an honest-but-curious party sees of a federated run: typed attacker views.

Privacy attacks consume one of these views and return a result; they never reach into the
simulator. The engine (:mod:`fedshield.attacks.privacy.hook`) builds the views from the
exact tensors that crossed the wire in a round, after every client-side protection (local
DP noise, clipping, poisoning by malicious clients) has been applied.

* :class:`ServerView` -- a curious server, per client and round: the global model it sent,
  the upload it received and the metadata a server knows anyway (number of samples, the
  local recipe it prescribed: steps, batch size, learning rate, momentum, weight decay).
* :class:`AggregateView` -- a curious server under secure aggregation: only the sum of the
  round's uploads (and who contributed), never one upload.
* :class:`ClientView` -- a curious client: the global models it received, round by round.

Views hold detached copies: an attack can never change the run it observes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from fedshield.engine.layout import ParamLayout

__all__ = [
    "AggregateView",
    "ClientView",
    "InversionResult",
    "LocalRecipeView",
    "MembershipResult",
    "ServerView",
]


@dataclass(frozen=True)
class LocalRecipeView:
    """The local training recipe the server prescribed for a round (known to the server).

    Attributes:
        lr: Client learning rate of the round.
        local_steps: Optimiser steps the client took (its number of non-empty batches).
        batch_size: Minibatch size.
        momentum: SGD momentum.
        weight_decay: L2 weight decay.
    """

    lr: float
    local_steps: int
    batch_size: int
    momentum: float = 0.0
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.local_steps < 0 or self.batch_size < 1:
            raise ValueError(
                f"local_steps must be >= 0 and batch_size >= 1, got {self.local_steps}, "
                f"{self.batch_size}"
            )


def _check_vector(name: str, v: Tensor, layout: ParamLayout) -> None:
    if v.shape != (layout.numel,):
        raise ValueError(f"{name} has shape {tuple(v.shape)}, expected ({layout.numel},)")


@dataclass(frozen=True)
class ServerView:
    """What a curious server sees of one client in one round.

    Attributes:
        round: 1-based round.
        client_id: The client.
        layout: Parameter layout of the model (flat vector <-> named tensors).
        global_params: ``[P]`` global parameters the server sent at the round's start.
        upload: ``[P]`` what the client uploaded: local parameters minus ``global_params``
            (after any client-side protection).
        num_samples: The client's number of local training samples (reported for weighting).
        recipe: The local recipe the server prescribed.
    """

    round: int
    client_id: int
    layout: ParamLayout
    global_params: Tensor
    upload: Tensor
    num_samples: int
    recipe: LocalRecipeView

    def __post_init__(self) -> None:
        _check_vector("global_params", self.global_params, self.layout)
        _check_vector("upload", self.upload, self.layout)

    @property
    def local_params(self) -> Tensor:
        """``[P]`` the client's model after local training (global + upload)."""
        return self.global_params + self.upload

    def gradient_estimate(self) -> Tensor:
        """The loss gradient the upload implies if the client took one plain SGD step.

        One step of SGD with weight decay ``wd`` gives ``upload = -lr (g + wd w)``, so
        ``g = -upload / lr - wd w``. Exact for FedSGD (one local step, any momentum: the
        first step's buffer is the gradient); an approximation for several local steps
        (use the multi-step FedAvg inversion there).
        """
        r = self.recipe
        return -self.upload / r.lr - r.weight_decay * self.global_params


@dataclass(frozen=True)
class AggregateView:
    """What a curious server sees under secure aggregation: only the round's sum.

    Attributes:
        round: 1-based round.
        client_ids: ``int64`` ids of the clients whose uploads are in the sum.
        layout: Parameter layout.
        global_params: ``[P]`` global parameters sent at the round's start.
        upload_sum: ``[P]`` sum of the uploads of ``client_ids``.
        num_samples: ``int64`` reported sample counts of ``client_ids``.
        recipe: The local recipe the server prescribed.
    """

    round: int
    client_ids: Tensor
    layout: ParamLayout
    global_params: Tensor
    upload_sum: Tensor
    num_samples: Tensor
    recipe: LocalRecipeView

    def __post_init__(self) -> None:
        _check_vector("global_params", self.global_params, self.layout)
        _check_vector("upload_sum", self.upload_sum, self.layout)
        if len(self.client_ids) == 0:
            raise ValueError("an aggregate view needs at least one contributing client")

    def gradient_estimate(self) -> Tensor:
        """Gradient of the mean loss over all contributing clients' batches (one SGD step,
        equal batch sizes): ``-sum / (K lr) - wd w`` for ``K`` clients."""
        k = len(self.client_ids)
        r = self.recipe
        return -self.upload_sum / (k * r.lr) - r.weight_decay * self.global_params


@dataclass(frozen=True)
class ClientView:
    """What a curious client sees: the global models broadcast to it.

    Attributes:
        client_id: The observing client (``-1`` for any participant).
        layout: Parameter layout.
        global_models: ``(round, params)`` pairs in round order; ``params`` is the ``[P]``
            global model broadcast after that 1-based round.
    """

    client_id: int
    layout: ParamLayout
    global_models: tuple[tuple[int, Tensor], ...]

    def __post_init__(self) -> None:
        if not self.global_models:
            raise ValueError("a client view needs at least one global model")
        for r, p in self.global_models:
            _check_vector(f"global model of round {r}", p, self.layout)

    @property
    def latest(self) -> Tensor:
        """``[P]`` the most recent global model."""
        return self.global_models[-1][1]


@dataclass(frozen=True)
class InversionResult:
    """A reconstruction and its scores against the ground truth.

    Attributes:
        images: ``[n, *shape]`` reconstructions in ``[0, 1]``, matched to ``truth`` (row i
            of both is the same image after Hungarian matching).
        truth: ``[n, *shape]`` the client's true images in ``[0, 1]``.
        labels: ``int64 [n]`` labels the attack used (recovered or given).
        true_labels: ``int64 [n]`` the true labels.
        metrics: Mean ``mse``, ``psnr``, ``ssim``, ``label_accuracy`` and per-image lists.
    """

    images: Tensor
    truth: Tensor
    labels: Tensor
    true_labels: Tensor
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MembershipResult:
    """Membership scores for candidates with known ground truth, and their metrics.

    Attributes:
        scores: ``[N]`` attack scores, higher = more likely a member.
        is_member: ``bool [N]`` ground truth.
        metrics: ``auc``, ``tpr_at_0.1%_fpr``, ``tpr_at_1%_fpr``, ``balanced_accuracy``.
    """

    scores: Tensor
    is_member: Tensor
    metrics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scores.shape != self.is_member.shape or self.scores.dim() != 1:
            raise ValueError(
                f"scores {tuple(self.scores.shape)} and is_member "
                f"{tuple(self.is_member.shape)} must be matching 1-D tensors"
            )
        if self.is_member.dtype != torch.bool:
            raise ValueError("is_member must be a bool tensor")
