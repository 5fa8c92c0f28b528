"""A tiny pre-LN transformer encoder for token-id sequences (e.g. the Shakespeare tasks).

Architecture (:class:`TinyTransformer`), for input token ids ``x [B, L]``:

* token embedding ``tok (vocab_size, d_model)`` plus a learned position embedding
  ``pos (max_len, d_model)`` looked up on ``torch.arange(L)``, both initialised
  ``N(0, 1)``;
* ``layers`` pre-LN blocks ``blocks.i``, each

  - ``h = h + attn_out(MHSA(ln1(h)))``: multi-head self-attention with plain
    ``nn.Linear`` projections ``q``, ``k``, ``v`` (``d_model -> d_model``), ``heads``
    heads of ``d_model / heads`` dimensions, scaled dot-product softmax over the keys
    (padding keys, id ``0``, get a ``-1e9`` score), and the output projection
    ``attn_out`` (``d_model -> d_model``);
  - ``h = h + ff2(relu(ff1(ln2(h))))`` with ``ff1: d_model -> ffn``,
    ``ff2: ffn -> d_model``;

* a final LayerNorm ``ln_f``, a pooling over the positions and the classifier
  ``head (d_model -> num_classes)``. ``pool="last"`` (the default, for next-character
  prediction) takes the last non-padding position (position 0 if all are padding);
  ``pool="mean"`` averages the non-padding positions (for sequence classification).
  Attention is bidirectional (no causal mask): the label of a sample is never among its
  input positions.

No dropout and no buffers; the forward pass has no data-dependent Python control flow
and no in-place operations (the last non-padding position is selected with one-hot
weights computed from the padding mask), so it runs under ``torch.func.functional_call`` and
``torch.func.vmap`` (how fedshield trains clients).

FedQSN (:mod:`fedshield.privacy.fedqsn`) masks hidden units; :meth:`TinyTransformer.fedqsn_groups`
declares them: the ``ffn`` hidden units of every ``ff1`` (read by the ``ff2`` columns) and
the ``d_model`` output channels of every ``attn_out``, masked before the residual add
(they feed the residual stream, so no single next weight reads them: ``next_weight=""``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from fedshield.data.shakespeare import VOCAB_SIZE

if TYPE_CHECKING:
    from fedshield.privacy.fedqsn.masks import UnitGroup

__all__ = ["TinyTransformer", "tiny_transformer"]

_PAD_ID = 0
_MASKED_SCORE = -1e9
_EMB_STD = 1.0
_POOLS = ("last", "mean")


class _Block(nn.Module):
    """One pre-LN transformer block: self-attention then feed-forward, both residual."""

    def __init__(self, d_model: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d_model)
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.attn_out = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.ff1 = nn.Linear(d_model, ffn)
        self.ff2 = nn.Linear(ffn, d_model)

    def forward(self, h: Tensor, key_bias: Tensor) -> Tensor:
        """Applies the block.

        Args:
            h: ``[B, L, d_model]`` hidden states.
            key_bias: ``[B, 1, 1, L]`` additive attention-score bias (``-1e9`` on padding
                keys, ``0`` elsewhere).

        Returns:
            ``[B, L, d_model]``.
        """
        b, length, d = h.shape
        dh = d // self.heads
        a = self.ln1(h)

        def split(t: Tensor) -> Tensor:  # [B, L, d] -> [B, heads, L, dh]
            return t.reshape(b, length, self.heads, dh).transpose(1, 2)

        q, k, v = split(self.q(a)), split(self.k(a)), split(self.v(a))
        scores = q @ k.transpose(-2, -1) / math.sqrt(dh) + key_bias
        ctx = torch.softmax(scores, dim=-1) @ v
        ctx = ctx.transpose(1, 2).reshape(b, length, d)
        h = h + self.attn_out(ctx)
        return h + self.ff2(torch.relu(self.ff1(self.ln2(h))))


class TinyTransformer(nn.Module):
    """A small pre-LN transformer classifier over token ids.

    Parameter names: ``tok.weight``, ``pos.weight``, ``blocks.{i}.{ln1,q,k,v,attn_out,
    ln2,ff1,ff2}.{weight,bias}``, ``ln_f.{weight,bias}``, ``head.{weight,bias}``.

    Args:
        vocab_size: Number of token ids; id ``0`` is padding.
        max_len: Longest sequence (rows of the position embedding).
        num_classes: Number of output logits.
        d_model: Width of the residual stream; divisible by ``heads``.
        heads: Attention heads.
        layers: Number of blocks.
        ffn: Hidden units of each feed-forward layer.
        pool: ``"last"``: classify the representation of the last non-padding position
            (next-character prediction); ``"mean"``: the mean over the non-padding
            positions (sequence classification).
    """

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        num_classes: int,
        *,
        d_model: int = 64,
        heads: int = 4,
        layers: int = 2,
        ffn: int = 128,
        pool: str = "last",
    ) -> None:
        super().__init__()
        for name, value in (
            ("vocab_size", vocab_size),
            ("max_len", max_len),
            ("num_classes", num_classes),
            ("d_model", d_model),
            ("heads", heads),
            ("layers", layers),
            ("ffn", ffn),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if d_model % heads:
            raise ValueError(f"d_model={d_model} must be divisible by heads={heads}")
        if not isinstance(pool, str) or pool not in _POOLS:
            raise ValueError(f"pool must be one of {', '.join(map(repr, _POOLS))}, got {pool!r}")
        self.pool = pool
        self.max_len = max_len
        self.d_model = d_model
        self.ffn = ffn
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        # N(0, 1) (nn.Embedding's default), not GPT's 0.02: the residual stream then keeps
        # each character's identity and the mean pool starts as a bag of characters; with
        # 0.02 the attention output swamps it and training stalls near chance for epochs
        nn.init.normal_(self.tok.weight, std=_EMB_STD)
        nn.init.normal_(self.pos.weight, std=_EMB_STD)
        self.blocks = nn.ModuleList(_Block(d_model, heads, ffn) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Classifies sequences of token ids.

        Args:
            x: ``[B, L]`` token ids (any dtype; float32 as stored by the Shakespeare
                dataset), ``L <= max_len``.

        Returns:
            ``[B, num_classes]`` logits.

        Raises:
            ValueError: If ``x`` is not 2-D or longer than ``max_len``.
        """
        if x.dim() != 2 or x.shape[1] > self.max_len:
            raise ValueError(
                f"x must be [B, L] token ids with L <= {self.max_len}, got shape {tuple(x.shape)}"
            )
        ids = x.long()
        keep = (ids != _PAD_ID).to(self.tok.weight.dtype)  # [B, L]
        positions = torch.arange(ids.shape[1], device=ids.device)
        h = self.tok(ids) + self.pos(positions)
        key_bias = ((1.0 - keep) * _MASKED_SCORE)[:, None, None, :]
        for block in self.blocks:
            h = block(h, key_bias)
        h = self.ln_f(h)
        if self.pool == "mean":  # a constructor setting, not data-dependent
            pooled = (h * keep[..., None]).sum(1) / keep.sum(1, keepdim=True).clamp(min=1.0)
        else:
            # one-hot on the last non-padding position: the largest (index + 1) * keep,
            # minus 1; -1 (all padding) selects position 0
            order = positions.to(keep.dtype) + 1.0
            last = ((keep * order).amax(1, keepdim=True) - 1.0).clamp(min=0.0)  # [B, 1]
            onehot = (order - 1.0 == last).to(keep.dtype)  # [B, L]
            pooled = (h * onehot[..., None]).sum(1)
        return self.head(pooled)

    def fedqsn_groups(self) -> list[UnitGroup]:
        """The hidden units FedQSN may mask, block by block in forward order.

        Returns:
            For every block ``i``: the attention-output channels
            ``UnitGroup("blocks.{i}.attn_out", d_model, rows=(weight, bias),
            next_weight="", next_axis=1, spatial=1)`` (they feed the residual stream) and
            the feed-forward hidden units ``UnitGroup("blocks.{i}.ff1", ffn, rows=(ff1
            weight, ff1 bias), next_weight="blocks.{i}.ff2.weight", next_axis=1,
            spatial=1)``.
        """
        # imported here: the masks module pulls in fedshield.engine, which imports the
        # model registry (keeps ``fedshield.models`` free of import cycles)
        from fedshield.privacy.fedqsn.masks import UnitGroup

        groups: list[UnitGroup] = []
        for i in range(len(self.blocks)):
            p = f"blocks.{i}"
            groups.append(
                UnitGroup(
                    layer=f"{p}.attn_out",
                    num_units=self.d_model,
                    rows=(f"{p}.attn_out.weight", f"{p}.attn_out.bias"),
                    next_weight="",
                    next_axis=1,
                    spatial=1,
                )
            )
            groups.append(
                UnitGroup(
                    layer=f"{p}.ff1",
                    num_units=self.ffn,
                    rows=(f"{p}.ff1.weight", f"{p}.ff1.bias"),
                    next_weight=f"{p}.ff2.weight",
                    next_axis=1,
                    spatial=1,
                )
            )
        return groups


def tiny_transformer(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    vocab_size: int = VOCAB_SIZE,
    d_model: int = 64,
    heads: int = 4,
    layers: int = 2,
    ffn: int = 128,
    pool: str = "last",
) -> TinyTransformer:
    """Builds a :class:`TinyTransformer` for sequences of ``input_shape = (L,)`` token ids.

    The defaults suit the Shakespeare next-character task (:data:`VOCAB_SIZE` classes,
    ``pool="last"``), which the registry name ``"transformer"`` builds; with ``L = 64`` it
    then has 75,941 parameters (73,861 with 5 classes).

    Args:
        input_shape: ``(L,)``, the sequence length (the position embedding's size).
        num_classes: Number of output logits.
        vocab_size: Number of token ids; default the Shakespeare vocabulary's
            (:data:`fedshield.data.shakespeare.VOCAB_SIZE`).
        d_model: Width of the residual stream; divisible by ``heads``.
        heads: Attention heads.
        layers: Number of blocks.
        ffn: Hidden units of each feed-forward layer.
        pool: ``"last"`` (next-character prediction) or ``"mean"`` (sequence
            classification); see :class:`TinyTransformer`.

    Returns:
        The model.

    Raises:
        ValueError: If ``input_shape`` is not ``(L,)`` with ``L >= 1`` or a size is not a
            positive int (or ``d_model`` is not divisible by ``heads``), or ``pool`` is
            unknown.
    """
    shape = tuple(input_shape)
    if len(shape) != 1 or isinstance(shape[0], bool) or not isinstance(shape[0], int):
        raise ValueError(f"input_shape must be (sequence_length,), got {input_shape!r}")
    return TinyTransformer(
        vocab_size,
        shape[0],
        num_classes,
        d_model=d_model,
        heads=heads,
        layers=layers,
        ffn=ffn,
        pool=pool,
    )
