"""Tests for fedshield.aggregators.centered_clipping (Karimireddy et al. ICML 2021)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedshield.aggregators.centered_clipping import centered_clipping

U = torch.tensor([[3.0, 4.0], [0.0, 0.0]])


@st.composite
def _generic(draw: st.DrawFn, min_n: int = 1, max_n: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Continuous random float64 matrix with unequal row spreads, and a centre."""
    n = draw(st.integers(min_n, max_n))
    d = draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = rng.uniform(0.1, 10.0, size=(n, 1))
    x = rng.normal(size=(n, d)) * scale + rng.normal(size=d)
    return torch.from_numpy(x), torch.from_numpy(rng.normal(size=d))


def _numpy_cc(x: np.ndarray, v: np.ndarray, tau: float, iterations: int) -> np.ndarray:
    """Independent reference: a loop over rows, clip each difference, average."""
    for _ in range(iterations):
        steps = []
        for row in x:
            z = row - v
            norm = np.linalg.norm(z)
            steps.append(z if norm <= tau else z * (tau / norm))
        v = v + np.mean(steps, axis=0)
    return v


# --------------------------------------------------------------------------- hand-computed


def test_one_iteration_hand_computed() -> None:
    # Prepare: centre 0, tau = 1: [3, 4] has norm 5 -> [0.6, 0.8]; [0, 0] stays 0;
    # v = 0 + ([0.6, 0.8] + [0, 0]) / 2 = [0.3, 0.4]
    center = torch.zeros(2)

    # Execute / Assert
    torch.testing.assert_close(
        centered_clipping(U, center=center, tau=1.0), torch.tensor([0.3, 0.4])
    )


def test_two_iterations_hand_computed() -> None:
    # Prepare: from v1 = [0.3, 0.4]: [3, 4] - v1 = [2.7, 3.6] (norm 4.5) -> [0.6, 0.8];
    # [0, 0] - v1 = [-0.3, -0.4] (norm 0.5 <= 1) stays; v2 = v1 + [0.3, 0.4] / 2 = [0.45, 0.6]
    center = torch.zeros(2)

    # Execute / Assert
    torch.testing.assert_close(
        centered_clipping(U, center=center, tau=1.0, iterations=2), torch.tensor([0.45, 0.6])
    )


def test_large_tau_gives_the_mean_from_any_centre() -> None:
    # Prepare: nothing is clipped, so v + mean(x_i - v) = mean(x_i) = [1.5, 2]
    center = torch.tensor([-100.0, 42.0])

    # Execute / Assert
    torch.testing.assert_close(
        centered_clipping(U, center=center, tau=1e6), torch.tensor([1.5, 2.0])
    )


def test_dtype_follows_updates_and_inputs_untouched() -> None:
    # Prepare
    u, center = U.clone(), torch.zeros(2, dtype=torch.float64)

    # Execute
    out = centered_clipping(u, center=center, tau=1.0)

    # Assert
    assert out.dtype == torch.float32
    assert torch.equal(u, U) and torch.equal(center, torch.zeros(2, dtype=torch.float64))


# --------------------------------------------------------------------------- reference


@pytest.mark.parametrize(("n", "d", "tau", "iterations"), [(5, 3, 0.5, 1), (20, 50, 2.0, 3)])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_numpy_loop(n: int, d: int, tau: float, iterations: int, seed: int) -> None:
    # Prepare
    rng = np.random.default_rng(seed)
    x = rng.standard_cauchy(size=(n, d))
    v0 = rng.normal(size=d)

    # Execute
    ours = centered_clipping(
        torch.from_numpy(x), center=torch.from_numpy(v0), tau=tau, iterations=iterations
    )

    # Assert
    expected = _numpy_cc(x, v0, tau, iterations)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-10, atol=1e-10 * np.abs(x).max())


# --------------------------------------------------------------------------- properties


@settings(max_examples=50, deadline=None)
@given(xv=_generic(), tau=st.floats(1e-3, 1e3), data=st.data())
def test_row_permutation_invariance(
    xv: tuple[torch.Tensor, torch.Tensor], tau: float, data: st.DataObject
) -> None:
    # Prepare
    x, v = xv
    perm = torch.tensor(data.draw(st.permutations(range(x.shape[0]))))

    # Execute
    a = centered_clipping(x, center=v, tau=tau, iterations=3)
    b = centered_clipping(x[perm], center=v, tau=tau, iterations=3)

    # Assert
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10 * float(x.abs().max()))


@settings(max_examples=50, deadline=None)
@given(xv=_generic(), tau=st.floats(1e-3, 1e3))
def test_each_iteration_moves_at_most_tau(
    xv: tuple[torch.Tensor, torch.Tensor], tau: float
) -> None:
    # Prepare
    x, v = xv

    # Execute
    v1 = centered_clipping(x, center=v, tau=tau)
    v3 = centered_clipping(x, center=v, tau=tau, iterations=3)

    # Assert: the step is the mean of vectors of norm <= tau; finite
    assert bool(torch.isfinite(v3).all())
    assert float(torch.linalg.vector_norm(v1 - v)) <= tau * (1 + 1e-9)
    assert float(torch.linalg.vector_norm(v3 - v)) <= 3 * tau * (1 + 1e-9)


@settings(max_examples=50, deadline=None)
@given(xv=_generic(min_n=2), tau=st.floats(1e-2, 1e2), far=st.floats(1e3, 1e12))
def test_one_outlier_moves_it_at_most_two_tau_over_n(
    xv: tuple[torch.Tensor, torch.Tensor], tau: float, far: float
) -> None:
    # Prepare: replace row 0 by a point `far` away; its clipped contribution changes by at
    # most 2 tau, divided by n (one iteration)
    x, v = xv
    y = x.clone()
    y[0] = v + far
    n = x.shape[0]

    # Execute
    a = centered_clipping(x, center=v, tau=tau)
    b = centered_clipping(y, center=v, tau=tau)

    # Assert
    assert float(torch.linalg.vector_norm(a - b)) <= 2 * tau / n * (1 + 1e-9) + 1e-12


@settings(max_examples=40, deadline=None)
@given(xv=_generic(), n=st.integers(1, 6), tau=st.floats(1e-2, 1e2))
def test_identical_rows_at_the_centre_give_the_centre(
    xv: tuple[torch.Tensor, torch.Tensor], n: int, tau: float
) -> None:
    # Prepare
    _, v = xv
    same = v.unsqueeze(0).expand(n, -1).clone()

    # Execute / Assert
    torch.testing.assert_close(centered_clipping(same, center=v, tau=tau, iterations=2), v)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("updates", "match"),
    [
        (torch.zeros(0, 2), r"empty \(shape \(0, 2\)\)"),
        (torch.zeros(2), r"2-D matrix .*got shape \(2,\)"),
        (torch.tensor([[1.0, float("nan")], [0.0, 0.0]]), r"non-finite .*rows \[0\]"),
        (torch.tensor([[1.0, 0.0], [float("inf"), 0.0]]), r"non-finite .*rows \[1\]"),
    ],
    ids=["empty", "1-D", "nan row", "inf row"],
)
def test_bad_matrix(updates: torch.Tensor, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        centered_clipping(updates, center=torch.zeros(2), tau=1.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"center": torch.zeros(3)}, r"center must have shape \(2,\), got \(3,\)"),
        ({"center": torch.zeros(1, 2)}, r"center must have shape \(2,\), got \(1, 2\)"),
        ({"center": torch.tensor([0.0, float("nan")])}, r"center has non-finite"),
        ({"center": torch.tensor([float("inf"), 0.0])}, r"center has non-finite"),
        ({"center": [0.0, 0.0]}, r"center must be a torch.Tensor, got list"),
        ({"tau": 0.0}, r"tau must be a finite number > 0, got 0.0"),
        ({"tau": -1.0}, r"tau must be a finite number > 0, got -1.0"),
        ({"tau": float("inf")}, r"tau must be a finite number > 0, got inf"),
        ({"iterations": 0}, r"iterations must be an integer >= 1, got 0"),
        ({"iterations": 1.0}, r"iterations must be an integer >= 1, got 1.0"),
    ],
    ids=["center long", "center 2-D", "center nan", "center inf", "center list", "tau 0",
         "tau < 0", "tau inf", "iterations 0", "iterations float"],
)  # fmt: skip
def test_bad_options(kwargs: dict[str, object], match: str) -> None:
    # Prepare
    options: dict[str, object] = {"center": torch.zeros(2), "tau": 1.0, **kwargs}

    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        centered_clipping(U, **options)  # type: ignore[arg-type]
