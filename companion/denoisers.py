r"""Noise-prediction networks for diffusion: an MLP for 2-D points and a small U-Net for 8x8 digits.

Both networks answer the same question: given a noisy input :math:`x_t` and its
timestep :math:`t`, what noise :math:`\epsilon` was added? (the
:math:`\epsilon_\theta(x_t, t)` of Ho et al. 2020). They see the timestep through
the sinusoidal embedding of the Transformer (Vaswani et al. 2017), which Ho et
al. borrowed for the same purpose, and, when ``num_classes > 0``, a class label
``y`` through a learned embedding. The label ``-1`` means "no label": the
unconditional model that classifier-free guidance needs is the same network
with its label dropped (Ho & Salimans 2022).

The schedule and the samplers live in :mod:`companion.diffusion`; these
networks only predict.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from companion.attention import sinusoidal_embedding
from companion.utils import check_shape

__all__ = ["MLPDenoiserConfig", "MLPDenoiser", "UNetConfig", "TinyUNet",
           "num_parameters"]


class _Conditioning(nn.Module):
    """Timestep (and optional label or context vector) -> one conditioning vector ``(b, width)``."""

    def __init__(self, time_dim: int, width: int, num_classes: int, context_dim: int = 0) -> None:
        super().__init__()
        self.time_dim, self.num_classes, self.context_dim = time_dim, num_classes, context_dim
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, width), nn.SiLU(), nn.Linear(width, width))
        # index 0 is the "no label" token (y = -1), classes are 1..K
        self.label_emb = nn.Embedding(num_classes + 1, width) if num_classes > 0 else None
        # a context vector c (a text embedding) enters the same way: e <- e + W c
        self.context_proj = nn.Linear(context_dim, width) if context_dim > 0 else None

    def forward(self, t: torch.Tensor, y: torch.Tensor | None,
                context: torch.Tensor | None = None) -> torch.Tensor:
        e = self.time_mlp(sinusoidal_embedding(t, self.time_dim))
        if (context is None) != (self.context_proj is None):
            raise ValueError(f"this denoiser takes a context of size {self.context_dim} "
                             f"(0: none), got {'none' if context is None else 'one'}")
        if context is not None:
            check_shape("context", context, "b c", b=t.shape[0], c=self.context_dim)
            e = e + self.context_proj(context)
        if y is not None:
            if self.label_emb is None:
                raise ValueError("this denoiser is unconditional (num_classes=0) but got labels y")
            check_shape("y", y, "b", b=t.shape[0])
            if y.dtype != torch.int64 or (y < -1).any() or (y >= self.num_classes).any():
                raise ValueError(f"y must be int64 in [-1, {self.num_classes}), -1 meaning no label")
            e = e + self.label_emb(y + 1)
        elif self.label_emb is not None:  # a conditional model asked without labels: no label
            e = e + self.label_emb.weight[0]
        return e


def _check_t(t: torch.Tensor, b: int) -> None:
    check_shape("t", t, "b", b=b)
    if t.dtype != torch.int64:
        raise ValueError(f"t must hold integer timesteps (int64), got {t.dtype}")


@dataclass(frozen=True)
class MLPDenoiserConfig:
    """Sizes of :class:`MLPDenoiser` (course-sized defaults for 2-D data)."""

    data_dim: int = 2
    hidden: int = 128
    depth: int = 3          # residual blocks
    time_dim: int = 32
    num_classes: int = 0    # 0: unconditional
    context_dim: int = 0    # > 0: conditioned on a context vector (b, context_dim)


class MLPDenoiser(nn.Module):
    r"""A residual MLP :math:`\epsilon_\theta(x_t, t)` for points ``x: (b, d)``.

    Each block adds the conditioning vector to its hidden layer, so every layer
    knows how noisy its input is:
    :math:`h \leftarrow h + W_2\,\mathrm{SiLU}(W_1\,\mathrm{SiLU}(h) + U e(t))`.

    Example:
        >>> net = MLPDenoiser(MLPDenoiserConfig())
        >>> net(torch.randn(5, 2), torch.randint(0, 100, (5,))).shape
        torch.Size([5, 2])
    """

    def __init__(self, config: MLPDenoiserConfig = MLPDenoiserConfig()) -> None:
        super().__init__()
        self.config = c = config
        self.cond = _Conditioning(c.time_dim, c.hidden, c.num_classes, c.context_dim)
        self.inp = nn.Linear(c.data_dim, c.hidden)
        self.blocks_in = nn.ModuleList(nn.Linear(c.hidden, c.hidden) for _ in range(c.depth))
        self.blocks_emb = nn.ModuleList(nn.Linear(c.hidden, c.hidden) for _ in range(c.depth))
        self.blocks_out = nn.ModuleList(nn.Linear(c.hidden, c.hidden) for _ in range(c.depth))
        self.out = nn.Linear(c.hidden, c.data_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None, *,
                context: torch.Tensor | None = None) -> torch.Tensor:
        """``x: (b, d)``, ``t: (b,)`` int64, ``y: (b,)`` or None, ``context: (b, context_dim)``
        or None -> predicted noise ``(b, d)``."""
        check_shape("x", x, "b d", d=self.config.data_dim)
        _check_t(t, x.shape[0])
        e = self.cond(t, y, context)
        h = self.inp(x)
        for lin_in, lin_emb, lin_out in zip(self.blocks_in, self.blocks_emb, self.blocks_out):
            h = h + lin_out(nn.functional.silu(lin_in(nn.functional.silu(h)) + lin_emb(e)))
        return self.out(nn.functional.silu(h))


@dataclass(frozen=True)
class UNetConfig:
    """Sizes of :class:`TinyUNet` (course-sized defaults for the 8x8 digits)."""

    channels: int = 32      # at 8x8; twice as many at 4x4
    time_dim: int = 32
    num_classes: int = 10   # 0: unconditional
    groups: int = 8         # GroupNorm groups


class _ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the conditioning vector added as a per-channel bias."""

    def __init__(self, c_in: int, c_out: int, emb: int, groups: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(groups, c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        h = h + self.emb(e)[:, :, None, None]
        h = self.conv2(nn.functional.silu(self.norm2(h)))
        return self.skip(x) + h


class TinyUNet(nn.Module):
    r"""A two-level U-Net :math:`\epsilon_\theta(x_t, t, y)` for images ``x: (b, 1, 8, 8)``.

    ::

        8x8, C:  conv ─ResBlock──────────────────────────────── concat ─ResBlock─ conv -> noise
                          └ stride-2 conv ─ 4x4, 2C: ResBlock ─ResBlock─ concat ─ResBlock┘ upsample

    The skip connections hand the fine detail straight to the decoder, which
    only has to work out what to change (Ronneberger et al. 2015; Ho et al. 2020
    use the same shape at 32x32 with attention added).

    Example:
        >>> net = TinyUNet(UNetConfig(channels=16))
        >>> net(torch.randn(3, 1, 8, 8), torch.tensor([0, 5, 9]), torch.tensor([1, -1, 7])).shape
        torch.Size([3, 1, 8, 8])
    """

    def __init__(self, config: UNetConfig = UNetConfig()) -> None:
        super().__init__()
        self.config = c = config
        ch, emb, gr = c.channels, 2 * c.channels, c.groups
        self.cond = _Conditioning(c.time_dim, emb, c.num_classes)
        self.inp = nn.Conv2d(1, ch, 3, padding=1)
        self.down1 = _ResBlock(ch, ch, emb, gr)                       # 8x8
        self.downsample = nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1)
        self.down2 = _ResBlock(2 * ch, 2 * ch, emb, gr)               # 4x4
        self.mid = _ResBlock(2 * ch, 2 * ch, emb, gr)                 # 4x4
        self.up2 = _ResBlock(4 * ch, 2 * ch, emb, gr)                 # 4x4, after concat
        self.upsample = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                      nn.Conv2d(2 * ch, ch, 3, padding=1))
        self.up1 = _ResBlock(2 * ch, ch, emb, gr)                     # 8x8, after concat
        self.out = nn.Sequential(nn.GroupNorm(gr, ch), nn.SiLU(), nn.Conv2d(ch, 1, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``x: (b, 1, 8, 8)``, ``t: (b,)`` int64, ``y: (b,)`` or None -> noise ``(b, 1, 8, 8)``."""
        check_shape("x", x, "b 1 8 8")
        _check_t(t, x.shape[0])
        e = self.cond(t, y)
        h1 = self.down1(self.inp(x), e)                               # (b, C, 8, 8)
        h2 = self.down2(self.downsample(h1), e)                       # (b, 2C, 4, 4)
        h = self.up2(torch.cat([self.mid(h2, e), h2], dim=1), e)      # (b, 2C, 4, 4)
        h = self.up1(torch.cat([self.upsample(h), h1], dim=1), e)    # (b, C, 8, 8)
        return self.out(h)


def num_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (a model-size figure for the text)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

