r"""Denoising diffusion: the noise schedule, the forward process, the loss, and the model behind the protocol.

The forward process adds Gaussian noise in :math:`T` small steps,
:math:`q(x_t \mid x_{t-1}) = \mathcal{N}(\sqrt{1-\beta_t}\,x_{t-1}, \beta_t I)`, and has
the closed form (Ho et al. 2020, eq. 4)

.. math:: q(x_t \mid x_0) = \mathcal{N}\big(\sqrt{\bar\alpha_t}\,x_0,\ (1-\bar\alpha_t) I\big),
          \qquad \alpha_t = 1 - \beta_t,\ \bar\alpha_t = \textstyle\prod_{s \le t} \alpha_s .

A network :math:`\epsilon_\theta(x_t, t)` (:mod:`companion.denoisers`) learns to
predict the noise (:func:`ddpm_loss`); the samplers that run the process backwards
are in :mod:`companion.samplers`, the likelihood bound in
:mod:`companion.diffusion_bound`. As in the diffusers library, the schedule and the
samplers are separate from the network (:class:`~companion.schedules.NoiseSchedule`
lives in :mod:`companion.schedules`). :class:`Diffusion` puts a denoiser and its
schedule together behind the package's protocol: :func:`loss`, :func:`sample`, :func:`nll`.

Timesteps are 0-indexed as in diffusers: index ``t`` in ``0 .. T-1`` is step
``t + 1`` of the papers, and :math:`\bar\alpha` "before step 0" is 1 (clean data).
Denoisers are called as ``model(x_t, t)`` or, with labels, ``model(x_t, t, y)``,
where the label ``-1`` means "no label". A condition may also be a prompt of
tokens ``y: (b, n)`` (:mod:`companion.latent_diffusion`): a prompt of ``-1``
only is the empty prompt, the unconditional model.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from companion import checks, rng
from companion.denoisers import MLPDenoiser, MLPDenoiserConfig, TinyUNet, UNetConfig
from companion.schedules import NoiseSchedule

__all__ = ["q_sample", "q_posterior", "predict_x0", "ddpm_loss",
           "DiffusionConfig", "Diffusion", "loss", "sample", "nll"]


def _placement(model: object, like: torch.Tensor | None = None) -> tuple[torch.device, torch.dtype]:
    """Where a denoiser computes: its device and dtype; for a plain function, those of the data ``like``
    (the CPU and the default dtype when there is none)."""
    if isinstance(model, nn.Module):
        return checks.model_device(model), checks.model_dtype(model)
    if like is None:
        return torch.device("cpu"), torch.get_default_dtype()
    return like.device, like.dtype if like.is_floating_point() else torch.get_default_dtype()


def _check_data(name: str, x: object, model: object) -> torch.Tensor:
    """Float data ``(b, ...)`` for a denoiser, finite, cast to its dtype; integer levels refused."""
    if isinstance(x, torch.Tensor) and not (x.is_floating_point() or x.is_complex()):
        raise ValueError(f"expected {name} to be float data on the denoiser's scale (e.g. pixels in [-1, 1]), "
                         f"got {x.dtype}: integer grey levels would turn the noise and alpha-bar into integers; "
                         "map them with 2 * levels / 16 - 1, or use diffusion.loss with DiffusionConfig(levels=17)")
    x = checks.floats(name, x, model=model)
    if x.dim() < 2:
        raise ValueError(f"expected {name} to be a batch (b, ...), got shape {tuple(x.shape)}")
    return x


def _check_pair(name: str, a: torch.Tensor, x: torch.Tensor) -> None:
    if not isinstance(a, torch.Tensor) or a.shape != x.shape:
        got = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
        raise ValueError(f"expected {name} of shape {tuple(x.shape)} like x0, got {got}")


def _check_labels(labels: object, b: int, model: object) -> torch.Tensor:
    """Conditions are integer tensors ``(b, ...)``: class ids ``(b,)`` or prompt tokens ``(b, n)``.

    Their range is checked by the denoiser, which knows its number of classes or its vocabulary.
    """
    if not isinstance(labels, torch.Tensor) or labels.dim() < 1 or labels.shape[0] != b:
        got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"expected labels of shape (b, ...) with b={b}, got {got}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer (-1 meaning no condition), got {labels.dtype}")
    checks.same_device("labels", labels, model) if isinstance(model, nn.Module) else None
    return labels.long()


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    r"""Jump straight to :math:`x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon`.

    ``x0: (b, ...)``, ``t: (b,)`` int64, ``noise: (b, ...)`` standard normal -> ``x_t: (b, ...)``.

    Example:
        >>> s = NoiseSchedule.linear(100)
        >>> q_sample(torch.ones(2, 3), torch.tensor([0, 99]), torch.zeros(2, 3), s)[:, 0]
        tensor([0.9995, 0.0045])
    """
    if x0.dim() < 1:
        raise ValueError("x0 must have a batch axis")
    schedule.check_t(t, x0.shape[0])
    _check_pair("noise", noise, x0)
    ab = schedule.at(schedule.alpha_bars, t, x0)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def q_posterior(x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor,
                schedule: NoiseSchedule) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Mean ``(b, ...)`` and variance ``(b, 1, ..., 1)`` of :math:`q(x_{t-1} \mid x_t, x_0)`.

    .. math:: \tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}\,x_0
              + \frac{\sqrt{\alpha_t}\,(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}\,x_t,
              \qquad \tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\,\beta_t

    (Ho et al. 2020, eqs. 6-7). At ``t = 0`` the mean is ``x0`` and the variance 0.
    """
    schedule.check_t(t, x0.shape[0])
    _check_pair("xt", xt, x0)
    beta, alpha = schedule.at(schedule.betas, t, x0), schedule.at(schedule.alphas, t, x0)
    ab, ab_prev = schedule.at(schedule.alpha_bars, t, x0), schedule.at(schedule.alpha_bars_prev, t, x0)
    mean = ab_prev.sqrt() * beta / (1 - ab) * x0 + alpha.sqrt() * (1 - ab_prev) / (1 - ab) * xt
    return mean, (1 - ab_prev) / (1 - ab) * beta


def predict_x0(xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    r"""Invert :func:`q_sample` for :math:`x_0` given a noise estimate:
    :math:`\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\hat\epsilon)/\sqrt{\bar\alpha_t}`."""
    schedule.check_t(t, xt.shape[0])
    _check_pair("eps", eps, xt)
    ab = schedule.at(schedule.alpha_bars, t, xt)
    return (xt - (1 - ab).sqrt() * eps) / ab.sqrt()


def ddpm_loss(model: torch.nn.Module, x0: torch.Tensor, schedule: NoiseSchedule, *,
              labels: torch.Tensor | None = None, p_uncond: float = 0.0,
              generator: torch.Generator | None = None) -> torch.Tensor:
    r"""The simple objective :math:`\lVert \epsilon - \epsilon_\theta(x_t, t) \rVert^2`, one value per example ``(b,)``.

    :math:`t` is uniform on the steps and :math:`x_t` comes from :func:`q_sample`
    (Ho et al. 2020, Algorithm 1). The squared error is averaged over the
    dimensions of one example. With ``labels`` (class ids ``(b,)`` or prompts ``(b, n)``)
    the model is conditional, and each label or whole prompt is replaced by -1
    ("no label") with probability ``p_uncond``: one
    network learns both the conditional and the unconditional noise, which
    classifier-free guidance combines (Ho & Salimans 2022). ``x0`` is float data on the
    denoiser's scale; every draw comes from ``generator`` (:mod:`companion.rng`).

    Example:
        >>> net = MLPDenoiser(MLPDenoiserConfig(hidden=16, layers=1))
        >>> ddpm_loss(net, torch.randn(5, 2), NoiseSchedule.linear(50)).shape
        torch.Size([5])
    """
    x0 = _check_data("x0", x0, model)
    p_uncond = checks.fraction("p_uncond", p_uncond, closed=True)
    b, device = x0.shape[0], x0.device
    t = rng.randint(0, schedule.T, (b,), generator=generator, device=device)
    noise = rng.randn(x0.shape, generator=generator, device=device, dtype=x0.dtype)
    xt = q_sample(x0, t, noise, schedule)
    if labels is None:
        eps = model(xt, t)
    else:
        labels = _check_labels(labels, b, model)
        drop = rng.rand((b,), generator=generator, device=device) < p_uncond
        drop = drop.view(b, *[1] * (labels.dim() - 1))   # a prompt (b, n) is dropped whole
        eps = model(xt, t, torch.where(drop, -1, labels))
    return (eps - noise).pow(2).flatten(1).mean(dim=1)


# --- the protocol: one model, its data in their own form ------------------------------

@dataclass(frozen=True)
class DiffusionConfig:
    r"""A diffusion model: its (unconditional) denoiser, ``T`` steps of a schedule, the form of its data.

    ``denoiser`` is a :class:`~companion.denoisers.UNetConfig` for 8x8 images or an
    :class:`~companion.denoisers.MLPDenoiserConfig` for points ``(b, data_dim)``.
    ``levels = 17`` makes it a model of integer grey levels (``digits(as_levels=True)``),
    with a likelihood bound; ``None`` a model of intensities in [0, 1] (images) or of points.
    Images are moved to [-1, 1] for the network (Ho et al. 2020); points are used as given.
    """

    denoiser: UNetConfig | MLPDenoiserConfig = UNetConfig(channels=16, num_classes=0)
    T: int = 200
    schedule: str = "linear"        # or "cosine"
    levels: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.denoiser, (UNetConfig, MLPDenoiserConfig)):
            raise ValueError(f"denoiser must be a UNetConfig or an MLPDenoiserConfig, got {self.denoiser!r}")
        if self.denoiser.num_classes or getattr(self.denoiser, "context_dim", 0):
            raise ValueError("the protocol's model is unconditional: use num_classes=0 and no context "
                             "(train a conditional denoiser with ddpm_loss(..., labels=...))")
        if self.schedule not in ("linear", "cosine"):
            raise ValueError(f"schedule must be 'linear' or 'cosine', got {self.schedule!r}")
        if self.levels is not None and (checks.positive_int("levels", self.levels) < 2
                                        or not isinstance(self.denoiser, UNetConfig)):
            raise ValueError(f"levels must be None or an int >= 2 with a UNetConfig (images), got {self.levels!r}")
        self.noise_schedule()                                   # checks T

    def noise_schedule(self) -> NoiseSchedule:
        """The schedule of ``T`` steps this config names."""
        checks.positive_int("T", self.T)
        return getattr(NoiseSchedule, self.schedule)(self.T)


class Diffusion(nn.Module):
    """A denoiser ``net`` with its noise ``schedule``; the state dict holds ``net.*`` only.

    Example:
        >>> model = Diffusion(DiffusionConfig(levels=17))
        >>> x = sample(model, 2, steps=4, generator=torch.Generator().manual_seed(0))
        >>> x.shape, x.dtype, loss(model, x).shape, nll(model, x, timesteps=4).shape
        (torch.Size([2, 1, 8, 8]), torch.int64, torch.Size([2]), torch.Size([2]))
    """

    def __init__(self, config: DiffusionConfig = DiffusionConfig()) -> None:
        super().__init__()
        self.config = checks.config(config, DiffusionConfig)
        image = isinstance(config.denoiser, UNetConfig)
        self.net = TinyUNet(config.denoiser) if image else MLPDenoiser(config.denoiser)
        self.schedule = config.noise_schedule()

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        r"""The predicted noise :math:`\epsilon_\theta(x_t, t)` on the network's scale."""
        return self.net(x, t)


def _check_model(model: object) -> DiffusionConfig:
    if not isinstance(model, Diffusion):
        raise ValueError(f"expected a diffusion.Diffusion, got {type(model).__name__}")
    return model.config


def _to_net(model: Diffusion, x: object) -> torch.Tensor:
    """Data in their own form -> the network's scale: levels and intensities to [-1, 1], points as given."""
    c = _check_model(model)
    if c.levels is not None:
        x = checks.same_device("x", checks.levels("x", x, "b 1 8 8", levels=c.levels), model)
        return x.to(checks.model_dtype(model)) / (c.levels - 1) * 2 - 1
    if isinstance(c.denoiser, UNetConfig):
        return 2 * checks.intensities("x", x, "b 1 8 8", model=model) - 1
    return checks.floats("x", x, "b d", d=c.denoiser.data_dim, model=model)


def loss(model: Diffusion, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """:func:`ddpm_loss` on data in the model's form (levels, intensities or points), ``(b,)``."""
    return ddpm_loss(model.net, _to_net(model, x), model.schedule, generator=generator)


def sample(model: Diffusion, n: int, *, generator: torch.Generator | None = None,
           steps: int | None = None) -> torch.Tensor:
    r"""``n`` examples in the data's form: DDPM over all ``T`` steps, or DDIM in ``steps``.

    Images clip :math:`\hat x_0` to [-1, 1] at every step and come back as intensities
    ``(n, 1, 8, 8)`` or, for a model of levels, rounded int64 levels; points as ``(n, d)``.
    """
    from companion.samplers import ddim_sample, ddpm_sample          # samplers build on this module

    c = _check_model(model)
    image = isinstance(c.denoiser, UNetConfig)
    shape = (checks.positive_int("n", n), 1, 8, 8) if image else (checks.positive_int("n", n), c.denoiser.data_dim)
    clip = 1.0 if image else None
    if steps is None:
        x = ddpm_sample(model.net, model.schedule, shape, clip=clip, generator=generator)
    else:
        x = ddim_sample(model.net, model.schedule, shape, steps=steps, clip=clip, generator=generator)
    if not image:
        return x
    unit = (x.clamp(-1, 1) + 1) / 2
    return unit if c.levels is None else (unit * (c.levels - 1)).round().long()


def nll(model: Diffusion, x: torch.Tensor, *, generator: torch.Generator | None = None,
        timesteps: int | None = 20) -> torch.Tensor:
    r"""The variational bound on :math:`-\log P(x)` in nats for integer levels, ``(b,)``.

    :func:`companion.diffusion_bound.diffusion_nll_bound` with ``timesteps`` stratified
    steps (``None``: all ``T``). Defined for models of levels only: a bound on a density
    of continuous data would need a continuous decoder, which this package does not provide.
    """
    from companion.diffusion_bound import diffusion_nll_bound

    c = _check_model(model)
    if c.levels is None:
        raise ValueError("diffusion.nll is defined for models of integer grey levels (DiffusionConfig(levels=17)); "
                         "this model is of continuous data, for which the package has no likelihood bound")
    return diffusion_nll_bound(model.net, model.schedule, x, levels=c.levels, timesteps=timesteps,
                               generator=generator)


