"""Tests of companion.diffusion: the forward process, the loss, and the model behind the protocol."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from companion import diffusion
from companion.denoisers import MLPDenoiserConfig, UNetConfig
from companion.diffusion import Diffusion, DiffusionConfig, ddpm_loss, predict_x0, q_posterior, q_sample
from companion.schedules import NoiseSchedule

_spec = importlib.util.spec_from_file_location("gaussian_oracle", Path(__file__).with_name("gaussian_oracle.py"))
_oracle = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_oracle)
GaussianOracle = _oracle.GaussianOracle                    # the exact denoiser of Gaussian data

CHECKPOINT = Path(diffusion.__file__).parent / "checkpoints" / "diffusion_seed0.pt"


def test_q_sample_has_the_closed_form_marginal_of_the_simulated_chain(g, float64):
    s = NoiseSchedule.linear(100)
    x0 = torch.tensor([1.5, -0.5, 0.0])
    n, t = 40_000, 60
    # the chain: x_k = sqrt(1 - beta_k) x_{k-1} + sqrt(beta_k) z, for k = 0..t
    x = x0.expand(n, 3).clone()
    for k in range(t + 1):
        x = (1 - s.betas[k]).sqrt() * x + s.betas[k].sqrt() * torch.randn(n, 3, generator=g)
    jump = q_sample(x0.expand(n, 3), torch.full((n,), t), torch.randn(n, 3, generator=g), s)
    ab = s.alpha_bars[t]
    for sample in (x, jump):
        assert torch.allclose(sample.mean(0), ab.sqrt() * x0, atol=0.02)
        assert torch.allclose(sample.var(0), (1 - ab).expand(3), rtol=0.03)


def test_q_posterior_matches_gaussian_conditioning(g, float64):
    # q(x_{t-1} | x_t, x0) from Bayes' rule with two Gaussians: the prior
    # N(sqrt(ab_{t-1}) x0, 1 - ab_{t-1}) and the likelihood N(x_t; sqrt(alpha_t) x_{t-1}, beta_t).
    s = NoiseSchedule.linear(50)
    x0, xt = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    t = torch.tensor([1, 5, 17, 30, 48, 49])
    ab_prev, alpha, beta = s.alpha_bars_prev[t, None], s.alphas[t, None], s.betas[t, None]
    precision = 1 / (1 - ab_prev) + alpha / beta
    mean = (ab_prev.sqrt() * x0 / (1 - ab_prev) + alpha.sqrt() * xt / beta) / precision
    got_mean, got_var = q_posterior(x0, xt, t, s)
    assert torch.allclose(got_mean, mean, atol=1e-10)
    assert torch.allclose(got_var, 1 / precision, atol=1e-12)
    # step 0 (the first step of the chain): the posterior is x0 itself
    m0, v0 = q_posterior(x0[:1], xt[:1], torch.tensor([0]), s)
    assert torch.allclose(m0, x0[:1]) and v0.item() == 0


def test_predict_x0_inverts_q_sample(g, float64):
    s = NoiseSchedule.cosine(100)
    x0, eps = torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g)
    t = torch.randint(0, 90, (8,), generator=g)
    assert torch.allclose(predict_x0(q_sample(x0, t, eps, s), t, eps, s), x0, atol=1e-8)


def test_ddpm_loss_of_the_exact_denoiser_is_the_irreducible_noise_variance(g):
    # Data N(m, S): E[eps | x_t] leaves Var(eps_i | x_t) = 1 - (1 - ab) (Sigma_t^-1)_ii, so the
    # expected loss is its mean over the coordinates and over t uniform on all T steps.
    s = NoiseSchedule.linear(50)
    mean, cov = torch.tensor([0.5, -1.0]), torch.tensor([[0.3, 0.1], [0.1, 0.2]])
    oracle = GaussianOracle(s, mean, cov)
    x0 = torch.distributions.MultivariateNormal(mean, cov).sample((40_000,))
    loss = ddpm_loss(oracle, x0, s, generator=g)
    inverse = torch.linalg.inv(oracle.covariance_at(torch.arange(s.T)))
    per_t = 1 - (1 - s.alpha_bars) * inverse.diagonal(dim1=1, dim2=2).mean(1)
    assert loss.shape == (40_000,)
    assert abs(loss.mean().item() - per_t.mean().item()) < 4 * loss.std().item() / 200


def test_ddpm_loss_drops_labels_with_probability_p_uncond(g):
    s = NoiseSchedule.linear(30)
    seen = {}

    def zero_model(x, t, y=None):
        seen["y"] = y
        return torch.zeros_like(x)

    x0 = torch.randn(4000, 2, generator=g)
    assert ddpm_loss(zero_model, x0, s, generator=g).mean().item() == pytest.approx(1.0, abs=0.05)  # E|eps|^2 / d
    labels = torch.zeros(4000, dtype=torch.int64)
    ddpm_loss(zero_model, x0, s, labels=labels, p_uncond=0.25, generator=g)
    assert (seen["y"] == -1).float().mean().item() == pytest.approx(0.25, abs=0.03)
    ddpm_loss(zero_model, x0, s, labels=labels, p_uncond=0.0, generator=g)
    assert (seen["y"] == 0).all()


def test_ddpm_loss_draws_only_from_its_generator_and_casts_float64(g):
    s, model = NoiseSchedule.linear(30), Diffusion(DiffusionConfig(MLPDenoiserConfig(hidden=8, layers=1), T=30))
    x = torch.randn(5, 2, generator=g)
    torch.manual_seed(0)
    a = ddpm_loss(model.net, x, s, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(1)                                    # the global RNG plays no part
    b = ddpm_loss(model.net, x.double(), s, generator=torch.Generator().manual_seed(1))
    assert b.dtype == torch.float32 and torch.equal(a, b)


@pytest.mark.parametrize("config, form", [
    (DiffusionConfig(UNetConfig(channels=8, num_classes=0), T=30, levels=17), "levels"),
    (DiffusionConfig(UNetConfig(channels=8, num_classes=0), T=30), "intensities"),
    (DiffusionConfig(MLPDenoiserConfig(data_dim=3, hidden=16, layers=1), T=30, schedule="cosine"), "points"),
])
def test_the_protocol_speaks_in_the_form_of_the_data(config, form):
    model = Diffusion(config).train()
    x = diffusion.sample(model, 4, generator=torch.Generator().manual_seed(0), steps=5)
    again = diffusion.sample(model, 4, generator=torch.Generator().manual_seed(0), steps=5)
    assert torch.equal(x, again) and model.training                 # same seed, same samples; mode restored
    if form == "levels":
        assert x.shape == (4, 1, 8, 8) and x.dtype == torch.int64 and x.min() >= 0 and x.max() <= 16
    elif form == "intensities":
        assert x.shape == (4, 1, 8, 8) and x.is_floating_point() and x.min() >= 0 and x.max() <= 1
    else:
        assert x.shape == (4, 3) and x.isfinite().all()
    assert diffusion.sample(model, 2, generator=torch.Generator().manual_seed(0)).shape[0] == 2  # DDPM
    loss = diffusion.loss(model, x, generator=torch.Generator().manual_seed(1))
    assert loss.shape == (4,) and loss.isfinite().all()
    if form == "levels":
        nll = diffusion.nll(model, x, generator=torch.Generator().manual_seed(2), timesteps=3)
        assert nll.shape == (4,) and (nll > 0).all()
    else:
        with pytest.raises(ValueError, match="integer grey levels"):
            diffusion.nll(model, x)


def test_the_loss_of_a_model_of_levels_is_ddpm_loss_on_the_unit_scale(g):
    model = Diffusion(DiffusionConfig(UNetConfig(channels=8, num_classes=0), T=30, levels=17))
    levels = torch.randint(0, 17, (6, 1, 8, 8), generator=g)
    unit = levels / 16 * 2 - 1                                      # level 0 -> -1, level 16 -> 1
    got = diffusion.loss(model, levels, generator=torch.Generator().manual_seed(3))
    expected = ddpm_loss(model.net, unit, model.schedule, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(got, expected)


def test_the_model_loads_the_shipped_checkpoint_with_the_keys_of_the_comparison():
    model = Diffusion(DiffusionConfig(levels=17))
    state = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
    assert all(k.startswith("net.") for k in model.state_dict())
    model.load_state_dict({k: v.float() for k, v in state.items()})      # strict: the same keys and shapes


def test_bad_input_raises_clear_errors(g):
    s = NoiseSchedule.linear(10, 1e-3, 0.2)
    x = torch.zeros(3, 2)
    unet = Diffusion(DiffusionConfig(UNetConfig(channels=8, num_classes=0), T=30))
    with pytest.raises(ValueError, match=r"in \[0, 10\)"):
        q_posterior(x, x, torch.tensor([-1, 0, 0]), s)
    with pytest.raises(ValueError, match="shape"):
        q_sample(x, torch.tensor([0, 1]), torch.zeros(3, 2), s)
    with pytest.raises(ValueError, match="noise of shape"):
        q_sample(x, torch.tensor([0, 1, 2]), torch.zeros(3, 3), s)
    # integer x0 once cast the noise and alpha-bar to integers and trained on garbage
    with pytest.raises(ValueError, match="integer grey levels would turn the noise"):
        ddpm_loss(unet.net, torch.zeros(2, 1, 8, 8, dtype=torch.long), unet.schedule)
    with pytest.raises(ValueError, match="torch.Tensor"):
        ddpm_loss(unet.net, np.zeros((2, 1, 8, 8), dtype=np.float32), unet.schedule)
    with pytest.raises(ValueError, match="at least one example"):
        ddpm_loss(unet.net, torch.zeros(0, 1, 8, 8), unet.schedule)
    with pytest.raises(ValueError, match="NaN"):
        ddpm_loss(unet.net, torch.full((2, 1, 8, 8), float("nan")), unet.schedule)
    with pytest.raises(ValueError, match="p_uncond"):
        ddpm_loss(lambda x, t, y=None: x, x, s, labels=torch.zeros(3, dtype=torch.int64), p_uncond=1.5)
    with pytest.raises(ValueError, match="labels must be integer"):
        ddpm_loss(unet.net, torch.zeros(2, 1, 8, 8), unet.schedule, labels=torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"labels of shape \(b, ...\) with b=2"):
        ddpm_loss(unet.net, torch.zeros(2, 1, 8, 8), unet.schedule, labels=torch.tensor([1, 2, 3]))
    # the protocol: data in the wrong form, configs that would not make a model
    levels_model = Diffusion(DiffusionConfig(UNetConfig(channels=8, num_classes=0), T=30, levels=17))
    with pytest.raises(ValueError, match="integer grey levels 0..16"):
        diffusion.loss(levels_model, torch.rand(2, 1, 8, 8, generator=g))
    with pytest.raises(ValueError, match="grey levels 0..16, got values in"):
        diffusion.loss(levels_model, torch.full((2, 1, 8, 8), 17))
    with pytest.raises(ValueError, match="divide them by 16"):
        diffusion.loss(unet, torch.randint(0, 17, (2, 1, 8, 8), generator=g))
    with pytest.raises(ValueError, match="n must be a positive int"):
        diffusion.sample(unet, 0)
    with pytest.raises(ValueError, match="expected a diffusion.Diffusion"):
        diffusion.sample(unet.net, 2)
    with pytest.raises(ValueError, match="unconditional"):
        DiffusionConfig(UNetConfig(num_classes=10))
    with pytest.raises(ValueError, match="schedule must be"):
        DiffusionConfig(schedule="quadratic")
    with pytest.raises(ValueError, match="levels must be None or an int >= 2 with a UNetConfig"):
        DiffusionConfig(MLPDenoiserConfig(), levels=17)
    with pytest.raises(ValueError, match="T > 20"):
        DiffusionConfig(T=10)
    with pytest.raises(ValueError, match="UNetConfig or an MLPDenoiserConfig"):
        DiffusionConfig(denoiser=dict(channels=8))
