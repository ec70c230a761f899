import math

import pytest
import torch

from companion.utils import best_time
from companion.vae import (VAE, Autoencoder, corrupt, decode_latent, elbo, elbo_loss, gaussian_kl,
                           importance_weighted_log_likelihood, impute, reconstruction_error,
                           reparameterize, sample)


def _tiny_vae(seed: int = 0) -> VAE:
    """An untrained VAE with one latent dimension, so log p(x) can be integrated on a grid.

    The decoder's first layer is scaled up so that p(x | z) depends strongly on z:
    the true posterior is then far from the untrained encoder's q(z | x) and the
    gap between the bounds and log p(x) is several nats, not hundredths.
    """
    torch.manual_seed(seed)
    model = VAE(in_dim=4, latent_dim=1, hidden=16).double().eval()
    with torch.no_grad():
        model.decoder[0].weight.mul_(20.0)
    return model


@torch.no_grad()
def _log_px_by_quadrature(model: VAE, x: torch.Tensor, n: int = 20001) -> torch.Tensor:
    r"""log p(x) = log \int p(x | z) N(z; 0, 1) dz on a fine grid over [-10, 10] (1-D latent)."""
    z = torch.linspace(-10, 10, n, dtype=torch.float64)[:, None]
    dz = z[1, 0] - z[0, 0]
    params = model.decode(z)                                                # (n, ...)
    log_pz = -0.5 * z[:, 0] ** 2 - 0.5 * math.log(2 * math.pi)
    out = []
    for xi in x:
        log_px_z = model.log_likelihood(xi.expand(n, *xi.shape), params)
        out.append(torch.logsumexp(log_px_z + log_pz, 0) + dz.log())
    return torch.stack(out)


def test_gaussian_kl_equals_torch_and_monte_carlo(g, float64):
    mu, logvar = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    expected = torch.distributions.kl_divergence(q, p).sum(1)
    assert torch.allclose(gaussian_kl(mu, logvar), expected, atol=1e-12)
    z = reparameterize(mu.expand(200_000, 6, 3), logvar.expand(200_000, 6, 3), g)
    log_ratio = (q.log_prob(z) - p.log_prob(z)).sum(-1)                     # (n, 6)
    stderr = log_ratio.std(0) / math.sqrt(z.shape[0])
    assert ((log_ratio.mean(0) - gaussian_kl(mu, logvar)).abs() < 5 * stderr).all()
    assert (gaussian_kl(mu, logvar) >= 0).all() and gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)).eq(0).all()


def test_reparameterize_is_seeded_has_the_right_moments_and_passes_gradients(float64):
    mu = torch.tensor([[1.0, -2.0]], requires_grad=True)
    logvar = torch.tensor([[0.0, math.log(4.0)]], requires_grad=True)
    a = reparameterize(mu, logvar, torch.Generator().manual_seed(3))
    b = reparameterize(mu, logvar, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    eps = (a - mu) / (0.5 * logvar).exp()
    a.sum().backward()                                   # dz/dmu = 1, dz/dlogvar = sigma * eps / 2
    assert torch.allclose(mu.grad, torch.ones_like(mu))
    assert torch.allclose(logvar.grad, (0.5 * (0.5 * logvar).exp() * eps).detach())
    z = reparameterize(mu.detach().expand(100_000, 2), logvar.detach().expand(100_000, 2),
                       torch.Generator().manual_seed(4))
    assert torch.allclose(z.mean(0), mu.detach()[0], atol=0.03)
    assert torch.allclose(z.var(0), torch.tensor([1.0, 4.0]), rtol=0.03)


def test_categorical_likelihood_is_normalised_and_bernoulli_is_not(float64):
    for likelihood, expect_one in (("categorical", True), ("bernoulli", False)):
        model = VAE(1, 2, 8, likelihood=likelihood).double()
        params = model.decode(torch.randn(1, 2, dtype=torch.float64))
        if likelihood == "categorical":
            xs = torch.arange(17)[:, None]
        else:
            xs = (torch.arange(17, dtype=torch.float64) / 16)[:, None]
        total = model.log_likelihood(xs, params.expand(17, *params.shape[1:])).exp().sum()
        assert (abs(total.item() - 1) < 1e-10) == expect_one, (likelihood, total)


def test_elbo_below_log_px_and_iwae_rises_towards_it_with_k(float64):
    model = _tiny_vae()
    x = torch.randint(0, 17, (5, 4), generator=torch.Generator().manual_seed(0))
    log_px = _log_px_by_quadrature(model, x)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        elbos = elbo(model, x.repeat(4000, 1), generator=g).elbo.reshape(4000, 5)
    # n independent estimates at once: the same 5 examples repeated n times
    iwae = {k: importance_weighted_log_likelihood(model, x.repeat(n, 1), k, generator=g, chunk=k).reshape(n, 5)
            for k, n in ((1, 4000), (10, 4000), (100, 400), (1000, 8))}
    stderr = elbos.std(0) / math.sqrt(4000)
    assert ((iwae[1].mean(0) - elbos.mean(0)).abs() < 5 * stderr * math.sqrt(2)).all()   # k = 1: the ELBO
    assert (log_px - elbos.mean(0) > 1.0).all()                 # a loose bound for this q ...
    assert (elbos.mean(0) < iwae[10].mean(0)).all() and (iwae[10].mean(0) < iwae[100].mean(0)).all()
    stderr_100 = iwae[100].std(0) / math.sqrt(400)
    assert (iwae[100].mean(0) < log_px + 3 * stderr_100).all()  # ... every bound stays below log p(x)
    assert torch.allclose(iwae[1000].mean(0), log_px, atol=0.05)     # ... and tightens with k


def test_gaussian_and_bernoulli_vaes_train_and_give_finite_elbos():
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for likelihood in ("bernoulli", "gaussian"):
        model = VAE(64, 2, 16, likelihood=likelihood)
        out = elbo(model, x)
        out.elbo.mean().backward()
        assert torch.isfinite(out.elbo).all() and all(p.grad is not None for p in model.parameters())
        assert torch.allclose(out.elbo, out.reconstruction - out.kl)


def test_elbo_loss_warms_the_kl_weight_up_linearly(float64):
    model = VAE(4, 1, 8).double()
    x = torch.randint(0, 17, (3, 4))
    loss_fn = elbo_loss(model, beta=2.0, warmup=4)
    for step in range(6):
        torch.manual_seed(step)
        loss = loss_fn(x)
        torch.manual_seed(step)
        out = elbo(model, x)
        weight = 2.0 * min(1.0, step / 4)
        assert torch.allclose(loss, -(out.reconstruction - weight * out.kl))


def test_denoising_autoencoder_target_and_corruption(g):
    x = torch.rand(4, 1, 8, 8, generator=g)
    noisy = corrupt(x, 0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(noisy, corrupt(x, 0.5, generator=torch.Generator().manual_seed(0)))
    assert noisy.min() >= 0 and noisy.max() <= 1 and not torch.equal(noisy, x)
    assert torch.equal(corrupt(x, 0.0), x)
    ae = Autoencoder(64, 3, 16)
    manual = (ae(noisy) - x.flatten(1)).pow(2).sum(1)
    assert torch.allclose(reconstruction_error(ae, noisy, target=x), manual)
    assert torch.allclose(reconstruction_error(ae, x), (ae(x) - x.flatten(1)).pow(2).sum(1))


def test_impute_keeps_observed_pixels_and_matches_the_exact_conditional_mean(float64):
    model = _tiny_vae(seed=2)
    x = torch.randint(0, 17, (3, 4), generator=torch.Generator().manual_seed(5))
    observed = torch.tensor([True, True, False, False]).expand(3, 4).clone()
    filled = impute(model, x, observed, k=10_000, generator=torch.Generator().manual_seed(0), rounds=2)
    assert torch.equal(filled[observed], x[observed].double() / 16)
    # exact: E[x_m | x_o] = int p(x_o | z) p(z) E[x_m | z] dz / int p(x_o | z) p(z) dz, on a grid
    z = torch.linspace(-10, 10, 20001, dtype=torch.float64)[:, None]
    params = model.decode(z)
    means = model.mean_intensity(params)                                    # (n, 4)
    for i in range(3):
        log_w = model.log_likelihood(x[i].expand(len(z), 4), params, mask=observed[i].expand(len(z), 4))
        w = (log_w - 0.5 * z[:, 0] ** 2).softmax(0)
        assert torch.allclose(filled[i, 2:], w @ means[:, 2:], atol=3e-3)   # Monte Carlo error ~6e-4


def test_sampling_is_seeded_and_the_widget_update_is_fast():
    model = VAE(64, 2, 64).eval()
    a = sample(model, 5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, sample(model, 5, generator=torch.Generator().manual_seed(0)))
    assert a.shape == (5, 1, 8, 8) and a.min() >= 0 and a.max() <= 1
    assert best_time(lambda: decode_latent(model, torch.tensor([[0.5, -1.0]]))) < 0.1


def test_bad_input_raises_clear_errors():
    vae = VAE(64, 2, 16)
    with pytest.raises(ValueError, match="integer levels"):
        vae.encode(torch.rand(3, 1, 8, 8))
    with pytest.raises(ValueError, match="integer levels"):
        vae.encode(torch.full((3, 64), 17))
    with pytest.raises(ValueError, match="float intensities"):
        VAE(64, 2, 16, likelihood="bernoulli").encode(torch.zeros(3, 64, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape \(b, 64\)"):
        vae.encode(torch.zeros(3, 1, 7, 7, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape \(b, 64\)"):
        vae.encode(torch.zeros(0, 64, dtype=torch.long))
    with pytest.raises(ValueError, match="likelihood must be one of"):
        VAE(likelihood="poisson")
    with pytest.raises(ValueError, match="same shape"):
        reparameterize(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="expected logvar of shape"):
        gaussian_kl(torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="beta must be >= 0"):
        elbo(vae, torch.zeros(2, 64, dtype=torch.long), beta=-1.0)
    with pytest.raises(ValueError, match="model.eval"):
        importance_weighted_log_likelihood(vae.train(), torch.zeros(2, 64, dtype=torch.long), 5)
    with pytest.raises(ValueError, match="k must be a positive int"):
        importance_weighted_log_likelihood(vae.eval(), torch.zeros(2, 64, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="bool mask"):
        impute(vae, torch.zeros(2, 64, dtype=torch.long), torch.ones(2, 64))
    with pytest.raises(ValueError, match="expected z of shape"):
        decode_latent(vae, torch.zeros(1, 3))
    with pytest.raises(ValueError, match="float tensor"):
        corrupt(torch.zeros(2, 64, dtype=torch.long))
