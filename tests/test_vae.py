"""The VAE: the Gaussian pieces against torch.distributions, the likelihoods, the protocol verbs, clear errors."""
import math

import numpy as np
import pytest
import torch

from companion.utils import best_time, fresh_init
from companion.vae import (VAE, VAEConfig, decode_latent, elbo, elbo_loss, gaussian_kl, loss, nll, reparameterize,
                           sample)
from companion.vae_estimators import importance_weighted_log_likelihood


def _vae(**fields) -> VAE:
    return fresh_init(lambda: VAE(VAEConfig(**fields)), seed=0)


def test_gaussian_kl_equals_torch_and_monte_carlo(g, float64):
    mu, logvar = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    expected = torch.distributions.kl_divergence(q, p).sum(1)
    assert torch.allclose(gaussian_kl(mu, logvar), expected, atol=1e-12)
    z = reparameterize(mu.expand(200_000, 6, 3), logvar.expand(200_000, 6, 3), generator=g)
    log_ratio = (q.log_prob(z) - p.log_prob(z)).sum(-1)                     # (n, 6)
    stderr = log_ratio.std(0) / math.sqrt(z.shape[0])
    assert ((log_ratio.mean(0) - gaussian_kl(mu, logvar)).abs() < 5 * stderr).all()
    assert (gaussian_kl(mu, logvar) >= 0).all() and gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)).eq(0).all()


def test_reparameterize_is_seeded_has_the_right_moments_and_passes_gradients(float64):
    mu = torch.tensor([[1.0, -2.0]], requires_grad=True)
    logvar = torch.tensor([[0.0, math.log(4.0)]], requires_grad=True)
    state = torch.get_rng_state()
    a = reparameterize(mu, logvar, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, reparameterize(mu, logvar, generator=torch.Generator().manual_seed(3)))
    assert torch.equal(torch.get_rng_state(), state)                        # the global stream is untouched
    eps = (a - mu) / (0.5 * logvar).exp()
    a.sum().backward()                                   # dz/dmu = 1, dz/dlogvar = sigma * eps / 2
    assert torch.allclose(mu.grad, torch.ones_like(mu))
    assert torch.allclose(logvar.grad, (0.5 * (0.5 * logvar).exp() * eps).detach())
    z = reparameterize(mu.detach().expand(100_000, 2), logvar.detach().expand(100_000, 2),
                       generator=torch.Generator().manual_seed(4))
    assert torch.allclose(z.mean(0), mu.detach()[0], atol=0.03)
    assert torch.allclose(z.var(0), torch.tensor([1.0, 4.0]), rtol=0.03)


def test_categorical_likelihood_is_normalised_and_bernoulli_is_not(float64):
    for likelihood, expect_one in (("categorical", True), ("bernoulli", False)):
        model = _vae(data_shape=(1,), latent_dim=2, hidden=8, likelihood=likelihood).double()
        params = model.decode(torch.randn(1, 2, dtype=torch.float64))
        xs = torch.arange(17)[:, None] if likelihood == "categorical" else (torch.arange(17.0) / 16)[:, None]
        total = model.log_likelihood(xs, params.expand(17, *params.shape[1:])).exp().sum()
        assert (abs(total.item() - 1) < 1e-10) == expect_one, (likelihood, total)


def test_elbo_is_reconstruction_minus_kl_with_torch_distributions(float64):
    """One z from the same seed: log Cat(x | softmax(decoder(z))) - KL(N(mu, sigma) || N(0, I))."""
    model = _vae(data_shape=(4,), latent_dim=2, hidden=8).double().eval()
    x = torch.randint(0, 17, (3, 4), generator=torch.Generator().manual_seed(0))
    out = elbo(model, x, beta=2.0, generator=torch.Generator().manual_seed(1))
    mu, logvar = model.encode(x)
    z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=torch.Generator().manual_seed(1))
    rec = torch.distributions.Categorical(logits=model.decode(z)).log_prob(x).sum(1)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    kl = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(out.reconstruction, rec) and torch.allclose(out.kl, kl)
    assert torch.allclose(out.elbo, rec - 2.0 * kl)
    assert torch.allclose(loss(model, x, generator=torch.Generator().manual_seed(1)), -(rec - kl))


def test_gaussian_and_bernoulli_vaes_train_and_give_finite_elbos():
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for likelihood in ("bernoulli", "gaussian"):
        model = _vae(latent_dim=2, hidden=16, likelihood=likelihood)
        out = elbo(model, x)
        out.elbo.mean().backward()
        assert torch.isfinite(out.elbo).all() and all(p.grad is not None for p in model.parameters())
        assert torch.allclose(out.elbo, out.reconstruction - out.kl)


def test_elbo_loss_warms_the_kl_weight_up_linearly(float64):
    model = _vae(data_shape=(4,), latent_dim=1, hidden=8).double()
    x = torch.randint(0, 17, (3, 4))
    gen_a, gen_b = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    loss_fn = elbo_loss(model, beta=2.0, warmup=4, generator=gen_a)
    for step in range(6):
        out = elbo(model, x, generator=gen_b)                # the same draws, in the same order
        weight = 2.0 * min(1.0, step / 4)
        assert torch.allclose(loss_fn(x), -(out.reconstruction - weight * out.kl))


def test_input_dropout_follows_the_generator_in_training_and_is_off_in_eval():
    """Once drawn from the global RNG although a generator was passed (issue 14)."""
    model = _vae(latent_dim=4, hidden=16, input_dropout=0.5)
    plain = _vae(latent_dim=4, hidden=16)                                  # the same weights, no dropout
    x = torch.randint(0, 17, (6, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    state = torch.get_rng_state()
    a = elbo(model, x, generator=torch.Generator().manual_seed(1)).elbo
    assert torch.equal(a, elbo(model, x, generator=torch.Generator().manual_seed(1)).elbo)
    assert torch.equal(torch.get_rng_state(), state)
    dropped, _ = model.encode(x, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(dropped, plain.encode(x)[0])                  # training mode: inputs dropped
    with torch.no_grad():
        evaluated = elbo(model.eval(), x, generator=torch.Generator().manual_seed(1)).elbo
        assert torch.equal(evaluated, elbo(plain.eval(), x, generator=torch.Generator().manual_seed(1)).elbo)


def _draws_and_means(model: VAE, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Draws and decoder means for the same codes (the same seed gives the same z)."""
    draws = sample(model, n, generator=torch.Generator().manual_seed(seed))
    return draws, sample(model, n, generator=torch.Generator().manual_seed(seed), mean=True)


def test_categorical_samples_are_draws_from_the_decoder():
    model = _vae(data_shape=(3,), latent_dim=2, hidden=16)
    draws, means = _draws_and_means(model, 20_000, seed=0)
    assert draws.shape == (20_000, 3) and draws.dtype == torch.int64 and draws.min() >= 0 and draws.max() <= 16
    z = torch.randn(20_000, 2, generator=torch.Generator().manual_seed(0))  # the codes sample() drew
    probs = model.decode(z).softmax(-1).detach()                           # (n, 3, 17)
    counts = torch.nn.functional.one_hot(draws, 17).sum(0).double()        # (3, 17)
    expected = probs.sum(0).double()
    assert ((counts - expected).abs() <= 5 * expected.sqrt() + 3).all()   # histogram of the mixture
    assert torch.allclose(means, probs @ torch.linspace(0, 1, 17), atol=1e-6)   # mean=True: E[x/16 | z]
    assert abs((draws / 16 - means).mean()) < 5 * (draws / 16 - means).std() / math.sqrt(draws.numel())


def test_bernoulli_and_gaussian_samples_are_draws_too():
    bern = _vae(data_shape=(2,), latent_dim=2, hidden=8, likelihood="bernoulli")
    draws, means = _draws_and_means(bern, 20_000, seed=1)
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    assert ((draws - means).mean(0).abs() < 5 * 0.5 / math.sqrt(20_000)).all()
    gauss = _vae(data_shape=(2,), latent_dim=2, hidden=8, likelihood="gaussian")
    draws, means = _draws_and_means(gauss, 20_000, seed=2)
    assert draws.shape == (20_000, 2)                                     # 2-D points: once (6, 1, 1, 1)
    eps = (draws - means) / gauss.log_sigma.exp().detach()
    assert (eps.mean(0).abs() < 0.03).all() and ((eps.std(0) - 1).abs() < 0.03).all()


def test_sampling_is_seeded_restores_the_mode_and_the_widget_update_is_fast():
    model = _vae(latent_dim=2, hidden=64, input_dropout=0.3)
    state = torch.get_rng_state()
    a = sample(model, 5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, sample(model, 5, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(torch.get_rng_state(), state) and model.training   # mode restored
    assert sample(model.eval(), 5, mean=True).shape == (5, 1, 8, 8) and not model.training
    x = torch.randint(0, 17, (4, 1, 8, 8))
    assert torch.equal(nll(model.train(), x, generator=torch.Generator().manual_seed(2), k=3),
                       nll(model.eval(), x, generator=torch.Generator().manual_seed(2), k=3))  # eval inside
    assert best_time(lambda: decode_latent(model, torch.tensor([[0.5, -1.0]]))) < 0.1


def test_nll_is_minus_the_importance_weighted_bound_and_takes_samples():
    model = _vae(latent_dim=2, hidden=16)
    x = sample(model, 7, generator=torch.Generator().manual_seed(0))       # nll(model, sample(model, n)) works
    bound = importance_weighted_log_likelihood(model, x, 20, generator=torch.Generator().manual_seed(1))
    assert torch.equal(nll(model, x, k=20, generator=torch.Generator().manual_seed(1)), -bound)
    assert nll(model, x).shape == (7,) and (nll(model, x) > 0).all()


def test_config_validates_itself():
    assert VAEConfig(data_shape=(2,)).in_dim == 2 and VAEConfig().in_dim == 64
    for fields, message in [(dict(likelihood="poisson"), "likelihood must be one of"),
                            (dict(latent_dim=0), "latent_dim must be a positive int"),
                            (dict(hidden=0), "hidden must be a positive int"),
                            (dict(levels=1), "levels must be >= 2"),
                            (dict(input_dropout=1.0), r"input_dropout must lie in \[0, 1\)"),
                            (dict(data_shape=(0,)), "every axis of data_shape")]:
        with pytest.raises(ValueError, match=message):
            VAEConfig(**fields)
    with pytest.raises(ValueError, match="expected a VAEConfig"):
        VAE(64)


def test_the_wrong_data_form_raises_clear_errors():
    categorical, bernoulli = _vae(latent_dim=2, hidden=16), _vae(latent_dim=2, hidden=16, likelihood="bernoulli")
    levels = torch.randint(0, 17, (3, 1, 8, 8))
    with pytest.raises(ValueError, match="divide them by 16"):
        elbo(bernoulli, levels.float())                  # grey levels as intensities: once silently accepted
    with pytest.raises(ValueError, match="float intensities"):
        elbo(bernoulli, levels)
    with pytest.raises(ValueError, match="integer grey levels 0..16"):
        categorical.encode(levels / 16)
    with pytest.raises(ValueError, match=r"grey levels 0..16, got values in \[17, 17\]"):
        categorical.encode(torch.full((3, 1, 8, 8), 17))
    with pytest.raises(ValueError, match="torch.Tensor, got ndarray"):
        loss(categorical, np.zeros((2, 1, 8, 8), dtype=np.int64))
    with pytest.raises(ValueError, match="at least one example"):
        loss(categorical, torch.zeros(0, 1, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match=r"expected x of shape \(b, 1, 8, 8\), got \(3, 64\)"):
        loss(categorical, torch.zeros(3, 64, dtype=torch.long))
    with pytest.raises(ValueError, match="is on cpu but the model is on meta"):
        loss(_vae(hidden=8).to("meta"), levels)
    x64 = torch.rand(3, 1, 8, 8, dtype=torch.float64)                      # float64 intensities: cast
    g = torch.Generator
    assert torch.equal(loss(bernoulli, x64, generator=g().manual_seed(0)),
                       loss(bernoulli, x64.float(), generator=g().manual_seed(0)))


def test_bad_arguments_raise_clear_errors():
    vae = _vae(latent_dim=2, hidden=16)
    x = torch.zeros(2, 1, 8, 8, dtype=torch.long)
    with pytest.raises(ValueError, match="same shape"):
        reparameterize(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="expected logvar of shape"):
        gaussian_kl(torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="beta must be a number >= 0"):
        elbo(vae, x, beta=-1.0)
    with pytest.raises(ValueError, match="warmup must be an int >= 0"):
        elbo_loss(vae, warmup=-1)
    with pytest.raises(ValueError, match="n must be a positive int"):
        sample(vae, 0)
    with pytest.raises(ValueError, match="expected z of shape"):
        decode_latent(vae, torch.zeros(1, 3))
    with pytest.raises(ValueError, match="generator must be a torch.Generator"):
        sample(vae, 2, generator=0)


def test_gaussian_samples_keep_the_models_dtype():
    model = VAE(VAEConfig(data_shape=(2,), latent_dim=2, hidden=8, likelihood="gaussian")).double()
    assert sample(model, 3, generator=torch.Generator().manual_seed(0)).dtype == torch.float64
