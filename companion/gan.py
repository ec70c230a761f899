r"""Generative adversarial networks: the two players, their configs, and ``sample``.

A generator maps noise :math:`z \sim \mathcal{N}(0, I)` to data, :math:`x = G(z)`; a
discriminator :math:`D = \operatorname{sigmoid}(\ell)` scores how real a point looks; they play
:math:`\min_G \max_D \mathbb{E}[\log D(x)] + \mathbb{E}[\log(1 - D(G(z)))]`
(Goodfellow et al. 2014). This is the family's protocol module:

* :class:`GANConfig` builds the MLP pair for points ``(n, d)``
  (:class:`Generator`, :class:`Discriminator`), optionally as ``copies`` independent
  pairs that train side by side in one game (one per seed); :class:`DigitGANConfig` the
  conditional DCGAN-style pair for the 8x8 digits (:class:`ConvGenerator`,
  :class:`ConvDiscriminator`), whose images are intensities in [0, 1];
* :func:`sample` draws ``G(z)`` in the form of the data;
* :func:`~companion.gan_training.train_gan` (importable from here) plays the game.

There is no ``loss`` and no ``nll``: a GAN is trained by a two-player game, not by
minimising one per-example loss, and it defines no likelihood. The losses of the game
and its theory are in :mod:`companion.gan_losses`, the loop in
:mod:`companion.gan_training`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from companion import checks, rng
from companion.gan_training import train_gan
from companion.utils import mode

# train_gan is importable from here (the family's verbs in one place) but documented once, in
# companion.gan_training: listing it here made Sphinx's source pages link to an anchor that does not exist.
__all__ = ["GANConfig", "Generator", "Discriminator", "Linears", "DigitGANConfig", "ConvGenerator",
           "ConvDiscriminator", "sample"]


# --- inputs of the networks ------------------------------------------------------

def _input(name: str, x: object, pattern: str, first: nn.Module, **sizes: int) -> torch.Tensor:
    """A network's float input: shape, float dtype, device, cast to the dtype of its ``first`` layer.

    No pass over the values (NaN, range): a network runs every step of a game, and
    :func:`sample` and :func:`~companion.gan_training.train_gan` check the data once.
    """
    x = checks.tensor(name, x, pattern, **sizes)
    if not x.is_floating_point():
        raise ValueError(f"expected {name} to be a float tensor, got {x.dtype}")
    if x.device != first.weight.device:
        checks.same_device(name, x, first)
    return x.to(first.weight.dtype)


def _labels(name: str, y: object, num_classes: int, first: nn.Module, b: int) -> torch.Tensor:
    """Class ids ``(b,)`` in ``[0, num_classes)`` on the device of the network's ``first`` layer."""
    y = checks.labels(name, y, num_classes, b=b)
    if y.device != first.weight.device:
        checks.same_device(name, y, first)
    return y


def _batch_norm_batch(x: torch.Tensor, model: nn.Module) -> None:
    if model.training and x.shape[0] < 2:
        raise ValueError("batch norm in training mode needs a batch of at least 2; "
                         "use sample() or the model in eval mode for a single example")


# --- the MLP pair for points ---------------------------------------------------

@dataclass(frozen=True)
class GANConfig:
    """Sizes of the MLP pair for low-dimensional data (course-sized defaults).

    ``copies = c > 1`` builds ``c`` independent networks in one module, evaluated side by
    side (:class:`Linears`): a batch ``(c b) d`` holds ``b`` examples for each copy, in
    order. One game then trains ``c`` independently initialised pairs at little more than
    the cost of one - several seeds for the price of a single run on a CPU, where these
    small networks cost mostly per step, not per example.

    Example:
        >>> GANConfig(latent_dim=0)
        Traceback (most recent call last):
        ...
        ValueError: latent_dim must be a positive int, got 0
    """
    data_dim: int = 2
    latent_dim: int = 2
    hidden: int = 64
    layers: int = 3      # hidden layers in each network
    pack: int = 1        # PacGAN: the discriminator judges `pack` samples jointly
    copies: int = 1      # independent networks side by side, one per seed

    def __post_init__(self) -> None:
        for name in ("data_dim", "latent_dim", "hidden", "layers", "pack", "copies"):
            checks.positive_int(name, getattr(self, name))


class Linears(nn.Module):
    r"""``copies`` independent linear layers side by side, ``x: (c, b, i) -> (c, b, o)``.

    .. math:: y_j = x_j W_j^\top + b_j, \qquad j = 1, \dots, c

    in one batched matrix product. Each copy is initialised as :class:`torch.nn.Linear`
    is, uniformly in :math:`\pm 1/\sqrt{i}`; one copy takes the same draws as ``nn.Linear``.

    Example:
        >>> layer = Linears(3, 4, 5)
        >>> layer(torch.zeros(3, 7, 4)).shape, layer.weight.shape
        (torch.Size([3, 7, 5]), torch.Size([3, 5, 4]))
    """

    def __init__(self, copies: int, in_features: int, out_features: int) -> None:
        super().__init__()
        bound = 1 / math.sqrt(in_features)     # nn.Linear's kaiming_uniform_(a=sqrt(5)) bound
        self.weight = nn.Parameter(torch.empty(copies, out_features, in_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(copies, 1, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight.transpose(1, 2))


def _split(name: str, x: torch.Tensor, copies: int, pack: int = 1) -> torch.Tensor:
    """``(c b p) d -> c b (p d)``: the examples of each copy, in groups of ``pack``."""
    if x.shape[0] % (copies * pack):
        raise ValueError(f"batch size {x.shape[0]} of {name} is not a multiple of copies * pack = "
                         f"{copies} * {pack}")
    return rearrange(x, "(c b p) d -> c b (p d)", c=copies, p=pack)


def _mlp(sizes: Sequence[int], act: Callable[[], nn.Module], copies: int) -> nn.Sequential:
    """:class:`Linears` of the given sizes with ``act()`` between them (none after the last)."""
    layers = [m for a, b in zip(sizes[:-1], sizes[1:]) for m in (Linears(copies, a, b), act())]
    return nn.Sequential(*layers[:-1])


class Generator(nn.Module):
    """``z: (b, latent_dim) -> x: (b, data_dim)``, an MLP with ReLU activations.

    With ``copies = c`` the batch is ``b = (c n)``: copy ``j`` maps the ``j``-th block of ``n`` rows.
    """

    def __init__(self, config: GANConfig = GANConfig()) -> None:
        super().__init__()
        self.config = checks.config(config, GANConfig)
        self.latent_dim = config.latent_dim
        hidden = [config.hidden] * config.layers
        self.copies = config.copies
        self.net = _mlp([config.latent_dim, *hidden, config.data_dim], nn.ReLU, config.copies)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = _input("z", z, "b latent_dim", self.net[0], latent_dim=self.latent_dim)
        return rearrange(self.net(_split("z", z, self.copies)), "c b d -> (c b) d")


class Discriminator(nn.Module):
    """``x: (b, data_dim) -> logits (b / pack,)``, an MLP with LeakyReLU activations.

    With ``pack = m > 1`` each group of ``m`` consecutive samples, concatenated, gets
    one logit, ``(b p) d -> b (p d)``: packing lets the discriminator see diversity
    (PacGAN, Lin et al. 2018). With ``copies = c``, ``(c b p) d -> c b (p d)``: copy ``j``
    judges the ``j``-th block of the batch.

    Example:
        >>> d = Discriminator(GANConfig(pack=2))
        >>> d(torch.zeros(6, 2)).shape
        torch.Size([3])
    """

    def __init__(self, config: GANConfig = GANConfig()) -> None:
        super().__init__()
        self.config = checks.config(config, GANConfig)
        self.pack, self.copies = config.pack, config.copies
        self.net = _mlp([config.data_dim * config.pack, *[config.hidden] * config.layers, 1],
                        lambda: nn.LeakyReLU(0.2), config.copies)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _input("x", x, "b d", self.net[0], d=self.config.data_dim)
        return rearrange(self.net(_split("x", x, self.copies, self.pack)), "c b 1 -> (c b)")


# --- the conditional pair for the 8x8 digits --------------------------------------

@dataclass(frozen=True)
class DigitGANConfig:
    """Sizes of the conditional DCGAN-style pair for the 8x8 digits.

    Example:
        >>> DigitGANConfig(width=0)
        Traceback (most recent call last):
        ...
        ValueError: width must be a positive int, got 0
    """
    latent_dim: int = 16
    width: int = 16
    num_classes: int = 10

    def __post_init__(self) -> None:
        for name in ("latent_dim", "width", "num_classes"):
            checks.positive_int(name, getattr(self, name))


class ConvGenerator(nn.Module):
    """``z: (b, latent_dim)``, labels ``y: (b,)`` -> images ``(b, 1, 8, 8)`` in [0, 1].

    After DCGAN's generator (Radford et al. 2016), at 8x8: a linear layer to a 4x4 map, a strided
    transposed convolution to 8x8, batch norm and ReLU between, a sigmoid at the end.
    The label enters as a one-hot vector next to ``z``.
    """

    def __init__(self, config: DigitGANConfig = DigitGANConfig()) -> None:
        super().__init__()
        self.config = checks.config(config, DigitGANConfig)
        self.latent_dim = config.latent_dim
        w = config.width
        self.project = nn.Sequential(nn.Linear(config.latent_dim + config.num_classes, 2 * w * 16),
                                     nn.BatchNorm1d(2 * w * 16), nn.ReLU())   # (b, 2w * 4 * 4)
        self.up = nn.Sequential(
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, 1, 3, padding=1), nn.Sigmoid())                   # (b, 1, 8, 8)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z = _input("z", z, "b latent_dim", self.project[0], latent_dim=self.latent_dim)
        y = _labels("y", y, self.config.num_classes, self.project[0], z.shape[0])
        _batch_norm_batch(z, self)
        one_hot = F.one_hot(y, self.config.num_classes).to(z.dtype)
        h = self.project(torch.cat([z, one_hot], dim=1))
        return self.up(rearrange(h, "b (c h w) -> b c h w", h=4, w=4))


class ConvDiscriminator(nn.Module):
    """Images ``x: (b, 1, 8, 8)``, labels ``y: (b,)`` -> logits ``(b,)``.

    The label becomes ``num_classes`` constant one-hot channels stacked on the image;
    two strided convolutions with LeakyReLU (8 -> 4 -> 2) and a linear layer follow.
    No batch normalisation, so each logit depends on its own image only.
    """

    def __init__(self, config: DigitGANConfig = DigitGANConfig()) -> None:
        super().__init__()
        self.config = checks.config(config, DigitGANConfig)
        w = config.width
        self.net = nn.Sequential(
            nn.Conv2d(1 + config.num_classes, w, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.LeakyReLU(0.2),   # (b, 2w, 2, 2)
            nn.Flatten(), nn.Linear(2 * w * 4, 1),
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = _input("x", x, "b 1 8 8", self.net[0])
        y = _labels("y", y, self.config.num_classes, self.net[0], x.shape[0])
        one_hot = F.one_hot(y, self.config.num_classes).to(x.dtype)
        planes = one_hot[:, :, None, None].expand(-1, -1, 8, 8)       # (b, num_classes, 8, 8)
        return self.net(torch.cat([x, planes], dim=1)).squeeze(-1)


# --- the protocol ------------------------------------------------------------------

@torch.no_grad()
def sample(model: Generator | ConvGenerator, n: int, *, generator: torch.Generator | None = None,
           labels: torch.Tensor | None = None) -> torch.Tensor:
    r"""``n`` samples :math:`x = G(z)`, :math:`z \sim \mathcal{N}(0, I)`, in the form of the data.

    :class:`Generator`: points ``(n, data_dim)``, with ``copies = c`` in ``c`` blocks of
    ``n / c``, one from each copy. :class:`ConvGenerator`: intensities in
    [0, 1], ``(n, 1, 8, 8)``, of the digits ``labels: (n,)`` asked for; without labels
    each is drawn uniformly from the classes (after ``z``; none is drawn for one class).
    The noise comes from the CPU ``generator`` and moves to the model's device; the
    model runs in eval mode (batch norm uses its running statistics) and keeps its mode.

    Example:
        >>> x = sample(ConvGenerator(), 4, generator=torch.Generator().manual_seed(0),
        ...            labels=torch.tensor([0, 1, 2, 3]))
        >>> x.shape, bool(x.min() >= 0), bool(x.max() <= 1)
        (torch.Size([4, 1, 8, 8]), True, True)
        >>> sample(Generator(GANConfig(data_dim=3)), 5).shape
        torch.Size([5, 3])
    """
    if not isinstance(model, (Generator, ConvGenerator)):
        raise ValueError(f"expected a gan.Generator or gan.ConvGenerator, got {type(model).__name__}")
    n = checks.positive_int("n", n)
    device, dtype = checks.model_device(model), checks.model_dtype(model)
    num_classes = model.config.num_classes if isinstance(model, ConvGenerator) else 0
    if labels is not None:
        if not num_classes:
            raise ValueError("the MLP Generator is unconditional: labels must be None")
        labels = _labels("labels", labels, num_classes, model.project[0], n)
    z = rng.randn((n, model.latent_dim), generator=generator, device=device, dtype=dtype)
    with mode(model, training=False):
        if not num_classes:
            return model(z)
        if labels is None and num_classes == 1:
            labels = torch.zeros(n, dtype=torch.long, device=device)
        elif labels is None:
            labels = rng.randint(0, num_classes, (n,), generator=generator, device=device)
        return model(z, labels)
