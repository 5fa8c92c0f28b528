"""Tests for fedshield.privacy.fedre.psi: FedRE PSI scores (eqs. 3-5), exact and Hutchinson."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fedshield.engine import ParamLayout
from fedshield.models import build_model
from fedshield.models.unet import unet
from fedshield.privacy.fedre.psi import per_format_scores, psi_scores, psi_scores_hutchinson


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _tiny_unet(seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Module:
    return build_model(lambda s, k: unet(s, k, width=2, depth=1), (1, 8, 8), 2, seed=seed).to(dtype)


def _tiny_cnn(seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Module:
    def factory(shape: tuple[int, ...], k: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(shape[0], 3, 3, padding=1),
            nn.Tanh(),
            nn.Flatten(),
            nn.Linear(3 * shape[1] * shape[2], k),
        )

    return build_model(factory, (2, 6, 6), 3, seed=seed).to(dtype)


def _seg_data(n: int, seed: int, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    g = _gen(seed)
    x = torch.randn(n, 1, 8, 8, generator=g, dtype=dtype)  # centred: few dead ReLUs
    y = (torch.rand(n, 8, 8, generator=g) > 0.5).long()
    return x, y


def _cls_data(n: int, seed: int) -> tuple[Tensor, Tensor]:
    g = _gen(seed)
    return torch.rand(n, 2, 6, 6, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (n,), generator=g
    )


def _jr_maps(model: nn.Module, x1: Tensor, y1: Tensor) -> Tensor:
    """Brute force with plain autograd: the full Jacobian of the gradient, row by row.

    Builds ``J(x) = d g / d x`` (``[P, C, H, W]``) with one double-backward per parameter
    entry, then eq. 4 at every pixel. Returns ``[L, H, W]``:
    ``||J_l(x)[:, :, i, j]||_F`` for every layer and pixel.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    xx = x1.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(xx), y1)
    g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, params, create_graph=True)])
    rows = []
    for k in range(g.numel()):
        (row,) = torch.autograd.grad(g[k], xx, retain_graph=True, allow_unused=True)
        rows.append(torch.zeros_like(xx) if row is None else row)
    J = torch.cat(rows)  # [P, C, H, W]
    layout = ParamLayout.from_module(model)
    return torch.stack([J[sl].pow(2).sum(dim=(0, 1)).sqrt() for sl in layout.layers.values()])


def _brute_scores(jr: Tensor, region: Tensor) -> Tensor:
    """Eq. 5 from per-image ``J^R`` maps ``[N, L, H, W]``: region mean, then image mean."""
    per = [jr[n][:, region[n]].mean(dim=1) for n in range(jr.shape[0]) if region[n].any()]
    return torch.stack(per).mean(dim=0)


UnetCase = tuple[nn.Module, Tensor, Tensor, Tensor]


@pytest.fixture(scope="module")
def unet_case() -> UnetCase:
    """Tiny float64 U-Net, two 1x8x8 images, targets and brute-force ``J^R`` maps."""
    model = _tiny_unet()
    x, y = _seg_data(2, seed=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 868 tiny backward passes: threads only add contention
    try:
        jr = torch.stack([_jr_maps(model, x[n : n + 1], y[n : n + 1]) for n in range(2)])
    finally:
        torch.set_num_threads(threads)
    return model, x, y, jr


def _box_region(n: int, h: int, w: int, boxes: list[tuple[int, int, int, int, int]]) -> Tensor:
    r = torch.zeros(n, h, w, dtype=torch.bool)
    for k, top, left, bh, bw in boxes:
        r[k, top : top + bh, left : left + bw] = True
    return r


# --------------------------------------------------------------------------- exact


def test_exact_equals_brute_force_unet(unet_case: UnetCase) -> None:
    # Prepare: tiny U-Net in float64, two images with different boxes
    model, x, y, jr = unet_case
    region = _box_region(2, 8, 8, [(0, 1, 2, 3, 4), (1, 5, 0, 2, 3)])

    # Execute
    got = psi_scores(model, x, y, region, chunk=8)  # chunks end mid-region
    ref = _brute_scores(jr, region)

    # Check
    assert got.dtype == torch.float32
    assert got.shape == (len(ParamLayout.from_module(model).layers),)
    assert (ref > 0).all()
    torch.testing.assert_close(got, ref.float(), rtol=1e-5, atol=0)


def test_exact_equals_brute_force_cnn_two_channels() -> None:
    model = _tiny_cnn()
    x, y = _cls_data(2, seed=2)
    region = _box_region(2, 6, 6, [(0, 0, 0, 2, 2), (1, 3, 2, 3, 3)])
    got = psi_scores(model, x, y, region)
    jr = torch.stack([_jr_maps(model, x[n : n + 1], y[n : n + 1]) for n in range(2)])
    torch.testing.assert_close(got, _brute_scores(jr, region).float(), rtol=1e-5, atol=0)


def test_exact_float32_model_close_to_float64() -> None:
    x, y = _seg_data(1, seed=3)
    region = _box_region(1, 8, 8, [(0, 2, 2, 3, 3)])
    s64 = psi_scores(_tiny_unet(), x, y, region)
    assert (s64 > 0).all()
    s32 = psi_scores(_tiny_unet(dtype=torch.float32), x.float(), y, region)
    torch.testing.assert_close(s32, s64, rtol=1e-4, atol=0)


def test_chunk_size_does_not_change_result() -> None:
    model = _tiny_cnn()
    x, y = _cls_data(1, seed=4)
    region = _box_region(1, 6, 6, [(0, 1, 1, 3, 2)])
    ref = psi_scores(model, x, y, region, chunk=256)
    for chunk in (1, 3, 7):
        torch.testing.assert_close(psi_scores(model, x, y, region, chunk=chunk), ref)


def test_single_pixel_region_is_jr_at_that_pixel_and_regions_average(
    unet_case: UnetCase,
) -> None:
    model, xs, ys, jrs = unet_case
    x, y, jr = xs[1:], ys[1:], jrs[1].float()  # jr: [L, 8, 8]
    one = _box_region(1, 8, 8, [(0, 3, 6, 1, 1)])
    assert (jr[:, 3, 6:8] > 0).all()
    torch.testing.assert_close(psi_scores(model, x, y, one), jr[:, 3, 6], rtol=1e-5, atol=0)
    # a two-pixel region scores the mean of J^R over its pixels (eq. 5)
    two = _box_region(1, 8, 8, [(0, 3, 6, 1, 2)])
    torch.testing.assert_close(
        psi_scores(model, x, y, two), jr[:, 3, 6:8].mean(dim=1), rtol=1e-5, atol=0
    )


def test_empty_region_images_are_skipped() -> None:
    model = _tiny_unet()
    x, y = _seg_data(3, seed=6)
    region = _box_region(3, 8, 8, [(1, 2, 2, 2, 2)])
    ref = psi_scores(model, x[1:2], y[1:2], region[1:2])
    assert (ref > 0).all()
    torch.testing.assert_close(psi_scores(model, x, y, region), ref)
    with pytest.raises(ValueError, match="empty for every image"):
        psi_scores(model, x, y, torch.zeros(3, 8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="empty for every image"):
        psi_scores_hutchinson(
            model, x, y, torch.zeros(3, 8, 8, dtype=torch.bool), generator=_gen(0)
        )


def test_params_argument_and_model_untouched() -> None:
    # Prepare: module A is scored with B's parameters
    a, b = _tiny_unet(seed=0), _tiny_unet(seed=2)
    layout = ParamLayout.from_module(a)
    before = layout.flatten(a).clone()
    flags = [p.requires_grad for p in a.parameters()]
    x, y = _seg_data(2, seed=7)
    region = _box_region(2, 8, 8, [(0, 0, 0, 2, 2), (1, 4, 4, 2, 3)])

    # Execute
    with_params = psi_scores(a, x, y, region, params=layout.flatten(b))
    hutch_params = psi_scores_hutchinson(
        a, x, y, region, params=layout.flatten(b), generator=_gen(1), probes=4
    )

    # Check
    assert (with_params > 0).all()
    torch.testing.assert_close(with_params, psi_scores(b, x, y, region))
    torch.testing.assert_close(
        hutch_params, psi_scores_hutchinson(b, x, y, region, generator=_gen(1), probes=4)
    )
    assert not torch.allclose(with_params, psi_scores(a, x, y, region))
    assert torch.equal(layout.flatten(a), before)
    assert [p.requires_grad for p in a.parameters()] == flags
    assert all(p.grad is None for p in a.parameters())


def test_same_result_under_no_grad_and_in_eval_mode() -> None:
    model = _tiny_cnn()
    x, y = _cls_data(2, seed=8)
    region = _box_region(2, 6, 6, [(0, 1, 1, 2, 2), (1, 0, 3, 2, 2)])
    ref = psi_scores(model, x, y, region)
    with torch.no_grad():
        torch.testing.assert_close(psi_scores(model, x, y, region), ref)
    model.eval()
    torch.testing.assert_close(psi_scores(model, x, y, region), ref)


def test_custom_loss_fn() -> None:
    model = _tiny_cnn()
    x, y = _cls_data(1, seed=9)
    region = _box_region(1, 6, 6, [(0, 2, 2, 2, 2)])
    ref = psi_scores(model, x, y, region)

    def doubled(logits: Tensor, target: Tensor) -> Tensor:
        return 2 * F.cross_entropy(logits, target)

    # g and J scale linearly with the loss
    torch.testing.assert_close(psi_scores(model, x, y, region, loss_fn=doubled), 2 * ref)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"x": torch.zeros(8, 8)}, "x must be a 4-D tensor"),
        ({"region": torch.ones(2, 8, 7, dtype=torch.bool)}, "region has shape"),
        ({"region": torch.ones(2, 8, 8)}, "region must be a bool tensor"),
        ({"y": torch.zeros(3, 8, 8, dtype=torch.long)}, "y must have first dimension N = 2"),
        ({"params": torch.zeros(5)}, "params must be a flat vector of shape"),
        ({"chunk": 0}, "chunk must be an int >= 1"),
    ],
)
def test_validation(change: dict[str, object], match: str) -> None:
    x, y = _seg_data(2, seed=0)
    kwargs: dict[str, object] = {
        "x": x,
        "y": y,
        "region": torch.ones(2, 8, 8, dtype=torch.bool),
        **change,
    }
    with pytest.raises(ValueError, match=match):
        psi_scores(_tiny_unet(), **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- Hutchinson


def test_hutchinson_agrees_with_exact(unet_case: UnetCase) -> None:
    """512 probes: 10 % relative tolerance per layer.

    With one input channel, a pixel's estimate of ``J^R^2`` is ``J^R^2 * chi2_K / K``
    (``K = 512`` probes), relative std ``sqrt(2 / K) = 6.25 %``, so its square root has a
    relative std of about 3.1 % and a Jensen bias of ``-1 / (4K)``, negligible. Averaging
    over the region can only reduce the spread (pixels share the probes, so in the worst
    case they are fully correlated): 10 % is at least 3.2 standard deviations per layer.
    The seed is fixed, so the test is deterministic.
    """
    model, x, y, _ = unet_case
    region = _box_region(2, 8, 8, [(0, 1, 2, 3, 4)])  # image 1 has no region: skipped
    exact = psi_scores(model, x, y, region)
    assert (exact > 0).all()
    est = psi_scores_hutchinson(model, x, y, region, probes=512, generator=_gen(0), chunk=4096)
    assert est.dtype == torch.float32 and est.shape == exact.shape
    torch.testing.assert_close(est, exact, rtol=0.10, atol=0)


def test_hutchinson_is_deterministic_for_a_seed(unet_case: UnetCase) -> None:
    model, x, y, _ = unet_case
    region = _box_region(2, 8, 8, [(0, 1, 2, 2, 2), (1, 5, 0, 1, 3)])
    est = psi_scores_hutchinson(model, x, y, region, probes=4, generator=_gen(0))
    assert (est > 0).all()
    again = psi_scores_hutchinson(model, x, y, region, probes=4, generator=_gen(0))
    other = psi_scores_hutchinson(model, x, y, region, probes=4, generator=_gen(1))
    assert torch.equal(est, again)
    assert not torch.equal(est, other)


def test_hutchinson_two_channels_and_chunking() -> None:
    model = _tiny_cnn()
    x, y = _cls_data(1, seed=11)
    region = _box_region(1, 6, 6, [(0, 1, 1, 4, 4)])
    exact = psi_scores(model, x, y, region)
    est = psi_scores_hutchinson(model, x, y, region, probes=512, generator=_gen(2), chunk=1000)
    torch.testing.assert_close(est, exact, rtol=0.10, atol=0)
    # chunking only splits the batched call: identical draws, identical result
    whole = psi_scores_hutchinson(model, x, y, region, probes=512, generator=_gen(2))
    torch.testing.assert_close(est, whole)


def test_hutchinson_does_not_touch_global_rng() -> None:
    model = _tiny_cnn()
    x, y = _cls_data(1, seed=12)
    region = _box_region(1, 6, 6, [(0, 0, 0, 2, 2)])
    state = torch.get_rng_state()
    psi_scores_hutchinson(model, x, y, region, probes=4, generator=_gen(0))
    assert torch.equal(torch.get_rng_state(), state)
    with pytest.raises(ValueError, match="probes must be an int >= 1"):
        psi_scores_hutchinson(model, x, y, region, probes=0, generator=_gen(0))


# --------------------------------------------------------------------------- per format


def test_per_format_scores_mean_of_sampled_images() -> None:
    # Prepare: 5 images of 3 formats; image 4 ("b") has an empty region
    model = _tiny_unet()
    x, y = _seg_data(5, seed=13)
    region = _box_region(
        5, 8, 8, [(0, 0, 0, 2, 2), (1, 3, 3, 2, 2), (2, 5, 1, 2, 3), (3, 1, 5, 3, 2)]
    )
    formats = ["a", "b", "a", "c", "b"]

    # Execute: samples >= count, so every image with a region is used
    out = per_format_scores(model, x, y, region, formats, samples=10, generator=_gen(0))

    # Check
    assert list(out) == ["a", "b", "c"]
    single = [psi_scores(model, x[i : i + 1], y[i : i + 1], region[i : i + 1]) for i in range(4)]
    assert all((s > 0).all() for s in single)
    torch.testing.assert_close(out["a"], (single[0] + single[2]) / 2)
    torch.testing.assert_close(out["b"], single[1])
    torch.testing.assert_close(out["c"], single[3])


def test_per_format_scores_sampling_is_seeded() -> None:
    model = _tiny_cnn()
    x, y = _cls_data(6, seed=14)
    region = torch.zeros(6, 6, 6, dtype=torch.bool)
    region[:, 2:4, 2:4] = True
    formats = ["f"] * 6
    single = [psi_scores(model, x[i : i + 1], y[i : i + 1], region[i : i + 1]) for i in range(6)]

    first = per_format_scores(model, x, y, region, formats, samples=1, generator=_gen(5))
    again = per_format_scores(model, x, y, region, formats, samples=1, generator=_gen(5))
    assert torch.equal(first["f"], again["f"])
    assert any(torch.allclose(first["f"], s) for s in single)

    h1 = per_format_scores(
        model, x, y, region, formats, samples=2, generator=_gen(5), method="hutchinson", probes=4
    )
    h2 = per_format_scores(
        model, x, y, region, formats, samples=2, generator=_gen(5), method="hutchinson", probes=4
    )
    assert torch.equal(h1["f"], h2["f"])


def test_per_format_scores_validation() -> None:
    model = _tiny_cnn()
    x, y = _cls_data(2, seed=15)
    region = torch.ones(2, 6, 6, dtype=torch.bool)
    with pytest.raises(ValueError, match="exact, hutchinson"):
        per_format_scores(model, x, y, region, ["a", "a"], generator=_gen(0), method="jacobian")
    with pytest.raises(ValueError, match="formats has 1 entries"):
        per_format_scores(model, x, y, region, ["a"], generator=_gen(0))
    with pytest.raises(ValueError, match="samples must be an int >= 1"):
        per_format_scores(model, x, y, region, ["a", "b"], samples=0, generator=_gen(0))
