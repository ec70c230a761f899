r"""The noise schedule of a diffusion model: the variances :math:`\beta_t` and what follows from them.

Step :math:`t` of the forward process adds noise of variance :math:`\beta_t`,
:math:`q(x_t \mid x_{t-1}) = \mathcal{N}(\sqrt{1-\beta_t}\,x_{t-1}, \beta_t I)`; the
products :math:`\bar\alpha_t = \prod_{s \le t} (1 - \beta_s)` give the closed form of
:math:`q(x_t \mid x_0)` that :mod:`companion.diffusion` uses. As in the diffusers
library, the schedule is an object of its own, separate from the network and the
samplers (:mod:`companion.samplers`). Timesteps are 0-indexed: index ``t`` in
``0 .. T-1`` is step ``t + 1`` of the papers.
"""
from __future__ import annotations

import math

import torch

from companion.utils import check_shape

__all__ = ["NoiseSchedule"]


def _check_T(T: object) -> None:
    if not isinstance(T, int) or isinstance(T, bool) or T < 2:
        raise ValueError(f"T must be an int >= 2, got {T!r}")


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
        _check_T(T)
        beta_start = 1e-4 * 1000 / T if beta_start is None else beta_start
        beta_end = 0.02 * 1000 / T if beta_end is None else beta_end
        if not 0 < beta_start <= beta_end < 1:
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start:g} and {beta_end:g}"
                             + (" (the rescaled defaults need T > 20)" if T <= 20 else ""))
        return cls(torch.linspace(beta_start, beta_end, T, dtype=torch.float64))

    @classmethod
    def cosine(cls, T: int = 1000, delta: float = 0.008, max_beta: float = 0.999) -> NoiseSchedule:
        r""":math:`\bar\alpha_t = f(t)/f(0)`, :math:`f(t) = \cos^2\!\big(\frac{t/T + \delta}{1 + \delta}\frac{\pi}{2}\big)`
        (Nichol & Dhariwal 2021, eq. 17, where the offset ``delta`` is called :math:`s`), with
        :math:`\beta_t = 1 - \bar\alpha_t/\bar\alpha_{t-1}` clipped at ``max_beta`` so the last steps stay finite.
        """
        _check_T(T)
        if not isinstance(delta, (int, float)) or isinstance(delta, bool) or not delta >= 0:
            raise ValueError(f"delta must be a number >= 0, got {delta!r}")
        steps = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((steps + delta) / (1 + delta) * math.pi / 2) ** 2
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
        picked = values[t.cpu()].to(dtype=x.dtype)             # float64 on the CPU, then x's dtype
        return picked.to(x.device).reshape(-1, *([1] * (x.dim() - 1)))
