"""Pairwise cosine similarities of the rows of an update matrix, accumulated in float64.

    cos(x_i, x_j) = <x_i, x_j> / (||x_i|| ||x_j||)      from the Gram matrix X Xᵀ

FLAME clusters the local models ``W_i = G + u_i`` by cosine distance ``1 − cos``. With
``||u_i|| << ||G||`` those distances are about ``||u_i − u_j||² / (2 ||G||²)``, e.g. 1e-6
for ``||u|| / ||G|| = 1e-3``: below what a float32 Gram matrix resolves. The Gram matrix is
therefore accumulated in float64 over column blocks (one GEMM per block, no float64 copy of
the whole matrix), with the shift ``G`` added block by block so ``W`` is never materialised.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: elements of one float64 column block (2^24 elements = 128 MiB)
_BLOCK_ELEMENTS = 1 << 24


def gram64(
    x: Tensor, shift: Tensor | None = None, *, block_elements: int = _BLOCK_ELEMENTS
) -> Tensor:
    """``[n, n]`` float64 Gram matrix of the rows of ``x + shift``.

    Args:
        x: ``[n, d]`` floating matrix.
        shift: ``[d]`` vector added to every row, or None.
        block_elements: Size of one float64 column block, in elements.

    Returns:
        ``[n, n]`` float64 ``(x + shift)(x + shift)ᵀ`` on the device of ``x``.
    """
    n, d = x.shape
    step = max(1, block_elements // max(n, 1))
    gram = torch.zeros(n, n, dtype=torch.float64, device=x.device)
    for start in range(0, d, step):  # a loop over column blocks, a single one when small
        block = x[:, start : start + step].to(torch.float64)
        if shift is not None:
            block = block + shift[start : start + step].to(device=x.device, dtype=torch.float64)
        gram.addmm_(block, block.T)
    return gram


def cosine_similarity64(
    x: Tensor, shift: Tensor | None = None, *, block_elements: int = _BLOCK_ELEMENTS
) -> Tensor:
    """``[n, n]`` float64 cosine similarities of the rows of ``x + shift``.

    A row of norm 0 has no direction: its similarity with every row, itself included, is 0
    (as scikit-learn's ``cosine_similarity`` gives). Values are clamped to ``[-1, 1]``.

    Args:
        x: ``[n, d]`` floating matrix.
        shift: ``[d]`` vector added to every row, or None.
        block_elements: Size of one float64 column block, in elements.

    Returns:
        ``[n, n]`` float64 symmetric matrix.
    """
    gram = gram64(x, shift, block_elements=block_elements)
    gram = (gram + gram.T) / 2
    norms = gram.diagonal().clamp(min=0.0).sqrt()
    nonzero = norms > 0
    safe = torch.where(nonzero, norms, 1.0)
    # one division by the (exactly symmetric) outer product keeps the result symmetric
    cos = (gram / (safe.unsqueeze(1) * safe.unsqueeze(0))).clamp_(-1.0, 1.0)
    both = nonzero.unsqueeze(1) & nonzero.unsqueeze(0)
    return torch.where(both, cos, 0.0)
