r"""Denoising diffusion: the noise schedule, the forward process, the loss and the samplers.

The forward process adds Gaussian noise in :math:`T` small steps,
:math:`q(x_t \mid x_{t-1}) = \mathcal{N}(\sqrt{1-\beta_t}\,x_{t-1}, \beta_t I)`, and has
the closed form (Ho et al. 2020, eq. 4)

.. math:: q(x_t \mid x_0) = \mathcal{N}\big(\sqrt{\bar\alpha_t}\,x_0,\ (1-\bar\alpha_t) I\big),
          \qquad \alpha_t = 1 - \beta_t,\ \bar\alpha_t = \textstyle\prod_{s \le t} \alpha_s .

A network :math:`\epsilon_\theta(x_t, t)` (:mod:`companion.denoisers`) learns to
predict the noise, and the samplers run the process backwards with it: DDPM's
ancestral sampler (Ho et al. 2020) and DDIM (Song et al. 2021), both with
classifier-free guidance (Ho & Salimans 2022). As in the diffusers library, the
schedule and the samplers are separate from the network.

Timesteps are 0-indexed as in diffusers: index ``t`` in ``0 .. T-1`` is step
``t + 1`` of the papers, and :math:`\bar\alpha` "before step 0" is 1 (clean data).
Denoisers are called as ``model(x_t, t)`` or, with labels, ``model(x_t, t, y)``,
where the label ``-1`` means "no label". A condition may also be a prompt of
tokens ``y: (b, n)`` (:mod:`companion.latent_diffusion`): a prompt of ``-1``
only is the empty prompt, the unconditional model.
"""
from __future__ import annotations

import math

import torch

from companion.utils import check_shape

__all__ = ["NoiseSchedule", "q_sample", "q_posterior", "predict_x0", "ddpm_loss",
           "guided_eps", "ddpm_sample", "ddim_timesteps", "ddim_step", "ddim_sample",
           "inpaint", "x0_estimate"]


class NoiseSchedule:
    r"""The variances :math:`\beta_t` of the forward process and what follows from them.

    Attributes (all float64 tensors of shape ``(T,)``): ``betas``, ``alphas`` (:math:`1-\beta_t`),
    ``alpha_bars`` (:math:`\bar\alpha_t`), ``alpha_bars_prev`` (:math:`\bar\alpha_{t-1}`,
    with 1 before the first step).

    Example:
        >>> s = NoiseSchedule.linear(1000)
        >>> s.T, round(s.betas[0].item(), 6), round(s.betas[-1].item(), 6)
        (1000, 0.0001, 0.02)
    """

    def __init__(self, betas: torch.Tensor) -> None:
        check_shape("betas", betas, "T")
        betas = betas.detach().to(torch.float64).cpu()
        if betas.numel() == 0 or not ((betas > 0) & (betas < 1)).all():
            raise ValueError("betas must be a non-empty 1-D tensor with every value in (0, 1)")
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alpha_bars = torch.cumprod(self.alphas, dim=0)
        self.alpha_bars_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bars[:-1]])

    @property
    def T(self) -> int:
        """Number of diffusion steps."""
        return self.betas.numel()

    @classmethod
    def linear(cls, T: int = 1000, beta_start: float | None = None,
               beta_end: float | None = None) -> NoiseSchedule:
        r""":math:`\beta_t` evenly spaced from ``beta_start`` to ``beta_end`` (Ho et al. 2020).

        Ho et al. use :math:`10^{-4}` to :math:`0.02` for :math:`T = 1000`; the
        defaults scale both by :math:`1000/T`, so a shorter chain destroys the
        data as completely (Nichol & Dhariwal 2021).
        """
        if not isinstance(T, int) or T < 2:
            raise ValueError(f"T must be an int >= 2, got {T!r}")
        beta_start = 1e-4 * 1000 / T if beta_start is None else beta_start
        beta_end = 0.02 * 1000 / T if beta_end is None else beta_end
        if not 0 < beta_start <= beta_end < 1:
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start:g} and {beta_end:g}"
                             + (" (the rescaled defaults need T > 20)" if T <= 20 else ""))
        return cls(torch.linspace(beta_start, beta_end, T, dtype=torch.float64))

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> NoiseSchedule:
        r""":math:`\bar\alpha_t = f(t)/f(0)`, :math:`f(t) = \cos^2\!\big(\frac{t/T + s}{1 + s}\frac{\pi}{2}\big)`
        (Nichol & Dhariwal 2021, eq. 17), with :math:`\beta_t = 1 - \bar\alpha_t/\bar\alpha_{t-1}`
        clipped at ``max_beta`` so the last steps stay finite.
        """
        if not isinstance(T, int) or T < 2:
            raise ValueError(f"T must be an int >= 2, got {T!r}")
        steps = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        return cls((1 - f[1:] / f[:-1]).clamp(max=max_beta))

    def snr(self) -> torch.Tensor:
        r"""Signal-to-noise ratio :math:`\bar\alpha_t / (1 - \bar\alpha_t)` of :math:`x_t`, ``(T,)``."""
        return self.alpha_bars / (1 - self.alpha_bars)

    def check_t(self, t: torch.Tensor, b: int) -> None:
        """Raise unless ``t`` is an int64 tensor ``(b,)`` of timesteps in ``[0, T)``."""
        check_shape("t", t, "b", b=b)
        if t.dtype != torch.int64:
            raise ValueError(f"t must be an int64 tensor of timesteps, got {t.dtype}")
        if t.numel() and (t.min() < 0 or t.max() >= self.T):
            raise ValueError(f"timesteps must lie in [0, {self.T}), got [{t.min().item()}, {t.max().item()}]")

    def at(self, values: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``values[t]`` shaped ``(b, 1, ..., 1)`` to broadcast against ``x: (b, ...)``."""
        return values.to(x.device)[t.cpu()].to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


def _check_pair(name: str, a: torch.Tensor, x: torch.Tensor) -> None:
    if not isinstance(a, torch.Tensor) or a.shape != x.shape:
        got = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
        raise ValueError(f"expected {name} of shape {tuple(x.shape)} like x0, got {got}")


def _check_labels(labels: torch.Tensor, b: int) -> None:
    """Conditions are integer tensors ``(b, ...)``: class ids ``(b,)`` or prompt tokens ``(b, n)``."""
    if not isinstance(labels, torch.Tensor) or labels.dim() < 1 or labels.shape[0] != b:
        got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"expected labels of shape (b, ...) with b={b}, got {got}")
    if labels.is_floating_point():
        raise ValueError(f"labels must be integer (-1 meaning no condition), got {labels.dtype}")


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
    classifier-free guidance combines (Ho & Salimans 2022).
    """
    if x0.dim() < 2 or x0.shape[0] == 0:
        raise ValueError(f"x0 must be a non-empty batch (b, ...), got {tuple(x0.shape)}")
    if not 0.0 <= p_uncond <= 1.0:
        raise ValueError(f"p_uncond must be in [0, 1], got {p_uncond}")
    b = x0.shape[0]
    t = torch.randint(0, schedule.T, (b,), generator=generator).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator).to(x0)
    xt = q_sample(x0, t, noise, schedule)
    if labels is None:
        eps = model(xt, t)
    else:
        _check_labels(labels, b)
        drop = torch.rand(b, generator=generator).to(x0.device) < p_uncond
        drop = drop.view(b, *[1] * (labels.dim() - 1))   # a prompt (b, n) is dropped whole
        eps = model(xt, t, torch.where(drop, -1, labels))
    return (eps - noise).pow(2).flatten(1).mean(dim=1)


def guided_eps(model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor,
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


def _start(shape: tuple[int, ...], noise: torch.Tensor | None, generator: torch.Generator | None,
           labels: torch.Tensor | None) -> torch.Tensor:
    shape = tuple(shape)
    if not shape or shape[0] < 1:
        raise ValueError(f"shape must start with a positive batch size, got {shape}")
    if labels is not None:
        _check_labels(labels, shape[0])
    if noise is None:
        return torch.randn(shape, generator=generator)
    if tuple(noise.shape) != shape:
        raise ValueError(f"expected noise of shape {shape}, got {tuple(noise.shape)}")
    return noise.clone()


@torch.no_grad()
def ddpm_sample(model: torch.nn.Module, shape: tuple[int, ...], schedule: NoiseSchedule, *,
                labels: torch.Tensor | None = None, guidance_scale: float = 1.0,
                clip: float | None = None, noise: torch.Tensor | None = None,
                generator: torch.Generator | None = None,
                return_trajectory: bool = False) -> torch.Tensor:
    r"""Ancestral sampling (Ho et al. 2020, Algorithm 2), all ``T`` steps.

    From :math:`x_T \sim \mathcal{N}(0, I)` (or ``noise``), each step estimates
    :math:`\hat x_0` from the predicted noise (clipped to ``[-clip, clip]`` if
    given) and draws :math:`x_{t-1} \sim \mathcal{N}(\tilde\mu_t(\hat x_0, x_t), \tilde\beta_t I)`
    with :func:`q_posterior`. Returns ``x_0: shape``, or with ``return_trajectory``
    every state ``(T + 1, *shape)`` from noise to data.
    """
    x = _start(shape, noise, generator, labels)
    path = [x]
    for step in reversed(range(schedule.T)):
        t = torch.full((x.shape[0],), step, dtype=torch.int64)
        x0 = predict_x0(x, t, guided_eps(model, x, t, labels, guidance_scale), schedule)
        if clip is not None:
            x0 = x0.clamp(-clip, clip)
        mean, var = q_posterior(x0, x, t, schedule)
        x = mean + var.sqrt() * torch.randn(x.shape, generator=generator) if step > 0 else mean
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
        x_prev = x_prev + sigma * torch.randn(x.shape, generator=generator).to(x)
    return x_prev


@torch.no_grad()
def ddim_sample(model: torch.nn.Module, shape: tuple[int, ...], schedule: NoiseSchedule,
                steps: int, eta: float = 0.0, *, labels: torch.Tensor | None = None,
                guidance_scale: float = 1.0, clip: float | None = None,
                noise: torch.Tensor | None = None, start: int | None = None,
                generator: torch.Generator | None = None,
                return_trajectory: bool = False) -> torch.Tensor:
    r"""DDIM sampling in ``steps`` of :func:`ddim_step` (Song et al. 2021) with the same network.

    A model trained on all ``T`` steps is queried only at :func:`ddim_timesteps`;
    with ``eta = 0`` the map from the initial noise to the sample is deterministic.
    ``start < T - 1`` begins part-way, with ``noise`` playing :math:`x_{\text{start}}`
    (denoising and editing, as in SDEdit by Meng et al. 2022).
    Returns ``x_0: shape``, or every state ``(steps + 1, *shape)``.
    """
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    if start is not None and noise is None:
        raise ValueError("starting part-way (start) needs the state x_start passed as noise")
    ts = ddim_timesteps(schedule.T, steps, start)
    x = _start(shape, noise, generator, labels)
    path = [x]
    for t, t_prev in zip(ts, ts[1:] + [-1]):
        eps = guided_eps(model, x, torch.full((x.shape[0],), t, dtype=torch.int64), labels, guidance_scale)
        x = ddim_step(x, eps, t, t_prev, schedule, eta=eta, clip=clip, generator=generator)
        path.append(x)
    return torch.stack(path) if return_trajectory else x


@torch.no_grad()
def inpaint(model: torch.nn.Module, x_known: torch.Tensor, mask: torch.Tensor,
            schedule: NoiseSchedule, steps: int, *, resample: int = 1, eta: float = 1.0,
            labels: torch.Tensor | None = None, guidance_scale: float = 1.0, clip: float | None = None,
            generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Fill in the pixels where ``mask == 0`` by guided reverse diffusion.

    After every :func:`ddim_step` the known pixels (``mask == 1``) are replaced by
    a fresh forward sample :math:`q(x_{t'} \mid x_0^{\text{known}})`, so the network
    only has to make the unknown part agree with a correctly noised known part
    (the replacement method of Song et al. 2021b). With ``resample = r > 1`` each
    step is redone ``r`` times, going back to step ``t`` with fresh noise in
    between, so the two parts can harmonise (RePaint, Lugmayr et al. 2022).
    ``x_known: (b, ...)``, ``mask`` broadcastable to it; returns ``(b, ...)``.
    """
    if x_known.dim() < 2:
        raise ValueError(f"x_known must be a batch (b, ...), got {tuple(x_known.shape)}")
    if not isinstance(resample, int) or resample < 1:
        raise ValueError(f"resample must be an int >= 1, got {resample!r}")
    try:
        mask = mask.to(x_known.dtype).expand_as(x_known)
    except RuntimeError as err:
        raise ValueError(f"mask {tuple(mask.shape)} does not broadcast to x_known {tuple(x_known.shape)}") from err
    if not ((mask == 0) | (mask == 1)).all():
        raise ValueError("mask must hold only 0 (fill in) and 1 (keep)")
    ts = ddim_timesteps(schedule.T, steps)
    b = x_known.shape[0]
    x = torch.randn(x_known.shape, generator=generator)
    for t, t_prev in zip(ts, ts[1:] + [-1]):
        for r in range(resample):
            eps = guided_eps(model, x, torch.full((b,), t, dtype=torch.int64), labels, guidance_scale)
            x_prev = ddim_step(x, eps, t, t_prev, schedule, eta=eta, clip=clip, generator=generator)
            if t_prev < 0:
                x = mask * x_known + (1 - mask) * x_prev
                break
            noise = torch.randn(x.shape, generator=generator)
            x_prev = mask * q_sample(x_known, torch.full((b,), t_prev), noise, schedule) + (1 - mask) * x_prev
            if r == resample - 1:
                x = x_prev
            else:  # back to step t: q(x_t | x_t') = N(sqrt(ab_t / ab_t') x_t', (1 - ab_t / ab_t') I)
                ratio = (schedule.alpha_bars[t] / schedule.alpha_bars[t_prev]).item()
                x = math.sqrt(ratio) * x_prev + math.sqrt(1 - ratio) * torch.randn(x.shape, generator=generator)
    return x


@torch.no_grad()
def x0_estimate(model: torch.nn.Module, x0: torch.Tensor, t: int, noise: torch.Tensor,
                schedule: NoiseSchedule, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Noise ``x0: (b, ...)`` to step ``t`` and ask the model for it back: returns ``(x_t, x0_hat)``.

    :math:`\hat x_0` is the network's estimate of the mean of :math:`x_0` given
    :math:`x_t` (Tweedie's formula); one call, fast enough for a slider.
    """
    tt = torch.full((x0.shape[0],), t, dtype=torch.int64)
    xt = q_sample(x0, tt, noise, schedule)
    eps = model(xt, tt) if labels is None else model(xt, tt, labels)
    return xt, predict_x0(xt, tt, eps, schedule)
