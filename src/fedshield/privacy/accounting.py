"""Privacy accounting for DP-FedAvg, DP-SGD and local DP, computed by Google's dp-accounting.

Every epsilon here comes from a maintained library (``dp_accounting`` 0.6): this module only
describes *what was released* as a ``DpEvent`` and asks an accountant for epsilon at a delta.
No epsilon is ever added up or converted by hand.

Client-level DP-FedAvg (McMahan, Ramage, Talwar, Zhang. "Learning Differentially Private
Recurrent Language Models." ICLR 2018): each round samples clients, clips each update to L2
norm ``C``, sums and adds ``N(0, (z C)^2 I)``. One round is a subsampled Gaussian mechanism
with noise multiplier ``z`` and ``T`` rounds are its ``T``-fold composition::

    poisson:  SelfComposed(PoissonSampled(q, Gaussian(z)), T)          add/remove-one
    fixed:    SelfComposed(SampledWithoutReplacement(N, m, Gaussian(z / 2)), T)   replace-one

With sampling without replacement of ``m = round(q N)`` of ``N`` clients the library's
accountant (Wang, Balle, Kasiviswanathan, AISTATS 2019, Thm. 27) works with the replace-one
relation, where the noise multiplier is relative to the replace-one L2 sensitivity: replacing
one client changes a sum of updates clipped to ``C`` by up to ``2 C``, so the library event
carries ``z / 2`` (the PLD accountant's own REPLACE_ONE Gaussian makes the same doubling).

DP-SGD (Abadi et al. "Deep Learning with Differential Privacy." CCS 2016) has the same event
at record level: ``steps`` compositions of a Poisson-subsampled Gaussian.

Adaptive clipping (Andrew, Thakkar, McMahan, Ramaswamy. "Differentially Private Learning
with Adaptive Clipping." NeurIPS 2021) also releases a noisy count with std ``sigma_b``;
releasing both is equivalent to one Gaussian mechanism with multiplier ``z`` when the update
noise multiplier is ``z_Delta = (z^-2 - (2 sigma_b)^-2)^(-1/2)``.

Accountants: ``"rdp"`` is ``dp_accounting.rdp.RdpAccountant`` with its default orders
(1.1, 1.2, ..., 10.9, 11, 12, ..., 63, 128, 256, 512, 1024); ``"pld"`` is
``dp_accounting.pld.PLDAccountant`` with its default pessimistic discretisation
(``value_discretization_interval = 1e-4``), tighter than RDP but slower. PLD does not
support sampling without replacement (``sampling="fixed"``): use ``"rdp"`` for it.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from numbers import Integral, Real
from typing import Any

from dp_accounting import dp_event, mechanism_calibration
from dp_accounting.pld import PLDAccountant
from dp_accounting.privacy_accountant import NeighboringRelation
from dp_accounting.privacy_accountant import PrivacyAccountant as _LibAccountant
from dp_accounting.rdp import RdpAccountant

ACCOUNTANTS: tuple[str, ...] = ("pld", "rdp")
SAMPLINGS: tuple[str, ...] = ("fixed", "poisson")
LOCAL_MECHANISMS: tuple[str, ...] = ("gaussian", "laplace")
_NAMES = {"rdp": "dp_accounting RDP", "pld": "dp_accounting PLD"}

# dp-accounting logs a warning through absl for every RDP order whose series does not
# converge (it then drops that order itself, which is correct); keep runs' output readable
logging.getLogger("absl").setLevel(logging.ERROR)


# --------------------------------------------------------------------------- checks


def _check_accountant(accountant: str) -> str:
    if accountant not in ACCOUNTANTS:
        raise ValueError(
            f"unknown accountant {accountant!r}: known accountants are {', '.join(ACCOUNTANTS)}"
        )
    return accountant


def _check_sampling(sampling: str) -> str:
    if sampling not in SAMPLINGS:
        raise ValueError(
            f"unknown sampling {sampling!r}: known sampling schemes are {', '.join(SAMPLINGS)}"
        )
    return sampling


def _is_real(x: object) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool)


def _is_int(x: object) -> bool:
    return isinstance(x, Integral) and not isinstance(x, bool)


def _check_noise(noise_multiplier: float, name: str = "noise_multiplier") -> float:
    if (
        not _is_real(noise_multiplier)
        or not math.isfinite(noise_multiplier)
        or noise_multiplier < 0
    ):
        raise ValueError(f"{name} must be a finite number >= 0, got {noise_multiplier!r}")
    return float(noise_multiplier)


def _check_rate(sample_rate: float) -> float:
    if not _is_real(sample_rate) or not 0 < sample_rate <= 1:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate!r}")
    return float(sample_rate)


def _check_delta(delta: float) -> float:
    if not _is_real(delta) or not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    return float(delta)


def _check_count(count: int, name: str, minimum: int = 0) -> int:
    if not _is_int(count) or count < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {count!r}")
    return int(count)


def _sample_size(sample_rate: float, num_clients: int | None) -> tuple[int, int]:
    """``(N, m)`` of fixed-size sampling: ``m = round(q N)`` of ``N`` clients."""
    if num_clients is None:
        raise ValueError("sampling='fixed' needs num_clients (the population size N)")
    n = _check_count(num_clients, "num_clients", minimum=1)
    m = round(sample_rate * n)
    if m < 1:
        raise ValueError(
            f"sampling='fixed' with sample_rate={sample_rate} and num_clients={n} samples "
            f"round(q * N) = 0 clients per round: raise sample_rate or num_clients"
        )
    return n, m


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class _Round:
    """One round (or step) of a subsampled Gaussian mechanism, validated and normalised."""

    noise_multiplier: float
    sample_rate: float
    sampling: str
    num_clients: int | None

    @classmethod
    def make(
        cls,
        *,
        noise_multiplier: float,
        sample_rate: float,
        sampling: str = "poisson",
        num_clients: int | None = None,
    ) -> _Round:
        z = _check_noise(noise_multiplier)
        q = _check_rate(sample_rate)
        _check_sampling(sampling)
        if sampling == "fixed":
            n, _ = _sample_size(q, num_clients)
            return cls(z, q, sampling, n)
        # Poisson sampling does not depend on the population size: it is not kept.
        return cls(z, q, sampling, None)

    @property
    def relation(self) -> NeighboringRelation:
        if self.sampling == "fixed":
            return NeighboringRelation.REPLACE_ONE
        return NeighboringRelation.ADD_OR_REMOVE_ONE

    def event(self) -> dp_event.DpEvent:
        """The ``DpEvent`` of one round (see the module docstring)."""
        if self.noise_multiplier == 0:
            return dp_event.NonPrivateDpEvent()
        if self.sampling == "fixed":
            n, m = _sample_size(self.sample_rate, self.num_clients)
            # replace-one L2 sensitivity of a sum of updates clipped to C is 2C
            gauss = dp_event.GaussianDpEvent(self.noise_multiplier / 2)
            return dp_event.SampledWithoutReplacementDpEvent(n, m, gauss)
        # q = 1 stays a PoissonSampled event: RDP gives the plain Gaussian's value exactly,
        # and PLD's self-composition of it is ~10x faster than the analytic Gaussian
        # composition (std z / sqrt(T) needs a huge grid for large T), to ~1e-8 relative
        gauss = dp_event.GaussianDpEvent(self.noise_multiplier)
        return dp_event.PoissonSampledDpEvent(self.sample_rate, gauss)


def _library_accountant(accountant: str, relation: NeighboringRelation) -> _LibAccountant:
    """A fresh dp_accounting accountant with its default orders / discretisation."""
    if accountant == "rdp":
        return RdpAccountant(neighboring_relation=relation)
    return PLDAccountant(neighboring_relation=relation)


def _check_supported(accountant: str, rnd: _Round) -> None:
    """Fail early, with advice, when the library accountant cannot handle ``rnd``."""
    if rnd.sampling == "fixed" and accountant == "pld":
        raise ValueError(
            "accountant 'pld' does not support sampling='fixed' (sampling without "
            "replacement, SampledWithoutReplacementDpEvent): use accountant='rdp'"
        )
    lib = _library_accountant(accountant, rnd.relation)
    if not lib.supports(rnd.event()):  # pragma: no cover - guarded above
        raise ValueError(f"accountant {accountant!r} does not support {rnd.event()}")


def _epsilon_of(accountant: str, rnd: _Round, count: int, delta: float) -> float:
    """Epsilon of ``count`` compositions of ``rnd`` at ``delta``, from the library."""
    _check_supported(accountant, rnd)
    if count == 0:
        return 0.0
    if rnd.noise_multiplier == 0:
        return math.inf
    lib = _library_accountant(accountant, rnd.relation)
    lib.compose(dp_event.SelfComposedDpEvent(rnd.event(), count))
    return float(lib.get_epsilon(delta))


# --------------------------------------------------------------------------- central DP


def dp_fedavg_epsilon(
    *,
    noise_multiplier: float,
    sample_rate: float,
    rounds: int,
    delta: float,
    accountant: str = "rdp",
    sampling: str = "poisson",
    num_clients: int | None = None,
) -> float:
    """Epsilon of client-level DP-FedAvg after ``rounds`` rounds (McMahan et al. 2018).

    Args:
        noise_multiplier: ``z`` = noise std / clip norm ``C``, >= 0 (0 = no noise: inf).
        sample_rate: Client sampling rate ``q`` in (0, 1].
        rounds: Number of rounds ``T`` >= 0 (0: nothing released, epsilon 0).
        delta: Target delta in (0, 1).
        accountant: ``"rdp"`` (RdpAccountant, default orders) or ``"pld"`` (PLDAccountant,
            default discretisation 1e-4).
        sampling: ``"poisson"`` (each client joins with probability ``q``, add/remove-one
            adjacency) or ``"fixed"`` (``m = round(q N)`` of ``N`` clients without
            replacement, replace-one adjacency; RDP only).
        num_clients: Population size ``N``; needed for ``"fixed"``, ignored for Poisson.

    Returns:
        Epsilon at ``delta`` (``inf`` when ``noise_multiplier == 0`` and ``rounds > 0``).

    Raises:
        ValueError: Out-of-range input, unknown accountant or sampling, or an accountant
            that does not support the sampling scheme (PLD with ``"fixed"``).
    """
    return _central_epsilon(
        noise_multiplier, sample_rate, rounds, delta, accountant, sampling, num_clients, "rounds"
    )


def _central_epsilon(
    noise_multiplier: float,
    sample_rate: float,
    count: int,
    delta: float,
    accountant: str,
    sampling: str,
    num_clients: int | None,
    count_name: str,
) -> float:
    _check_accountant(accountant)
    rnd = _Round.make(
        noise_multiplier=noise_multiplier,
        sample_rate=sample_rate,
        sampling=sampling,
        num_clients=num_clients,
    )
    count = _check_count(count, count_name)
    return _epsilon_of(accountant, rnd, count, _check_delta(delta))


def dp_sgd_epsilon(
    *,
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    accountant: str = "rdp",
) -> float:
    """Epsilon of record-level DP-SGD of one client (Abadi et al. 2016).

    ``steps`` compositions of a Poisson-subsampled Gaussian mechanism (sampling rate =
    batch size / local dataset size), add/remove-one adjacency.

    Args:
        noise_multiplier: Noise std / per-sample clip norm, >= 0.
        sample_rate: Poisson sampling rate of a record in (0, 1].
        steps: Number of noisy gradient steps >= 0.
        delta: Target delta in (0, 1).
        accountant: ``"rdp"`` or ``"pld"``.

    Returns:
        Epsilon at ``delta``.

    Raises:
        ValueError: Out-of-range input or unknown accountant.
    """
    return _central_epsilon(
        noise_multiplier, sample_rate, steps, delta, accountant, "poisson", None, "steps"
    )


def calibrate_noise(
    *,
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    rounds: int,
    accountant: str = "pld",
    sampling: str = "poisson",
    num_clients: int | None = None,
    tol: float = 1e-4,
) -> float:
    """Smallest noise multiplier ``z`` with ``dp_fedavg_epsilon(z) <= target_epsilon``.

    A bracket ``[lo, hi]`` with ``epsilon(lo) > target >= epsilon(hi)`` is found by doubling
    or halving from ``z = 1``; then ``dp_accounting.mechanism_calibration.
    calibrate_dp_mechanism`` (Brent's method with a bisection fallback) finds the root to
    within ``tol * lo <= tol * z`` and guarantees that the returned ``z`` meets the target.

    Args:
        target_epsilon: Epsilon budget of the whole run, finite and > 0.
        delta: Target delta in (0, 1).
        sample_rate: Client sampling rate ``q`` in (0, 1].
        rounds: Number of rounds ``T`` >= 0 (0: returns 0.0, no noise is needed).
        accountant: ``"pld"`` (default, tighter) or ``"rdp"``.
        sampling: ``"poisson"`` or ``"fixed"`` (see :func:`dp_fedavg_epsilon`).
        num_clients: Population size ``N`` for ``"fixed"``.
        tol: Relative tolerance on ``z`` in (0, 1): ``epsilon(z (1 - tol)) > target``.

    Returns:
        The noise multiplier ``z``.

    Raises:
        ValueError: Out-of-range input, or a target so large that ``z < 2^-20`` meets it.
    """
    _check_accountant(accountant)
    if not _is_real(target_epsilon) or not math.isfinite(target_epsilon) or target_epsilon <= 0:
        raise ValueError(f"target_epsilon must be a finite number > 0, got {target_epsilon!r}")
    delta = _check_delta(delta)
    rounds = _check_count(rounds, "rounds")
    if not _is_real(tol) or not 0 < tol < 1:
        raise ValueError(f"tol must be in (0, 1), got {tol!r}")
    probe = _Round.make(
        noise_multiplier=1.0, sample_rate=sample_rate, sampling=sampling, num_clients=num_clients
    )
    _check_supported(accountant, probe)
    if rounds == 0:
        return 0.0

    def event_of(z: float) -> dp_event.DpEvent:
        rnd = _Round(float(z), probe.sample_rate, probe.sampling, probe.num_clients)
        return dp_event.SelfComposedDpEvent(rnd.event(), rounds)

    def epsilon(z: float) -> float:
        lib = _library_accountant(accountant, probe.relation)
        return float(lib.compose(event_of(z)).get_epsilon(delta))

    # bracket: epsilon(lo) > target >= epsilon(hi), by doubling or halving from z = 1
    lo = hi = 1.0
    if epsilon(1.0) > target_epsilon:
        hi = 2.0
        while epsilon(hi) > target_epsilon:
            lo, hi = hi, hi * 2
            if hi > 2.0**30:  # pragma: no cover - would need an absurd target
                raise ValueError(f"no noise multiplier below 2^30 reaches {target_epsilon}")
    else:
        lo = 0.5
        while epsilon(lo) <= target_epsilon:
            lo, hi = lo / 2, lo
            if lo < 2.0**-20:
                raise ValueError(
                    f"target_epsilon={target_epsilon} is met by every noise multiplier down to "
                    f"2^-20 (delta={delta}, sample_rate={sample_rate}, rounds={rounds})"
                )
    z = mechanism_calibration.calibrate_dp_mechanism(
        make_fresh_accountant=lambda: _library_accountant(accountant, probe.relation),
        make_event_from_param=event_of,
        target_epsilon=target_epsilon,
        target_delta=delta,
        bracket_interval=mechanism_calibration.ExplicitBracketInterval(lo, hi),
        tol=tol * lo,
    )
    return float(z)


def adaptive_clipping_noise_multiplier(
    noise_multiplier: float, count_noise_multiplier: float
) -> float:
    """Update noise multiplier ``z_Delta`` of adaptive clipping (Andrew et al. 2021).

    Each round releases the noisy sum of updates (std ``z_Delta C``) and the noisy count of
    unclipped clients (std ``sigma_b``, sensitivity 1/2); together they are a Gaussian
    mechanism with multiplier ``z`` when

        z_Delta = (z^-2 - (2 sigma_b)^-2)^(-1/2),

    which needs ``sigma_b > z / 2``. Account the run with ``z``, add noise with ``z_Delta``.

    Args:
        noise_multiplier: Target overall noise multiplier ``z`` > 0.
        count_noise_multiplier: Noise std ``sigma_b`` of the clipped count, > ``z / 2``
            (``inf``: no count noise, ``z_Delta = z``).

    Returns:
        ``z_Delta >= z``.

    Raises:
        ValueError: ``z`` not finite and > 0, or ``sigma_b <= z / 2``.
    """
    z = noise_multiplier
    if not _is_real(z) or not math.isfinite(z) or z <= 0:
        raise ValueError(f"noise_multiplier must be a finite number > 0, got {z!r}")
    sb = count_noise_multiplier
    if not _is_real(sb) or math.isnan(sb) or sb <= z / 2:
        raise ValueError(
            f"count_noise_multiplier must be > noise_multiplier / 2 = {z / 2} "
            f"(z^-2 - (2 sigma_b)^-2 must be > 0), got {sb!r}"
        )
    return float((z**-2 - (2 * sb) ** -2) ** -0.5)


# --------------------------------------------------------------------------- incremental


class PrivacyAccountant:
    """Incremental accountant of one run: a ledger of rounds, epsilon from dp_accounting.

    Consecutive identical rounds are stored as one ``(round, count)`` segment and composed
    as ``count`` self-compositions, so ``k`` calls of ``step`` give exactly
    ``dp_fedavg_epsilon(rounds=k)``. The noise multiplier may change between calls
    (adaptive clipping, a schedule); every change starts a new segment.

    All rounds of one accountant must use the same adjacency: Poisson sampling
    (add/remove-one) and fixed-size sampling (replace-one) cannot be mixed.

    Args:
        accountant: ``"rdp"`` or ``"pld"``.
        delta: Target delta in (0, 1) at which epsilon is reported.

    Raises:
        ValueError: Unknown accountant or bad delta.
    """

    def __init__(self, *, accountant: str = "rdp", delta: float) -> None:
        self._accountant = _check_accountant(accountant)
        self._delta = _check_delta(delta)
        self._reset()

    def _reset(self) -> None:
        self._segments: list[tuple[_Round, int]] = []
        # library accountant holding every segment but the last (which may still grow)
        self._closed: _LibAccountant | None = None
        self._epsilon: float | None = 0.0

    @property
    def name(self) -> str:
        """Human-readable name of the library accountant, e.g. ``"dp_accounting RDP"``."""
        return _NAMES[self._accountant]

    @property
    def accountant(self) -> str:
        """``"rdp"`` or ``"pld"``."""
        return self._accountant

    @property
    def delta(self) -> float:
        """The delta at which epsilon is reported."""
        return self._delta

    @property
    def rounds(self) -> int:
        """Number of rounds composed so far."""
        return sum(c for _, c in self._segments)

    def _validate(
        self,
        noise_multiplier: float,
        sample_rate: float,
        sampling: str,
        num_clients: int | None,
        count: int,
    ) -> tuple[_Round, int]:
        rnd = _Round.make(
            noise_multiplier=noise_multiplier,
            sample_rate=sample_rate,
            sampling=sampling,
            num_clients=num_clients,
        )
        count = _check_count(count, "count", minimum=1)
        _check_supported(self._accountant, rnd)
        if self._segments and self._segments[0][0].relation != rnd.relation:
            raise ValueError(
                f"cannot mix sampling={rnd.sampling!r} with the earlier "
                f"sampling={self._segments[0][0].sampling!r} in one accountant: Poisson "
                "sampling uses add/remove-one adjacency, fixed-size sampling replace-one"
            )
        return rnd, count

    def _compose(self, segments: list[tuple[_Round, int]]) -> float:
        """Epsilon of ``self._closed`` plus ``segments``, leaving ``self._closed`` untouched."""
        if not segments and self._closed is None:
            return 0.0
        relation = (self._segments or segments)[0][0].relation
        lib = (
            copy.deepcopy(self._closed)
            if self._closed is not None
            else _library_accountant(self._accountant, relation)
        )
        for rnd, count in segments:
            lib.compose(rnd.event(), count)
        return float(lib.get_epsilon(self._delta))

    def step(
        self,
        *,
        noise_multiplier: float,
        sample_rate: float,
        sampling: str = "poisson",
        num_clients: int | None = None,
        count: int = 1,
    ) -> None:
        """Compose ``count`` rounds of a subsampled Gaussian mechanism.

        Args:
            noise_multiplier: ``z`` of these rounds, >= 0.
            sample_rate: Client sampling rate ``q`` in (0, 1].
            sampling: ``"poisson"`` or ``"fixed"`` (same for every step of the run).
            num_clients: Population size ``N`` for ``"fixed"``.
            count: Number of identical rounds, >= 1.

        Raises:
            ValueError: Bad input, unsupported sampling for the accountant, or a sampling
                scheme whose adjacency differs from the earlier steps'. The state is
                unchanged on error.
        """
        rnd, count = self._validate(noise_multiplier, sample_rate, sampling, num_clients, count)
        if self._segments and self._segments[-1][0] == rnd:
            self._segments[-1] = (rnd, self._segments[-1][1] + count)
        else:
            if self._segments:
                last, last_count = self._segments[-1]
                if self._closed is None:
                    self._closed = _library_accountant(self._accountant, last.relation)
                self._closed.compose(last.event(), last_count)
            self._segments.append((rnd, count))
        self._epsilon = None

    def epsilon(self) -> float:
        """Epsilon spent so far at ``delta`` (0.0 before any step)."""
        if self._epsilon is None:
            self._epsilon = self._compose(self._segments[-1:])
        return self._epsilon

    def epsilon_if(
        self,
        *,
        noise_multiplier: float,
        sample_rate: float,
        sampling: str = "poisson",
        num_clients: int | None = None,
        count: int = 1,
    ) -> float:
        """Epsilon after a hypothetical :meth:`step` with these arguments; state unchanged.

        Use it to enforce a budget: run the round only if ``epsilon_if(...) <= budget``.

        Raises:
            ValueError: As :meth:`step`.
        """
        rnd, count = self._validate(noise_multiplier, sample_rate, sampling, num_clients, count)
        if self._segments and self._segments[-1][0] == rnd:
            return self._compose([(rnd, self._segments[-1][1] + count)])
        return self._compose([*self._segments[-1:], (rnd, count)])

    def state_dict(self) -> dict[str, Any]:
        """Plain-data state: accountant, delta and the list of ``(round, count)`` steps."""
        return {
            "accountant": self._accountant,
            "delta": self._delta,
            "steps": [{**asdict(rnd), "count": count} for rnd, count in self._segments],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace the ledger with ``state`` (from :meth:`state_dict`) and recompose it.

        Raises:
            ValueError: ``state`` is malformed, or its accountant or delta differ from this
                accountant's (resuming a run under another accounting is a config error).
        """
        if not isinstance(state, Mapping) or not {"accountant", "delta", "steps"} <= set(state):
            raise ValueError("state must be a mapping with keys 'accountant', 'delta', 'steps'")
        if state["accountant"] != self._accountant or state["delta"] != self._delta:
            raise ValueError(
                f"state was saved with accountant={state['accountant']!r}, "
                f"delta={state['delta']!r}; this accountant has "
                f"accountant={self._accountant!r}, delta={self._delta!r}"
            )
        fresh = PrivacyAccountant(accountant=self._accountant, delta=self._delta)
        for i, s in enumerate(state["steps"]):
            try:
                fresh.step(**s)
            except (TypeError, ValueError) as err:
                raise ValueError(f"state['steps'][{i}] = {s!r} is invalid: {err}") from err
        self._segments, self._closed = fresh._segments, fresh._closed
        self._epsilon = None

    def __repr__(self) -> str:
        return (
            f"PrivacyAccountant(accountant={self._accountant!r}, delta={self._delta!r}, "
            f"rounds={self.rounds})"
        )


# --------------------------------------------------------------------------- local DP


def local_dp_epsilon(
    *,
    mechanism: str,
    noise_multiplier: float,
    count: int,
    delta: float,
    accountant: str = "rdp",
) -> float:
    """Epsilon of a client that released ``count`` local-DP perturbations.

    Each release adds noise to a value whose range has diameter ``Delta`` (L2 for Gaussian,
    L1 for Laplace; e.g. ``2C`` for an update clipped to norm ``C``):

    - ``"gaussian"``: ``GaussianDpEvent(z)``, ``z`` = noise std / ``Delta``;
    - ``"laplace"``: ``LaplaceDpEvent(b)``, ``b`` = Laplace scale / ``Delta`` (one release
      is ``1/b``-DP; ``count`` releases are ``count / b``-DP by basic composition, which
      the PLD accountant reproduces and beats for many releases; the RDP conversion can
      be slightly above it for a few releases).

    Args:
        mechanism: ``"gaussian"`` or ``"laplace"``.
        noise_multiplier: ``z`` or ``b`` as above, >= 0 (0: inf).
        count: Number of releases >= 0 (0: epsilon 0).
        delta: Target delta in (0, 1).
        accountant: ``"rdp"`` or ``"pld"``.

    Returns:
        Epsilon at ``delta``.

    Raises:
        ValueError: Unknown mechanism or accountant, or out-of-range input.
    """
    _check_accountant(accountant)
    if mechanism not in LOCAL_MECHANISMS:
        raise ValueError(
            f"unknown mechanism {mechanism!r}: known mechanisms are {', '.join(LOCAL_MECHANISMS)}"
        )
    z = _check_noise(noise_multiplier)
    count = _check_count(count, "count")
    delta = _check_delta(delta)
    if count == 0:
        return 0.0
    if z == 0:
        return math.inf
    event: dp_event.DpEvent = (
        dp_event.GaussianDpEvent(z) if mechanism == "gaussian" else dp_event.LaplaceDpEvent(z)
    )
    lib = _library_accountant(accountant, NeighboringRelation.ADD_OR_REMOVE_ONE)
    lib.compose(dp_event.SelfComposedDpEvent(event, count))
    return float(lib.get_epsilon(delta))


def local_epsilons(
    participations: Mapping[int, int],
    *,
    mechanism: str,
    noise_multiplier: float,
    delta: float,
    accountant: str = "rdp",
) -> dict[int, float]:
    """Per-client local-DP epsilon from how many rounds each client took part in.

    Args:
        participations: ``{client_id: number of releases}``.
        mechanism: ``"gaussian"`` or ``"laplace"`` (see :func:`local_dp_epsilon`).
        noise_multiplier: ``z`` or ``b`` of every release.
        delta: Target delta in (0, 1).
        accountant: ``"rdp"`` or ``"pld"``.

    Returns:
        ``{client_id: epsilon}``; each distinct count is accounted once.

    Raises:
        ValueError: As :func:`local_dp_epsilon`.
    """
    by_count: dict[int, float] = {}
    out: dict[int, float] = {}
    for client, count in participations.items():
        if count not in by_count:
            by_count[count] = local_dp_epsilon(
                mechanism=mechanism,
                noise_multiplier=noise_multiplier,
                count=count,
                delta=delta,
                accountant=accountant,
            )
        out[client] = by_count[count]
    return out


__all__ = [
    "ACCOUNTANTS",
    "LOCAL_MECHANISMS",
    "SAMPLINGS",
    "PrivacyAccountant",
    "adaptive_clipping_noise_multiplier",
    "calibrate_noise",
    "dp_fedavg_epsilon",
    "dp_sgd_epsilon",
    "local_dp_epsilon",
    "local_epsilons",
]
