"""Tests for fedshield.aggregators.foolsgold (Fung et al., RAID 2020)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedshield.aggregators.foolsgold import (
    FoolsGoldHistory,
    foolsgold,
    foolsgold_aggregation,
    foolsgold_weights,
)


def _spec_weights(history: np.ndarray, kappa: float = 1.0) -> np.ndarray:
    """The spec's steps one by one, with explicit loops (an independent oracle).

    Cosine of a zero row is 0 (as sklearn's cosine_similarity); pardoning is skipped where
    v_j = 0, w < 1e-7 (a cosine of 1 up to rounding) is 0 and an all-zero w gives all-zero
    weights (the module's documented choices).
    """
    n = history.shape[0]
    cs = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            ni, nj = np.linalg.norm(history[i]), np.linalg.norm(history[j])
            cos = 0.0 if ni == 0 or nj == 0 else float(history[i] @ history[j]) / (ni * nj)
            cs[i, j] = cos - (1.0 if i == j else 0.0)
    if n > 0:
        for i in range(n):
            if np.linalg.norm(history[i]) > 0:
                cs[i, i] = 0.0  # cos(h, h) - 1, without rounding
    v = cs.max(axis=1)
    for i in range(n):
        for j in range(n):
            if i != j and v[i] < v[j] and v[j] != 0:
                cs[i, j] *= v[i] / v[j]
    w = np.clip(1.0 - cs.max(axis=1), 0.0, 1.0)
    w[w < 1e-7] = 0.0
    if w.max() == 0:
        return np.zeros(n)
    w = w / w.max()
    w[w == 1.0] = 0.99
    out = np.zeros(n)
    for i in range(n):
        if w[i] == 0:
            out[i] = 0.0
            continue
        val = kappa * (math.log(w[i] / (1 - w[i])) + 0.5)
        out[i] = 1.0 if (math.isinf(val) or val > 1) else max(val, 0.0)
    return out


@st.composite
def _histories(draw: st.DrawFn) -> torch.Tensor:
    """Gaussian histories (no exact ties) with a few sybil copies and scaled copies."""
    n = draw(st.integers(1, 8))
    d = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31))
    h = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    for _ in range(draw(st.integers(0, 3))):
        src, dst = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        h[dst] = h[src] * draw(st.floats(0.1, 10))
    return h


# --------------------------------------------------------------------------- weights


def test_two_sybils_get_zero_and_the_honest_client_one() -> None:
    # Prepare: H = [[1,0],[1,0],[0,1]]
    #   cs = cos - I = [[0,1,0],[1,0,0],[0,0,0]],  v = [1, 1, 0]
    #   pardoning: v_2 = 0 < 1 = v_0 = v_1 -> cs_20 = cs_21 = 0 * 0/1 = 0
    #   w = 1 - max_j cs_ij = [0, 0, 1] -> / max = [0, 0, 1] -> 1 becomes 0.99
    #   logit: ln(.99/.01) + .5 = 5.09 > 1 -> 1;  w = 0 -> ln 0 = -inf -> 0
    h = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])

    # Execute
    w = foolsgold_weights(h)

    # Assert
    torch.testing.assert_close(w, torch.tensor([0.0, 0.0, 1.0]), rtol=0, atol=0)
    np.testing.assert_array_equal(w.numpy(), _spec_weights(h.double().numpy()))


def test_intermediate_weight_and_kappa() -> None:
    # Prepare: H0 = (1,0,0), H1 = (.6,.8,0), H2 = (0,0,1)
    #   cos01 = .6, cos02 = cos12 = 0 -> v = [.6, .6, 0]; pardoning only scales cs_2j = 0
    #   w = [.4, .4, 1] -> / 1 -> [.4, .4, .99]
    #   logit(.4) = ln(.4/.6) + .5 = -0.405465 + .5 = 0.094535;  .99 -> 5.09 -> 1
    h = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    expected = math.log(0.4 / 0.6) + 0.5

    # Execute
    w1 = foolsgold_weights(h)
    w2 = foolsgold_weights(h, kappa=2.0)

    # Assert: kappa multiplies the logit before the clipping
    torch.testing.assert_close(
        w1, torch.tensor([expected, expected, 1.0], dtype=torch.float64), rtol=0, atol=1e-12
    )
    torch.testing.assert_close(
        w2, torch.tensor([2 * expected, 2 * expected, 1.0], dtype=torch.float64), rtol=0, atol=1e-12
    )


def test_pardoning_restores_an_honest_client() -> None:
    # Prepare: A = (1,0,0,0), B = (.9,.43589,0,0), C = (.5,0,.866025,0), D = (0,0,0,1)
    #   cos_AB = .9, cos_AC = .5, cos_BC = .45, D orthogonal: v = [.9, .9, .5, 0]
    #   pardoning of C (v_C = .5 < .9): cs_CA = .5 * .5/.9 = .27778, cs_CB = .45*.5/.9 = .25
    #   w = [.1, .1, 1 - .27778, 1] = [.1, .1, .72222, 1] -> /1, 1 -> .99
    #   logit: .1 -> ln(1/9) + .5 = -1.70 -> 0;  .72222 -> ln(2.6) + .5 = 1.456 -> 1
    #   (without pardoning w_C = .5 -> ln(1) + .5 = .5)
    h = torch.tensor(
        [
            [1.0, 0.0, 0.0, 0.0],
            [0.9, math.sqrt(1 - 0.81), 0.0, 0.0],
            [0.5, 0.0, math.sqrt(0.75), 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ],
        dtype=torch.float64,
    )

    # Execute
    w = foolsgold_weights(h)

    # Assert
    torch.testing.assert_close(
        w, torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64), rtol=0, atol=1e-12
    )


def test_all_clients_alike_gives_all_zero_weights_not_nan() -> None:
    # Prepare: every history is a positive multiple of [1, 2] -> cs = 1 off the diagonal,
    # w = 0 for all; the reference code divides 0 by 0 here
    h = torch.tensor([[1.0, 2.0], [2.0, 4.0], [0.5, 1.0]])

    # Execute
    res = foolsgold_aggregation(torch.ones(3, 2), history=h)

    # Assert
    assert res.weights is not None and torch.equal(res.weights, torch.zeros(3))
    assert torch.equal(res.aggregate, torch.zeros(2))
    assert res.accepted is not None and not bool(res.accepted.any())


def test_single_client_gets_weight_one() -> None:
    # Prepare: n = 1: cs = [[0]], v = [0], w = 1 -> .99 -> 5.09 -> 1
    h = torch.tensor([[3.0, -1.0]])

    # Execute / Assert
    assert foolsgold_weights(h).tolist() == [1.0]
    torch.testing.assert_close(foolsgold(h, history=h), h[0])


def test_zero_history_has_cosine_zero() -> None:
    # Prepare: H = [[0,0],[1,0],[1,0]]: cs = [[-1,0,0],[0,0,1],[0,1,0]], v = [0, 1, 1]
    #   pardoning of row 0: cs_0j = 0 -> w = [1, 0, 0] -> weights [1, 0, 0]
    h = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0]])

    # Execute
    w = foolsgold_weights(h)

    # Assert
    assert w.tolist() == [1.0, 0.0, 0.0]


@settings(max_examples=80, deadline=None)
@given(h=_histories(), kappa=st.sampled_from([0.5, 1.0, 2.0]))
def test_matches_the_spec_steps(h: torch.Tensor, kappa: float) -> None:
    # Execute
    ours = foolsgold_weights(h, kappa=kappa)

    # Assert
    np.testing.assert_allclose(ours.numpy(), _spec_weights(h.numpy(), kappa), rtol=0, atol=1e-9)
    assert bool(((ours >= 0) & (ours <= 1)).all())


def test_float32_history_gives_float32_weights() -> None:
    # Execute
    w = foolsgold_weights(torch.eye(3))

    # Assert: orthogonal histories: v = 0, w = 1 for all -> weights 1
    assert w.dtype == torch.float32
    assert w.tolist() == [1.0, 1.0, 1.0]


# --------------------------------------------------------------------------- aggregation


def test_aggregate_is_normalised_by_the_weight_sum() -> None:
    # Prepare: weights [e, e, 1] with e = ln(.4/.6) + .5 (see test_intermediate_weight...)
    #   aggregate = (e*[1,0] + e*[0,1] + 1*[4,4]) / (2e + 1)
    h = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    u = torch.tensor([[1.0, 0.0], [0.0, 1.0], [4.0, 4.0]], dtype=torch.float64)
    e = math.log(0.4 / 0.6) + 0.5
    expected = torch.tensor([e + 4.0, e + 4.0], dtype=torch.float64) / (2 * e + 1)

    # Execute
    res = foolsgold_aggregation(u, history=h)

    # Assert
    torch.testing.assert_close(res.aggregate, expected, rtol=0, atol=1e-12)
    assert res.accepted is not None and res.accepted.tolist() == [True, True, True]


def test_sybils_are_left_out_of_the_aggregate() -> None:
    # Prepare: the histories of test_pardoning...: weights [0, 0, 1, 1]
    h = torch.tensor(
        [
            [1.0, 0.0, 0.0, 0.0],
            [0.9, math.sqrt(1 - 0.81), 0.0, 0.0],
            [0.5, 0.0, math.sqrt(0.75), 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    u = torch.tensor([[100.0, 100.0], [100.0, 100.0], [1.0, 2.0], [3.0, 4.0]])

    # Execute
    res = foolsgold_aggregation(u, history=h)

    # Assert: (1*[1,2] + 1*[3,4]) / 2
    torch.testing.assert_close(res.aggregate, torch.tensor([2.0, 3.0]), rtol=0, atol=1e-6)
    assert res.accepted is not None and res.accepted.tolist() == [False, False, True, True]


@settings(max_examples=60, deadline=None)
@given(h=_histories(), seed=st.integers(0, 2**31))
def test_permutation_invariance(h: torch.Tensor, seed: int) -> None:
    # Prepare
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(h.shape[0], 5, generator=g, dtype=torch.float64)
    perm = torch.randperm(h.shape[0], generator=g)

    # Execute
    a = foolsgold_aggregation(u, history=h)
    b = foolsgold_aggregation(u[perm], history=h[perm])

    # Assert
    assert torch.isfinite(a.aggregate).all()
    torch.testing.assert_close(a.aggregate, b.aggregate, rtol=1e-9, atol=1e-9)
    assert a.weights is not None and b.weights is not None
    torch.testing.assert_close(a.weights[perm], b.weights, rtol=0, atol=1e-9)
    assert a.accepted is not None and b.accepted is not None
    assert torch.equal(a.accepted, a.weights > 0)


def test_history_may_have_other_features_than_the_updates() -> None:
    # Prepare: history on 2 features (e.g. the output layer), updates on 3 parameters
    h = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    u = torch.tensor([[9.0, 9.0, 9.0], [9.0, 9.0, 9.0], [1.0, 2.0, 3.0]])

    # Execute / Assert: weights [0, 0, 1]
    torch.testing.assert_close(foolsgold(u, history=h), torch.tensor([1.0, 2.0, 3.0]))


# --------------------------------------------------------------------------- history


def test_history_accumulates_per_client() -> None:
    # Prepare
    hist = FoolsGoldHistory()

    # Execute: round 1 clients 0 and 1, round 2 clients 1 and 5
    r1 = hist.update(torch.tensor([0, 1]), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    r2 = hist.update(torch.tensor([5, 1]), torch.tensor([[2.0, 2.0], [3.0, 0.0]]))

    # Assert
    torch.testing.assert_close(r1, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    torch.testing.assert_close(r2, torch.tensor([[2.0, 2.0], [3.0, 1.0]]))
    assert len(hist) == 3
    assert hist.client_ids == [0, 1, 5]
    torch.testing.assert_close(hist.get(torch.tensor([0])), torch.tensor([[1.0, 0.0]]))


def test_returned_histories_are_copies() -> None:
    # Prepare
    hist = FoolsGoldHistory()
    u = torch.tensor([[1.0, 1.0]])
    first = hist.update(torch.tensor([7]), u)

    # Execute: mutate the returned tensor and the input, then update again
    first.add_(100.0)
    u.add_(100.0)
    second = hist.update(torch.tensor([7]), torch.tensor([[1.0, 1.0]]))

    # Assert: the history saw neither mutation
    torch.testing.assert_close(second, torch.tensor([[2.0, 2.0]]))


def test_state_dict_round_trip() -> None:
    # Prepare
    a = FoolsGoldHistory()
    a.update(torch.tensor([3, 1]), torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    state = a.state_dict()

    # Execute
    b = FoolsGoldHistory()
    b.load_state_dict(state)
    ra = a.update(torch.tensor([1, 9]), torch.tensor([[1.0, 1.0], [5.0, 5.0]]))
    rb = b.update(torch.tensor([1, 9]), torch.tensor([[1.0, 1.0], [5.0, 5.0]]))

    # Assert
    assert state["client_ids"].tolist() == [1, 3]
    torch.testing.assert_close(state["histories"], torch.tensor([[3.0, 4.0], [1.0, 2.0]]))
    torch.testing.assert_close(ra, rb)
    torch.testing.assert_close(rb, torch.tensor([[4.0, 5.0], [5.0, 5.0]]))
    # the saved state is a copy, untouched by later updates
    torch.testing.assert_close(state["histories"], torch.tensor([[3.0, 4.0], [1.0, 2.0]]))


def test_empty_state_dict_round_trip() -> None:
    # Prepare
    b = FoolsGoldHistory()
    b.update(torch.tensor([0]), torch.ones(1, 2))

    # Execute
    b.load_state_dict(FoolsGoldHistory().state_dict())

    # Assert: emptied, and a new parameter count is accepted
    assert len(b) == 0
    assert b.update(torch.tensor([0]), torch.ones(1, 3)).shape == (1, 3)


@pytest.mark.parametrize(
    ("ids", "updates", "match"),
    [
        (torch.tensor([1, 1]), torch.ones(2, 2), r"distinct, got repeated ids \[1\]"),
        (torch.tensor([1]), torch.ones(2, 2), r"client_ids must have shape \(2,\), got \(1,\)"),
        (torch.tensor([[1, 2]]), torch.ones(2, 2), r"shape \(2,\), got \(1, 2\)"),
        (torch.tensor([1.0, 2.0]), torch.ones(2, 2), r"integers, got dtype torch.float32"),
        ([1, 2], torch.ones(2, 2), r"client_ids must be a torch.Tensor, got list"),
        (torch.tensor([0, 1]), torch.ones(2, 3), r"3 parameters but .* history has 2"),
        (torch.tensor([0, 1]), torch.tensor([[1.0, float("nan")], [0, 0]]), r"rows \[0\]"),
    ],
    ids=["repeated", "short", "2-D", "float", "list", "other d", "nan"],
)
def test_bad_history_update(ids: torch.Tensor, updates: torch.Tensor, match: str) -> None:
    # Prepare
    hist = FoolsGoldHistory()
    hist.update(torch.tensor([0]), torch.ones(1, 2))

    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        hist.update(ids, updates)


def test_bad_state_and_unknown_client() -> None:
    # Prepare
    hist = FoolsGoldHistory()

    # Execute / Assert
    with pytest.raises(ValueError, match=r"missing \['histories'\]"):
        hist.load_state_dict({"client_ids": torch.tensor([0])})
    with pytest.raises(ValueError, match=r"shape \(2,\), got \(1,\)"):
        hist.load_state_dict({"client_ids": torch.tensor([0]), "histories": torch.ones(2, 2)})
    with pytest.raises(ValueError, match=r"FoolsGold history: .*non-finite"):
        hist.load_state_dict(
            {"client_ids": torch.tensor([0]), "histories": torch.tensor([[float("nan")]])}
        )
    with pytest.raises(ValueError, match=r"no FoolsGold history for client ids \[4\]"):
        hist.get(torch.tensor([4]))
    assert len(hist) == 0


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("updates", "match"),
    [
        (torch.zeros(0, 2), r"empty \(shape \(0, 2\)\)"),
        (torch.zeros(3), r"2-D matrix .*got shape \(3,\)"),
        (torch.tensor([[1.0, 0.0], [float("nan"), 0.0], [0.0, 0.0]]), r"rows \[1\]"),
    ],
    ids=["empty", "1-D", "nan row"],
)
def test_bad_updates(updates: torch.Tensor, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        foolsgold(updates, history=torch.eye(3))


@pytest.mark.parametrize(
    ("history", "match"),
    [
        (torch.eye(2), r"history has 2 rows but updates has 3"),
        (torch.zeros(3), r"FoolsGold history: .*2-D matrix"),
        (torch.tensor([[1.0], [float("inf")], [0.0]]), r"FoolsGold history: .*rows \[1\]"),
    ],
    ids=["rows", "1-D", "inf"],
)
def test_bad_history(history: torch.Tensor, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        foolsgold_aggregation(torch.ones(3, 2), history=history)


@pytest.mark.parametrize("kappa", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_kappa(kappa: float) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=r"kappa must be finite and > 0"):
        foolsgold_weights(torch.eye(2), kappa=kappa)
