r"""An autoregressive transformer over the grey levels of the 8x8 digits (exact likelihood).

An autoregressive model (ARM) writes the probability of an image as a product of
one-dimensional conditionals, pixel by pixel in raster order,

.. math:: p_\theta(x) = \prod_{i=1}^{D} p_\theta(x_i \mid x_1, \dots, x_{i-1}),
          \qquad D = 64,

each a categorical distribution over the 17 grey levels. The product is a
normalised distribution over all :math:`17^{64}` images by construction, so
:math:`\log p_\theta(x)` is *exact*: no bound, no estimate (Larochelle & Murray
2011; van den Oord et al. 2016; the Image Transformer of Parmar et al. 2018 uses
self-attention as here).

The network is :class:`companion.gpt.GPT` unchanged: the pixels are its tokens
(ids 0..16) and one extra id, ``BOS = 17``, starts the sequence, so the model
reads ``[BOS, x_1, ..., x_63]`` and predicts ``[x_1, ..., x_64]``. The causal mask
guarantees that the prediction for :math:`x_i` sees only :math:`x_{<i}`.
Only the first 17 output logits are used: the start token is never a pixel.

* :class:`PixelARM` returns logits ``(b, 64, 17)``;
* :func:`log_prob` is the exact :math:`\log p_\theta(x)` in nats, ``(b,)``;
  train with ``loss_fn = lambda x: -log_prob(model, x)``;
* :func:`sample` draws images one pixel at a time (64 network calls).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from companion.gpt import GPT, GPTConfig

__all__ = ["PixelARMConfig", "PixelARM", "log_prob", "sample"]


@dataclass(frozen=True)
class PixelARMConfig:
    """Sizes of a :class:`PixelARM`: ``levels`` grey levels, ``pixels`` per image, the GPT's width."""

    levels: int = 17
    pixels: int = 64
    layers: int = 3
    heads: int = 4
    dim: int = 64

    def __post_init__(self) -> None:
        if not isinstance(self.levels, int) or self.levels < 2:
            raise ValueError(f"levels must be an int >= 2, got {self.levels!r}")
        if not isinstance(self.pixels, int) or self.pixels < 1:
            raise ValueError(f"pixels must be a positive int, got {self.pixels!r}")

    def gpt(self) -> GPTConfig:
        """The :class:`~companion.gpt.GPTConfig`: ``levels + 1`` tokens (the last is BOS), ``pixels`` positions."""
        return GPTConfig(vocab_size=self.levels + 1, context=self.pixels, layers=self.layers,
                         heads=self.heads, dim=self.dim)


def _levels(x: torch.Tensor, config: PixelARMConfig) -> torch.Tensor:
    """Images ``(b, 1, h, w)`` or ``(b, pixels)`` of integer levels -> ``(b, pixels)`` int64."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"expected x to be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2 or x.shape[0] == 0 or x[0].numel() != config.pixels:
        raise ValueError(f"expected x of shape (b, {config.pixels}) or (b, 1, h, w) with "
                         f"h*w={config.pixels}, b >= 1, got {tuple(x.shape)}")
    if x.is_floating_point() or x.is_complex():
        raise ValueError(f"x must hold integer grey levels 0..{config.levels - 1} "
                         f"(digits(as_levels=True)), got {x.dtype}")
    x = x.reshape(x.shape[0], config.pixels).long()
    if x.min() < 0 or x.max() >= config.levels:
        raise ValueError(f"grey levels must lie in [0, {config.levels}), got [{x.min().item()}, {x.max().item()}]")
    return x


class PixelARM(nn.Module):
    r"""A GPT over pixels: levels ``x: (b, 1, 8, 8)`` -> logits ``(b, 64, levels)``.

    Row ``i`` of the output holds the logits of :math:`p_\theta(x_i \mid x_{<i})`.

    Example:
        >>> arm = PixelARM(PixelARMConfig(layers=1, heads=2, dim=16))
        >>> arm(torch.randint(0, 17, (3, 1, 8, 8))).shape
        torch.Size([3, 64, 17])
    """

    def __init__(self, config: PixelARMConfig = PixelARMConfig()) -> None:
        super().__init__()
        self.config = config
        self.bos = config.levels                      # the start token's id
        self.gpt = GPT(config.gpt())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _levels(x, self.config)
        start = torch.full((x.shape[0], 1), self.bos, dtype=torch.int64, device=x.device)
        inputs = torch.cat([start, x[:, :-1]], dim=1)             # [BOS, x_1 .. x_63]
        return self.gpt(inputs)[..., :self.config.levels]        # (b, 64, levels)

    def num_params(self) -> int:
        """Number of trainable parameters."""
        return self.gpt.num_params()


def log_prob(model: PixelARM, x: torch.Tensor) -> torch.Tensor:
    r"""The exact log-likelihood :math:`\sum_i \log p_\theta(x_i \mid x_{<i})` in nats, ``(b,)``.

    Example:
        >>> arm = PixelARM(PixelARMConfig(layers=1, heads=2, dim=16))
        >>> with torch.no_grad():
        ...     _ = arm.gpt.head.weight.zero_()          # all logits 0: uniform over 17 levels
        >>> lp = log_prob(arm, torch.zeros(2, 64, dtype=torch.long))
        >>> torch.allclose(lp, torch.full((2,), -64 * torch.log(torch.tensor(17.0))))
        True
    """
    levels = _levels(x, model.config)
    logp = model(levels).log_softmax(dim=-1)                         # (b, 64, levels)
    return logp.gather(-1, levels[..., None]).squeeze(-1).sum(dim=1)


@torch.no_grad()
def sample(model: PixelARM, n: int, *, temperature: float = 1.0,
           generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Draw ``n`` images ``(n, 1, h, w)`` of integer levels, pixel by pixel.

    Step :math:`i` runs the network on the pixels drawn so far and draws
    :math:`x_i \sim \mathrm{softmax}(\ell_i / T)`; ``temperature`` :math:`T = 1`
    samples the model itself, :math:`T < 1` sharpens every conditional.
    The pixels cannot be drawn in parallel: that is the price of the exact likelihood.

    Example:
        >>> arm = PixelARM(PixelARMConfig(layers=1, heads=2, dim=16))
        >>> x = sample(arm, 2, generator=torch.Generator().manual_seed(0))
        >>> tuple(x.shape), x.dtype, int(x.max()) < 17
        ((2, 1, 8, 8), torch.int64, True)
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    c = model.config
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    idx = torch.full((n, 1), model.bos, dtype=torch.int64, device=device)
    for _ in range(c.pixels):
        logits = model.gpt(idx)[:, -1, :c.levels] / temperature          # (n, levels)
        probs = torch.softmax(logits, dim=-1)
        idx = torch.cat([idx, torch.multinomial(probs, 1, generator=generator)], dim=1)
    model.train(was_training)
    side = int(round(c.pixels ** 0.5))
    shape = (n, 1, side, side) if side * side == c.pixels else (n, c.pixels)
    return idx[:, 1:].reshape(shape)
