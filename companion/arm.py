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
* the family's protocol (see :mod:`companion`): :func:`loss` (the training loss,
  :math:`-\log p_\theta(x)`), :func:`nll` (the same number, in evaluation mode
  and without gradients) and :func:`sample`, which draws images one pixel at a
  time (64 network calls) with :func:`companion.gpt.sample_next`.

Images are integer grey levels ``(b, 1, 8, 8)`` (``digits(as_levels=True)``);
``(b, 64)`` is accepted too.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from companion import checks, rng
from companion.gpt import GPT, GPTConfig, sample_next
from companion.utils import mode

__all__ = ["PixelARMConfig", "PixelARM", "log_prob", "loss", "nll", "sample"]


@dataclass(frozen=True)
class PixelARMConfig:
    """Sizes of a :class:`PixelARM`: ``levels`` grey levels, ``pixels`` per image, the GPT's width."""

    levels: int = 17
    pixels: int = 64
    layers: int = 3
    heads: int = 4
    dim: int = 64

    def __post_init__(self) -> None:
        if checks.positive_int("levels", self.levels) < 2:
            raise ValueError(f"levels must be an int >= 2, got {self.levels!r}")
        checks.positive_int("pixels", self.pixels)
        self.gpt()                                   # checks layers, heads and dim

    def gpt(self) -> GPTConfig:
        """The :class:`~companion.gpt.GPTConfig`: ``levels + 1`` tokens (the last is BOS), ``pixels`` positions."""
        return GPTConfig(vocab_size=self.levels + 1, context=self.pixels, layers=self.layers,
                         heads=self.heads, dim=self.dim)


def _levels(x: object, config: PixelARMConfig) -> torch.Tensor:
    """Images ``(b, 1, h, w)`` or ``(b, pixels)`` of integer levels -> ``(b, pixels)`` int64."""
    x = checks.tensor("x", x)
    if x.dim() < 2 or x[0].numel() != config.pixels:
        raise ValueError(f"expected x of shape (b, {config.pixels}) or (b, 1, h, w) with "
                         f"h*w={config.pixels}, got {tuple(x.shape)}")
    return checks.levels("x", x.reshape(x.shape[0], config.pixels), levels=config.levels)


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
        self.config = checks.config(config, PixelARMConfig)
        self.bos = config.levels                      # the start token's id
        self.gpt = GPT(config.gpt())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = checks.same_device("x", _levels(x, self.config), self)
        start = torch.full((x.shape[0], 1), self.bos, dtype=torch.int64, device=x.device)
        inputs = torch.cat([start, x[:, :-1]], dim=1)             # [BOS, x_1 .. x_63]
        return self.gpt(inputs)[..., :self.config.levels]        # (b, 64, levels)


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
    levels = checks.same_device("x", _levels(x, model.config), model)
    logp = model(levels).log_softmax(dim=-1)                         # (b, 64, levels)
    return logp.gather(-1, levels[..., None]).squeeze(-1).sum(dim=1)


def loss(model: PixelARM, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""The training loss, :math:`-\log p_\theta(x)` in nats, ``(b,)``: maximum likelihood, exactly.

    ``generator`` is accepted for the protocol and unused: the loss draws nothing.

    Example:
        >>> arm = PixelARM(PixelARMConfig(layers=1, heads=2, dim=16))
        >>> loss(arm, torch.zeros(3, 1, 8, 8, dtype=torch.long)).shape
        torch.Size([3])
    """
    rng.check_generator(generator)
    return -log_prob(model, x)


@torch.no_grad()
def nll(model: PixelARM, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""The exact negative log-likelihood :math:`-\log p_\theta(x)` in nats, ``(b,)``, in evaluation mode.

    No bound and no estimate: the chain rule is a normalised distribution.
    ``generator`` is accepted for the protocol and unused.
    """
    rng.check_generator(generator)
    with mode(model, training=False):
        return -log_prob(model, x)


@torch.no_grad()
def sample(model: PixelARM, n: int, *, generator: torch.Generator | None = None,
           temperature: float = 1.0) -> torch.Tensor:
    r"""Draw ``n`` images ``(n, 1, h, w)`` of integer levels (int64, on the model's device), pixel by pixel.

    Step :math:`i` runs the network on the pixels drawn so far and draws
    :math:`x_i \sim \mathrm{softmax}(\ell_i / \tau)` with :func:`companion.gpt.sample_next`;
    ``temperature`` :math:`\tau = 1` samples the model itself, :math:`\tau < 1` sharpens
    every conditional, :math:`\tau = 0` takes the most likely level each time.
    The pixels cannot be drawn in parallel: that is the price of the autoregressive
    factorisation, not of an exact likelihood (a normalizing flow has one and samples in one pass).
    The model runs in evaluation mode and is left in the mode it was in.

    Example:
        >>> arm = PixelARM(PixelARMConfig(layers=1, heads=2, dim=16))
        >>> x = sample(arm, 2, generator=torch.Generator().manual_seed(0))
        >>> tuple(x.shape), x.dtype, int(x.max()) < 17
        ((2, 1, 8, 8), torch.int64, True)
    """
    checks.positive_int("n", n)
    c = model.config
    idx = torch.full((n, 1), model.bos, dtype=torch.int64, device=checks.model_device(model))
    with mode(model, training=False):
        for _ in range(c.pixels):
            logits = model.gpt(idx)[:, -1, :c.levels]                    # (n, levels): never BOS
            idx = torch.cat([idx, sample_next(logits, temperature=temperature, generator=generator)], dim=1)
    side = int(round(c.pixels ** 0.5))
    shape = (n, 1, side, side) if side * side == c.pixels else (n, c.pixels)
    return idx[:, 1:].reshape(shape)
