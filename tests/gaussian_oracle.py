r"""The exact noise predictor of Gaussian data: an independent reference for the diffusion tests.

For data :math:`x_0 \sim \mathcal{N}(m, S)` the forward process gives
:math:`x_t \sim \mathcal{N}(\sqrt{\bar\alpha_t}\,m,\ \Sigma_t)`, :math:`\Sigma_t = \bar\alpha_t S + (1-\bar\alpha_t) I`,
and :math:`\mathrm{Cov}(\epsilon, x_t) = \sqrt{1-\bar\alpha_t}\,I`, so the best noise prediction is
:math:`\mathbb{E}[\epsilon \mid x_t] = \sqrt{1-\bar\alpha_t}\,\Sigma_t^{-1}(x_t - \sqrt{\bar\alpha_t}\,m)`,
with the residual variance :math:`1 - (1-\bar\alpha_t)\,(\Sigma_t^{-1})_{ii}` per coordinate.
A label ``y`` shifts the mean by ``y + 1`` (``-1``: no label), so guidance can be tested too.
"""
from __future__ import annotations

import torch
from torch import nn


class GaussianOracle(nn.Module):
    r"""``forward(x: (b, d), t: (b,), y=None) -> E[eps | x_t]: (b, d)`` for data ``N(mean, cov)``.

    :math:`\Sigma_t^{-1}` is applied through the eigenvectors of ``cov``,
    :math:`S = U \Lambda U^\top`, :math:`\Sigma_t^{-1} = U (\bar\alpha_t \Lambda + 1 - \bar\alpha_t)^{-1} U^\top`.
    """

    def __init__(self, schedule, mean: torch.Tensor, cov: torch.Tensor) -> None:
        super().__init__()
        self.schedule, self.mean, self.cov = schedule, mean.double(), cov.double()
        self.eigenvalues, self.eigenvectors = torch.linalg.eigh(self.cov)
        self.calls = []                                 # the mode the oracle was called in, call by call

    def covariance_at(self, t: torch.Tensor) -> torch.Tensor:
        r""":math:`\Sigma_t`, ``(b, d, d)``, in float64."""
        ab = self.schedule.alpha_bars[t.cpu()][:, None, None]
        return ab * self.cov + (1 - ab) * torch.eye(len(self.mean), dtype=torch.float64)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        self.calls.append(self.training)
        ab = self.schedule.alpha_bars[t.cpu()][:, None]
        mean = self.mean + (0.0 if y is None else (y.cpu().double() + 1)[:, None])
        centred = (x.cpu().double() - ab.sqrt() * mean) @ self.eigenvectors           # in the eigenbasis
        eps = (1 - ab).sqrt() * (centred / (ab * self.eigenvalues + 1 - ab)) @ self.eigenvectors.T
        return eps.to(device=x.device, dtype=x.dtype)
