r"""Classifier guidance: a classifier of noisy inputs steers an unconditional denoiser.

Dhariwal & Nichol (2021) train a classifier :math:`p_\phi(y \mid x_t, t)` on noised
data :math:`x_t \sim q(x_t \mid x_0)` (:func:`noisy_classifier_loss`) and add the
gradient of its log-probability to the score of the diffusion model. In the noise
parameterisation (their Algorithm 2, with scale :math:`w`):

.. math:: \tilde\epsilon(x_t, t, y) = \epsilon_\theta(x_t, t)
          - w\,\sqrt{1-\bar\alpha_t}\,\nabla_{x_t} \log p_\phi(y \mid x_t, t),

that is, the score :math:`\nabla \log p_t(x_t) + w\,\nabla \log p_\phi(y \mid x_t, t)`
by :math:`\epsilon = -\sqrt{1-\bar\alpha_t}\,\nabla \log p_t`. With the exact noisy
classifier and :math:`w = 1` this is the score of :math:`p_t(x_t \mid y)` (Bayes' rule);
:math:`w > 1` sharpens it. :class:`ClassifierGuidance` is a denoiser
``(x_t, t, y) -> noise`` like any other, so :mod:`companion.samplers` run it unchanged.
Classifier-free guidance, which needs no classifier, is :func:`companion.samplers.guided_eps`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from companion import checks, rng
from companion.attention import sinusoidal_embedding
from companion.diffusion import _check_data, q_sample
from companion.schedules import NoiseSchedule

__all__ = ["NoisyClassifierConfig", "NoisyClassifier", "noisy_classifier_loss", "ClassifierGuidance"]


@dataclass(frozen=True)
class NoisyClassifierConfig:
    """Sizes of :class:`NoisyClassifier` (course-sized defaults for the 8x8 digits)."""

    data_dim: int = 64      # pixels of one flattened input
    hidden: int = 64
    time_dim: int = 16
    num_classes: int = 10

    def __post_init__(self) -> None:
        for name in ("data_dim", "hidden", "num_classes"):
            checks.positive_int(name, getattr(self, name))
        if checks.positive_int("time_dim", self.time_dim) % 2:
            raise ValueError(f"time_dim must be even (sines and cosines in pairs), got {self.time_dim}")


class NoisyClassifier(nn.Module):
    r"""A small MLP :math:`p_\phi(y \mid x_t, t)`: ``x_t: (b, ...)`` with ``data_dim`` entries, ``t: (b,)`` -> logits ``(b, K)``.

    :math:`h_1 = \mathrm{SiLU}(W_1 x_t + U e(t))`, :math:`h_2 = \mathrm{SiLU}(W_2 h_1)`,
    logits :math:`= W_3 h_2`; :math:`e(t)` is the sinusoidal timestep embedding, so one
    network classifies at every noise level.

    Example:
        >>> net = NoisyClassifier(NoisyClassifierConfig())
        >>> net(torch.randn(3, 1, 8, 8), torch.tensor([0, 50, 199])).shape
        torch.Size([3, 10])
    """

    def __init__(self, config: NoisyClassifierConfig = NoisyClassifierConfig()) -> None:
        super().__init__()
        self.config = c = checks.config(config, NoisyClassifierConfig)
        self.inp = nn.Linear(c.data_dim, c.hidden)
        self.time = nn.Linear(c.time_dim, c.hidden)
        self.hidden = nn.Linear(c.hidden, c.hidden)
        self.out = nn.Linear(c.hidden, c.num_classes)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x = checks.floats("x", x, model=self)
        if x.dim() < 2 or x[0].numel() != self.config.data_dim:
            raise ValueError(f"expected x of shape (b, ...) with {self.config.data_dim} entries per example, "
                             f"got {tuple(x.shape)}")
        checks.tensor("t", t, "b", b=x.shape[0])
        if t.dtype != torch.int64 or bool((t < 0).any()):
            raise ValueError(f"t must hold int64 timesteps >= 0, got {t.dtype}")
        e = sinusoidal_embedding(t, self.config.time_dim).to(x.dtype)
        h = nn.functional.silu(self.inp(x.flatten(1)) + self.time(e))   # W_1 x_t + U e(t)
        return self.out(nn.functional.silu(self.hidden(h)))


def noisy_classifier_loss(model: NoisyClassifier, x0: torch.Tensor, y: torch.Tensor, schedule: NoiseSchedule, *,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Cross-entropy :math:`-\log p_\phi(y \mid x_t, t)` of a label at a random noise level, ``(b,)``.

    :math:`t` is uniform on the steps and :math:`x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon`
    (:func:`~companion.diffusion.q_sample`), as in the diffusion model's own training;
    ``x0: (b, ...)`` on the denoiser's scale, ``y: (b,)`` class ids.

    Example:
        >>> net = NoisyClassifier(NoisyClassifierConfig(data_dim=2, num_classes=3))
        >>> noisy_classifier_loss(net, torch.randn(4, 2), torch.tensor([0, 1, 2, 0]), NoiseSchedule.linear(50)).shape
        torch.Size([4])
    """
    x0 = _check_data("x0", x0, model)
    y = checks.labels("y", y, model.config.num_classes, b=x0.shape[0])
    t = rng.randint(0, schedule.T, (x0.shape[0],), generator=generator, device=x0.device)
    noise = rng.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    logits = model(q_sample(x0, t, noise, schedule), t)
    return nn.functional.cross_entropy(logits, y.to(x0.device), reduction="none")


class ClassifierGuidance(nn.Module):
    r"""A denoiser ``(x_t, t, y) -> noise`` that guides ``denoiser`` with ``classifier``'s gradient:

    .. math:: \tilde\epsilon = \epsilon_\theta(x_t, t) - w\,\sqrt{1-\bar\alpha_t}\,\nabla_{x_t} \log p_\phi(y \mid x_t, t)

    ``denoiser(x, t)`` is the unconditional noise predictor (a conditional network asked
    without a label is one), ``classifier(x, t)`` returns logits, ``scale`` is :math:`w`
    (0: unconditional). The gradient is taken with autograd even inside the samplers'
    ``no_grad``; neither network is trained by it.

    Example:
        >>> from companion.denoisers import TinyUNet, UNetConfig
        >>> from companion.samplers import ddim_sample
        >>> s = NoiseSchedule.linear(100)
        >>> guided = ClassifierGuidance(TinyUNet(UNetConfig(channels=8)), NoisyClassifier(), s, scale=2.0)
        >>> ddim_sample(guided, s, (3, 1, 8, 8), steps=5, labels=torch.tensor([0, 4, 7])).shape
        torch.Size([3, 1, 8, 8])
    """

    def __init__(self, denoiser: nn.Module, classifier: nn.Module, schedule: NoiseSchedule,
                 scale: float = 1.0) -> None:
        super().__init__()
        if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not scale >= 0:
            raise ValueError(f"scale must be a number >= 0, got {scale!r}")
        self.denoiser, self.classifier, self.schedule, self.scale = denoiser, classifier, schedule, float(scale)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``x: (b, ...)``, ``t: (b,)`` int64, ``y: (b,)`` class ids (-1 or None: unguided) -> noise ``(b, ...)``."""
        eps = self.denoiser(x, t)
        if y is None or self.scale == 0:
            return eps
        self.schedule.check_t(t, x.shape[0])
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            log_p = self.classifier(xg, t).log_softmax(dim=1)   # log p_phi(. | x_t, t), (b, K)
            y = checks.labels("y", y, log_p.shape[1], b=x.shape[0], allow_none=True).to(x.device)
            guided = y >= 0                                    # -1: no label, no guidance
            picked = log_p.gather(1, y.clamp(min=0).long()[:, None]).squeeze(1)
            grad, = torch.autograd.grad((picked * guided).sum(), xg)
        ab = self.schedule.at(self.schedule.alpha_bars, t, x)
        return eps - self.scale * (1 - ab).sqrt() * grad          # eps - w sqrt(1 - ab) grad log p(y | x_t)
