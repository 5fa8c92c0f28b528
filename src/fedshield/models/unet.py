"""A compact U-Net for per-pixel segmentation (e.g. tamper masks of document images).

The architecture of Ronneberger et al. (MICCAI 2015), shrunk for CPU federated
simulation: plain ``Conv2d`` + ``ReLU`` blocks, no normalisation layers and no buffers, so
that the engine can train stacked client copies with ``torch.func.vmap`` and FedRE can take
derivatives of the parameter gradient with respect to the input (``torch.func``
forward-over-reverse).
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor, nn

__all__ = ["UNet", "unet"]


def _double_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    """``Conv3x3 -> ReLU -> Conv3x3 -> ReLU`` with same padding."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(out_ch, out_ch, 3, padding=1),
        nn.ReLU(),
    )


class UNet(nn.Module):
    """U-Net: contracting path, bottleneck, expanding path with skip connections.

    Build it with :func:`unet`, which validates the arguments.

    Attributes:
        down: Encoder blocks; block ``k`` has ``width * 2**k`` channels.
        pool: 2x2 max-pooling between encoder levels.
        bottleneck: Block with ``width * 2**depth`` channels at the coarsest resolution.
        up: 2x2 stride-2 transposed convolutions, one per decoder level (coarse to fine).
        dec: Decoder blocks on ``concat(upsampled, skip)``, one per level (coarse to fine).
        head: Final 1x1 convolution to ``num_classes`` logits.
    """

    def __init__(self, in_channels: int, num_classes: int, width: int, depth: int) -> None:
        """Creates the layers.

        Args:
            in_channels: Channels of the input image.
            num_classes: Number of output logits per pixel.
            width: Channels of the first encoder level.
            depth: Number of 2x downsamplings.
        """
        super().__init__()
        chans = [width * 2**k for k in range(depth + 1)]
        self.down = nn.ModuleList()
        prev = in_channels
        for k in range(depth):
            self.down.append(_double_conv(prev, chans[k]))
            prev = chans[k]
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = _double_conv(chans[depth - 1], chans[depth])
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for k in reversed(range(depth)):
            self.up.append(nn.ConvTranspose2d(chans[k + 1], chans[k], 2, stride=2))
            self.dec.append(_double_conv(2 * chans[k], chans[k]))
        self.head = nn.Conv2d(chans[0], num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Per-pixel logits.

        Args:
            x: ``[N, C, H, W]`` images, ``H`` and ``W`` divisible by ``2**depth``.

        Returns:
            ``[N, num_classes, H, W]`` logits.
        """
        skips: list[Tensor] = []
        h = x
        for block in self.down:
            h = block(h)
            skips.append(h)
            h = self.pool(h)
        h = self.bottleneck(h)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips), strict=True):
            h = dec(torch.cat([up(h), skip], dim=1))
        out: Tensor = self.head(h)
        return out


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ValueError(f"unet: {name} must be an int >= 1, got {value!r}")
    return int(value)


def unet(input_shape: tuple[int, ...], num_classes: int, *, width: int = 8, depth: int = 2) -> UNet:
    """A compact U-Net for semantic segmentation.

    Reference: O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for
    Biomedical Image Segmentation", MICCAI 2015. Differences from the paper: same-padded
    3x3 convolutions (the output has the input's size, no cropping), ``width`` base
    channels instead of 64, ``depth`` downsamplings instead of 4, and no dropout. Every
    block is ``Conv3x3 -> ReLU -> Conv3x3 -> ReLU``; downsampling is 2x2 max-pooling,
    upsampling a 2x2 stride-2 transposed convolution to half the channels, followed by
    concatenation with the encoder features of the same resolution. The model has no
    normalisation layers and no buffers (``torch.func.vmap``-friendly).

    With the defaults on ``(1, 64, 128)`` documents and 2 classes it has 29,330
    parameters.

    Args:
        input_shape: ``(channels, height, width)`` of one image; height and width must be
            divisible by ``2**depth``.
        num_classes: Number of output logits per pixel (at least 1).
        width: Channels of the first encoder level (level ``k`` has ``width * 2**k``).
        depth: Number of downsamplings (at least 1).

    Returns:
        A :class:`UNet` mapping ``[N, C, H, W]`` to ``[N, num_classes, H, W]`` logits.

    Raises:
        ValueError: If ``input_shape`` is not three positive ints, a side is not divisible
            by ``2**depth``, or ``num_classes``, ``width`` or ``depth`` is not an int >= 1.
    """
    shape = tuple(input_shape)
    if len(shape) != 3 or any(
        isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1 for d in shape
    ):
        raise ValueError(
            f"unet: input_shape must be (channels, height, width) of positive ints, got {shape}"
        )
    num_classes = _positive_int(num_classes, "num_classes")
    width = _positive_int(width, "width")
    depth = _positive_int(depth, "depth")
    C, H, W = (int(d) for d in shape)
    factor = 2**depth
    if H % factor or W % factor:
        raise ValueError(
            f"unet: height and width must be divisible by 2**depth = {factor} "
            f"(depth={depth}), got input_shape {shape}"
        )
    return UNet(C, num_classes, width, depth)
