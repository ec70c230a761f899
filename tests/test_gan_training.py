"""The GAN's training game and the WGAN-GP penalty (companion.gan_training)."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from companion.data import eight_gaussians, ring_modes
from companion.gan import ConvDiscriminator, ConvGenerator, DigitGANConfig, Discriminator, GANConfig, Generator
from companion.gan_losses import mode_coverage
from companion.gan_training import gradient_penalty, train_gan
from companion.utils import fresh_init

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) + (
    ["mps"] if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else [])
SMALL = GANConfig(hidden=16, layers=2)


def small_pair(seed=0, config=SMALL):
    return fresh_init(lambda: (Generator(config), Discriminator(config)), seed)


def digit_pair(seed=0):
    config = DigitGANConfig(latent_dim=4, width=4, num_classes=3)
    return fresh_init(lambda: (ConvGenerator(config), ConvDiscriminator(config)), seed)


def test_gradient_penalty_is_zero_for_a_unit_norm_linear_critic_and_positive_otherwise(g, float64):
    critic = nn.Linear(3, 1, bias=True)
    w = torch.randn(1, 3, generator=g)
    real, fake = torch.randn(16, 3, generator=g), torch.randn(16, 3, generator=g)
    with torch.no_grad():
        critic.weight.copy_(w / w.norm())
    score = lambda x: critic(x).squeeze(-1)
    assert gradient_penalty(score, real, fake, generator=g).abs().max() < 1e-12
    with torch.no_grad():
        critic.weight.mul_(3.0)                        # gradient norm 3 everywhere: penalty (3 - 1)^2
    assert torch.allclose(gradient_penalty(score, real, fake, generator=g), torch.full((16,), 4.0))
    penalty = gradient_penalty(score, real, fake, generator=g).mean()
    penalty.backward()                                  # differentiable in the critic's weights
    assert critic.weight.grad is not None and critic.weight.grad.abs().sum() > 0


def test_gradient_penalty_interpolates_with_weights_from_the_generator(g, float64):
    # f(x) = |x|^2 / 2 has gradient x, so the penalty is (|x_hat| - 1)^2 at the point
    # x_hat = eps x + (1 - eps) x~ with eps ~ U(0, 1) drawn from the generator passed.
    real, fake = torch.randn(6, 2, 2, generator=g), torch.randn(6, 2, 2, generator=g)
    eps = torch.rand(6, 1, 1, generator=torch.Generator().manual_seed(5))
    x_hat = eps * real + (1 - eps) * fake
    expected = (x_hat.flatten(1).norm(dim=1) - 1) ** 2
    critic = lambda x: (x ** 2).sum(dim=(1, 2)) / 2
    got = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(got, expected, atol=1e-12)


def test_train_gan_is_seeded_by_its_seed_alone_and_returns_histories():
    evaluate = lambda G: mode_coverage(G(torch.randn(100, 2, generator=torch.Generator().manual_seed(1))),
                                       ring_modes(), 0.02)

    def run(global_seed):
        torch.manual_seed(global_seed)                 # the game must not read the global RNG
        gen, disc = small_pair()
        return train_gan(gen, disc, eight_gaussians(512, seed=0), steps=6, batch_size=64, eval_every=3,
                         evaluate=evaluate, progress=False)

    a, b = run(0), run(1)
    assert a == b
    assert len(a["d_loss"]) == len(a["g_loss"]) == 6 and a["eval_step"] == [3, 6]
    assert len(a["covered"]) == len(a["high_quality"]) == 2


def test_train_gan_plays_wgan_gp_and_conditional_games():
    gen, disc = small_pair()
    h = train_gan(gen, disc, eight_gaussians(256, seed=0), loss="wgan-gp", n_critic=2, steps=3,
                  batch_size=32, progress=False)
    assert len(h["d_loss"]) == 3 and all(math.isfinite(v) for v in h["d_loss"])
    x, y = torch.rand(64, 1, 8, 8), torch.arange(64) % 3
    h = train_gan(*digit_pair(), (x, y), steps=2, batch_size=16, progress=False)
    assert len(h["g_loss"]) == 2


@pytest.mark.parametrize("loss", ["nonsaturating", "wgan-gp"])
def test_train_gan_plays_copy_against_copy(loss):
    # Two copies in one game are two games: copy 0 ends with the same weights whatever copy 1
    # started from (real and fake of each copy go to that copy's discriminator, the fakes'
    # gradient to that copy's generator, the penalty's gradient is per example).
    config = GANConfig(hidden=16, layers=2, copies=2)
    data = eight_gaussians(512, seed=0)

    def copy_0_after_a_game(seed_of_copy_1):
        gen, disc = fresh_init(lambda: (Generator(config), Discriminator(config)), 0)
        other = fresh_init(lambda: (Generator(config), Discriminator(config)), seed_of_copy_1)
        with torch.no_grad():
            for net, donor in zip((gen, disc), other):
                for p, q in zip(net.parameters(), donor.parameters()):
                    p[1:] = q[1:]
        train_gan(gen, disc, data, loss=loss, n_critic=2, steps=5, batch_size=64, progress=False)
        return [p[0].clone() for net in (gen, disc) for p in net.parameters()]

    a, b = copy_0_after_a_game(1), copy_0_after_a_game(2)
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    gen = Generator(config)
    with pytest.raises(ValueError, match="the generator has 2 copies but the discriminator 1"):
        train_gan(gen, Discriminator(SMALL), data, steps=1, batch_size=64, progress=False)
    with pytest.raises(ValueError, match="not a multiple of copies"):
        train_gan(gen, Discriminator(config), data, steps=1, batch_size=63, progress=False)


def test_train_gan_restores_both_networks_modes_and_evaluates_in_eval_mode():
    gen, disc = digit_pair()
    gen.eval()                                         # as a sampler would leave it
    seen = []
    h = train_gan(gen, disc, (torch.rand(32, 1, 8, 8), torch.arange(32) % 3), steps=2, batch_size=8,
                  eval_every=1, evaluate=lambda G: seen.append(G.training) or {}, progress=False)
    assert not gen.training and disc.training and seen == [False, False] and h["eval_step"] == [1, 2]
    gen.train(), disc.eval()
    train_gan(gen, disc, (torch.rand(32, 1, 8, 8), torch.arange(32) % 3), steps=1, batch_size=8,
              progress=False)
    assert gen.training and not disc.training


def test_train_gan_casts_float64_data_to_the_networks_dtype():
    data = eight_gaussians(128, seed=0)
    a = train_gan(*small_pair(), data, steps=3, batch_size=32, progress=False)
    b = train_gan(*small_pair(), data.double(), steps=3, batch_size=32, progress=False)
    assert a == b


def test_train_gan_bad_input_raises_clear_errors():
    gen, disc = small_pair()
    points = eight_gaussians(64, seed=0)
    with pytest.raises(ValueError, match="need loss in"):
        train_gan(gen, disc, points, loss="hinge")
    with pytest.raises(ValueError, match="multiple of"):
        train_gan(gen, Discriminator(GANConfig(pack=3)), points, batch_size=8)
    with pytest.raises(ValueError, match="torch.Tensor, got ndarray"):
        train_gan(gen, disc, points.numpy())
    with pytest.raises(ValueError, match="at least one example"):
        train_gan(gen, disc, points[:0])
    with pytest.raises(ValueError, match="x holds NaN"):
        train_gan(gen, disc, torch.full((64, 2), float("nan")), batch_size=8)
    with pytest.raises(ValueError, match=r"batch_size <= 64"):
        train_gan(gen, disc, points, batch_size=65)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        train_gan(gen, disc, points, steps=0)
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        train_gan(gen, disc, points, lr=float("nan"), batch_size=8)
    with pytest.raises(ValueError, match="torch.nn.Module"):
        train_gan(gen, lambda x: x, points)
    with pytest.raises(ValueError, match="move both to one device"):
        train_gan(small_pair()[0].to("meta"), disc, points, batch_size=8)
    with pytest.raises(ValueError, match="x is on cpu but the model is on meta"):
        train_gan(*(net.to("meta") for net in small_pair()), points, batch_size=8)
    cgen, cdisc = digit_pair()
    images, labels = torch.rand(16, 1, 8, 8), torch.arange(16) % 3
    with pytest.raises(ValueError, match=r"expected y in \[0, 3\)"):
        train_gan(cgen, cdisc, (images, labels + 1), batch_size=8)
    with pytest.raises(ValueError, match="integer class ids"):
        train_gan(cgen, cdisc, (images, labels.float()), batch_size=8)
    with pytest.raises(ValueError, match=r"y of shape \(b\) with b=16"):
        train_gan(cgen, cdisc, (images, labels[:8]), batch_size=8)
    with pytest.raises(ValueError, match="grey levels 0..16"):
        train_gan(cgen, cdisc, (images * 16, labels), batch_size=8)
    with pytest.raises(ValueError, match="float intensities"):
        train_gan(cgen, cdisc, ((images * 16).long(), labels), batch_size=8)
    with pytest.raises(ValueError, match=r"x or a pair \(x, y\)"):
        train_gan(cgen, cdisc, (images, labels, labels), batch_size=8)
    with pytest.raises(ValueError, match="config.num_classes"):
        train_gan(gen, disc, (points, torch.zeros(64, dtype=torch.long)), batch_size=8)


def test_gradient_penalty_bad_input_raises():
    with pytest.raises(ValueError, match="share a shape"):
        gradient_penalty(lambda x: x.sum(1), torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="one score per example"):
        gradient_penalty(lambda x: x, torch.zeros(3, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="real holds NaN"):
        gradient_penalty(lambda x: x.sum(1), torch.full((3, 2), float("nan")), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="torch.Tensor, got ndarray"):
        gradient_penalty(lambda x: x.sum(1), np.zeros((3, 2)), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="generator must be a torch.Generator"):
        gradient_penalty(lambda x: x.sum(1), torch.zeros(3, 2), torch.zeros(3, 2), generator=1)


@pytest.mark.parametrize("device", DEVICES)
def test_the_game_plays_on_every_device_with_a_cpu_generator(device):
    # Noise, batches and penalty weights come from one CPU generator and move to the
    # networks' device; the game there follows the CPU game for a few steps.
    images, labels = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.arange(32) % 3
    cpu = train_gan(*digit_pair(), (images, labels), loss="wgan-gp", steps=3, batch_size=8, progress=False)
    gen, disc = (net.to(device) for net in digit_pair())
    there = train_gan(gen, disc, (images.to(device), labels.to(device)), loss="wgan-gp", steps=3,
                      batch_size=8, progress=False)
    assert np.allclose(there["d_loss"], cpu["d_loss"], rtol=1e-2, atol=1e-2)   # TF32 convolutions on CUDA
    real = torch.rand(4, 2, device=device)
    penalty = gradient_penalty(lambda x: x.sum(1), real, real.flip(0), generator=torch.Generator().manual_seed(0))
    assert penalty.device.type == device


def test_gradient_penalty_refuses_integer_fakes():
    with pytest.raises(ValueError, match="a float dtype"):
        gradient_penalty(lambda x: x.sum(1), torch.zeros(4, 2), torch.zeros(4, 2, dtype=torch.long))
