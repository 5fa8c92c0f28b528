"""Tests for fedshield.models.unet: shapes, validation, size, vmap-trainability."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call, grad, vmap

from fedshield.models import build_model
from fedshield.models.unet import unet


def _num_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    ("shape", "classes", "width", "depth"),
    [((1, 64, 128), 2, 8, 2), ((3, 16, 8), 5, 4, 3), ((1, 8, 8), 2, 2, 1)],
)
def test_output_shape_and_backward(
    shape: tuple[int, int, int], classes: int, width: int, depth: int
) -> None:
    model = unet(shape, classes, width=width, depth=depth)
    x = torch.rand(3, *shape, generator=torch.Generator().manual_seed(0))
    out = model(x)
    assert out.shape == (3, classes, shape[1], shape[2])
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_no_buffers_and_default_size() -> None:
    model = unet((1, 64, 128), 2)
    assert list(model.buffers()) == []
    # enc 80+584, 1168+2320; bottleneck 4640+9248; up 2064, dec 4624+2320;
    # up 520, dec 1160+584; head 18
    assert _num_params(model) == 29_330
    assert 10_000 <= _num_params(model) <= 40_000


def test_seeded_construction_through_build_model() -> None:
    a = build_model(unet, (1, 32, 32), 2, seed=3)
    b = build_model(unet, (1, 32, 32), 2, seed=3)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"input_shape": (64, 128), "num_classes": 2}, "channels, height, width"),
        ({"input_shape": (1, 0, 8), "num_classes": 2}, "positive"),
        ({"input_shape": (1, 30, 32), "num_classes": 2}, "divisible by 2\\*\\*depth = 4"),
        ({"input_shape": (1, 8, 12), "num_classes": 2, "depth": 3}, "divisible"),
        ({"input_shape": (1, 8, 8), "num_classes": 0}, "num_classes"),
        ({"input_shape": (1, 8, 8), "num_classes": 2, "width": 0}, "width"),
        ({"input_shape": (1, 8, 8), "num_classes": 2, "depth": 0}, "depth"),
        ({"input_shape": (1, 8, 8), "num_classes": 2, "width": 2.5}, "width"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        unet(**kwargs)  # type: ignore[arg-type]


def test_trains_with_vmap_over_stacked_params() -> None:
    # Prepare: 3 client copies stacked, one batch each
    model = unet((1, 8, 16), 2, width=2, depth=1)
    gen = torch.Generator().manual_seed(0)
    base = {k: v.detach() for k, v in model.named_parameters()}
    stacked = {
        k: v.unsqueeze(0) + 0.01 * torch.randn(3, *v.shape, generator=gen) for k, v in base.items()
    }
    x = torch.rand(3, 4, 1, 8, 16, generator=gen)
    y = (torch.rand(3, 4, 8, 16, generator=gen) > 0.5).long()

    def loss(p: dict[str, Tensor], xb: Tensor, yb: Tensor) -> Tensor:
        return F.cross_entropy(functional_call(model, p, (xb,)), yb)

    # Execute
    grads = vmap(grad(loss))(stacked, x, y)

    # Check: equal to per-client autograd
    for c in range(3):
        p = {k: v[c].clone().requires_grad_(True) for k, v in stacked.items()}
        ref = torch.autograd.grad(loss(p, x[c], y[c]), list(p.values()))
        for name, r in zip(p, ref, strict=True):
            torch.testing.assert_close(grads[name][c], r, rtol=1e-4, atol=1e-6)
