"""Tests for fedshield.engine.server_opt: sgd, fedavgm and fedadam steps, hand-computed."""

from __future__ import annotations

import pytest
import torch

from fedshield.config import ServerConfig
from fedshield.engine.server_opt import init_state, server_step


def _t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float32)


def test_init_state() -> None:
    # Execute
    sgd = init_state("sgd", 3)
    avgm = init_state("fedavgm", 3)
    adam = init_state("fedadam", 3)

    # Assert
    assert sgd == {}
    assert set(avgm) == {"v"} and torch.equal(avgm["v"], torch.zeros(3))
    assert set(adam) == {"m", "v"}
    assert torch.equal(adam["m"], torch.zeros(3)) and torch.equal(adam["v"], torch.zeros(3))


def test_init_state_unknown_kind() -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=r"'adam'.*sgd, fedavgm, fedadam"):
        init_state("adam", 3)


def test_sgd_is_w_plus_lr_delta() -> None:
    # Prepare: [1, 2] + 0.5 * [0.5, -1] = [1.25, 1.5]
    cfg = ServerConfig(optimizer="sgd", lr=0.5)

    # Execute
    w, state = server_step(_t(1.0, 2.0), _t(0.5, -1.0), init_state("sgd", 2), cfg)

    # Assert
    torch.testing.assert_close(w, _t(1.25, 1.5), rtol=0, atol=0)
    assert state == {}


def test_fedavgm_two_steps_hand_computed() -> None:
    # Prepare: momentum 0.5, lr 0.5
    cfg = ServerConfig(optimizer="fedavgm", lr=0.5, momentum=0.5)
    state = init_state("fedavgm", 2)

    # Execute
    w1, state1 = server_step(_t(0.0, 0.0), _t(1.0, -2.0), state, cfg)
    w2, state2 = server_step(w1, _t(1.0, 2.0), state1, cfg)

    # Assert
    # step 1: v = 0.5*0 + [1, -2] = [1, -2];            w = 0 + 0.5*v = [0.5, -1]
    torch.testing.assert_close(state1["v"], _t(1.0, -2.0), rtol=0, atol=0)
    torch.testing.assert_close(w1, _t(0.5, -1.0), rtol=0, atol=0)
    # step 2: v = 0.5*[1, -2] + [1, 2] = [1.5, 1];      w = [0.5, -1] + 0.5*v = [1.25, -0.5]
    torch.testing.assert_close(state2["v"], _t(1.5, 1.0), rtol=0, atol=0)
    torch.testing.assert_close(w2, _t(1.25, -0.5), rtol=0, atol=0)


def test_fedavgm_with_zero_momentum_equals_sgd() -> None:
    # Prepare
    avgm = ServerConfig(optimizer="fedavgm", lr=0.3, momentum=0.0)
    sgd = ServerConfig(optimizer="sgd", lr=0.3)
    w, d1, d2 = _t(1.0, -1.0, 0.5), _t(0.2, 0.4, -0.6), _t(-1.0, 0.0, 3.0)

    # Execute
    a1, s = server_step(w, d1, init_state("fedavgm", 3), avgm)
    a2, _ = server_step(a1, d2, s, avgm)
    b1, _ = server_step(w, d1, {}, sgd)
    b2, _ = server_step(b1, d2, {}, sgd)

    # Assert
    torch.testing.assert_close(a2, b2)


def test_fedadam_two_steps_hand_computed() -> None:
    # Prepare: Reddi et al. 2021, Alg. 2 (no bias correction):
    #   m <- b1 m + (1 - b1) D;  v <- b2 v + (1 - b2) D^2;  w <- w + lr m / (sqrt(v) + tau)
    cfg = ServerConfig(optimizer="fedadam", lr=2.0, beta1=0.75, beta2=0.75, tau=1.0)
    state = init_state("fedadam", 2)

    # Execute
    w1, state1 = server_step(_t(0.0, 0.0), _t(2.0, 4.0), state, cfg)
    w2, state2 = server_step(w1, _t(1.0, -2.0), state1, cfg)

    # Assert
    # step 1: m = 0.25*[2, 4] = [0.5, 1];  v = 0.25*[4, 16] = [1, 4];  sqrt(v) = [1, 2]
    #         w = 0 + 2*[0.5/(1+1), 1/(2+1)] = [0.5, 2/3]
    torch.testing.assert_close(state1["m"], _t(0.5, 1.0), rtol=0, atol=0)
    torch.testing.assert_close(state1["v"], _t(1.0, 4.0), rtol=0, atol=0)
    torch.testing.assert_close(w1, _t(0.5, 2 / 3))
    # step 2: m = 0.75*[0.5, 1] + 0.25*[1, -2] = [0.625, 0.25]
    #         v = 0.75*[1, 4] + 0.25*[1, 4] = [1, 4];  sqrt(v) = [1, 2]
    #         w = [0.5, 2/3] + 2*[0.625/2, 0.25/3] = [1.125, 5/6]
    torch.testing.assert_close(state2["m"], _t(0.625, 0.25), rtol=0, atol=0)
    torch.testing.assert_close(state2["v"], _t(1.0, 4.0), rtol=0, atol=0)
    torch.testing.assert_close(w2, _t(1.125, 5 / 6))


def test_fedadam_zero_delta_does_not_move() -> None:
    # Prepare
    cfg = ServerConfig(optimizer="fedadam", lr=1.0, tau=1e-3)
    w = _t(0.3, -0.7)

    # Execute
    w1, state = server_step(w, torch.zeros(2), init_state("fedadam", 2), cfg)

    # Assert
    assert torch.equal(w1, w)
    assert torch.equal(state["m"], torch.zeros(2)) and torch.equal(state["v"], torch.zeros(2))


@pytest.mark.parametrize("kind", ["sgd", "fedavgm", "fedadam"])
def test_inputs_are_not_mutated(kind: str) -> None:
    # Prepare: a non-zero state, so that an in-place update would show
    cfg = ServerConfig(optimizer=kind, lr=0.5)
    w, delta = _t(1.0, 2.0, 3.0), _t(0.1, -0.2, 0.3)
    state = {k: torch.full((3,), 0.25) for k in init_state(kind, 3)}
    w0, delta0 = w.clone(), delta.clone()
    state0 = {k: v.clone() for k, v in state.items()}

    # Execute
    new_w, new_state = server_step(w, delta, state, cfg)

    # Assert
    assert not torch.equal(new_w, w0)
    assert torch.equal(w, w0) and torch.equal(delta, delta0)
    assert set(state) == set(state0)
    for k in state0:
        assert torch.equal(state[k], state0[k])
        assert not torch.equal(new_state[k], state0[k])


def test_unknown_optimizer_in_step() -> None:
    # Prepare: bypass every validation (the dataclass itself checks choices)
    cfg = ServerConfig()
    object.__setattr__(cfg, "optimizer", "adagrad")

    # Execute / Assert
    with pytest.raises(ValueError, match="'adagrad'"):
        server_step(torch.zeros(2), torch.zeros(2), {}, cfg)
