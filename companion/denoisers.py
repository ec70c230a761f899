r"""Noise-prediction networks for diffusion: an MLP for 2-D points and a small U-Net for 8x8 digits.

Both networks answer the same question: given a noisy input :math:`x_t` and its
timestep :math:`t`, what noise :math:`\epsilon` was added? (the
:math:`\epsilon_\theta(x_t, t)` of Ho et al. 2020). They see the timestep through
the sinusoidal embedding of the Transformer (Vaswani et al. 2017), which Ho et
al. borrowed for the same purpose, and, when ``num_classes > 0``, a class label
``y`` through a learned embedding. The label ``-1`` means "no label": the
unconditional model that classifier-free guidance needs is the same network
with its label dropped (Ho & Salimans 2022).

The schedule lives in :mod:`companion.diffusion`, the samplers in
:mod:`companion.samplers`; these networks only predict. Both check their input
(:mod:`companion.checks`): floats of the right shape (float64 is cast to the
model's dtype), int64 timesteps, labels in ``[-1, num_classes)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from companion import checks
from companion.attention import sinusoidal_embedding

__all__ = ["MLPDenoiserConfig", "MLPDenoiser", "UNetConfig", "TinyUNet"]


def _count(name: str, value: object) -> int:
    """``value`` if it is an int >= 0 (0 switches a conditioning input off)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be an int >= 0 (0: none), got {value!r}")
    return value


def _check_time_dim(time_dim: object) -> None:
    if checks.positive_int("time_dim", time_dim) % 2:
        raise ValueError(f"time_dim must be even (sines and cosines in pairs), got {time_dim}")


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
        emb = sinusoidal_embedding(t, self.time_dim)               # float32, as the model's dtype below
        e = self.time_mlp(emb.to(self.time_mlp[0].weight.dtype))
        if (context is None) != (self.context_proj is None):
            raise ValueError(f"this denoiser takes a context of size {self.context_dim} "
                             f"(0: none), got {'none' if context is None else 'one'}")
        if context is not None:
            context = checks.floats("context", context, "b c", b=t.shape[0], c=self.context_dim, model=self)
            e = e + self.context_proj(context)
        if y is not None:
            if self.label_emb is None:
                raise ValueError("this denoiser is unconditional (num_classes=0) but got labels y")
            y = checks.labels("y", y, self.num_classes, b=t.shape[0], allow_none=True)
            checks.same_device("y", y, self)
            e = e + self.label_emb(y + 1)
        elif self.label_emb is not None:  # a conditional model asked without labels: no label
            e = e + self.label_emb.weight[0]
        return e


def check_denoiser_inputs(net: nn.Module, x: object, pattern: str, t: object, **sizes: int) -> torch.Tensor:
    """``x`` as floats of ``pattern`` on ``net``'s device and dtype; ``t: (b,)`` int64 timesteps >= 0 beside it."""
    x = checks.floats("x", x, pattern, model=net, **sizes)
    checks.tensor("t", t, "b", b=x.shape[0])
    if t.dtype != torch.int64:
        raise ValueError(f"t must hold integer timesteps (int64), got {t.dtype}")
    checks.same_device("t", t, net)
    if bool((t < 0).any()):
        raise ValueError(f"timesteps must be >= 0, got {t.min().item()}")
    return x


@dataclass(frozen=True)
class MLPDenoiserConfig:
    """Sizes of :class:`MLPDenoiser` (course-sized defaults for 2-D data)."""

    data_dim: int = 2
    hidden: int = 128
    layers: int = 3         # residual blocks
    time_dim: int = 32
    num_classes: int = 0    # 0: unconditional
    context_dim: int = 0    # > 0: conditioned on a context vector (b, context_dim)

    def __post_init__(self) -> None:
        for name in ("data_dim", "hidden", "layers"):
            checks.positive_int(name, getattr(self, name))
        _check_time_dim(self.time_dim)
        _count("num_classes", self.num_classes)
        _count("context_dim", self.context_dim)


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
        self.config = c = checks.config(config, MLPDenoiserConfig)
        self.cond = _Conditioning(c.time_dim, c.hidden, c.num_classes, c.context_dim)
        self.inp = nn.Linear(c.data_dim, c.hidden)
        self.blocks_in = nn.ModuleList(nn.Linear(c.hidden, c.hidden) for _ in range(c.layers))
        self.blocks_emb = nn.ModuleList(nn.Linear(c.hidden, c.hidden) for _ in range(c.layers))
        self.blocks_out = nn.ModuleList(nn.Linear(c.hidden, c.hidden) for _ in range(c.layers))
        self.out = nn.Linear(c.hidden, c.data_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None, *,
                context: torch.Tensor | None = None) -> torch.Tensor:
        """``x: (b, d)``, ``t: (b,)`` int64, ``y: (b,)`` or None, ``context: (b, context_dim)``
        or None -> predicted noise ``(b, d)``."""
        x = check_denoiser_inputs(self, x, "b d", t, d=self.config.data_dim)
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
    groups: int = 8         # GroupNorm groups: they split channels (and 2, 4 x channels) evenly

    def __post_init__(self) -> None:
        checks.positive_int("channels", self.channels)
        checks.positive_int("groups", self.groups)
        _check_time_dim(self.time_dim)
        _count("num_classes", self.num_classes)
        if self.channels % self.groups:
            raise ValueError(f"channels ({self.channels}) must be a multiple of groups ({self.groups}): "
                             "GroupNorm splits the channels into equal groups")


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
        self.config = c = checks.config(config, UNetConfig)
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
        x = check_denoiser_inputs(self, x, "b 1 8 8", t)
        e = self.cond(t, y)
        h1 = self.down1(self.inp(x), e)                               # (b, C, 8, 8)
        h2 = self.down2(self.downsample(h1), e)                       # (b, 2C, 4, 4)
        h = self.up2(torch.cat([self.mid(h2, e), h2], dim=1), e)      # (b, 2C, 4, 4)
        h = self.up1(torch.cat([self.upsample(h), h1], dim=1), e)    # (b, C, 8, 8)
        return self.out(h)
