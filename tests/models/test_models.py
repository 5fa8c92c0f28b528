"""Tests for fedshield.models: architectures, parameter counts, seeded construction."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedshield.models import MODELS, build_model


def _num_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    ("name", "shape", "expected"),
    [
        # McMahan et al. 2017: 2NN 784-200-200-10 and the CNN, on MNIST.
        ("mlp_2nn", (1, 28, 28), 784 * 200 + 200 + 200 * 200 + 200 + 200 * 10 + 10),
        ("mlp_2nn", (1, 28, 28), 199_210),
        ("cnn", (1, 28, 28), 1_663_370),
        ("cnn", (1, 28, 28), (25 * 32 + 32) + (32 * 25 * 64 + 64) + (3136 * 512 + 512) + 5130),
        # 8x8 digits: two 2x2 pools leave 2x2x64 = 256 features.
        ("cnn", (1, 8, 8), 832 + 51_264 + (256 * 512 + 512) + 5130),
        ("logreg", (1, 28, 28), 7850),
        ("logreg", (64,), 650),
        # LeNet (Zhu et al. 2019): 28 -> 14 -> 7 -> 7, 12 * 7 * 7 = 588 features.
        ("lenet", (1, 28, 28), 312 + 3612 + 3612 + 588 * 10 + 10),
        # On CIFAR-shaped input (DLG's setting): 32 -> 16 -> 8 -> 8, 768 features.
        ("lenet", (3, 32, 32), (3 * 12 * 25 + 12) + 3612 + 3612 + 768 * 100 + 100),
    ],
)
def test_parameter_counts(name: str, shape: tuple[int, ...], expected: int) -> None:
    num_classes = 100 if shape == (3, 32, 32) else 10
    assert _num_params(build_model(name, shape, num_classes, seed=0)) == expected


@pytest.mark.parametrize("name", sorted(set(MODELS) - {"unet", "transformer"}))  # own test files
@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 8, 8), (3, 32, 32)])
def test_output_shapes(name: str, shape: tuple[int, ...]) -> None:
    model = build_model(name, shape, 7, seed=1)
    x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(0))
    out = model(x)
    assert out.shape == (4, 7)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_mlp_2nn_is_flat_sequential() -> None:
    model = build_model("mlp_2nn", (1, 28, 28), 10, seed=0)
    assert type(model) is nn.Sequential
    assert [type(m) for m in model] == [
        nn.Flatten, nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear,
    ]  # fmt: skip
    assert [(m.in_features, m.out_features) for m in model if isinstance(m, nn.Linear)] == [
        (784, 200),
        (200, 200),
        (200, 10),
    ]


def test_cnn_and_lenet_layers() -> None:
    cnn = build_model("cnn", (1, 28, 28), 10, seed=0)
    assert isinstance(cnn, nn.Sequential)
    assert [type(m) for m in cnn] == [
        nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Conv2d, nn.ReLU, nn.MaxPool2d,
        nn.Flatten, nn.Linear, nn.ReLU, nn.Linear,
    ]  # fmt: skip
    conv1 = cnn[0]
    assert isinstance(conv1, nn.Conv2d)
    assert conv1.kernel_size == (5, 5) and conv1.padding == (2, 2)
    lenet = build_model("lenet", (1, 28, 28), 10, seed=0)
    assert isinstance(lenet, nn.Sequential)
    assert [type(m) for m in lenet] == [
        nn.Conv2d, nn.Sigmoid, nn.Conv2d, nn.Sigmoid, nn.Conv2d, nn.Sigmoid, nn.Flatten,
        nn.Linear,
    ]  # fmt: skip
    strides = [m.stride for m in lenet if isinstance(m, nn.Conv2d)]
    assert strides == [(2, 2), (2, 2), (1, 1)]
    logreg = build_model("logreg", (1, 28, 28), 10, seed=0)
    assert isinstance(logreg, nn.Sequential)
    assert [type(m) for m in logreg] == [nn.Flatten, nn.Linear]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_same_seed_same_parameters(name: str) -> None:
    shape = (64,) if name == "transformer" else (1, 28, 28)  # token windows
    a = build_model(name, shape, 10, seed=42)
    b = build_model(name, shape, 10, seed=42)
    c = build_model(name, shape, 10, seed=43)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_global_rng_untouched() -> None:
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    expected = torch.rand(3)
    torch.random.set_rng_state(state)
    build_model("cnn", (1, 28, 28), 10, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(torch.rand(3), expected)


def test_user_factory() -> None:
    def tiny(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[-1], num_classes))

    a = build_model(tiny, (5,), 3, seed=0)
    b = build_model(tiny, (5,), 3, seed=0)
    assert isinstance(a, nn.Sequential) and isinstance(b, nn.Sequential)
    assert a(torch.ones(2, 5)).shape == (2, 3)
    assert torch.equal(a.state_dict()["1.weight"], b.state_dict()["1.weight"])


def test_factory_returning_non_module() -> None:
    with pytest.raises(TypeError, match=r"must return a torch\.nn\.Module, got dict"):
        build_model(lambda shape, k: {"w": 1}, (2,), 2, seed=0)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match=r"model name or a callable.*got int"):
        build_model(3, (2,), 2, seed=0)  # type: ignore[arg-type]


def test_model_without_trainable_parameters() -> None:
    with pytest.raises(ValueError, match=r"no trainable parameters"):
        build_model(lambda shape, k: nn.Flatten(), (2,), 2, seed=0)

    def frozen(shape: tuple[int, ...], k: int) -> nn.Module:
        return nn.Linear(shape[0], k).requires_grad_(False)

    with pytest.raises(ValueError, match=r"frozen.*no trainable parameters"):
        build_model(frozen, (2,), 2, seed=0)


def test_unknown_name_and_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'resnet18'; known models: cnn, lenet"):
        build_model("resnet18", (1, 28, 28), 10, seed=0)
    with pytest.raises(ValueError, match=r"cnn: input_shape must be \(channels, height, width\)"):
        build_model("cnn", (28, 28), 10, seed=0)
    with pytest.raises(ValueError, match=r"cnn: input_shape \(1, 2, 2\) is too small"):
        build_model("cnn", (1, 2, 2), 10, seed=0)
    with pytest.raises(ValueError, match=r"mlp_2nn: num_classes must be an int >= 1, got 0"):
        build_model("mlp_2nn", (4,), 0, seed=0)
    with pytest.raises(ValueError, match=r"logreg: input_shape must be a non-empty tuple"):
        build_model("logreg", (0, 3), 2, seed=0)
    with pytest.raises(ValueError, match=r"seed must be an int"):
        build_model("logreg", (3,), 2, seed=1.5)  # type: ignore[arg-type]
