r"""Generative adversarial networks: the two players, the losses of their game, and its loop.

A generator maps noise :math:`z` to data; a discriminator :math:`D = \sigma(\ell)` scores how
real a point looks; they play :math:`\min_G \max_D \mathbb{E}[\log D(x)] + \mathbb{E}[\log(1 -
D(G(z)))]` (Goodfellow et al. 2014). Losses take logits and return one value per example,
``(b,)``, through ``softplus``, so no probability is rounded to 0 before its logarithm.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from tqdm.auto import tqdm

from companion.train import minibatches
from companion.utils import check_shape

__all__ = ["GANConfig", "Generator", "Discriminator", "DigitGANConfig", "ConvGenerator",
           "ConvDiscriminator", "discriminator_loss", "generator_loss_saturating",
           "generator_loss_nonsaturating", "critic_loss", "wasserstein_generator_loss",
           "gradient_penalty", "optimal_discriminator", "jensen_shannon", "mode_coverage",
           "GENERATOR_LOSSES", "train_gan"]


# --- networks -----------------------------------------------------------------

@dataclass(frozen=True)
class GANConfig:
    """Sizes of the MLP pair for low-dimensional data (course-sized defaults)."""
    data_dim: int = 2
    latent_dim: int = 2
    hidden: int = 64
    layers: int = 3      # hidden layers in each network
    pack: int = 1        # PacGAN: the discriminator judges `pack` samples jointly


def _mlp(sizes: Sequence[int], act: Callable[[], nn.Module]) -> nn.Sequential:
    """Linear layers of the given sizes with ``act()`` between them (none after the last)."""
    layers = [m for a, b in zip(sizes[:-1], sizes[1:]) for m in (nn.Linear(a, b), act())]
    return nn.Sequential(*layers[:-1])


class Generator(nn.Module):
    """``z: (b, latent_dim) -> x: (b, data_dim)``, an MLP with ReLU activations."""

    def __init__(self, config: GANConfig = GANConfig()) -> None:
        super().__init__()
        self.latent_dim = config.latent_dim
        hidden = [config.hidden] * config.layers
        self.net = _mlp([config.latent_dim, *hidden, config.data_dim], nn.ReLU)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        check_shape("z", z, "b latent_dim", latent_dim=self.latent_dim)
        return self.net(z)


class Discriminator(nn.Module):
    """``x: (b, data_dim) -> logits (b / pack,)``, an MLP with LeakyReLU activations.

    With ``pack = m > 1`` each group of ``m`` consecutive samples, concatenated, gets
    one logit, ``(b p) d -> b (p d)``: packing lets the discriminator see diversity.

    Example:
        >>> d = Discriminator(GANConfig(pack=2))
        >>> d(torch.zeros(6, 2)).shape
        torch.Size([3])
    """

    def __init__(self, config: GANConfig = GANConfig()) -> None:
        super().__init__()
        if config.pack < 1:
            raise ValueError(f"pack must be >= 1, got {config.pack}")
        self.config = config
        self.pack = config.pack
        self.net = _mlp([config.data_dim * config.pack, *[config.hidden] * config.layers, 1],
                        lambda: nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_shape("x", x, "b d", d=self.config.data_dim)
        if x.shape[0] % self.pack:
            raise ValueError(f"batch size {x.shape[0]} is not a multiple of pack={self.pack}")
        return self.net(rearrange(x, "(b p) d -> b (p d)", p=self.pack)).squeeze(-1)


@dataclass(frozen=True)
class DigitGANConfig:
    """Sizes of the conditional DCGAN-style pair for the 8x8 digits."""
    latent_dim: int = 16
    width: int = 16
    n_classes: int = 10


class ConvGenerator(nn.Module):
    """``z: (b, latent_dim)``, labels ``y: (b,)`` -> images ``(b, 1, 8, 8)`` in [0, 1].

    DCGAN's recipe (Radford et al. 2016) at 8x8: a linear layer to a 4x4 map, a strided
    transposed convolution to 8x8, batch norm and ReLU between, a sigmoid at the end.
    The label enters as a one-hot vector next to ``z``.
    """

    def __init__(self, config: DigitGANConfig = DigitGANConfig()) -> None:
        super().__init__()
        self.config = config
        self.latent_dim = config.latent_dim
        w = config.width
        self.project = nn.Sequential(nn.Linear(config.latent_dim + config.n_classes, 2 * w * 16),
                                     nn.BatchNorm1d(2 * w * 16), nn.ReLU())   # (b, 2w * 4 * 4)
        self.up = nn.Sequential(
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, 1, 3, padding=1), nn.Sigmoid())                   # (b, 1, 8, 8)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_shape("z", z, "b latent_dim", latent_dim=self.latent_dim)
        check_shape("y", y, "b", b=z.shape[0])
        one_hot = F.one_hot(y, self.config.n_classes).to(z.dtype)
        h = self.project(torch.cat([z, one_hot], dim=1))
        return self.up(rearrange(h, "b (c h w) -> b c h w", h=4, w=4))


class ConvDiscriminator(nn.Module):
    """Images ``x: (b, 1, 8, 8)``, labels ``y: (b,)`` -> logits ``(b,)``.

    The label becomes ``n_classes`` constant one-hot channels stacked on the image; two
    strided convolutions with LeakyReLU (8 -> 4 -> 2) and a linear layer follow. No
    batch normalisation, so each logit depends on its own image only.
    """

    def __init__(self, config: DigitGANConfig = DigitGANConfig()) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.net = nn.Sequential(
            nn.Conv2d(1 + config.n_classes, w, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.LeakyReLU(0.2),   # (b, 2w, 2, 2)
            nn.Flatten(), nn.Linear(2 * w * 4, 1),
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_shape("x", x, "b 1 8 8")
        check_shape("y", y, "b", b=x.shape[0])
        one_hot = F.one_hot(y, self.config.n_classes).to(x.dtype)
        planes = one_hot[:, :, None, None].expand(-1, -1, 8, 8)       # (b, n_classes, 8, 8)
        return self.net(torch.cat([x, planes], dim=1)).squeeze(-1)


# --- losses: logits in, one value per example out --------------------------------

def _check_logits(**logits: torch.Tensor) -> None:
    for name, t in logits.items():
        check_shape(name, t, "b")
        if t.shape[0] == 0:
            raise ValueError(f"{name} is empty")
    if len({t.shape for t in logits.values()}) > 1:
        shapes = [tuple(t.shape) for t in logits.values()]
        raise ValueError(f"logits must have the same shape (b,), got {shapes}")


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    r"""Binary cross-entropy of the discriminator, ``(b,)``: real labelled 1, fake 0.

    .. math:: -\log D(x) - \log(1 - D(G(z)))
              = \operatorname{softplus}(-\ell_\text{real})
              + \operatorname{softplus}(\ell_\text{fake})

    Its mean is :math:`-V(D, G)` estimated on the batch, so minimising it is
    the discriminator's :math:`\max_D V`.

    Example:
        >>> discriminator_loss(torch.zeros(2), torch.zeros(2))   # D = 1/2: 2 log 2
        tensor([1.3863, 1.3863])
    """
    _check_logits(real_logits=real_logits, fake_logits=fake_logits)
    return F.softplus(-real_logits) + F.softplus(fake_logits)


def generator_loss_saturating(fake_logits: torch.Tensor) -> torch.Tensor:
    r"""The minimax generator loss :math:`\log(1 - D(G(z)))`, ``(b,)``.

    It equals :math:`-\operatorname{softplus}(\ell)`; its derivative in the logit,
    :math:`-D(G(z))`, vanishes when the discriminator rejects the fakes confidently.
    """
    _check_logits(fake_logits=fake_logits)
    return -F.softplus(fake_logits)


def generator_loss_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    r"""The non-saturating generator loss :math:`-\log D(G(z))`, ``(b,)``.

    It equals :math:`\operatorname{softplus}(-\ell)`; its derivative in the logit,
    :math:`-(1 - D(G(z)))`, is near :math:`-1` where the saturating one vanishes.
    """
    _check_logits(fake_logits=fake_logits)
    return F.softplus(-fake_logits)


def critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    r"""The Wasserstein critic loss, ``(b,)``: :math:`f(G(z)) - f(x)` (Arjovsky et al., 2017).

    Minus its mean estimates :math:`W_1(p_\text{data}, p_g)` if :math:`f` is 1-Lipschitz.
    """
    _check_logits(real_scores=real_scores, fake_scores=fake_scores)
    return fake_scores - real_scores


def wasserstein_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    r"""The Wasserstein generator loss, ``(b,)``: :math:`-f(G(z))`."""
    _check_logits(fake_scores=fake_scores)
    return -fake_scores


def gradient_penalty(critic: Callable[..., torch.Tensor], real: torch.Tensor,
                     fake: torch.Tensor, *cond: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    r"""The WGAN-GP penalty (Gulrajani et al. 2017), ``(b,)``.

    .. math:: \big(\lVert \nabla_{\hat x} f(\hat x) \rVert_2 - 1\big)^2, \qquad
              \hat x = \epsilon x + (1 - \epsilon) \tilde x, \quad \epsilon \sim U(0, 1),

    between a real ``x: (b, ...)`` and a fake ``x~: (b, ...)``; ``cond`` (e.g. labels)
    goes to the critic. The graph is kept, so the penalty trains the critic.

    Example:
        >>> f = lambda x: x @ torch.tensor([0.6, 0.8])       # linear, gradient norm 1
        >>> gradient_penalty(f, torch.randn(4, 2), torch.randn(4, 2)).abs().max() < 1e-6
        tensor(True)
    """
    if real.shape != fake.shape or real.dim() < 2 or real.shape[0] == 0:
        raise ValueError(f"real and fake must share a shape (b, ...), got {tuple(real.shape)} "
                         f"and {tuple(fake.shape)}")
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), generator=generator,
                     dtype=real.dtype, device=real.device)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    scores = critic(x_hat, *cond)
    if scores.shape != (real.shape[0],):
        raise ValueError(f"the critic must return one score per example, got {tuple(scores.shape)}")
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1) ** 2


# --- theory and measurement -----------------------------------------------------

def optimal_discriminator(p_data: torch.Tensor, p_g: torch.Tensor) -> torch.Tensor:
    r"""The best discriminator against a fixed generator (Goodfellow et al. 2014, Prop. 1).

    .. math:: D^*(x) = \frac{p_\text{data}(x)}{p_\text{data}(x) + p_g(x)}

    ``p_data``, ``p_g``: the densities at the same points (any shape). Where both are 0
    any value is optimal; we return 1/2 there.

    Example:
        >>> optimal_discriminator(torch.tensor([1.0, 0.0, 0.0]), torch.tensor([1.0, 2.0, 0.0]))
        tensor([0.5000, 0.0000, 0.5000])
    """
    if p_data.shape != p_g.shape:
        raise ValueError(f"p_data and p_g must have the same shape, got {tuple(p_data.shape)} "
                         f"and {tuple(p_g.shape)}")
    if (p_data < 0).any() or (p_g < 0).any():
        raise ValueError("densities must be non-negative")
    total = p_data + p_g
    return torch.where(total > 0, p_data / total.clamp(min=torch.finfo(total.dtype).tiny), 0.5)


def jensen_shannon(p: torch.Tensor, q: torch.Tensor, dx: float) -> torch.Tensor:
    r"""Jensen-Shannon divergence (nats) of two densities on a regular grid ``(n,)``.

    .. math:: \operatorname{JSD}(p \,\|\, q) = \tfrac12 \operatorname{KL}(p \,\|\, m)
              + \tfrac12 \operatorname{KL}(q \,\|\, m), \quad m = \tfrac12 (p + q)

    ``dx`` is the grid spacing. The result lies in :math:`[0, \log 2]`.

    Example:
        >>> p, q = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
        >>> torch.isclose(jensen_shannon(p, q, 1.0), torch.log(torch.tensor(2.0)))
        tensor(True)
    """
    check_shape("p", p, "n")
    check_shape("q", q, "n", n=p.shape[0])
    if dx <= 0:
        raise ValueError(f"dx must be > 0, got {dx}")
    m = (p + q) / 2
    kl_pm = torch.where(p > 0, p * (p / m).log(), 0.0).sum() * dx
    kl_qm = torch.where(q > 0, q * (q / m).log(), 0.0).sum() * dx
    return (kl_pm + kl_qm) / 2


@torch.no_grad()
def mode_coverage(samples: torch.Tensor, modes: torch.Tensor, std: float) -> dict[str, float]:
    r"""Modes covered and share of high-quality samples (the metric of VEEGAN and PacGAN).

    A sample is *high quality* if it lies within 3 ``std`` of its nearest mode; a mode
    is *covered* if some sample lies within 3 ``std`` of it. ``samples: (n, d)``,
    ``modes: (k, d)``. Returns ``covered`` (0..k) and ``high_quality`` (a fraction).

    Example:
        >>> modes = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
        >>> mode_coverage(torch.tensor([[0.01, 0.0], [0.5, 0.5]]), modes, std=0.02)
        {'covered': 1, 'high_quality': 0.5}
    """
    check_shape("samples", samples, "n d")
    check_shape("modes", modes, "k d", d=samples.shape[1])
    if samples.shape[0] == 0 or std <= 0:
        raise ValueError(f"need samples and std > 0, got n={samples.shape[0]}, std={std}")
    close = torch.cdist(samples.double(), modes.double()) < 3 * std    # (n, k)
    return {"covered": int(close.any(0).sum()), "high_quality": close.any(1).double().mean().item()}


# --- the game -------------------------------------------------------------------

GENERATOR_LOSSES = {"nonsaturating": generator_loss_nonsaturating,
                    "saturating": generator_loss_saturating, "wgan-gp": wasserstein_generator_loss}
"""The generator's loss in each game :func:`train_gan` can play."""


def train_gan(generator: nn.Module, discriminator: nn.Module,
              data: torch.Tensor | tuple[torch.Tensor, torch.Tensor], *,
              loss: str = "nonsaturating", steps: int = 2000, batch_size: int = 256,
              lr: float = 1e-3, lr_d: float | None = None, n_critic: int = 1,
              betas: tuple[float, float] = (0.5, 0.999), gp_weight: float = 10.0,
              lr_schedule: str = "constant", seed: int = 0, eval_every: int = 0,
              evaluate: Callable[[nn.Module], dict[str, object]] | None = None,
              desc: str = "GAN", progress: bool = True) -> dict[str, list]:
    r"""Play ``steps`` rounds: ``n_critic`` discriminator updates, then one generator update.

    ``data`` is ``x: (n, ...)``, or ``(x, y)`` for a conditional GAN whose networks take
    the label as a second argument (fakes get the labels of the real batch). ``loss``
    is a key of :data:`GENERATOR_LOSSES`; ``"wgan-gp"`` also adds the gradient penalty
    to the critic. Adam, learning rate ``lr`` (``lr_d`` for the discriminator, if
    given), optionally decayed to 0 with ``lr_schedule="cosine"``. ``evaluate(G) ->
    dict`` runs without gradients every ``eval_every`` steps and at the end.

    Returns histories: ``d_loss`` and ``g_loss`` (one per round), ``eval_step`` and
    one list per key of ``evaluate``. Both networks are left in eval mode.
    """
    if loss not in GENERATOR_LOSSES or lr_schedule not in ("constant", "cosine"):
        raise ValueError(f"need loss in {sorted(GENERATOR_LOSSES)} and lr_schedule 'constant' "
                         f"or 'cosine', got {loss!r} and {lr_schedule!r}")
    n = (data if isinstance(data, torch.Tensor) else data[0]).shape[0]
    if steps < 1 or n_critic < 1 or eval_every < 0 or not 1 <= batch_size <= n:
        raise ValueError(f"need steps >= 1, n_critic >= 1, eval_every >= 0, 1 <= batch_size <= "
                         f"{n} (the data); got {steps}, {n_critic}, {eval_every}, {batch_size}")
    if batch_size % getattr(discriminator, "pack", 1):
        raise ValueError(f"batch_size {batch_size} is not a multiple of the discriminator's pack")
    rng = torch.Generator().manual_seed(seed)          # batches, noise, interpolation weights
    batches = minibatches(data, batch_size, generator=rng)
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr_d or lr, betas=betas)
    schedulers = [torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
                  for opt in (opt_g, opt_d) if lr_schedule == "cosine"]
    history: dict[str, list] = {"d_loss": [], "g_loss": [], "eval_step": []}

    def fake_batch(cond: list[torch.Tensor]) -> torch.Tensor:
        return generator(torch.randn(batch_size, generator.latent_dim, generator=rng), *cond)

    generator.train(), discriminator.train()
    bar = tqdm(range(1, steps + 1), desc=desc, mininterval=0.5,
               **({} if progress else {"disable": True}))
    for step in bar:
        # 1. The discriminator ascends V (descends its loss) with the generator fixed.
        for _ in range(n_critic):
            real, *cond = next(batches)
            if real.shape[0] != batch_size:            # the short last batch of an epoch
                real, *cond = next(batches)
            with torch.no_grad():
                fake = fake_batch(cond)
            # Real and fake in one call: our discriminators have no batch statistics.
            both = discriminator(torch.cat([real, fake]), *(torch.cat([c, c]) for c in cond))
            real_out, fake_out = both.chunk(2)
            if loss == "wgan-gp":
                penalty = gradient_penalty(discriminator, real, fake, *cond, generator=rng)
                d_loss = (critic_loss(real_out, fake_out) + gp_weight * penalty).mean()
            else:
                d_loss = discriminator_loss(real_out, fake_out).mean()
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        # 2. The generator descends its loss; only its own optimiser steps.
        g_loss = GENERATOR_LOSSES[loss](discriminator(fake_batch(cond), *cond)).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        for scheduler in schedulers:
            scheduler.step()
        history["d_loss"].append(d_loss.item())
        history["g_loss"].append(g_loss.item())
        if evaluate is not None and ((eval_every and step % eval_every == 0) or step == steps):
            generator.eval()
            with torch.no_grad():
                for key, value in evaluate(generator).items():
                    history.setdefault(key, []).append(value)
            history["eval_step"].append(step)
            generator.train()
        if step % 100 == 0:
            bar.set_postfix(d=f"{d_loss.item():.3f}", g=f"{g_loss.item():.3f}")
    generator.eval(), discriminator.eval()
    return history
