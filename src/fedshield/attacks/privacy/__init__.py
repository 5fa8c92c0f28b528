"""Privacy attacks on federated learning: gradient inversion and membership inference.

* :mod:`~fedshield.attacks.privacy.gradient_inversion` -- DLG, iDLG, Inverting Gradients
  (pure functions on a model and a gradient).
* :mod:`~fedshield.attacks.privacy.fedavg_inversion` -- the multi-step FedAvg variant
  (differentiates through the client's local SGD steps).
* :mod:`~fedshield.attacks.privacy.membership` -- loss threshold and LiRA with shadow
  models trained by the engine.
* :mod:`~fedshield.attacks.privacy.views` -- what a curious server or client sees.
* :mod:`~fedshield.attacks.privacy.attack` -- attacks that consume a view, and scoring.
* :mod:`~fedshield.attacks.privacy.hook` -- ``[[privacy_attack]]`` entries on a live run.
* :mod:`~fedshield.attacks.privacy.replay` -- attack a saved run (``fedshield attack``).
"""

from __future__ import annotations

from fedshield.attacks.privacy.attack import (
    INVERSION_KINDS,
    MEMBERSHIP_KINDS,
    PRIVACY_ATTACK_KINDS,
    invert_view,
    membership_metrics,
    score_inversion,
)
from fedshield.attacks.privacy.fedavg_inversion import invert_fedavg_update
from fedshield.attacks.privacy.gradient_inversion import (
    INVERSION_METHODS,
    batch_labels,
    flat_gradient,
    hungarian_match,
    idlg_label,
    invert_gradients,
    zhu_init_,
)
from fedshield.attacks.privacy.membership import (
    MIA_KINDS,
    ShadowModels,
    evaluate_membership,
    membership_scores,
    plot_roc,
    shadow_halves,
    train_shadow_models,
)
from fedshield.attacks.privacy.replay import AttackReplay, attack_saved_run
from fedshield.attacks.privacy.views import (
    AggregateView,
    ClientView,
    InversionResult,
    LocalRecipeView,
    MembershipResult,
    ServerView,
)

__all__ = [
    "INVERSION_KINDS",
    "INVERSION_METHODS",
    "MEMBERSHIP_KINDS",
    "MIA_KINDS",
    "PRIVACY_ATTACK_KINDS",
    "AggregateView",
    "AttackReplay",
    "ClientView",
    "InversionResult",
    "LocalRecipeView",
    "MembershipResult",
    "ServerView",
    "ShadowModels",
    "attack_saved_run",
    "batch_labels",
    "evaluate_membership",
    "flat_gradient",
    "hungarian_match",
    "idlg_label",
    "invert_fedavg_update",
    "invert_gradients",
    "invert_view",
    "membership_metrics",
    "membership_scores",
    "plot_roc",
    "score_inversion",
    "shadow_halves",
    "train_shadow_models",
    "zhu_init_",
]
