r"""The five families side by side on the 8x8 digits: one recipe each, shipped weights, one measurement.

Nothing here re-implements a model: each family is built, trained and sampled with
its own module (:mod:`companion.vae`, :mod:`companion.gan`, :mod:`companion.flows`,
:mod:`companion.diffusion` with :mod:`companion.denoisers`, :mod:`companion.arm`).
This module only fixes one small recipe per family (:data:`RECIPES`), puts every
family behind the same four calls, and adds the two likelihood computations that
the family modules do not provide:

* :func:`dequantized_nll`, the flow's bound on the *discrete* negative log-likelihood,
  :math:`-\log P(x) \le -\log \frac1k \sum_j p(x + u_j)`, :math:`u_j \sim U[0, 1)^D`;
* :func:`diffusion_nll_bound`, the variational bound of a DDPM (Ho et al. 2020, eq. 5)
  with a discretised Gaussian decoder for the 17 grey levels.

All likelihoods are in nats per image of integer grey levels 0..16, so they can be
compared with each other and with the uniform model's :math:`64 \ln 17 = 181.3`.

The four calls: :func:`build` a model, :func:`fit` it on the train split,
:func:`generate` images ``(n, 1, 8, 8)`` in [0, 1] and :func:`negative_log_likelihood` (``None``
for the GAN, which defines no likelihood). :func:`save_checkpoint` and
:func:`load_checkpoint` move weights to and from ``companion/checkpoints``
(trained by ``tools/train_checkpoints.py``).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

from companion import arm, diffusion, flows, gan, samplers, vae
from companion.data import DIGIT_LEVELS, digits
from companion.denoisers import TinyUNet, UNetConfig
from companion.diffusion_bound import _log_bin_probability, diffusion_nll_bound  # noqa: F401 (re-exported)
from companion.train import train
from companion.utils import num_parameters  # noqa: F401 (re-exported)

__all__ = ["FAMILIES", "RECIPES", "CHECKPOINTS", "build", "fit", "generate", "negative_log_likelihood",
           "dequantized_nll", "diffusion_nll_bound", "num_parameters",
           "save_checkpoint", "load_checkpoint"]

FAMILIES = ("vae", "gan", "flow", "diffusion", "arm")
"""The families compared, in the order of the book."""

CHECKPOINTS = Path(__file__).parent / "checkpoints"
"""Where the shipped weights live (small files, trained by ``tools/train_checkpoints.py``)."""

RECIPES: dict[str, dict] = {
    "vae": dict(latent_dim=16, hidden=96, steps=1200, lr=1e-3, batch_size=64, weight_decay=0.0),
    "gan": dict(latent_dim=16, width=32, steps=2000, lr=2e-4, batch_size=64),
    "flow": dict(n_layers=8, hidden=48, steps=600, lr=1e-3, batch_size=64, weight_decay=0.0),
    "diffusion": dict(channels=16, T=200, steps=2000, lr=2e-3, batch_size=64, weight_decay=0.0),
    "arm": dict(layers=3, dim=96, heads=4, steps=500, lr=2e-3, batch_size=64, weight_decay=1.0),
}
"""One small recipe per family: sizes, optimiser steps and learning rate (tuned on the val split)."""


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")


# --- the flow on dequantised levels and the diffusion model's scale --------------------

def _flow(recipe: dict) -> flows.Flow:
    """RealNVP on ``levels + u`` in [0, 17)^64: scale by 1/17, logit, then coupling layers.

    The first map is fixed, :math:`y = x / 17` with :math:`\\log|\\det| = -64 \\ln 17`,
    so the flow's density is per unit of grey level, the unit of the discrete bins.
    """
    d = 64
    preprocess = [flows.ElementwiseAffine(d, log_scale=torch.full((d,), math.log(DIGIT_LEVELS)), trainable=False),
                  flows.Logit(d, alpha=0.05)]
    return flows.realnvp(flows.RealNVPConfig(dim=d, n_layers=recipe["n_layers"], hidden=recipe["hidden"]),
                         preprocess=preprocess)


def _to_unit(levels: torch.Tensor) -> torch.Tensor:
    """Integer levels 0..16 -> the diffusion model's scale [-1, 1]."""
    return levels.float() / (DIGIT_LEVELS - 1) * 2 - 1


class _Diffusion(nn.Module):
    """A denoiser together with its noise schedule, so one checkpoint restores both."""

    def __init__(self, recipe: dict) -> None:
        super().__init__()
        self.net = TinyUNet(UNetConfig(channels=recipe["channels"], num_classes=0))
        self.schedule = diffusion.NoiseSchedule.linear(recipe["T"])

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(x, t)


# --- the four calls ----------------------------------------------------------------

def build(family: str, *, seed: int = 0) -> nn.Module:
    """A fresh, untrained model of ``family`` built with its recipe and ``seed``.

    The GAN is the generator of :class:`companion.gan.ConvGenerator` with a single
    class (``n_classes=1``): every image gets the same constant label, so it is
    unconditional like the other four.

    Example:
        >>> [type(build(f)).__name__ for f in FAMILIES]
        ['VAE', 'ConvGenerator', 'Flow', '_Diffusion', 'PixelARM']
    """
    _check_family(family)
    torch.manual_seed(seed)
    r = RECIPES[family]
    if family == "vae":
        return vae.VAE(64, r["latent_dim"], r["hidden"], likelihood="categorical")
    if family == "gan":
        return gan.ConvGenerator(gan.DigitGANConfig(latent_dim=r["latent_dim"], width=r["width"], n_classes=1))
    if family == "flow":
        return _flow(r)
    if family == "diffusion":
        return _Diffusion(r)
    return arm.PixelARM(arm.PixelARMConfig(layers=r["layers"], heads=r["heads"], dim=r["dim"]))


def fit(family: str, model: nn.Module, *, seed: int = 0, steps: int | None = None,
        progress: bool = True) -> list[float]:
    """Train ``model`` on the train split with the family's own loss; returns the loss history.

    ``steps`` overrides the recipe (the tests train for a few steps only).
    """
    _check_family(family)
    r = dict(RECIPES[family])
    steps = r["steps"] if steps is None else steps
    levels, _ = digits("train", as_levels=True)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    common = dict(steps=steps, lr=r["lr"], batch_size=r["batch_size"], seed=seed, progress=progress,
                  desc=family)
    model.train()
    if family == "vae":
        history = train(lambda x: -vae.elbo(model, x, generator=g).elbo, model.parameters(), levels,
                        weight_decay=r["weight_decay"], **common)
    elif family == "gan":
        disc = gan.ConvDiscriminator(gan.DigitGANConfig(latent_dim=r["latent_dim"], width=r["width"], n_classes=1))
        x = levels.float() / (DIGIT_LEVELS - 1)
        out = gan.train_gan(model, disc, (x, torch.zeros(len(x), dtype=torch.long)), steps=steps,
                            batch_size=r["batch_size"], lr=r["lr"], seed=seed, desc=family, progress=progress)
        history = out["g_loss"]
    elif family == "flow":
        history = train(lambda x: -model.log_prob(flows.dequantize(x.flatten(1), generator=g)),
                        model.parameters(), levels, weight_decay=r["weight_decay"], max_grad_norm=10.0, **common)
    elif family == "diffusion":
        x0 = _to_unit(levels)
        history = train(lambda x: diffusion.ddpm_loss(model.net, x, model.schedule, generator=g),
                        model.parameters(), x0, weight_decay=r["weight_decay"], lr_schedule="cosine", **common)
    else:
        history = train(lambda x: -arm.log_prob(model, x), model.parameters(), levels,
                        weight_decay=r["weight_decay"], lr_schedule="cosine", **common)
    model.eval()
    return history


@torch.no_grad()
def generate(family: str, model: nn.Module, n: int, *, generator: torch.Generator | None = None,
             ddim_steps: int | None = None) -> torch.Tensor:
    """``n`` images ``(n, 1, 8, 8)`` in [0, 1], each family with its own sampler.

    VAE: the decoder's mean image for :math:`z \\sim \\mathcal{N}(0, I)`; GAN: :math:`G(z)`;
    flow: :math:`f^{-1}(z)`, floored to a level; diffusion: DDPM's ancestral sampler over
    all ``T`` steps (or DDIM in ``ddim_steps``), rounded to a level; ARM: pixel by pixel.
    """
    _check_family(family)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    model.eval()
    top = DIGIT_LEVELS - 1
    if family == "vae":
        return vae.sample(model, n, generator=generator)
    if family == "gan":
        z = torch.randn(n, model.latent_dim, generator=generator)
        return model(z, torch.zeros(n, dtype=torch.long))
    if family == "flow":
        y = model.sample(n, generator=generator)                       # levels + u, in (0, 17)
        return (y.floor().clamp(0, top) / top).reshape(n, 1, 8, 8)
    if family == "diffusion":
        shape = (n, 1, 8, 8)
        if ddim_steps is None:
            x = samplers.ddpm_sample(model.net, model.schedule, shape, clip=1.0, generator=generator)
        else:
            x = samplers.ddim_sample(model.net, model.schedule, shape, steps=ddim_steps, clip=1.0,
                                     generator=generator)
        return ((x.clamp(-1, 1) + 1) / 2 * top).round() / top
    return arm.sample(model, n, generator=generator).float() / top


@torch.no_grad()
def negative_log_likelihood(family: str, model: nn.Module, levels: torch.Tensor, *,
             generator: torch.Generator | None = None, k: int = 100,
             timesteps: int | None = 20) -> torch.Tensor | None:
    """Negative log-likelihood in nats of integer ``levels: (b, 1, 8, 8)``, ``(b,)``; ``None`` for the GAN.

    ARM: exact. Flow: :func:`dequantized_nll` with ``k`` draws (an upper bound).
    VAE: minus the importance-weighted bound with ``k`` samples (an upper bound).
    Diffusion: :func:`diffusion_nll_bound` with ``timesteps`` stratified steps (an
    unbiased estimate of an upper bound).
    """
    _check_family(family)
    model.eval()
    if family == "gan":
        return None
    if family == "arm":
        return -arm.log_prob(model, levels)
    if family == "flow":
        return dequantized_nll(model, levels, k=k, generator=generator)
    if family == "vae":
        return -vae.importance_weighted_log_likelihood(model, levels, k=k, generator=generator)
    return diffusion_nll_bound(model.net, model.schedule, levels, timesteps=timesteps, generator=generator)


# --- the two likelihoods the family modules leave out -----------------------------------

@torch.no_grad()
def dequantized_nll(flow: flows.Flow, levels: torch.Tensor, *, k: int = 100,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    r"""An upper bound on the discrete NLL from a density on ``levels + u``, ``(b,)`` nats.

    The probability of the bin of :math:`x` is :math:`P(x) = \int_{[0,1)^D} p(x + u)\,du
    = \mathbb{E}_u\, p(x + u)`, so by Jensen's inequality

    .. math:: -\log P(x) \le -\log \frac1k \sum_{j=1}^k p(x + u_j), \qquad u_j \sim U[0, 1)^D ,

    in expectation, tighter as ``k`` grows (``k = 1`` is the usual dequantisation
    bound of Theis et al. 2016; Ho et al. 2019 use the ``k``-sample form).

    Example:
        >>> f = _flow(RECIPES["flow"])
        >>> dequantized_nll(f, torch.randint(0, 17, (2, 1, 8, 8)), k=4).shape
        torch.Size([2])
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    x = levels.flatten(1)
    b = x.shape[0]
    copies = x.repeat(k, 1)                                             # ((k b), D): draw j of image i at j*b + i
    logp = torch.cat([flow.log_prob(flows.dequantize(chunk, generator=generator))
                      for chunk in copies.split(4096)]).reshape(k, b)
    return -(torch.logsumexp(logp.double(), dim=0) - math.log(k)).float()


# --- sizes and checkpoints ---------------------------------------------------------------

def save_checkpoint(family: str, seed: int, model: nn.Module, metadata: dict, *,
                    directory: Path | str = CHECKPOINTS) -> Path:
    """Save ``model``'s weights in half precision and ``metadata`` as JSON; returns the weights' path."""
    _check_family(family)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    path = directory / f"{family}_seed{seed}.pt"
    torch.save(state, path)
    (directory / f"{family}_seed{seed}.json").write_text(json.dumps(metadata, indent=1, sort_keys=True) + "\n")
    return path


def load_checkpoint(family: str, seed: int, *, directory: Path | str = CHECKPOINTS) -> tuple[nn.Module, dict]:
    """Rebuild ``family``'s model, load its shipped weights (in float32) and metadata, in eval mode."""
    _check_family(family)
    directory = Path(directory)
    path = directory / f"{family}_seed{seed}.pt"
    if not path.exists():
        raise ValueError(f"no checkpoint {path}; train it with tools/train_checkpoints.py")
    model = build(family, seed=seed)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in state.items()})
    metadata = json.loads((directory / f"{family}_seed{seed}.json").read_text())
    return model.eval(), metadata
