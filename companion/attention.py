r"""Scaled dot-product attention, its masks, multi-head attention, positions.

Attention lets every position of a sequence read from every other position it
is allowed to see, with weights computed from the content itself (Vaswani et
al., 2017, *Attention is all you need*). For queries
:math:`Q \in \mathbb{R}^{n \times d_k}`, keys
:math:`K \in \mathbb{R}^{m \times d_k}` and values
:math:`V \in \mathbb{R}^{m \times d_v}`,

.. math:: \mathrm{Attention}(Q, K, V)
          = \mathrm{softmax}\Big(\frac{Q K^\top}{\sqrt{d_k}} + M\Big) V,

where the mask :math:`M` is 0 where query :math:`i` may attend to key
:math:`j` and :math:`-\infty` where it may not. Shapes follow the book's
notation: ``b`` batch, ``heads`` heads, ``n`` queries, ``m`` keys, ``dk``
head dimension. A boolean mask is ``True`` where attention is *allowed*: the
convention of ``torch.nn.functional.scaled_dot_product_attention`` and the
opposite of ``torch.nn.MultiheadAttention``'s ``attn_mask``.
"""
from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn

from companion import checks

__all__ = ["scaled_dot_product_attention", "causal_mask", "padding_mask", "head_dim",
           "MultiHeadAttention", "sinusoidal_embedding", "sinusoidal_positions", "patchify"]


def _check_mask(mask: torch.Tensor, target: tuple[int, ...], device: torch.device) -> None:
    """``mask`` must be boolean, on ``device`` and broadcast to ``target = (b, heads, n, m)``."""
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"mask must be a bool tensor (True = may attend), got {got}")
    if mask.device != device:
        raise ValueError(f"mask is on {mask.device} but q is on {device}: make it there, "
                         f"e.g. causal_mask(n, device=q.device)")
    shape = tuple(mask.shape)
    fits = zip(reversed(shape), reversed(target))
    if len(shape) > 4 or not all(s in (1, t) for s, t in fits):
        raise ValueError(f"mask of shape {shape} does not broadcast to "
                         f"(b, heads, n, m) = {target}")


def scaled_dot_product_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Attention written out: scores, mask, softmax, weighted sum.

    .. math:: A_{ij} = \mathrm{softmax}_j\Big(
              \frac{q_i \cdot k_j}{\sqrt{d_k}}\Big), \qquad
              \text{out}_i = \sum_j A_{ij} v_j

    Args:
        q: queries ``(b, heads, n, dk)``.
        k: keys ``(b, heads, m, dk)``.
        v: values ``(b, heads, m, dv)``.
        mask: bool, broadcastable to ``(b, heads, n, m)``, ``True`` = may
            attend. A query whose keys are all masked gets zero weights and
            a zero output (as in PyTorch's fused kernel).

    Returns:
        ``(out, weights)``: ``out: (b, heads, n, dv)`` and the attention
        weights ``(b, heads, n, m)``, each row summing to 1.

    Example:
        >>> q = k = v = torch.randn(2, 4, 5, 8)
        >>> out, w = scaled_dot_product_attention(q, k, v, causal_mask(5))
        >>> tuple(out.shape), tuple(w.shape), w[0, 0, 0].tolist()
        ((2, 4, 5, 8), (2, 4, 5, 5), [1.0, 0.0, 0.0, 0.0, 0.0])
    """
    checks.tensor("q", q, "b heads n dk")
    b, h, n, dk = q.shape
    checks.tensor("k", k, "b heads m dk", b=b, heads=h, dk=dk)
    m = k.shape[2]
    checks.tensor("v", v, "b heads m dv", b=b, heads=h, m=m)
    if not q.is_floating_point() or not q.dtype == k.dtype == v.dtype:
        raise ValueError(f"q, k and v must be float tensors of one dtype, got {q.dtype}, {k.dtype} and {v.dtype}")
    # s_ij = q_i . k_j / sqrt(dk)
    scores = torch.einsum("bhid,bhjd->bhij", q, k) / math.sqrt(dk)
    if mask is not None:
        _check_mask(mask, (b, h, n, m), q.device)
        # + M: minus infinity where query i may not attend to key j
        scores = scores.masked_fill(~mask, float("-inf"))
    # A: softmax over the keys, each row sums to 1
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        # a fully masked row is 0 / 0 = nan: it gets no weight at all
        weights = weights.nan_to_num(0.0)
    # out_i = sum_j A_ij v_j
    out = torch.einsum("bhij,bhjd->bhid", weights, v)
    return out, weights


def causal_mask(n: int, window: int | None = None, *,
                device: torch.device | None = None) -> torch.Tensor:
    r"""The decoder's mask ``(n, n)``: query :math:`i` sees keys :math:`j \le i`.

    With ``window`` it is also *local*: only the last ``window`` positions,
    :math:`i - \text{window} < j \le i` (sliding-window attention), which
    turns a one-layer transformer into a fixed-window model.

    Example:
        >>> causal_mask(3).int()
        tensor([[1, 0, 0],
                [1, 1, 0],
                [1, 1, 1]], dtype=torch.int32)
        >>> causal_mask(3, window=2).int()[2]
        tensor([0, 1, 1], dtype=torch.int32)
    """
    checks.positive_int("n", n)
    if window is not None:
        checks.positive_int("window", window)
    i = torch.arange(n, device=device)[:, None]
    j = torch.arange(n, device=device)[None, :]
    mask = j <= i
    if window is not None:
        mask = mask & (i - j < window)
    return mask


def padding_mask(lengths: torch.Tensor, m: int) -> torch.Tensor:
    """The padding mask ``(b, 1, 1, m)``: key ``j`` of sequence ``s`` is real iff ``j < lengths[s]``.

    It broadcasts over heads and queries, so padded keys get no attention.

    Example:
        >>> padding_mask(torch.tensor([2, 3]), 4).int().squeeze()
        tensor([[1, 1, 0, 0],
                [1, 1, 1, 0]], dtype=torch.int32)
    """
    lengths = checks.tensor("lengths", lengths, "b")
    if lengths.is_floating_point() or lengths.dtype == torch.bool or lengths.min() < 1 or lengths.max() > m:
        raise ValueError(f"lengths must be integers in [1, {m}], got {lengths.tolist()}")
    mask = torch.arange(m, device=lengths.device)[None, :] < lengths[:, None]
    return rearrange(mask, "b m -> b 1 1 m")


def head_dim(dim: int, heads: int, *, name: str = "dim") -> int:
    """The width ``dk = dim / heads`` of each of ``heads`` heads; a clear error unless it is a whole number.

    ``name`` is what the caller calls ``dim`` (e.g. ``"text_dim"``), for the message.

    Example:
        >>> head_dim(128, 4)
        32
        >>> head_dim(10, 4)
        Traceback (most recent call last):
        ...
        ValueError: dim must be divisible by heads (each head gets dim / heads dimensions), got dim=10, heads=4
    """
    checks.positive_int(name, dim)
    checks.positive_int("heads", heads)
    if dim % heads:
        raise ValueError(f"{name} must be divisible by heads (each head gets {name} / heads dimensions), "
                         f"got {name}={dim}, heads={heads}")
    return dim // heads


class MultiHeadAttention(nn.Module):
    r"""Multi-head self-attention: ``heads`` attentions of width dim / heads.

    .. math:: \mathrm{MHA}(X) = \mathrm{Concat}(\mathrm{head}_1, \dots,
              \mathrm{head}_H)\, W^O, \quad \mathrm{head}_h
              = \mathrm{Attention}(X W^Q_h, X W^K_h, X W^V_h)

    ``qkv`` holds :math:`W^Q, W^K, W^V` stacked as one ``(3 dim, dim)``
    linear map, laid out like ``torch.nn.MultiheadAttention``'s
    ``in_proj_weight``; ``proj`` is :math:`W^O`.

    Example:
        >>> mha = MultiHeadAttention(dim=16, heads=4)
        >>> out, w = mha(torch.randn(2, 5, 16), mask=causal_mask(5))
        >>> tuple(out.shape), tuple(w.shape)
        ((2, 5, 16), (2, 4, 5, 5))
    """

    def __init__(self, dim: int, heads: int, *, bias: bool = True) -> None:
        super().__init__()
        head_dim(dim, heads)
        self.dim, self.heads = dim, heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (b, n, dim)`` -> ``out (b, n, dim)``, ``weights (b, heads, n, n)``.

        ``mask``: bool, broadcastable to ``(b, heads, n, n)``, True = may attend.
        A float64 ``x`` is cast to the layer's dtype.
        """
        x = checks.floats("x", x, "b n dim", model=self, dim=self.dim)
        return self._attend(x, mask)

    def _attend(self, x: torch.Tensor, mask: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` without the check of ``x``, for a caller that has checked it (a Block)."""
        q, k, v = rearrange(self.qkv(x),
                            "b n (three heads dk) -> three b heads n dk",
                            three=3, heads=self.heads)
        out, weights = scaled_dot_product_attention(q, k, v, mask)
        out = rearrange(out, "b heads n dk -> b n (heads dk)")
        return self.proj(out), weights


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    r"""Embed timesteps or positions ``t: (b,)`` as ``(b, dim)`` sines and cosines of geometric frequencies.

    .. math:: e(t) = \big[\sin(\omega_0 t), \dots, \sin(\omega_{k-1} t),
              \cos(\omega_0 t), \dots, \cos(\omega_{k-1} t)\big],
              \quad \omega_i = \text{max\_period}^{-i/k},\ k = \text{dim}/2

    Nearby timesteps get similar vectors. The frequencies are angular: the
    fastest, :math:`\omega_0 = 1` radian per step, completes one cycle every
    :math:`2\pi \approx 6.3` steps (not one per step), and they fall
    geometrically to about one cycle per :math:`2\pi \cdot \text{max\_period}` steps. Computed in ``t``'s dtype if it is a float, in float32 for
    integer ``t``; on ``t``'s device.

    Example:
        >>> e = sinusoidal_embedding(torch.tensor([0, 10, 999]), 16)
        >>> e.shape, bool(e[0, :8].abs().max() == 0)  # sin(0) = 0
        (torch.Size([3, 16]), True)
    """
    t = checks.tensor("t", t, "b")
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 2 or dim % 2:
        raise ValueError(f"dim must be an even int >= 2, got {dim!r}")
    checks.positive("max_period", max_period)
    dtype = t.dtype if t.is_floating_point() else torch.float32
    half = dim // 2
    freqs = max_period ** (-torch.arange(half, dtype=dtype, device=t.device) / half)
    angles = t.to(dtype)[:, None] * freqs[None, :]          # (b, half): omega_i t
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sinusoidal_positions(n: int, dim: int) -> torch.Tensor:
    r"""The fixed position code of Vaswani et al. (2017) for positions ``0 .. n-1``, ``(n, dim)``.

    .. math:: P_{t, 2i} = \sin\big(t / 10000^{2i/\text{dim}}\big), \qquad
              P_{t, 2i+1} = \cos\big(t / 10000^{2i/\text{dim}}\big)

    It is :func:`sinusoidal_embedding` of the positions (computed in float64,
    returned in the default dtype) with its columns interleaved as in the paper:
    the embedding's layout, all sines then all cosines, and this one are a
    permutation of the same columns with the same frequencies. Each pair of
    columns is a clock turning at its own frequency, so :math:`P_{t+s}` is a
    rotation of :math:`P_t` that depends on ``s`` only.

    Example:
        >>> p = sinusoidal_positions(4, 6)
        >>> tuple(p.shape), p[0].tolist()
        ((4, 6), [0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    """
    checks.positive_int("n", n)
    pos = sinusoidal_embedding(torch.arange(n, dtype=torch.float64), dim)   # (n, [sin..., cos...])
    pos = rearrange(pos, "n (two half) -> n (half two)", two=2)             # (n, [sin, cos, sin, cos...])
    return pos.to(torch.get_default_dtype())


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    r"""Cut images ``(b, c, h, w)`` into ``patch x patch`` tokens, as ViT does.

    Returns ``(b, (h / patch) (w / patch), c patch patch)``: one token per
    patch, in reading order, each the patch's pixels flattened - the "16x16
    words" of Dosovitskiy et al. (2021).

    Example:
        >>> patchify(torch.zeros(5, 1, 8, 8), 2).shape
        torch.Size([5, 16, 4])
    """
    images = checks.tensor("images", images, "b c h w")
    h, w = images.shape[2:]
    if not isinstance(patch, int) or patch < 1 or h % patch or w % patch:
        raise ValueError("patch must be a positive int dividing the image "
                         f"size {(h, w)}, got {patch!r}")
    return rearrange(images, "b c (gh p1) (gw p2) -> b (gh gw) (c p1 p2)",
                     p1=patch, p2=patch)
