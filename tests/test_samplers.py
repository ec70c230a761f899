"""Tests of companion.samplers against the exact denoiser of Gaussian data (tests/gaussian_oracle.py)."""
import importlib.util
from pathlib import Path

import pytest
import torch

from companion.denoisers import TinyUNet, UNetConfig
from companion.diffusion import q_posterior, q_sample
from companion.samplers import ddim_sample, ddim_step, ddim_timesteps, ddpm_sample, guided_eps, inpaint, x0_estimate
from companion.schedules import NoiseSchedule
from companion.utils import best_time

_spec = importlib.util.spec_from_file_location("gaussian_oracle", Path(__file__).with_name("gaussian_oracle.py"))
_oracle = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_oracle)
GaussianOracle = _oracle.GaussianOracle                    # the exact denoiser of Gaussian data

MU, STD = torch.tensor([1.0, -2.0]), 0.5
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def oracle(schedule):
    return GaussianOracle(schedule, MU, STD**2 * torch.eye(2))


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_samplers_with_the_exact_denoiser_recover_a_gaussian(sampler, g):
    s = NoiseSchedule.linear(1000)
    if sampler == "ddpm":
        x = ddpm_sample(oracle(s), s, (20_000, 2), generator=g)
    else:
        x = ddim_sample(oracle(s), s, (20_000, 2), steps=250, generator=g)
    assert torch.allclose(x.mean(0), MU, atol=0.02), x.mean(0)
    assert torch.allclose(x.std(0), torch.full((2,), STD), atol=0.015), x.std(0)


def test_few_sampling_steps_shrink_the_spread_even_with_the_exact_denoiser(g):
    # Each DDIM step uses the *expected* noise; with coarse steps the sample
    # contracts towards conditional means (Cauchy-Schwarz on the step's coefficient).
    s = NoiseSchedule.linear(100)
    noise = torch.randn(20_000, 2, generator=g)
    spread = [ddim_sample(oracle(s), s, (20_000, 2), steps=k, noise=noise).std(0).mean().item()
              for k in (5, 10, 25, 100)]
    assert spread == sorted(spread) and spread[-1] < STD + 0.01 and spread[0] < 0.8 * STD


def test_ddim_with_eta_zero_is_deterministic_given_the_noise(g):
    s = NoiseSchedule.linear(100)
    net = TinyUNet(UNetConfig(channels=8, num_classes=0))
    noise = torch.randn(3, 1, 8, 8, generator=g)
    a = ddim_sample(net, s, (3, 1, 8, 8), steps=5, noise=noise, generator=torch.Generator().manual_seed(1))
    b = ddim_sample(net, s, (3, 1, 8, 8), steps=5, noise=noise, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    c = ddim_sample(net, s, (3, 1, 8, 8), steps=5, eta=1.0, noise=noise, generator=torch.Generator().manual_seed(2))
    assert not torch.allclose(a, c)


def test_ddim_with_eta_one_and_every_step_is_the_ddpm_step(g, float64):
    s = NoiseSchedule.linear(50)
    x0, eps = torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g)
    t = 7
    x = q_sample(x0, torch.full((4,), t), eps, s)
    mean, var = q_posterior(x0, x, torch.full((4,), t), s)
    z = torch.randn(4, 2, generator=torch.Generator().manual_seed(5))
    step = ddim_step(x, eps, t, t - 1, s, eta=1.0, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(step, mean + var.sqrt() * z, atol=1e-10)


def test_samplers_keep_shapes_and_return_trajectories(g):
    s = NoiseSchedule.linear(30)
    net = TinyUNet(UNetConfig(channels=8))
    y = torch.arange(4)
    assert ddpm_sample(net, s, (4, 1, 8, 8), labels=y, guidance_scale=2.0, generator=g).shape == (4, 1, 8, 8)
    path = ddim_sample(net, s, (4, 1, 8, 8), steps=3, labels=y, generator=g, return_trajectory=True)
    assert path.shape == (4, 4, 1, 8, 8)
    assert ddpm_sample(net, s, (2, 1, 8, 8), generator=g, return_trajectory=True).shape == (31, 2, 1, 8, 8)
    assert ddim_timesteps(200, 10)[0] == 199 and ddim_timesteps(200, 10)[-1] == 0
    assert ddim_timesteps(30, 30) == list(range(29, -1, -1))


def test_guidance_interpolates_and_extrapolates_the_two_predictions(g):
    s = NoiseSchedule.linear(30)
    model = oracle(s)
    x, t, y = torch.randn(5, 2, generator=g), torch.full((5,), 4), torch.arange(5)
    uncond, cond = model(x, t, torch.full_like(y, -1)), model(x, t, y)
    assert torch.allclose(guided_eps(model, x, t, y, 0.0), uncond)
    assert torch.allclose(guided_eps(model, x, t, y, 1.0), cond)
    assert torch.allclose(guided_eps(model, x, t, y, 3.0), uncond + 3 * (cond - uncond), atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_samplers_run_in_eval_mode_restore_the_mode_and_draw_from_the_cpu_generator(device):
    s = NoiseSchedule.linear(30)
    net = TinyUNet(UNetConfig(channels=8, num_classes=0)).to(device).train()
    runs = [ddpm_sample(net, s, (2, 1, 8, 8), generator=torch.Generator().manual_seed(0)),
            ddim_sample(net, s, (2, 1, 8, 8), steps=4, eta=1.0, generator=torch.Generator().manual_seed(0)),
            inpaint(net, s, torch.zeros(2, 1, 8, 8, device=device), torch.ones(1, 1, 8, 8), steps=4, resample=2,
                    generator=torch.Generator().manual_seed(0))]
    assert net.training and all(x.device.type == device for x in runs)
    model = oracle(s).train()
    ddim_sample(model, s, (3, 2), steps=3)
    assert model.training and model.calls and not any(model.calls)                   # every call in eval mode
    cpu = TinyUNet(UNetConfig(channels=8, num_classes=0)).eval()
    cpu.load_state_dict(net.state_dict())
    again = ddim_sample(cpu, s, (2, 1, 8, 8), steps=4, eta=1.0, generator=torch.Generator().manual_seed(0))
    # one seed, the same samples anywhere: the untrained network's eta=1 chain grows to |x| ~ 1e3,
    # so the float32 kernels of two devices agree to a relative, not an absolute, 1e-4
    # (measured on an H200: largest relative difference 1.5e-4 of the largest value)
    scale = again.abs().max()
    assert (runs[1].cpu() - again).abs().max() <= 1e-3 * scale


def test_inpaint_samples_the_gaussian_conditional_of_the_unknown_entries_up_to_the_methods_bias():
    # Data N(m, S) in 3-D, entry 0 known: the exact answer is p(x_u | x_k), a Gaussian with
    # mean m_u + S_uk S_kk^-1 (x_k - m_k) and covariance S_uu - S_uk S_kk^-1 S_ku. Replacement
    # with RePaint's resampling is an approximation even with the exact denoiser: measured
    # here (seeds 0-2), 5-7% of the shift of the mean and 14-17% of the covariance are missed,
    # more than Monte Carlo error (about 1.5% and 4%). Ignoring the known entry misses 100%;
    # one pass without resampling misses about 30% of the mean.
    s = NoiseSchedule.linear(500)
    m, chol = torch.tensor([0.3, -0.2, 0.1]), torch.tensor([[0.5, 0, 0], [0.32, 0.24, 0], [-0.2, 0.1, 0.3]])
    cov = chol @ chol.T
    known, x_k = [0], torch.tensor([0.8])
    gain = cov[1:, known] / cov[0, 0]                                 # S_uk S_kk^-1, (2, 1)
    cond_mean = m[1:] + (gain @ (x_k - m[known])[:, None])[:, 0]
    cond_cov = cov[1:, 1:] - gain @ cov[known, 1:]
    x = torch.zeros(4000, 3)
    x[:, 0] = x_k
    mask = torch.tensor([1.0, 0.0, 0.0])
    missed = {}
    for resample in (1, 5):
        out = inpaint(GaussianOracle(s, m, cov), s, x, mask, steps=250, resample=resample,
                      generator=torch.Generator().manual_seed(0))
        assert torch.equal(out[:, 0], x[:, 0])                        # the known entry is copied in
        missed[resample] = ((out[:, 1:].mean(0) - cond_mean).norm() / (cond_mean - m[1:]).norm()).item()
        cov_error = ((torch.cov(out[:, 1:].T) - cond_cov).norm() / cond_cov.norm()).item()
    assert missed[5] < 0.12 and missed[1] > 2 * missed[5], missed
    assert cov_error < 0.25, cov_error


def test_inpaint_keeps_the_known_pixels_of_images_with_and_without_resampling(g):
    s = NoiseSchedule.linear(30)
    net = TinyUNet(UNetConfig(channels=8, num_classes=0))
    x = torch.rand(2, 1, 8, 8, generator=g) * 2 - 1
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :] = 1
    for resample in (1, 3):
        out = inpaint(net, s, x, mask, steps=5, resample=resample, generator=g)
        assert torch.equal(out[..., :4, :], x[..., :4, :]) and not torch.allclose(out[..., 4:, :], x[..., 4:, :])


def test_x0_estimate_is_exact_for_the_true_noise_and_fast_enough_for_a_widget(g):
    s = NoiseSchedule.linear(100)
    x0, noise = torch.randn(1, 2, generator=g), torch.randn(1, 2, generator=g)
    xt, x0_hat = x0_estimate(lambda x, t: noise, s, x0, 50, noise=noise)
    assert torch.allclose(x0_hat, x0, atol=1e-5) and torch.allclose(xt, q_sample(x0, torch.tensor([50]), noise, s))
    net = TinyUNet(UNetConfig())
    img = torch.rand(1, 1, 8, 8, generator=g)
    assert best_time(lambda: x0_estimate(net, s, img, 60, labels=torch.tensor([3]), generator=g), repeats=5) < 0.1


def test_bad_input_raises_clear_errors():
    s = NoiseSchedule.linear(10, 1e-3, 0.2)
    net = TinyUNet(UNetConfig(channels=8))
    with pytest.raises(ValueError, match="steps must be"):
        ddim_sample(lambda x, t: x, s, (2, 2), steps=11)
    with pytest.raises(ValueError, match="noise of shape"):
        ddpm_sample(lambda x, t: x, s, (2, 2), noise=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="positive ints"):
        ddpm_sample(lambda x, t: x, s, (0, 2))
    with pytest.raises(ValueError, match="labels"):
        ddim_sample(lambda x, t, y=None: x, s, (2, 2), steps=2, labels=torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"y in \[-1, 10\)"):
        ddim_sample(net, s, (2, 1, 8, 8), steps=2, labels=torch.tensor([1, 12]))
    with pytest.raises(ValueError, match="labels must be integer"):
        ddim_sample(net, s, (2, 1, 8, 8), steps=2, labels=torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="t_prev"):
        ddim_step(torch.zeros(3, 2), torch.zeros(3, 2), 3, 5, s)
    with pytest.raises(ValueError, match="generator must be a torch.Generator"):
        ddpm_sample(lambda x, t: x, s, (2, 2), generator=0)
    with pytest.raises(ValueError, match="broadcast"):
        inpaint(lambda x, t: x, s, torch.zeros(2, 1, 8, 8), torch.ones(3, 1, 8, 8), steps=2)
    with pytest.raises(ValueError, match="resample"):
        inpaint(net, s, torch.zeros(2, 1, 8, 8), torch.ones(1, 1, 8, 8), steps=2, resample=0)
    with pytest.raises(ValueError, match="only 0"):
        inpaint(net, s, torch.zeros(2, 1, 8, 8), torch.full((1, 1, 8, 8), 0.5), steps=2)
    with pytest.raises(ValueError, match=r"t must be an int in \[0, 10\)"):
        x0_estimate(net, s, torch.zeros(1, 1, 8, 8), 10)
