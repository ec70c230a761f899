r"""The five families side by side on the 8x8 digits: a table built from the families' one protocol.

Each row of :data:`FAMILIES` names a family module - :mod:`~companion.vae`,
:mod:`~companion.gan`, :mod:`~companion.realnvp`, :mod:`~companion.diffusion`,
:mod:`~companion.arm` - and one small recipe for it. Everything else is the protocol
every family module speaks (see :mod:`companion`): ``loss(model, x, *, generator)``,
``sample(model, n, *, generator)``, ``nll(model, x, *, generator)``. Nothing here knows
a family by name; the only game that is not "minimise the per-example loss" is the
GAN's, and its row says so by carrying its own ``fit``.

All likelihoods are in nats per image of integer grey levels 0..16, so they can be
compared with each other and with the uniform model's :math:`64 \ln 17 = 181.3`: the
ARM's is exact, the others are upper bounds in expectation over their random draws (the
VAE's importance-weighted bound, the flow's dequantisation bound, diffusion's variational
bound; one evaluation is a random estimate), and the GAN has none.

The four calls: :func:`build` a model, :func:`fit` it on the train split,
:func:`generate` images ``(n, 1, 8, 8)`` in [0, 1] for the figures and metrics, and
:func:`negative_log_likelihood` (``None`` for the GAN). :func:`load_checkpoint` restores
the shipped weights (:mod:`companion.weights`; trained by ``tools/train_checkpoints.py``).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from companion import arm, checks, diffusion, gan, realnvp, vae
from companion.data import DIGIT_LEVELS, digits, to_intensities
from companion.denoisers import UNetConfig
from companion.train import train
from companion.utils import fresh_init
from companion.weights import CHECKPOINTS, load_weights, save_weights

__all__ = ["Family", "FAMILIES", "RECIPES", "CHECKPOINTS", "build", "fit", "generate",
           "negative_log_likelihood", "save_checkpoint", "load_checkpoint"]


@dataclass(frozen=True)
class Family:
    """One row of the table: the family's module, its model from the recipe, how it trains and is read.

    ``make`` builds the untrained model; ``recipe`` holds its sizes and optimiser settings
    (stored with each checkpoint); ``train_options`` (schedule, clipping) go to
    :func:`companion.train.train` with the recipe's;
    ``nll_options`` and ``sample_options`` are the defaults of the module's ``nll`` and
    ``sample`` options; ``likelihood`` is ``"exact"``, ``"bound"`` or ``"none"``. ``game``
    replaces loss-minimisation for a family trained as a game.
    """

    module: ModuleType
    make: Callable[[], nn.Module]
    recipe: Mapping[str, object]
    likelihood: str
    train_options: Mapping[str, object] = field(default_factory=dict)
    nll_options: Mapping[str, object] = field(default_factory=dict)
    sample_options: Mapping[str, object] = field(default_factory=dict)
    game: Callable[..., list[float]] | None = None


def _gan_game(model: gan.ConvGenerator, levels: torch.Tensor, *, seed: int, steps: int,
              progress: bool) -> list[float]:
    """The GAN's training: its generator against a fresh discriminator (same seed), one class."""
    r = RECIPES["gan"]
    disc = fresh_init(lambda: gan.ConvDiscriminator(model.config), seed).to(checks.model_device(model))
    labels = torch.zeros(len(levels), dtype=torch.long, device=levels.device)
    out = gan.train_gan(model, disc, (to_intensities(levels), labels), steps=steps, batch_size=r["batch_size"],
                        lr=r["lr"], seed=seed, desc="gan", progress=progress)
    return out["g_loss"]


RECIPES: dict[str, dict] = {
    "vae": dict(latent_dim=16, hidden=96, steps=1200, lr=1e-3, batch_size=64, weight_decay=0.0),
    "gan": dict(latent_dim=16, width=32, steps=2000, lr=2e-4, batch_size=64),
    "flow": dict(layers=8, hidden=48, steps=600, lr=1e-3, batch_size=64, weight_decay=0.0),
    "diffusion": dict(channels=16, T=200, steps=2000, lr=2e-3, batch_size=64, weight_decay=0.0),
    "arm": dict(layers=3, dim=96, heads=4, steps=500, lr=2e-3, batch_size=64, weight_decay=1.0),
}
"""One small recipe per family: sizes, optimiser steps and learning rate (tuned on the val split)."""

_R = RECIPES
FAMILIES: dict[str, Family] = {
    "vae": Family(vae, lambda: vae.VAE(vae.VAEConfig(latent_dim=_R["vae"]["latent_dim"], hidden=_R["vae"]["hidden"],
                                                     likelihood="categorical")),
                  _R["vae"], "bound", nll_options=dict(k=100),
                  sample_options=dict(mean=True)),   # the VAE's customary picture: E[x | z], z ~ N(0, I),
    "gan": Family(gan, lambda: gan.ConvGenerator(gan.DigitGANConfig(latent_dim=_R["gan"]["latent_dim"],
                                                                    width=_R["gan"]["width"], num_classes=1)),
                  _R["gan"], "none", game=_gan_game),
    "flow": Family(realnvp, lambda: realnvp.RealNVP(realnvp.RealNVPConfig(
                       dim=64, layers=_R["flow"]["layers"], hidden=_R["flow"]["hidden"], levels=DIGIT_LEVELS)),
                   _R["flow"], "bound", dict(max_grad_norm=10.0), dict(k=100)),
    "diffusion": Family(diffusion, lambda: diffusion.Diffusion(diffusion.DiffusionConfig(
                            denoiser=UNetConfig(channels=_R["diffusion"]["channels"], num_classes=0),
                            T=_R["diffusion"]["T"], levels=DIGIT_LEVELS)),
                        _R["diffusion"], "bound", dict(lr_schedule="cosine"),
                        dict(timesteps=20), dict(steps=None)),
    "arm": Family(arm, lambda: arm.PixelARM(arm.PixelARMConfig(layers=_R["arm"]["layers"], heads=_R["arm"]["heads"],
                                                               dim=_R["arm"]["dim"])),
                  _R["arm"], "exact", dict(lr_schedule="cosine")),
}
"""The families compared, in the order of the book."""


def _family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"family must be one of {tuple(FAMILIES)}, got {name!r}")
    return FAMILIES[name]


def _options(defaults: Mapping[str, object], given: Mapping[str, object]) -> dict[str, object]:
    """The row's defaults, overridden by the given options that this family has (others are ignored)."""
    return {**defaults, **{k: v for k, v in given.items() if k in defaults}}


def build(family: str, *, seed: int = 0) -> nn.Module:
    """A fresh, untrained model of ``family`` built with its recipe and ``seed`` (the global RNG untouched).

    The GAN is the generator :class:`companion.gan.ConvGenerator` with a single class
    (``num_classes=1``): every image gets the same constant label, so it is unconditional
    like the other four.

    Example:
        >>> [type(build(f)).__name__ for f in FAMILIES]
        ['VAE', 'ConvGenerator', 'RealNVP', 'Diffusion', 'PixelARM']
    """
    return fresh_init(_family(family).make, seed)


def fit(family: str, model: nn.Module, levels: torch.Tensor | None = None, *, seed: int = 0,
        steps: int | None = None, progress: bool = True) -> list[float]:
    """Train ``model`` on ``levels`` (default: the train split) with its family's loss; the loss history.

    ``levels: (n, 1, 8, 8)`` integer grey levels on the model's device; ``steps``
    overrides the recipe (the tests train for a few steps only). The model is left in
    the train/eval mode it was in.
    """
    row = _family(family)
    steps = row.recipe["steps"] if steps is None else checks.positive_int("steps", steps)
    if levels is None:
        levels = digits("train", as_levels=True)[0].to(checks.model_device(model))
    levels = checks.same_device("levels", checks.levels("levels", levels, "n 1 8 8"), model)
    if row.game is not None:
        return row.game(model, levels, seed=seed, steps=steps, progress=progress)
    g = torch.Generator().manual_seed(seed)
    return train(lambda x: row.module.loss(model, x, generator=g), model, levels, steps=steps,
                 lr=row.recipe["lr"], batch_size=row.recipe["batch_size"],
                 weight_decay=row.recipe.get("weight_decay", 0.0), seed=seed, progress=progress,
                 desc=family, **row.train_options)


@torch.no_grad()
def generate(family: str, model: nn.Module, n: int, *, generator: torch.Generator | None = None,
             steps: int | None = None) -> torch.Tensor:
    """``n`` images ``(n, 1, 8, 8)`` in [0, 1] from the family's ``sample``, for figures and metrics.

    Samples of grey levels become ``level / 16``; the VAE shows its decoder's mean
    image (its row's ``mean=True``). ``steps`` is passed to samplers that have it
    (diffusion: DDIM in ``steps`` instead of all ``T`` DDPM steps).
    """
    row = _family(family)
    checks.positive_int("n", n)
    given = {} if steps is None else {"steps": steps}
    x = row.module.sample(model, n, generator=generator, **_options(row.sample_options, given))
    return x if x.is_floating_point() else to_intensities(x)


@torch.no_grad()
def negative_log_likelihood(family: str, model: nn.Module, levels: torch.Tensor, *,
                            generator: torch.Generator | None = None, **options: object) -> torch.Tensor | None:
    """The family's ``nll`` of integer ``levels: (b, 1, 8, 8)`` in nats, ``(b,)``; ``None`` for the GAN.

    ARM: exact. Flow: the dequantisation bound with ``k`` draws. VAE: the
    importance-weighted bound with ``k`` samples. Diffusion: the variational bound
    with ``timesteps`` stratified steps (an unbiased estimate of an upper bound).
    ``options`` (``k``, ``timesteps``) override the table's defaults for the families
    that have them.
    """
    row = _family(family)
    if row.likelihood == "none":
        return None
    return row.module.nll(model, levels, generator=generator, **_options(row.nll_options, options))


def save_checkpoint(family: str, seed: int, model: nn.Module, metadata: dict, *,
                    directory: Path | str = CHECKPOINTS) -> Path:
    """Save ``model``'s weights in half precision and ``metadata`` as JSON; returns the weights' path."""
    _family(family)
    return save_weights(model, Path(directory) / f"{family}_seed{seed}", metadata)


def load_checkpoint(family: str, seed: int, *, directory: Path | str = CHECKPOINTS) -> tuple[nn.Module, dict]:
    """Rebuild ``family``'s model, load its shipped weights (float32, on the CPU) and metadata, in eval mode."""
    _family(family)
    state, metadata = load_weights(Path(directory) / f"{family}_seed{seed}")
    model = build(family, seed=seed)
    model.load_state_dict(state)
    return model.eval(), metadata
