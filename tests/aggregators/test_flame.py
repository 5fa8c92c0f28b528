"""Tests for fedshield.aggregators.flame (Nguyen et al., USENIX Security 2022)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedshield.aggregators.flame import flame, flame_aggregation


def _benign_and_opposite(d: int = 50, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """7 rows around one direction, then 3 rows around the opposite one."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(d, generator=g)
    benign = base + 0.3 * torch.randn(7, d, generator=g)
    opposite = -base + 0.3 * torch.randn(3, d, generator=g)
    mask = torch.tensor([True] * 7 + [False] * 3)
    return torch.cat([benign, opposite]), mask


def _clipped_mean(u: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean over `keep` of u_i * min(1, S / ||u_i||), S = np.median of all norms."""
    norms = u.norm(dim=1)
    s = float(np.median(norms.numpy()))
    rows = [u[i] * min(1.0, s / float(norms[i])) for i in range(u.shape[0]) if keep[i]]
    return torch.stack(rows).mean(dim=0)


def test_opposite_rows_are_filtered_and_the_rest_clipped() -> None:
    # Prepare
    u, benign = _benign_and_opposite()
    s = float(np.median(u.norm(dim=1).numpy()))

    # Execute
    res = flame_aggregation(u, noise_lambda=0.0)

    # Assert: the 3 opposite rows are out; the kept set is a majority of benign rows
    assert res.accepted is not None
    assert not bool(res.accepted[~benign].any())
    assert int(res.accepted.sum()) >= u.shape[0] // 2 + 1
    torch.testing.assert_close(res.aggregate, _clipped_mean(u, res.accepted), rtol=1e-5, atol=1e-6)
    assert float(res.aggregate.norm()) <= s * (1 + 1e-6)
    assert res.weights is None


def test_hand_computed_clipping() -> None:
    # Prepare: three rows along +x with norms 1, 2, 4 (one cluster, cos distance 0)
    #   S = median(1, 2, 4) = 2; factors min(1, 2/e) = 1, 1, 0.5
    #   mean([1,0], [2,0], [2,0]) = [5/3, 0]
    u = torch.tensor([[1.0, 0.0], [2.0, 0.0], [4.0, 0.0]])

    # Execute
    res = flame_aggregation(u, noise_lambda=0.0)

    # Assert
    assert res.accepted is not None and res.accepted.tolist() == [True, True, True]
    torch.testing.assert_close(res.aggregate, torch.tensor([5 / 3, 0.0]), rtol=0, atol=1e-6)


def test_even_n_uses_the_midpoint_median() -> None:
    # Prepare: norms 1, 2, 4, 8 along +x: S = (2 + 4) / 2 = 3
    #   clipped: 1, 2, 3, 3 -> mean 9/4
    u = torch.tensor([[1.0], [2.0], [4.0], [8.0]])

    # Execute
    out = flame(u, noise_lambda=0.0)

    # Assert
    torch.testing.assert_close(out, torch.tensor([2.25]), rtol=0, atol=1e-6)


def test_noise_is_lambda_times_s_from_the_generator() -> None:
    # Prepare: d large enough for a sample std within 1% (the relative standard error of
    # a sample std over d = 200_000 draws is 1/sqrt(2d) = 0.16%, so 1% is > 6 sigma)
    d, lam = 200_000, 0.01
    g = torch.Generator().manual_seed(1)
    u = torch.randn(5, d, generator=g)
    s = float(np.median(u.norm(dim=1).numpy()))

    # Execute
    clean = flame_aggregation(u, noise_lambda=0.0)
    noisy = flame_aggregation(u, noise_lambda=lam, generator=torch.Generator().manual_seed(7))

    # Assert: same rows kept; the difference is lam * S * randn(d) from the generator
    assert noisy.accepted is not None and clean.accepted is not None
    assert torch.equal(noisy.accepted, clean.accepted)
    noise = noisy.aggregate - clean.aggregate
    assert abs(float(noise.std()) / (lam * s) - 1) < 0.01
    assert abs(float(noise.mean())) < 5 * lam * s / d**0.5
    expected = lam * s * torch.randn(d, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(noise, expected, rtol=1e-4, atol=1e-6)


def test_same_seed_same_result_other_seed_other_noise() -> None:
    # Prepare
    u, _ = _benign_and_opposite()

    # Execute
    a = flame(u, generator=torch.Generator().manual_seed(3))
    b = flame(u, generator=torch.Generator().manual_seed(3))
    c = flame(u, generator=torch.Generator().manual_seed(4))

    # Assert
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_global_params_cluster_the_local_models() -> None:
    # Prepare: 7 rows around +x and 3 rows 10x longer in the same direction. As updates
    # the 10 rows point the same way; as local models W_i = G + u_i with G = 10 * e_1 the
    # long rows turn away from the others.
    g = torch.Generator().manual_seed(3)
    d = 20
    v = torch.zeros(d)
    v[0] = 1.0
    u = torch.cat(
        [v + 0.3 * torch.randn(7, d, generator=g), 10 * v + 0.3 * torch.randn(3, d, generator=g)]
    )
    big_g = torch.zeros(d)
    big_g[1] = 10.0

    # Execute
    on_updates = flame_aggregation(u, noise_lambda=0.0)
    on_models = flame_aggregation(u, global_params=big_g, noise_lambda=0.0)
    on_w = flame_aggregation(u + big_g, noise_lambda=0.0)

    # Assert: the long rows pass on updates but not on models; clustering W_i is what the
    # global_params option does
    assert on_updates.accepted is not None and bool(on_updates.accepted[7:].any())
    assert on_models.accepted is not None and not bool(on_models.accepted[7:].any())
    assert on_w.accepted is not None and torch.equal(on_models.accepted, on_w.accepted)
    torch.testing.assert_close(
        on_models.aggregate, _clipped_mean(u, on_models.accepted), rtol=1e-5, atol=1e-6
    )


def test_float32_models_far_from_g_are_clustered_in_float64() -> None:
    # Prepare: ||u_i|| = 0.16, ||G|| = 420: cosine distances between local models are about
    # 1e-8..1e-7, at float32 rounding level; 7 rows around +base, 3 around -base
    g = torch.Generator().manual_seed(0)
    d = 20_000
    base = torch.randn(d, generator=g)
    u = 1e-3 * torch.cat(
        [base + 0.5 * torch.randn(7, d, generator=g), -base + 0.5 * torch.randn(3, d, generator=g)]
    )
    big_g = 3.0 * torch.randn(d, generator=g)

    # Execute
    a32 = flame_aggregation(u, global_params=big_g, noise_lambda=0.0)
    a64 = flame_aggregation(u.double(), global_params=big_g.double(), noise_lambda=0.0)

    # Assert: the same clustering as in float64, which separates the two groups
    assert a32.accepted is not None and a64.accepted is not None
    assert torch.equal(a32.accepted, a64.accepted)
    assert not bool(a32.accepted[7:].any())
    assert int(a32.accepted.sum()) >= 6


def test_single_row_is_returned_clipped_by_itself() -> None:
    # Prepare: S = e_1, factor 1
    u = torch.tensor([[3.0, -4.0]])

    # Execute
    res = flame_aggregation(u, noise_lambda=0.0)

    # Assert
    assert res.accepted is not None and res.accepted.tolist() == [True]
    torch.testing.assert_close(res.aggregate, u[0], rtol=0, atol=0)


def test_identical_rows_give_that_row() -> None:
    # Prepare
    row = torch.tensor([0.5, -2.0, 3.0], dtype=torch.float64)

    # Execute
    res = flame_aggregation(row.repeat(6, 1), noise_lambda=0.0)

    # Assert
    assert res.accepted is not None and bool(res.accepted.all())
    torch.testing.assert_close(res.aggregate, row, rtol=1e-12, atol=1e-12)
    assert res.aggregate.dtype == torch.float64


def test_zero_rows_do_not_produce_nan() -> None:
    # Prepare: all rows 0 -> S = 0, no noise; and one zero row among others
    zeros = torch.zeros(4, 3)
    mixed = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.1, 0.1], [0.9, -0.1], [1.0, 0.05]])

    # Execute
    a = flame(zeros, noise_lambda=0.1, generator=torch.Generator().manual_seed(0))
    b = flame(mixed, noise_lambda=0.0)

    # Assert
    assert torch.equal(a, torch.zeros(3))
    assert bool(torch.isfinite(b).all())


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(2, 9),
    d=st.integers(1, 8),
    seed=st.integers(0, 2**31),
    lam=st.sampled_from([0.0, 0.001, 0.1]),
)
def test_permutation_equivariance(n: int, d: int, seed: int, lam: float) -> None:
    # Prepare: Gaussian rows (no tied distances); the same noise seed for both calls
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n, d, generator=g, dtype=torch.float64)
    perm = torch.randperm(n, generator=g)

    # Execute
    a = flame_aggregation(u, noise_lambda=lam, generator=torch.Generator().manual_seed(seed))
    b = flame_aggregation(u[perm], noise_lambda=lam, generator=torch.Generator().manual_seed(seed))

    # Assert
    assert bool(torch.isfinite(a.aggregate).all())
    assert a.accepted is not None and b.accepted is not None
    assert torch.equal(a.accepted[perm], b.accepted)
    assert int(a.accepted.sum()) >= n // 2 + 1
    torch.testing.assert_close(a.aggregate, b.aggregate, rtol=1e-9, atol=1e-9)
    if lam == 0.0:
        s = float(np.median(u.norm(dim=1).numpy()))
        assert float(a.aggregate.norm()) <= s * (1 + 1e-9)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("updates", "match"),
    [
        (torch.zeros(0, 2), r"empty \(shape \(0, 2\)\)"),
        (torch.zeros(3), r"2-D matrix .*got shape \(3,\)"),
        (torch.tensor([[1.0, 0.0], [float("nan"), 0.0]]), r"non-finite .* rows \[1\]"),
    ],
    ids=["empty", "1-D", "nan row"],
)
def test_bad_updates(updates: torch.Tensor, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        flame(updates)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"noise_lambda": -0.1}, r"noise_lambda must be finite and >= 0, got -0.1"),
        ({"noise_lambda": float("nan")}, r"noise_lambda must be finite"),
        ({"noise_lambda": "0.1"}, r"noise_lambda must be a number"),
        ({"global_params": torch.zeros(3)}, r"global_params must have shape \(2,\) .*\(3,\)"),
        ({"global_params": torch.tensor([0.0, float("inf")])}, r"global_params has non-finite"),
        ({"global_params": torch.tensor([1, 2])}, r"global_params must be floating point"),
    ],
    ids=["negative", "nan", "string", "long G", "inf G", "integer G"],
)
def test_bad_options(kwargs: dict[str, object], match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        flame(torch.ones(3, 2), **kwargs)  # type: ignore[arg-type]
