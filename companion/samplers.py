r"""Samplers that run the diffusion process backwards with a trained noise predictor.

DDPM's ancestral sampler (Ho et al. 2020), DDIM (Song et al. 2021), both with
classifier-free guidance (Ho & Salimans 2022), and the two uses of one trained
network beyond sampling: inpainting (:func:`inpaint`) and the one-step estimate
:math:`\hat x_0` (:func:`x0_estimate`). The forward process they invert is in
:mod:`companion.diffusion`.

Every sampler is a ``@torch.no_grad()`` function ``(model, schedule, shape, *,
generator=None, ...)``: ``model`` is a denoiser :math:`\epsilon_\theta(x_t, t[, y])`
(a network or any function of the same signature), run in evaluation mode and
left in the mode it was in; every random number is drawn on the CPU from
``generator`` and moved to the model's device (:mod:`companion.rng`), so one seed
gives the same samples on any device.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from companion import checks, rng, utils
from companion.diffusion import _check_data, _check_labels, _placement, predict_x0, q_posterior, q_sample
from companion.schedules import NoiseSchedule

__all__ = ["guided_eps", "ddpm_sample", "ddim_timesteps", "ddim_step", "ddim_sample", "inpaint", "x0_estimate"]


def guided_eps(model: nn.Module, x: torch.Tensor, t: torch.Tensor,
               labels: torch.Tensor | None = None, guidance_scale: float = 1.0) -> torch.Tensor:
    r"""The noise prediction a sampler uses, with classifier-free guidance:

    .. math:: \tilde\epsilon = \epsilon_\theta(x_t, t, \varnothing)
              + w\,\big(\epsilon_\theta(x_t, t, y) - \epsilon_\theta(x_t, t, \varnothing)\big)

    ``w = guidance_scale``: 0 is unconditional, 1 conditional, above 1 pushes past
    the conditional model towards what distinguishes class ``y`` (the convention
    of diffusers and Imagen; Ho & Salimans write :math:`1 + w`).
    """
    if labels is None:
        return model(x, t)
    if guidance_scale == 1.0:
        return model(x, t, labels)
    if guidance_scale == 0.0:
        return model(x, t, torch.full_like(labels, -1))
    none = torch.full_like(labels, -1)
    both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, none]))
    cond, uncond = both.chunk(2)
    return uncond + guidance_scale * (cond - uncond)


def _start(model: object, shape: tuple[int, ...], noise: torch.Tensor | None,
           generator: torch.Generator | None, labels: torch.Tensor | None,
           like: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The first state ``x: shape`` on the model's device and dtype (``noise`` or a fresh draw), and the labels.

    A plain-function model computes where the data ``like`` (or the given ``noise``) are."""
    shape = tuple(shape)
    if not shape or not all(isinstance(s, int) and s >= 1 for s in shape):
        raise ValueError(f"shape must be a tuple of positive ints starting with the batch size, got {shape}")
    if labels is not None:
        labels = _check_labels(labels, shape[0], model)
    if noise is None:
        device, dtype = _placement(model, like)
        return rng.randn(shape, generator=generator, device=device, dtype=dtype), labels
    noise = checks.floats("noise", noise, model=model)
    if tuple(noise.shape) != shape:
        raise ValueError(f"expected noise of shape {shape}, got {tuple(noise.shape)}")
    return noise.clone(), labels


def _steps(n: int, step: int, device: torch.device) -> torch.Tensor:
    return torch.full((n,), step, dtype=torch.int64, device=device)


@torch.no_grad()
def ddpm_sample(model: nn.Module, schedule: NoiseSchedule, shape: tuple[int, ...], *,
                generator: torch.Generator | None = None, labels: torch.Tensor | None = None,
                guidance_scale: float = 1.0, clip: float | None = None, noise: torch.Tensor | None = None,
                return_trajectory: bool = False) -> torch.Tensor:
    r"""Ancestral sampling (Ho et al. 2020, Algorithm 2), all ``T`` steps.

    From :math:`x_T \sim \mathcal{N}(0, I)` (or ``noise``), each step estimates
    :math:`\hat x_0` from the predicted noise (clipped to ``[-clip, clip]`` if
    given) and draws :math:`x_{t-1} \sim \mathcal{N}(\tilde\mu_t(\hat x_0, x_t), \tilde\beta_t I)`
    with :func:`~companion.diffusion.q_posterior`. Returns ``x_0: shape``, or with
    ``return_trajectory`` every state ``(T + 1, *shape)`` from noise to data.

    Example:
        >>> from companion.denoisers import MLPDenoiser
        >>> ddpm_sample(MLPDenoiser(), NoiseSchedule.linear(30), (4, 2)).shape
        torch.Size([4, 2])
    """
    x, labels = _start(model, shape, noise, generator, labels)
    path = [x]
    with utils.mode(model, training=False):
        for step in reversed(range(schedule.T)):
            t = _steps(x.shape[0], step, x.device)
            x0 = predict_x0(x, t, guided_eps(model, x, t, labels, guidance_scale), schedule)
            if clip is not None:
                x0 = x0.clamp(-clip, clip)
            mean, var = q_posterior(x0, x, t, schedule)
            if step > 0:
                x = mean + var.sqrt() * rng.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            else:
                x = mean
            path.append(x)
    return torch.stack(path) if return_trajectory else x


def ddim_timesteps(T: int, steps: int, start: int | None = None) -> list[int]:
    """``steps`` timesteps evenly spread from ``start`` (default ``T - 1``) down to 0.

    Example:
        >>> ddim_timesteps(1000, 5)
        [999, 749, 500, 250, 0]
    """
    start = T - 1 if start is None else start
    if not isinstance(start, int) or not 0 <= start < T:
        raise ValueError(f"start must be an int in [0, {T}), got {start!r}")
    if not isinstance(steps, int) or not 1 <= steps <= start + 1:
        raise ValueError(f"steps must be an int in [1, {start + 1}], got {steps!r}")
    return torch.linspace(start, 0, steps).round().long().tolist()


def ddim_step(x: torch.Tensor, eps: torch.Tensor, t: int, t_prev: int, schedule: NoiseSchedule, *,
              eta: float = 0.0, clip: float | None = None,
              generator: torch.Generator | None = None) -> torch.Tensor:
    r"""One DDIM update from step ``t`` to ``t_prev < t`` (``-1``: clean data), Song et al. 2021 eq. 12:

    .. math:: x_{t'} = \sqrt{\bar\alpha_{t'}}\,\hat x_0 + \sqrt{1 - \bar\alpha_{t'} - \sigma^2}\,\hat\epsilon
              + \sigma z, \qquad
              \sigma = \eta\sqrt{\frac{1-\bar\alpha_{t'}}{1-\bar\alpha_t}}\sqrt{1 - \frac{\bar\alpha_t}{\bar\alpha_{t'}}}

    ``eta = 0`` is deterministic; ``eta = 1`` with ``t_prev = t - 1`` is DDPM's step.
    """
    if not -1 <= t_prev < t < schedule.T:
        raise ValueError(f"need -1 <= t_prev < t < {schedule.T}, got t={t}, t_prev={t_prev}")
    ab = schedule.alpha_bars[t].item()
    ab_prev = schedule.alpha_bars[t_prev].item() if t_prev >= 0 else 1.0
    x0 = (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
    if clip is not None:
        x0 = x0.clamp(-clip, clip)
        eps = (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)   # the noise consistent with the clipped x0
    sigma = eta * math.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
    x_prev = math.sqrt(ab_prev) * x0 + math.sqrt(max(1 - ab_prev - sigma**2, 0.0)) * eps
    if sigma > 0:
        x_prev = x_prev + sigma * rng.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x_prev


@torch.no_grad()
def ddim_sample(model: nn.Module, schedule: NoiseSchedule, shape: tuple[int, ...], *,
                generator: torch.Generator | None = None, steps: int = 50, eta: float = 0.0,
                labels: torch.Tensor | None = None, guidance_scale: float = 1.0, clip: float | None = None,
                noise: torch.Tensor | None = None, start: int | None = None,
                return_trajectory: bool = False) -> torch.Tensor:
    r"""DDIM sampling in ``steps`` of :func:`ddim_step` (Song et al. 2021) with the same network.

    A model trained on all ``T`` steps is queried only at :func:`ddim_timesteps`;
    with ``eta = 0`` the map from the initial noise to the sample is deterministic.
    ``start < T - 1`` begins part-way, with ``noise`` playing :math:`x_{\text{start}}`
    (denoising and editing, as in SDEdit by Meng et al. 2022).
    Returns ``x_0: shape``, or every state ``(steps + 1, *shape)``.

    Example:
        >>> from companion.denoisers import TinyUNet, UNetConfig
        >>> net, s = TinyUNet(UNetConfig(channels=8)), NoiseSchedule.linear(100)
        >>> ddim_sample(net, s, (3, 1, 8, 8), steps=10, labels=torch.tensor([0, 4, 7]), guidance_scale=2.0).shape
        torch.Size([3, 1, 8, 8])
    """
    if not eta >= 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    if start is not None and noise is None:
        raise ValueError("starting part-way (start) needs the state x_start passed as noise")
    ts = ddim_timesteps(schedule.T, steps, start)
    x, labels = _start(model, shape, noise, generator, labels)
    path = [x]
    with utils.mode(model, training=False):
        for t, t_prev in zip(ts, ts[1:] + [-1]):
            eps = guided_eps(model, x, _steps(x.shape[0], t, x.device), labels, guidance_scale)
            x = ddim_step(x, eps, t, t_prev, schedule, eta=eta, clip=clip, generator=generator)
            path.append(x)
    return torch.stack(path) if return_trajectory else x


@torch.no_grad()
def inpaint(model: nn.Module, schedule: NoiseSchedule, x_known: torch.Tensor, mask: torch.Tensor, *,
            generator: torch.Generator | None = None, steps: int = 50, resample: int = 1, eta: float = 1.0,
            labels: torch.Tensor | None = None, guidance_scale: float = 1.0,
            clip: float | None = None) -> torch.Tensor:
    r"""Fill in the entries where ``mask == 0`` by guided reverse diffusion.

    After every :func:`ddim_step` the known entries (``mask == 1``) are replaced by
    a fresh forward sample :math:`q(x_{t'} \mid x_0^{\text{known}})`, so the network
    only has to make the unknown part agree with a correctly noised known part
    (the replacement method of Song et al. 2021b). With ``resample = r > 1`` each
    step is redone ``r`` times, going back to step ``t`` with fresh noise in
    between, so the two parts can harmonise (RePaint, Lugmayr et al. 2022).
    Both are approximations of sampling :math:`p(x_{\text{unknown}} \mid x_{\text{known}})`:
    even with the exact denoiser, one pass under-uses the known part and
    resampling mostly corrects that (the tests measure both on a Gaussian).
    ``x_known: (b, ...)``, ``mask`` broadcastable to it; returns ``(b, ...)``.

    Example:
        >>> from companion.denoisers import MLPDenoiser
        >>> x = inpaint(MLPDenoiser(), NoiseSchedule.linear(50), torch.ones(4, 2), torch.tensor([1.0, 0.0]), steps=5)
        >>> x.shape, x[:, 0].tolist()                            # the known entry is kept
        (torch.Size([4, 2]), [1.0, 1.0, 1.0, 1.0])
    """
    x_known = _check_data("x_known", x_known, model)
    if not isinstance(resample, int) or resample < 1:
        raise ValueError(f"resample must be an int >= 1, got {resample!r}")
    try:
        mask = checks.tensor("mask", mask).to(device=x_known.device, dtype=x_known.dtype).expand_as(x_known)
    except RuntimeError as err:
        raise ValueError(f"mask {tuple(mask.shape)} does not broadcast to x_known {tuple(x_known.shape)}") from err
    if not ((mask == 0) | (mask == 1)).all():
        raise ValueError("mask must hold only 0 (fill in) and 1 (keep)")
    ts = ddim_timesteps(schedule.T, steps)
    b, device, dtype = x_known.shape[0], x_known.device, x_known.dtype
    x, labels = _start(model, tuple(x_known.shape), None, generator, labels, like=x_known)
    with utils.mode(model, training=False):
        for t, t_prev in zip(ts, ts[1:] + [-1]):
            for r in range(resample):
                eps = guided_eps(model, x, _steps(b, t, device), labels, guidance_scale)
                x_prev = ddim_step(x, eps, t, t_prev, schedule, eta=eta, clip=clip, generator=generator)
                if t_prev < 0:
                    x = mask * x_known + (1 - mask) * x_prev
                    break
                noise = rng.randn(x.shape, generator=generator, device=device, dtype=dtype)
                x_prev = mask * q_sample(x_known, _steps(b, t_prev, device), noise, schedule) + (1 - mask) * x_prev
                if r == resample - 1:
                    x = x_prev
                else:  # back to step t: q(x_t | x_t') = N(sqrt(ab_t / ab_t') x_t', (1 - ab_t / ab_t') I)
                    ratio = (schedule.alpha_bars[t] / schedule.alpha_bars[t_prev]).item()
                    z = rng.randn(x.shape, generator=generator, device=device, dtype=dtype)
                    x = math.sqrt(ratio) * x_prev + math.sqrt(1 - ratio) * z
    return x


@torch.no_grad()
def x0_estimate(model: nn.Module, schedule: NoiseSchedule, x0: torch.Tensor, t: int, *,
                noise: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Noise ``x0: (b, ...)`` to step ``t`` and ask the model for it back: returns ``(x_t, x0_hat)``.

    :math:`\hat x_0` is the network's estimate of the mean of :math:`x_0` given
    :math:`x_t` (Tweedie's formula); one call, fast enough for a slider. The noise
    is ``noise`` if given (to show one fixed draw at every ``t``), else drawn from ``generator``.

    Example:
        >>> from companion.denoisers import TinyUNet, UNetConfig
        >>> net, s = TinyUNet(UNetConfig(channels=8)), NoiseSchedule.linear(100)
        >>> xt, x0_hat = x0_estimate(net, s, torch.zeros(1, 1, 8, 8), 40)
        >>> xt.shape == x0_hat.shape == (1, 1, 8, 8)
        True
    """
    x0 = _check_data("x0", x0, model)
    if not isinstance(t, int) or not 0 <= t < schedule.T:
        raise ValueError(f"t must be an int in [0, {schedule.T}), got {t!r}")
    noise, labels = _start(model, tuple(x0.shape), noise, generator, labels, like=x0)
    tt = _steps(x0.shape[0], t, x0.device)
    xt = q_sample(x0, tt, noise, schedule)
    with utils.mode(model, training=False):
        eps = model(xt, tt) if labels is None else model(xt, tt, labels)
    return xt, predict_x0(xt, tt, eps, schedule)
