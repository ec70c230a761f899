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

from companion import arm, diffusion, gan, realnvp, vae
from companion.data import DIGIT_LEVELS, digits
from companion.realnvp import dequantized_nll  # noqa: F401 (re-exported)
from companion.denoisers import TinyUNet, UNetConfig, num_parameters  # noqa: F401 (re-exported)
from companion.train import train

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
    class (``num_classes=1``): every image gets the same constant label, so it is
    unconditional like the other four.

    Example:
        >>> [type(build(f)).__name__ for f in FAMILIES]
        ['VAE', 'ConvGenerator', 'RealNVP', '_Diffusion', 'PixelARM']
    """
    _check_family(family)
    torch.manual_seed(seed)
    r = RECIPES[family]
    if family == "vae":
        return vae.VAE(64, r["latent_dim"], r["hidden"], likelihood="categorical")
    if family == "gan":
        return gan.ConvGenerator(gan.DigitGANConfig(latent_dim=r["latent_dim"], width=r["width"], num_classes=1))
    if family == "flow":
        return realnvp.RealNVP(realnvp.RealNVPConfig(dim=64, layers=r["n_layers"], hidden=r["hidden"],
                                                     levels=DIGIT_LEVELS))
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
        disc = gan.ConvDiscriminator(gan.DigitGANConfig(latent_dim=r["latent_dim"], width=r["width"], num_classes=1))
        x = levels.float() / (DIGIT_LEVELS - 1)
        out = gan.train_gan(model, disc, (x, torch.zeros(len(x), dtype=torch.long)), steps=steps,
                            batch_size=r["batch_size"], lr=r["lr"], seed=seed, desc=family, progress=progress)
        history = out["g_loss"]
    elif family == "flow":
        history = train(lambda x: -model.log_prob(realnvp.dequantize(x.flatten(1), generator=g)),
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
            x = diffusion.ddpm_sample(model.net, shape, model.schedule, clip=1.0, generator=generator)
        else:
            x = diffusion.ddim_sample(model.net, shape, model.schedule, ddim_steps, clip=1.0, generator=generator)
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
    return diffusion_nll_bound(model.net, levels, model.schedule, timesteps=timesteps, generator=generator)


# --- the two likelihoods the family modules leave out -----------------------------------

def _log_bin_probability(x0: torch.Tensor, mean: torch.Tensor, std: float, levels: int) -> torch.Tensor:
    r""":math:`\log \int_{\text{bin}(x_0)} \mathcal{N}(u; \mu, \sigma^2)\,du` per entry, on [-1, 1] with ``levels`` bins.

    The outer bins stretch to :math:`\pm\infty` (Ho et al. 2020, eq. 13). Computed in
    float64 from :math:`\log\Phi`, on the side of the Gaussian where the tail is small.
    """
    half = 1.0 / (levels - 1)                                   # half a bin on the [-1, 1] scale
    x0, mean = x0.double(), mean.double()
    lo = torch.where(x0 <= -1 + half / 2, -math.inf, (x0 - half - mean) / std)
    hi = torch.where(x0 >= 1 - half / 2, math.inf, (x0 + half - mean) / std)
    # P = Phi(hi) - Phi(lo) = Phi(-lo) - Phi(-hi); use the form whose terms are not both near 1
    flip = lo > 0
    a, c = torch.where(flip, -hi, lo), torch.where(flip, -lo, hi)      # P = Phi(c) - Phi(a), a < c
    log_c, log_a = torch.special.log_ndtr(c), torch.special.log_ndtr(a)
    return log_c + torch.log1p(-torch.exp(log_a - log_c))


@torch.no_grad()
def diffusion_nll_bound(net: nn.Module, levels: torch.Tensor, schedule: diffusion.NoiseSchedule, *,
                        timesteps: int | None = None, clip: float | None = 1.0,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    r"""The DDPM variational bound on :math:`-\log P(x)` for integer ``levels: (b, 1, 8, 8)``, ``(b,)`` nats.

    .. math:: -\log P(x_0) \le \underbrace{\mathrm{KL}(q(x_T \mid x_0) \,\|\, \mathcal{N}(0, I))}_{L_T}
              + \sum_{t=2}^{T} \underbrace{\mathbb{E}_q\, \mathrm{KL}(q(x_{t-1} \mid x_t, x_0) \,\|\,
              p_\theta(x_{t-1} \mid x_t))}_{L_{t-1}}
              \underbrace{- \mathbb{E}_q \log p_\theta(x_0 \mid x_1)}_{L_0}

    (Ho et al. 2020, eq. 5). The reverse steps use the posterior variance
    :math:`\tilde\beta_t` and the mean :math:`\tilde\mu_t(\hat x_0, x_t)`, so each
    :math:`L_{t-1}` is :math:`\lVert \tilde\mu_t(x_0, x_t) - \tilde\mu_t(\hat x_0, x_t)\rVert^2 / 2\tilde\beta_t`;
    :math:`L_0` is a Gaussian of variance :math:`\beta_1` integrated over the bin of each
    grey level. ``timesteps=None`` sums all ``T`` terms with one noise draw each;
    ``timesteps = K`` draws one step per stratum of ``T / K`` steps and weights it
    by ``T / K`` (unbiased, ``K`` network calls per image instead of ``T``).
    """
    x0 = _to_unit(levels)
    if x0.dim() != 4:
        raise ValueError(f"expected levels of shape (b, 1, h, w), got {tuple(levels.shape)}")
    b, T = x0.shape[0], schedule.T
    if timesteps is None:
        strata, ts = 1, [torch.full((b,), t, dtype=torch.int64) for t in range(T)]
    else:
        if not isinstance(timesteps, int) or timesteps < 1 or T % timesteps:
            raise ValueError(f"timesteps must be a positive divisor of T={T}, got {timesteps!r}")
        strata = T // timesteps
        ts = [k * strata + torch.randint(0, strata, (b,), generator=generator) for k in range(timesteps)]
    ab_last = schedule.alpha_bars[-1].item()                            # L_T, in closed form
    prior = 0.5 * ((ab_last * x0.double() ** 2) + (1 - ab_last) - 1 - math.log(1 - ab_last)).flatten(1).sum(1)
    total = prior.clone()
    for t in ts:
        noise = torch.randn(x0.shape, generator=generator)
        xt = diffusion.q_sample(x0, t, noise, schedule)
        x0_hat = diffusion.predict_x0(xt, t, net(xt, t), schedule)
        if clip is not None:
            x0_hat = x0_hat.clamp(-clip, clip)
        mean_q, var = diffusion.q_posterior(x0, xt, t, schedule)
        mean_p, _ = diffusion.q_posterior(x0_hat, xt, t, schedule)
        first = t == 0
        kl = ((mean_q - mean_p).double() ** 2 / (2 * var.double().clamp(min=1e-300))).flatten(1).sum(1)
        std0 = math.sqrt(schedule.betas[0].item())
        decoder = -_log_bin_probability(x0, x0_hat, std0, DIGIT_LEVELS).flatten(1).sum(1)
        total += strata * torch.where(first, decoder, kl)
    return total.float()


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
