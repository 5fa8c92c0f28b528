"""Tests for fedshield.privacy.accounting: epsilons checked against dp_accounting directly."""

from __future__ import annotations

import functools
import math
from typing import Any

import pytest
from dp_accounting import dp_event
from dp_accounting.pld import PLDAccountant
from dp_accounting.privacy_accountant import NeighboringRelation
from dp_accounting.rdp import RdpAccountant
from hypothesis import given, settings
from hypothesis import strategies as st

from fedshield.privacy.accounting import (
    PrivacyAccountant,
    adaptive_clipping_noise_multiplier,
    calibrate_noise,
    dp_fedavg_epsilon,
    dp_sgd_epsilon,
    local_dp_epsilon,
    local_epsilons,
)
from fedshield.privacy.mechanisms import analytic_gaussian_sigma

DELTAS = (1e-5, 1e-6)


@functools.cache
def _library_accountant(accountant: str, z: float, q: float, rounds: int) -> Any:
    """dp_accounting's own answer, built here from the events (not from fedshield)."""
    event = dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(z))
    acc = RdpAccountant() if accountant == "rdp" else PLDAccountant()
    return acc.compose(dp_event.SelfComposedDpEvent(event, rounds))


def _expected(accountant: str, z: float, q: float, rounds: int, delta: float) -> float:
    acc = _library_accountant(accountant, z, q, rounds)
    return float(acc.get_epsilon(delta))


def _rdp(z: float, q: float, rounds: int, delta: float) -> float:
    return dp_fedavg_epsilon(noise_multiplier=z, sample_rate=q, rounds=rounds, delta=delta)


# --------------------------------------------------------------------------- reference values


@pytest.mark.parametrize("delta", DELTAS)
@pytest.mark.parametrize("rounds", [1, 100, 1000])
@pytest.mark.parametrize("q", [0.01, 0.1, 1.0])
@pytest.mark.parametrize("z", [0.5, 1.0, 2.0])
def test_rdp_matches_dp_accounting(z: float, q: float, rounds: int, delta: float) -> None:
    # Execute
    eps = dp_fedavg_epsilon(
        noise_multiplier=z, sample_rate=q, rounds=rounds, delta=delta, accountant="rdp"
    )

    # Assert
    assert eps == pytest.approx(_expected("rdp", z, q, rounds, delta), rel=1e-6)


# PLD costs 0.1-2 s per evaluation (building the subsampled PLD dominates, worst for small
# z), so its grid is reduced from the RDP one: z in {1, 2} x q at one round, plus 100 and
# 1000 rounds, z = 0.5 and delta 1e-6 in a few cases.
@pytest.mark.parametrize(
    ("z", "q", "rounds", "delta"),
    [(z, q, 1, 1e-5) for z in (1.0, 2.0) for q in (0.01, 0.1, 1.0)]
    + [
        (0.5, 1.0, 1, 1e-6),
        (1.0, 0.01, 100, 1e-6),
        (2.0, 0.1, 100, 1e-5),
        (2.0, 1.0, 100, 1e-6),
        (2.0, 0.01, 1000, 1e-5),
        (2.0, 0.1, 1000, 1e-6),
    ],
)
def test_pld_matches_dp_accounting(z: float, q: float, rounds: int, delta: float) -> None:
    # Execute
    eps = dp_fedavg_epsilon(
        noise_multiplier=z, sample_rate=q, rounds=rounds, delta=delta, accountant="pld"
    )

    # Assert: same library, same events, same default discretisation -> same number
    assert eps == pytest.approx(_expected("pld", z, q, rounds, delta), rel=1e-6)
    # and PLD is the tighter of the two accountants (both are valid upper bounds)
    assert eps <= _expected("rdp", z, q, rounds, delta) * (1 + 1e-9)


def test_opacus_published_value() -> None:
    # Opacus' RDP test: sigma 1.5, q 0.04, 2250 steps, delta 1e-5 -> epsilon 7.33

    # Execute
    eps = dp_fedavg_epsilon(noise_multiplier=1.5, sample_rate=0.04, rounds=2250, delta=1e-5)
    eps_sgd = dp_sgd_epsilon(noise_multiplier=1.5, sample_rate=0.04, steps=2250, delta=1e-5)

    # Assert
    assert round(eps, 2) == 7.33
    assert eps_sgd == eps


def test_full_participation_is_the_plain_gaussian_mechanism() -> None:
    # Prepare: with q = 1 a round is one Gaussian release; T of them have RDP T*a/(2 z^2)
    z, rounds, delta = 2.0, 50, 1e-5
    equivalent = RdpAccountant().compose(dp_event.GaussianDpEvent(z / math.sqrt(rounds)))

    # Execute
    eps = _rdp(z, 1.0, rounds, delta)

    # Assert
    assert eps == pytest.approx(equivalent.get_epsilon(delta), rel=1e-9)


def test_epsilon_grows_with_rounds_and_falls_with_noise() -> None:
    # Execute
    by_rounds = [_rdp(1.0, 0.05, t, 1e-5) for t in (1, 10, 100, 1000)]
    by_noise = [_rdp(z, 0.05, 100, 1e-5) for z in (0.6, 0.8, 1.0, 2.0, 4.0)]
    by_rate = [_rdp(1.0, q, 100, 1e-5) for q in (0.01, 0.05, 0.2, 1.0)]
    by_delta = [_rdp(1.0, 0.05, 100, d) for d in (1e-3, 1e-5, 1e-7)]

    # Assert
    assert by_rounds == sorted(by_rounds) and len(set(by_rounds)) == 4
    assert by_noise == sorted(by_noise, reverse=True) and len(set(by_noise)) == 5
    assert by_rate == sorted(by_rate) and len(set(by_rate)) == 4
    assert by_delta == sorted(by_delta) and len(set(by_delta)) == 3


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_edge_cases_no_noise_and_no_rounds(accountant: str) -> None:
    # Execute / Assert
    kw: dict[str, Any] = {"sample_rate": 0.1, "delta": 1e-5, "accountant": accountant}
    assert dp_fedavg_epsilon(noise_multiplier=0.0, rounds=1, **kw) == math.inf
    assert dp_fedavg_epsilon(noise_multiplier=1.0, rounds=0, **kw) == 0.0
    assert dp_fedavg_epsilon(noise_multiplier=0.0, rounds=0, **kw) == 0.0


def test_poisson_ignores_num_clients() -> None:
    # Execute / Assert
    a = dp_fedavg_epsilon(noise_multiplier=1.0, sample_rate=0.1, rounds=10, delta=1e-5)
    b = dp_fedavg_epsilon(
        noise_multiplier=1.0, sample_rate=0.1, rounds=10, delta=1e-5, num_clients=37
    )
    assert a == b


# --------------------------------------------------------------------------- fixed-size sampling


@pytest.mark.parametrize(("z", "q", "n", "rounds"), [(1.0, 0.1, 100, 100), (2.0, 0.05, 1000, 10)])
def test_fixed_sampling_matches_dp_accounting(z: float, q: float, n: int, rounds: int) -> None:
    # Prepare: m = round(q N) of N without replacement, replace-one adjacency, under which
    # a sum of updates clipped to C has sensitivity 2C: the library event carries z / 2
    event = dp_event.SampledWithoutReplacementDpEvent(
        n, round(q * n), dp_event.GaussianDpEvent(z / 2)
    )
    lib = RdpAccountant(neighboring_relation=NeighboringRelation.REPLACE_ONE)
    lib.compose(dp_event.SelfComposedDpEvent(event, rounds))

    # Execute
    eps = dp_fedavg_epsilon(
        noise_multiplier=z,
        sample_rate=q,
        rounds=rounds,
        delta=1e-5,
        sampling="fixed",
        num_clients=n,
    )

    # Assert
    assert eps == pytest.approx(lib.get_epsilon(1e-5), rel=1e-9)


@pytest.mark.parametrize("z", [1.0, 2.0, 4.0])
def test_fixed_full_participation_agrees_with_pld_replace_one(z: float) -> None:
    # Prepare: the PLD accountant's REPLACE_ONE Gaussian shifts by twice the sensitivity; it
    # is an independent, tighter account of the same mechanism (m = N: no sampling)
    pld = PLDAccountant(neighboring_relation=NeighboringRelation.REPLACE_ONE)
    exact = pld.compose(dp_event.GaussianDpEvent(z)).get_epsilon(1e-5)

    # Execute
    eps = dp_fedavg_epsilon(
        noise_multiplier=z,
        sample_rate=1.0,
        rounds=1,
        delta=1e-5,
        sampling="fixed",
        num_clients=10,
    )

    # Assert: RDP is an upper bound within ~10% of PLD for a single Gaussian; without the
    # 2C sensitivity eps would be about half of it
    assert exact <= eps <= 1.15 * exact


def test_fixed_sampling_needs_rdp_and_population() -> None:
    # Prepare
    kw: dict[str, Any] = {"noise_multiplier": 1.0, "sample_rate": 0.1, "rounds": 10, "delta": 1e-5}

    # Execute / Assert
    with pytest.raises(ValueError, match=r"'pld' does not support sampling='fixed'.*use accoun"):
        dp_fedavg_epsilon(**kw, accountant="pld", sampling="fixed", num_clients=100)
    with pytest.raises(ValueError, match=r"sampling='fixed' needs num_clients"):
        dp_fedavg_epsilon(**kw, sampling="fixed")
    with pytest.raises(ValueError, match=r"round\(q \* N\) = 0 clients"):
        dp_fedavg_epsilon(**kw, sampling="fixed", num_clients=4)
    with pytest.raises(ValueError, match=r"num_clients must be an integer >= 1, got 0"):
        dp_fedavg_epsilon(**kw, sampling="fixed", num_clients=0)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"sample_rate": 0.0}, r"sample_rate must be in \(0, 1\], got 0.0"),
        ({"sample_rate": 1.5}, r"sample_rate must be in \(0, 1\], got 1.5"),
        ({"sample_rate": float("nan")}, r"sample_rate must be in \(0, 1\]"),
        ({"delta": 0.0}, r"delta must be in \(0, 1\), got 0.0"),
        ({"delta": 1.0}, r"delta must be in \(0, 1\), got 1.0"),
        ({"rounds": -1}, r"rounds must be an integer >= 0, got -1"),
        ({"rounds": 2.5}, r"rounds must be an integer >= 0, got 2.5"),
        ({"noise_multiplier": -0.1}, r"noise_multiplier must be a finite number >= 0, got -0.1"),
        ({"noise_multiplier": math.inf}, r"noise_multiplier must be a finite number >= 0"),
        ({"accountant": "gdp"}, r"unknown accountant 'gdp': known accountants are pld, rdp"),
        ({"sampling": "shuffle"}, r"unknown sampling 'shuffle': .* are fixed, poisson"),
    ],
    ids=lambda v: str(v),
)
def test_dp_fedavg_epsilon_bad_input(override: dict[str, Any], match: str) -> None:
    # Prepare
    kw: dict[str, Any] = {
        "noise_multiplier": 1.0,
        "sample_rate": 0.1,
        "rounds": 10,
        "delta": 1e-5,
        **override,
    }

    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        dp_fedavg_epsilon(**kw)


# --------------------------------------------------------------------------- calibration


@pytest.mark.parametrize(
    ("target", "q", "rounds", "accountant"),
    [
        (1.0, 0.01, 1000, "rdp"),
        (0.5, 1.0, 1, "rdp"),  # no sampling
        (50.0, 0.5, 5, "rdp"),  # large target: z < 1, the bracket is found by halving
        (1.0, 1.0, 10, "pld"),  # PLD calibration is slow for subsampled events: q = 1 only
    ],
)
def test_calibrate_noise_round_trip(target: float, q: float, rounds: int, accountant: str) -> None:
    # Prepare
    tol = 1e-4

    def eps(z: float) -> float:
        return dp_fedavg_epsilon(
            noise_multiplier=z, sample_rate=q, rounds=rounds, delta=1e-5, accountant=accountant
        )

    # Execute
    z = calibrate_noise(
        target_epsilon=target,
        delta=1e-5,
        sample_rate=q,
        rounds=rounds,
        accountant=accountant,
        tol=tol,
    )

    # Assert: meets the target, and a noise multiplier smaller by tol does not
    assert eps(z) <= target
    assert eps(z * (1 - tol)) > target
    assert eps(z) == pytest.approx(target, rel=1e-2)


def test_calibrate_noise_fixed_sampling() -> None:
    # Execute
    z = calibrate_noise(
        target_epsilon=4.0,
        delta=1e-5,
        sample_rate=0.1,
        rounds=20,
        accountant="rdp",
        sampling="fixed",
        num_clients=200,
    )

    # Assert
    kw: dict[str, Any] = {
        "sample_rate": 0.1,
        "rounds": 20,
        "delta": 1e-5,
        "sampling": "fixed",
        "num_clients": 200,
    }
    assert dp_fedavg_epsilon(noise_multiplier=z, **kw) <= 4.0
    assert dp_fedavg_epsilon(noise_multiplier=z * (1 - 1e-4), **kw) > 4.0


def test_calibrate_noise_no_rounds_needs_no_noise() -> None:
    # Execute / Assert
    assert calibrate_noise(target_epsilon=1.0, delta=1e-5, sample_rate=0.1, rounds=0) == 0.0


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"target_epsilon": 0.0}, r"target_epsilon must be a finite number > 0, got 0.0"),
        ({"target_epsilon": math.inf}, r"target_epsilon must be a finite number > 0"),
        ({"tol": 0.0}, r"tol must be in \(0, 1\), got 0.0"),
        ({"delta": 2.0}, r"delta must be in \(0, 1\), got 2.0"),
        ({"accountant": "moments"}, r"unknown accountant 'moments'"),
        ({"sampling": "fixed"}, r"'pld' does not support sampling='fixed'"),
        (
            {"target_epsilon": 1e13, "accountant": "rdp"},
            r"met by every noise multiplier down to 2\^-20",
        ),
    ],
    ids=lambda v: str(v),
)
def test_calibrate_noise_bad_input(override: dict[str, Any], match: str) -> None:
    # Prepare
    kw: dict[str, Any] = {
        "target_epsilon": 1.0,
        "delta": 1e-5,
        "sample_rate": 0.1,
        "rounds": 10,
        "num_clients": 100,
        **override,
    }

    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        calibrate_noise(**kw)


# --------------------------------------------------------------------------- incremental


@pytest.mark.parametrize(
    ("accountant", "q", "z"), [("rdp", 0.05, 1.1), ("pld", 1.0, 1.1), ("pld", 0.1, 2.0)]
)
def test_accountant_after_k_steps_equals_k_rounds(accountant: str, q: float, z: float) -> None:
    # Prepare
    acc = PrivacyAccountant(accountant=accountant, delta=1e-5)
    batched = PrivacyAccountant(accountant=accountant, delta=1e-5)

    # Execute
    for _ in range(25):
        acc.step(noise_multiplier=z, sample_rate=q)
    batched.step(noise_multiplier=z, sample_rate=q, count=25)

    # Assert: identical rounds are composed as one self-composition -> the same number
    expected = dp_fedavg_epsilon(
        noise_multiplier=z, sample_rate=q, rounds=25, delta=1e-5, accountant=accountant
    )
    assert acc.epsilon() == expected
    assert batched.epsilon() == expected
    assert acc.rounds == 25


def test_accountant_starts_at_zero_and_names_its_library() -> None:
    # Execute
    rdp = PrivacyAccountant(delta=1e-5)
    pld = PrivacyAccountant(accountant="pld", delta=1e-6)

    # Assert
    assert rdp.epsilon() == 0.0 and pld.epsilon() == 0.0
    assert rdp.name == "dp_accounting RDP"
    assert pld.name == "dp_accounting PLD"
    assert pld.delta == 1e-6 and pld.accountant == "pld" and pld.rounds == 0


def test_changing_noise_composes_heterogeneous_rounds() -> None:
    # Prepare: 10 rounds at z=1, 5 at z=1.3, 10 at z=1 again (e.g. adaptive clipping)
    acc = PrivacyAccountant(delta=1e-5)
    g = [dp_event.PoissonSampledDpEvent(0.1, dp_event.GaussianDpEvent(z)) for z in (1.0, 1.3, 1.0)]
    lib = RdpAccountant().compose(
        dp_event.ComposedDpEvent(
            [
                dp_event.SelfComposedDpEvent(g[0], 10),
                dp_event.SelfComposedDpEvent(g[1], 5),
                dp_event.SelfComposedDpEvent(g[2], 10),
            ]
        )
    )

    # Execute
    acc.step(noise_multiplier=1.0, sample_rate=0.1, count=10)
    for _ in range(5):
        acc.step(noise_multiplier=1.3, sample_rate=0.1)
    acc.step(noise_multiplier=1.0, sample_rate=0.1, count=10)

    # Assert
    assert acc.epsilon() == pytest.approx(lib.get_epsilon(1e-5), rel=1e-12)
    assert _rdp(1.0, 0.1, 20, 1e-5) < acc.epsilon() < _rdp(1.0, 0.1, 25, 1e-5)


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_epsilon_if_does_not_change_state(accountant: str) -> None:
    # Prepare
    acc = PrivacyAccountant(accountant=accountant, delta=1e-5)
    acc.step(noise_multiplier=2.0, sample_rate=1.0, count=3)
    before, state = acc.epsilon(), acc.state_dict()

    # Execute
    same = acc.epsilon_if(noise_multiplier=2.0, sample_rate=1.0)
    other = acc.epsilon_if(noise_multiplier=3.0, sample_rate=1.0, count=2)

    # Assert: the state is untouched, and the prediction is what step() then gives
    assert acc.epsilon() == before and acc.state_dict() == state
    assert same > before and other > before
    acc.step(noise_multiplier=3.0, sample_rate=1.0, count=2)
    assert acc.epsilon() == other


def test_epsilon_if_on_empty_accountant() -> None:
    # Prepare
    acc = PrivacyAccountant(delta=1e-5)

    # Execute
    eps = acc.epsilon_if(noise_multiplier=1.0, sample_rate=0.1, count=7)

    # Assert
    assert eps == _rdp(1.0, 0.1, 7, 1e-5)
    assert acc.epsilon() == 0.0


def test_state_dict_round_trip() -> None:
    # Prepare
    acc = PrivacyAccountant(delta=1e-5)
    acc.step(noise_multiplier=1.0, sample_rate=0.1, count=4)
    acc.step(noise_multiplier=0.9, sample_rate=0.2)
    acc.step(noise_multiplier=0.9, sample_rate=0.2)

    # Execute
    state = acc.state_dict()
    restored = PrivacyAccountant(delta=1e-5)
    restored.step(noise_multiplier=5.0, sample_rate=1.0)  # replaced by the load
    restored.load_state_dict(state)

    # Assert
    assert state["steps"] == [
        {
            "noise_multiplier": 1.0,
            "sample_rate": 0.1,
            "sampling": "poisson",
            "num_clients": None,
            "count": 4,
        },
        {
            "noise_multiplier": 0.9,
            "sample_rate": 0.2,
            "sampling": "poisson",
            "num_clients": None,
            "count": 2,
        },
    ]
    assert restored.state_dict() == state
    assert restored.epsilon() == acc.epsilon()
    # and it continues like the original
    acc.step(noise_multiplier=0.9, sample_rate=0.2)
    restored.step(noise_multiplier=0.9, sample_rate=0.2)
    assert restored.epsilon() == acc.epsilon()


def test_fixed_sampling_accountant_matches_function() -> None:
    # Prepare
    acc = PrivacyAccountant(delta=1e-5)

    # Execute
    for _ in range(3):
        acc.step(noise_multiplier=1.5, sample_rate=0.1, sampling="fixed", num_clients=50)

    # Assert
    assert acc.epsilon() == dp_fedavg_epsilon(
        noise_multiplier=1.5,
        sample_rate=0.1,
        rounds=3,
        delta=1e-5,
        sampling="fixed",
        num_clients=50,
    )


def test_accountant_bad_input_leaves_state_unchanged() -> None:
    # Prepare
    acc = PrivacyAccountant(delta=1e-5)
    acc.step(noise_multiplier=1.0, sample_rate=0.1)
    state, eps = acc.state_dict(), acc.epsilon()
    pld = PrivacyAccountant(accountant="pld", delta=1e-5)

    # Execute / Assert
    with pytest.raises(ValueError, match=r"cannot mix sampling='fixed' with the earlier"):
        acc.step(noise_multiplier=1.0, sample_rate=0.1, sampling="fixed", num_clients=10)
    with pytest.raises(ValueError, match=r"count must be an integer >= 1, got 0"):
        acc.step(noise_multiplier=1.0, sample_rate=0.1, count=0)
    with pytest.raises(ValueError, match=r"noise_multiplier must be a finite number >= 0"):
        acc.epsilon_if(noise_multiplier=-1.0, sample_rate=0.1)
    with pytest.raises(ValueError, match=r"'pld' does not support sampling='fixed'"):
        pld.step(noise_multiplier=1.0, sample_rate=0.1, sampling="fixed", num_clients=10)
    assert acc.state_dict() == state and acc.epsilon() == eps
    with pytest.raises(ValueError, match=r"unknown accountant 'prv'"):
        PrivacyAccountant(accountant="prv", delta=1e-5)
    with pytest.raises(ValueError, match=r"delta must be in \(0, 1\)"):
        PrivacyAccountant(delta=0.0)


def test_zero_noise_step_is_infinite() -> None:
    # Prepare
    acc = PrivacyAccountant(delta=1e-5)

    # Execute
    acc.step(noise_multiplier=0.0, sample_rate=0.1)

    # Assert
    assert acc.epsilon() == math.inf


def test_load_state_dict_rejects_mismatch_and_garbage() -> None:
    # Prepare
    acc = PrivacyAccountant(delta=1e-5)
    acc.step(noise_multiplier=1.0, sample_rate=0.1)
    state = acc.state_dict()

    # Execute / Assert
    with pytest.raises(
        ValueError, match=r"saved with accountant='rdp', delta=1e-05; .*delta=1e-06"
    ):
        PrivacyAccountant(delta=1e-6).load_state_dict(state)
    with pytest.raises(ValueError, match=r"saved with accountant='rdp'.*accountant='pld'"):
        PrivacyAccountant(accountant="pld", delta=1e-5).load_state_dict(state)
    with pytest.raises(ValueError, match=r"keys 'accountant', 'delta', 'steps'"):
        acc.load_state_dict({"steps": []})
    bad = {**state, "steps": [{"noise_multiplier": 1.0, "sample_rate": 7.0, "count": 1}]}
    with pytest.raises(ValueError, match=r"state\['steps'\]\[0\] .* is invalid: sample_rate"):
        acc.load_state_dict(bad)
    assert acc.state_dict() == state


# --------------------------------------------------------------------------- adaptive clipping


def test_adaptive_clipping_hand_computed() -> None:
    # Execute / Assert: z=1, sigma_b=1 -> (1 - 1/4)^(-1/2); paper's m/20 with m=100, z=1
    assert adaptive_clipping_noise_multiplier(1.0, 1.0) == pytest.approx(1 / math.sqrt(0.75))
    assert adaptive_clipping_noise_multiplier(1.0, 5.0) == pytest.approx((1 - 1 / 100) ** -0.5)
    assert adaptive_clipping_noise_multiplier(1.0, math.inf) == 1.0


@settings(max_examples=40, deadline=None)
@given(z=st.floats(0.3, 5.0), ratio=st.floats(0.6, 50.0))
def test_adaptive_clipping_composition_equals_one_gaussian(z: float, ratio: float) -> None:
    # Prepare: the count query has sensitivity 1/2, so its multiplier is 2 sigma_b
    sigma_b = ratio * z

    # Execute
    z_delta = adaptive_clipping_noise_multiplier(z, sigma_b)

    # Assert: releasing both is the Gaussian mechanism with multiplier z (RDP is exact here)
    both = RdpAccountant().compose(
        dp_event.ComposedDpEvent(
            [dp_event.GaussianDpEvent(z_delta), dp_event.GaussianDpEvent(2 * sigma_b)]
        )
    )
    one = RdpAccountant().compose(dp_event.GaussianDpEvent(z))
    assert z_delta >= z
    assert both.get_epsilon(1e-5) == pytest.approx(one.get_epsilon(1e-5), rel=1e-9)


@pytest.mark.parametrize(
    ("z", "sigma_b", "match"),
    [
        (1.0, 0.5, r"count_noise_multiplier must be > noise_multiplier / 2 = 0.5.*got 0.5"),
        (2.0, 0.9, r"> noise_multiplier / 2 = 1.0"),
        (1.0, float("nan"), r"count_noise_multiplier must be >"),
        (0.0, 1.0, r"noise_multiplier must be a finite number > 0, got 0.0"),
        (math.inf, 1.0, r"noise_multiplier must be a finite number > 0, got inf"),
    ],
)
def test_adaptive_clipping_bad_input(z: float, sigma_b: float, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        adaptive_clipping_noise_multiplier(z, sigma_b)


# --------------------------------------------------------------------------- local DP / DP-SGD


@pytest.mark.parametrize("eps", [0.5, 2.0, 8.0])
def test_local_gaussian_single_release_is_the_analytic_gaussian(eps: float) -> None:
    # Prepare: Balle & Wang's sigma for (eps, 1e-5); PLD accounts a Gaussian exactly
    sigma = analytic_gaussian_sigma(epsilon=eps, delta=1e-5, sensitivity=1.0)

    # Execute
    got = local_dp_epsilon(
        mechanism="gaussian", noise_multiplier=sigma, count=1, delta=1e-5, accountant="pld"
    )

    # Assert
    assert got == pytest.approx(eps, abs=1e-3)


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_local_gaussian_composition(accountant: str) -> None:
    # Prepare: k Gaussian releases with multiplier z = one with z / sqrt(k)
    lib = RdpAccountant() if accountant == "rdp" else PLDAccountant()
    lib.compose(dp_event.GaussianDpEvent(3.0 / math.sqrt(16)))

    # Execute
    eps = local_dp_epsilon(
        mechanism="gaussian", noise_multiplier=3.0, count=16, delta=1e-6, accountant=accountant
    )

    # Assert
    assert eps == pytest.approx(lib.get_epsilon(1e-6), rel=1e-6)


@pytest.mark.parametrize("b", [0.5, 2.0])
def test_local_laplace_against_basic_composition(b: float) -> None:
    # Prepare: one release with scale b / Delta is (1/b)-DP; k releases k/b by basic composition
    def eps(count: int, accountant: str) -> float:
        return local_dp_epsilon(
            mechanism="laplace", noise_multiplier=b, count=count, delta=1e-5, accountant=accountant
        )

    # Execute / Assert: PLD reproduces basic composition for few releases, beats it for many
    assert eps(1, "pld") == pytest.approx(1 / b, abs=1e-3)
    assert 0.99 * 10 / b <= eps(10, "pld") <= 10 / b
    assert eps(300, "pld") < 0.8 * 300 / b
    # RDP's conversion is a hair above 1/b for one release, and also beats it for many
    assert eps(1, "rdp") == pytest.approx(1 / b, abs=5e-3)
    assert eps(300, "rdp") < 0.8 * 300 / b


def test_local_epsilons_per_client() -> None:
    # Prepare
    participations = {0: 3, 1: 0, 7: 3, 9: 10}

    # Execute
    out = local_epsilons(participations, mechanism="gaussian", noise_multiplier=2.0, delta=1e-5)

    # Assert
    def one(k: int) -> float:
        return local_dp_epsilon(mechanism="gaussian", noise_multiplier=2.0, count=k, delta=1e-5)

    assert out == {0: one(3), 1: 0.0, 7: one(3), 9: one(10)}
    assert 0.0 < out[0] < out[9]


def test_local_edge_cases_and_bad_input() -> None:
    # Prepare
    kw: dict[str, Any] = {"mechanism": "laplace", "delta": 1e-5}

    # Execute / Assert
    assert local_dp_epsilon(noise_multiplier=0.0, count=2, **kw) == math.inf
    assert local_dp_epsilon(noise_multiplier=1.0, count=0, **kw) == 0.0
    with pytest.raises(ValueError, match=r"unknown mechanism 'exponential': .* gaussian, laplace"):
        local_dp_epsilon(mechanism="exponential", noise_multiplier=1.0, count=1, delta=1e-5)
    with pytest.raises(ValueError, match=r"count must be an integer >= 0, got -2"):
        local_dp_epsilon(noise_multiplier=1.0, count=-2, **kw)
    with pytest.raises(ValueError, match=r"unknown accountant 'x'"):
        local_dp_epsilon(noise_multiplier=1.0, count=1, accountant="x", **kw)


def test_dp_sgd_matches_library_and_validates() -> None:
    # Prepare
    lib = RdpAccountant().compose(
        dp_event.SelfComposedDpEvent(
            dp_event.PoissonSampledDpEvent(256 / 60000, dp_event.GaussianDpEvent(1.1)), 10000
        )
    )

    # Execute
    eps = dp_sgd_epsilon(noise_multiplier=1.1, sample_rate=256 / 60000, steps=10000, delta=1e-5)

    # Assert
    assert eps == pytest.approx(lib.get_epsilon(1e-5), rel=1e-9)
    with pytest.raises(ValueError, match=r"steps must be an integer >= 0, got -1"):
        dp_sgd_epsilon(noise_multiplier=1.1, sample_rate=0.1, steps=-1, delta=1e-5)
