"""Tests for fedshield.attacks.poisoning.min_max (Min-Max / Min-Sum, NDSS'21)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedshield.attacks import (
    PERTURBATIONS,
    min_max,
    min_max_gamma,
    min_sum,
    min_sum_gamma,
    perturbation_vector,
)

TOL = 1e-5
GammaFn = Callable[..., float]
AttackFn = Callable[..., torch.Tensor]


# --------------------------------------------------------------------------- independent reference


def _np_perturbation(g: np.ndarray, kind: str) -> np.ndarray:
    mean = g.mean(axis=0)
    if kind == "unit_vec":
        return -mean / np.linalg.norm(mean)
    if kind == "std":
        return -g.std(axis=0, ddof=1)
    return -np.sign(mean)


def _np_min_max_holds(g: np.ndarray, m: np.ndarray) -> bool:
    """max_i ||m - g_i|| <= max_{i,j} ||g_i - g_j||, by brute force (explicit differences)."""
    pair = np.sqrt(((g[:, None, :] - g[None, :, :]) ** 2).sum(-1)).max()
    return bool(np.sqrt(((m[None, :] - g) ** 2).sum(-1)).max() <= pair)


def _np_min_sum_holds(g: np.ndarray, m: np.ndarray) -> bool:
    """sum_i ||m - g_i||^2 <= max_i sum_j ||g_i - g_j||^2, by brute force."""
    scores = ((g[:, None, :] - g[None, :, :]) ** 2).sum(-1).sum(1)
    return bool(((m[None, :] - g) ** 2).sum() <= scores.max())


CASES = [
    (min_max_gamma, min_max, _np_min_max_holds),
    (min_sum_gamma, min_sum, _np_min_sum_holds),
]
CASE_IDS = ["min-max", "min-sum"]


# --------------------------------------------------------------------------- perturbations


def test_perturbations_hand_computed() -> None:
    # Prepare: mean [2, 3], ||mean|| = sqrt(13); unbiased std [1, sqrt(3)]
    g = torch.tensor([[1.0, 2.0], [3.0, 2.0], [2.0, 5.0]], dtype=torch.float64)

    # Execute
    unit = perturbation_vector(g, "unit_vec")
    std = perturbation_vector(g, "std")
    sign = perturbation_vector(g, "sign")

    # Assert
    r13 = math.sqrt(13.0)
    torch.testing.assert_close(unit, torch.tensor([-2 / r13, -3 / r13], dtype=torch.float64))
    torch.testing.assert_close(std, torch.tensor([-1.0, -math.sqrt(3.0)], dtype=torch.float64))
    torch.testing.assert_close(sign, torch.tensor([-1.0, -1.0], dtype=torch.float64))


def test_sign_perturbation_of_a_zero_mean_coordinate_is_zero() -> None:
    # Prepare: mean [-2, 0]
    g = torch.tensor([[-1.0, -1.0], [-3.0, 1.0], [-2.0, 0.0]])

    # Execute / Assert
    torch.testing.assert_close(perturbation_vector(g, "sign"), torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(perturbation_vector(g, "unit_vec"), torch.tensor([1.0, 0.0]))


def test_unit_vec_of_a_zero_mean_is_zero() -> None:
    # Prepare
    g = torch.tensor([[1.0, -2.0], [-1.0, 2.0]])

    # Execute
    p = perturbation_vector(g, "unit_vec")
    out = min_max(g)

    # Assert: no direction to push, the attack degenerates to sending the mean
    assert torch.equal(p, torch.zeros(2))
    torch.testing.assert_close(out, torch.zeros(2))


# --------------------------------------------------------------------------- hand-computed gamma


def test_hand_computed_gammas_on_a_line() -> None:
    # Prepare: g = 0, 1, 3 (d = 1): mean 4/3, p = -1, m = 4/3 - gamma.
    # Min-Max: max_i |m - g_i| = 5/3 + gamma <= max pair 3          -> gamma* = 4/3.
    # Min-Sum: 14/3 + 3 gamma^2 <= max_i sum_j D_ij = max(10, 5, 13) -> gamma* = 5/3.
    # (The reference code's min_i would give 14/3 + 3 gamma^2 <= 5 -> 1/3.)
    g = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)

    # Execute
    gmm = min_max_gamma(g, tol=TOL)
    gms = min_sum_gamma(g, tol=TOL)

    # Assert: the search brackets gamma* within 2 tol from below
    assert 4 / 3 - 2 * TOL <= gmm <= 4 / 3
    assert 5 / 3 - 2 * TOL <= gms <= 5 / 3
    torch.testing.assert_close(min_max(g), torch.tensor([4 / 3 - gmm], dtype=torch.float64))
    torch.testing.assert_close(min_sum(g), torch.tensor([4 / 3 - gms], dtype=torch.float64))


def test_search_saturates_below_twice_gamma_init() -> None:
    # Prepare: gamma* = 4/3 but the search only covers [0, 2 * 0.5)
    g = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)

    # Execute
    gamma = min_max_gamma(g, gamma_init=0.5, tol=TOL)

    # Assert
    assert 1.0 - 2 * TOL <= gamma < 1.0


def test_single_row_gives_gamma_zero() -> None:
    # Prepare: max pairwise distance is 0, so only m = g_1 is allowed
    g = torch.tensor([[1.0, -2.0, 3.0]])

    # Execute / Assert
    assert min_max_gamma(g) == 0.0
    assert min_sum_gamma(g) == 0.0
    torch.testing.assert_close(min_max(g), g[0])


# --------------------------------------------------------------------------- brute-force checks


@pytest.mark.parametrize(("gamma_fn", "attack", "holds"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("kind", PERTURBATIONS)
@pytest.mark.parametrize("seed", [0, 1])
def test_gamma_is_feasible_and_maximal_by_brute_force(
    gamma_fn: GammaFn,
    attack: AttackFn,
    holds: Callable[[np.ndarray, np.ndarray], bool],
    kind: str,
    seed: int,
) -> None:
    # Prepare: non-iid-ish benign updates with a common drift
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(15, 40)) + rng.normal(size=40)
    p = _np_perturbation(g, kind)
    mean = g.mean(axis=0)

    # Execute
    gamma = gamma_fn(torch.from_numpy(g), perturbation=kind, tol=TOL)
    out = attack(torch.from_numpy(g), perturbation=kind, tol=TOL)

    # Assert: non-trivial gamma, inside the constraint, and gamma + 2 tol outside it
    assert 0.0 < gamma < 2 * 10.0 - 2 * TOL
    assert holds(g, mean + gamma * p)
    assert not holds(g, mean + (gamma + 2 * TOL) * p)
    np.testing.assert_allclose(out.numpy(), mean + gamma * p, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("gamma_fn", "attack", "holds"), CASES, ids=CASE_IDS)
def test_float32_input(
    gamma_fn: GammaFn, attack: AttackFn, holds: Callable[[np.ndarray, np.ndarray], bool]
) -> None:
    # Prepare
    g = np.random.default_rng(4).normal(size=(10, 30)).astype(np.float32)

    # Execute
    out = attack(torch.from_numpy(g))
    gamma = gamma_fn(torch.from_numpy(g))

    # Assert: float32 output; the constraint holds up to float32 rounding of the distances
    assert out.dtype == torch.float32
    g64 = g.astype(np.float64)
    p = _np_perturbation(g64, "unit_vec")
    assert holds(g64, g64.mean(0) + (gamma - 1e-3) * p)
    assert not holds(g64, g64.mean(0) + (gamma + 1e-3) * p)


# --------------------------------------------------------------------------- properties


@st.composite
def _int_matrices(draw: st.DrawFn) -> torch.Tensor:
    """Integer-valued rows (>= 2): sums and Gram entries are exact, hence order-free."""
    n = draw(st.integers(2, 7))
    d = draw(st.integers(1, 6))
    val = st.integers(-100, 100)
    rows = draw(st.lists(st.lists(val, min_size=d, max_size=d), min_size=n, max_size=n))
    return torch.tensor(rows, dtype=torch.float64)


@settings(max_examples=40, deadline=None)
@given(
    g=_int_matrices(),
    kind=st.sampled_from(PERTURBATIONS),
    use_sum=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_permutation_invariant_and_finite(
    g: torch.Tensor, kind: str, use_sum: bool, seed: int
) -> None:
    # Prepare
    perm = torch.randperm(g.shape[0], generator=torch.Generator().manual_seed(seed))
    gamma_fn, attack = (min_sum_gamma, min_sum) if use_sum else (min_max_gamma, min_max)

    # Execute
    a, ga = attack(g, perturbation=kind), gamma_fn(g, perturbation=kind)
    b, gb = attack(g[perm], perturbation=kind), gamma_fn(g[perm], perturbation=kind)

    # Assert: equal up to the search tolerance (a rounding-level difference can flip one
    # bisection step at the boundary; both answers stay within 2 tol of the true gamma)
    assert bool(torch.isfinite(a).all())
    assert abs(ga - gb) <= 2 * TOL + 1e-9
    p = perturbation_vector(g, kind)
    atol = (2 * TOL + 1e-9) * float(p.abs().max()) + 1e-9
    torch.testing.assert_close(a, b, rtol=0, atol=atol)


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(2, 6), cols=st.integers(1, 6), data=st.data())
def test_finite_and_feasible_for_finite_float_inputs(
    rows: int, cols: int, data: st.DataObject
) -> None:
    # Prepare
    val = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
    g = np.array(
        data.draw(
            st.lists(st.lists(val, min_size=cols, max_size=cols), min_size=rows, max_size=rows)
        )
    )
    kind = data.draw(st.sampled_from(PERTURBATIONS))

    # Execute
    out = min_max(torch.from_numpy(g), perturbation=kind).numpy()

    # Assert: finite, and within the Min-Max ball up to rounding
    assert np.isfinite(out).all()
    pair = np.sqrt(((g[:, None, :] - g[None, :, :]) ** 2).sum(-1)).max()
    assert np.sqrt(((out[None, :] - g) ** 2).sum(-1)).max() <= pair * (1 + 1e-9) + 1e-9


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("attack", [min_max, min_sum, min_max_gamma, min_sum_gamma])
def test_unknown_perturbation_lists_the_allowed_ones(attack: Callable[..., object]) -> None:
    # Execute / Assert
    with pytest.raises(
        ValueError,
        match=r"unknown perturbation 'gauss': allowed perturbations are 'unit_vec', 'std', 'sign'",
    ):
        attack(torch.ones(3, 2), perturbation="gauss")
    with pytest.raises(ValueError, match=r"unknown perturbation 'unitvec'"):
        perturbation_vector(torch.ones(3, 2), "unitvec")


@pytest.mark.parametrize(
    ("updates", "kwargs", "match"),
    [
        (torch.ones(1, 3), {"perturbation": "std"}, r"'std' perturbation needs at least 2 benign"),
        (torch.zeros(0, 3), {}, r"empty"),
        (torch.tensor([[1.0, float("nan")], [0.0, 0.0]]), {}, r"non-finite .* rows \[0\]"),
        (torch.ones(3), {}, r"2-D matrix"),
        (torch.ones(3, 2), {"gamma_init": 0.0}, r"gamma_init must be > 0, got 0.0"),
        (torch.ones(3, 2), {"gamma_init": float("inf")}, r"gamma_init must be finite"),
        (torch.ones(3, 2), {"tol": 0.0}, r"tol must be > 0, got 0.0"),
        (torch.ones(3, 2), {"tol": float("nan")}, r"tol must be finite"),
    ],
    ids=[
        "std one row",
        "empty",
        "nan row",
        "1-D",
        "zero gamma",
        "inf gamma",
        "zero tol",
        "nan tol",
    ],
)
def test_bad_inputs(updates: torch.Tensor, kwargs: dict[str, object], match: str) -> None:
    # Execute / Assert
    for attack in (min_max, min_sum, min_max_gamma, min_sum_gamma):
        with pytest.raises(ValueError, match=match):
            attack(updates, **kwargs)
