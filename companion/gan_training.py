r"""The GAN's training game: alternating updates of the two players, and WGAN-GP's penalty.

:func:`train_gan` plays :math:`\min_G \max_D V(D, G)` by gradient steps that take
turns (Algorithm 1 of Goodfellow et al. 2014) with the losses of
:mod:`companion.gan_losses`; :func:`gradient_penalty` keeps a Wasserstein critic
close to 1-Lipschitz (Gulrajani et al. 2017). Both follow the package's rule for
randomness and devices: every draw comes from a CPU ``torch.Generator`` and moves to
the networks' device, so one seed plays the same game on the CPU and on a GPU.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from companion import checks, rng
from companion.gan_losses import (critic_loss, discriminator_loss, generator_loss_nonsaturating,
                                  generator_loss_saturating, wasserstein_generator_loss)
from companion.train import minibatches
from companion.utils import mode

__all__ = ["GENERATOR_LOSSES", "gradient_penalty", "train_gan"]

GENERATOR_LOSSES = {"nonsaturating": generator_loss_nonsaturating,
                    "saturating": generator_loss_saturating, "wgan-gp": wasserstein_generator_loss}
"""The generator's loss in each game :func:`train_gan` can play."""


def gradient_penalty(critic: Callable[..., torch.Tensor], real: torch.Tensor,
                     fake: torch.Tensor, *cond: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    r"""The WGAN-GP penalty (Gulrajani et al. 2017), ``(b,)``.

    .. math:: \big(\lVert \nabla_{\hat x} f(\hat x) \rVert_2 - 1\big)^2, \qquad
              \hat x = \epsilon x + (1 - \epsilon) \tilde x, \quad \epsilon \sim U(0, 1),

    between a real ``x: (b, ...)`` and a fake ``x~: (b, ...)``; ``cond`` (e.g. labels)
    goes to the critic. :math:`\epsilon` is drawn from the CPU ``generator`` and moved
    to the data's device. The graph is kept, so the penalty trains the critic.

    Example:
        >>> f = lambda x: x @ torch.tensor([0.6, 0.8])       # linear, gradient norm 1
        >>> gradient_penalty(f, torch.randn(4, 2), torch.randn(4, 2)).abs().max() < 1e-6
        tensor(True)
    """
    real = checks.finite("real", checks.tensor("real", real))
    fake = checks.finite("fake", checks.tensor("fake", fake))
    if real.shape != fake.shape or real.dim() < 2 or not (real.is_floating_point() and fake.is_floating_point()):
        raise ValueError(f"real and fake must share a shape (b, ...) and a float dtype, got "
                         f"{tuple(real.shape)} {real.dtype} and {tuple(fake.shape)} {fake.dtype}")
    if real.device != fake.device:
        raise ValueError(f"real is on {real.device} but fake on {fake.device}")
    eps = rng.rand((real.shape[0], *[1] * (real.dim() - 1)), generator=generator,
                   device=real.device, dtype=real.dtype)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach().to(real.dtype)).requires_grad_(True)
    scores = critic(x_hat, *cond)
    if scores.shape != (real.shape[0],):
        raise ValueError(f"the critic must return one score per example, got {tuple(scores.shape)}")
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1) ** 2


def _joined(copies: int, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(c n) ...`` and ``(c n) ...`` -> ``(c 2n) ...``: each copy's block of ``a``, then its block of ``b``."""
    return torch.cat([a.unflatten(0, (copies, -1)), b.unflatten(0, (copies, -1))], dim=1).flatten(0, 1)


def _check_game(generator: nn.Module, discriminator: nn.Module,
                data: object) -> tuple[torch.Tensor, ...]:
    """The data as a tuple ``(x,)`` or ``(x, y)``, checked against the two networks."""
    from companion.gan import ConvGenerator       # the networks' module imports this one

    for name, net in (("generator", generator), ("discriminator", discriminator)):
        if not isinstance(net, nn.Module):
            raise ValueError(f"expected the {name} to be a torch.nn.Module, got {type(net).__name__}")
    if not isinstance(getattr(generator, "latent_dim", None), int):
        raise ValueError("the generator must have an int attribute latent_dim (the size of z)")
    if checks.model_device(generator) != checks.model_device(discriminator):
        raise ValueError(f"the generator is on {checks.model_device(generator)} but the discriminator "
                         f"on {checks.model_device(discriminator)}: move both to one device")
    conditional = isinstance(data, (tuple, list))
    if conditional and len(data) != 2:
        raise ValueError(f"data must be x or a pair (x, y), got a sequence of {len(data)}")
    x, *y = data if conditional else (data,)
    if isinstance(generator, ConvGenerator):              # its sigmoid draws intensities in [0, 1]
        x = checks.intensities("x", x, "n 1 8 8", model=generator)
    else:
        x = checks.floats("x", x, model=generator)
    if not conditional:
        return (x,)
    num_classes = getattr(getattr(generator, "config", None), "num_classes", None)
    if not isinstance(num_classes, int):
        raise ValueError("a conditional game (data = (x, y)) needs a generator with config.num_classes")
    return x, checks.same_device("y", checks.labels("y", y[0], num_classes, b=x.shape[0]), generator)


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
    the label as a second argument (fakes get the labels of the real batch); data and
    networks on one device, any device. Networks with ``copies = c`` (:class:`~companion.gan.GANConfig`)
    play ``c`` independent games at once, copy against copy, each on ``batch_size / c``
    examples of every batch; the mean loss is :math:`\tfrac1c \sum_j` of the copies' means,
    so each copy's gradient is its own game's divided by ``c``, which Adam's step ignores
    (up to its :math:`\epsilon`). ``loss`` is a key of :data:`GENERATOR_LOSSES`;
    ``"wgan-gp"`` also adds the gradient penalty to the critic. Adam, learning rate
    ``lr`` (``lr_d`` for the discriminator, if given), optionally decayed to 0 with
    ``lr_schedule="cosine"``. Batches, noise and penalty weights come from one CPU
    generator seeded with ``seed``. ``evaluate(G) -> dict`` runs without gradients,
    with ``G`` in eval mode, every ``eval_every`` steps and at the end.

    Returns histories: ``d_loss`` and ``g_loss`` (one per round), ``eval_step`` and
    one list per key of ``evaluate``. Both networks play in training mode and are
    left in the mode they were in.

    Example:
        >>> from companion.gan import Discriminator, Generator
        >>> h = train_gan(Generator(), Discriminator(), torch.randn(64, 2), steps=3,
        ...               batch_size=32, progress=False)
        >>> len(h["d_loss"]), len(h["g_loss"])
        (3, 3)
    """
    if loss not in GENERATOR_LOSSES or lr_schedule not in ("constant", "cosine"):
        raise ValueError(f"need loss in {sorted(GENERATOR_LOSSES)} and lr_schedule 'constant' "
                         f"or 'cosine', got {loss!r} and {lr_schedule!r}")
    data = _check_game(generator, discriminator, data)
    n = data[0].shape[0]
    for name, value in (("steps", steps), ("n_critic", n_critic), ("batch_size", batch_size)):
        checks.positive_int(name, value)
    for name, value in (("lr", lr), ("lr_d", lr if lr_d is None else lr_d), ("gp_weight", gp_weight)):
        checks.positive(name, value)
    if not isinstance(eval_every, int) or eval_every < 0 or batch_size > n:
        raise ValueError(f"need eval_every >= 0 and batch_size <= {n} (the data); "
                         f"got {eval_every!r} and {batch_size}")
    copies = getattr(generator, "copies", 1)
    if getattr(discriminator, "copies", 1) != copies:
        raise ValueError(f"the generator has {copies} copies but the discriminator "
                         f"{getattr(discriminator, 'copies', 1)}: they play copy against copy")
    if batch_size % (copies * getattr(discriminator, "pack", 1)):
        raise ValueError(f"batch_size {batch_size} is not a multiple of copies * the discriminator's pack")
    device, dtype = checks.model_device(generator), checks.model_dtype(generator)
    seeded = torch.Generator().manual_seed(seed)       # batches, noise, interpolation weights
    batches = minibatches(data, batch_size, generator=seeded)
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr_d or lr, betas=betas)
    schedulers = [torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
                  for opt in (opt_g, opt_d) if lr_schedule == "cosine"]
    history: dict[str, list] = {"d_loss": [], "g_loss": [], "eval_step": []}

    def fake_batch(cond: list[torch.Tensor]) -> torch.Tensor:
        z = rng.randn((batch_size, generator.latent_dim), generator=seeded, device=device, dtype=dtype)
        return generator(z, *cond)

    with mode(generator, training=True), mode(discriminator, training=True):
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
                both = discriminator(_joined(copies, real, fake), *(_joined(copies, c, c) for c in cond))
                real_out, fake_out = both.unflatten(0, (copies, -1)).chunk(2, dim=1)
                real_out, fake_out = real_out.flatten(0, 1), fake_out.flatten(0, 1)
                if loss == "wgan-gp":
                    penalty = gradient_penalty(discriminator, real, fake, *cond, generator=seeded)
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
                with mode(generator, training=False), torch.no_grad():
                    for key, value in evaluate(generator).items():
                        history.setdefault(key, []).append(value)
                history["eval_step"].append(step)
            if step % 100 == 0:
                bar.set_postfix(d=f"{d_loss.item():.3f}", g=f"{g_loss.item():.3f}")
    return history
