"""The importance-weighted bound and imputation against log p(x) and E[x_m | x_o] integrated on a grid."""
import functools
import math

import numpy as np
import pytest
import scipy.optimize
import torch

from companion.utils import fresh_init
from companion.vae import VAE, VAEConfig, elbo
from companion.vae_estimators import importance_weighted_log_likelihood, impute, optimise_posterior, posterior_elbo


def _tiny_vae(seed: int = 0) -> VAE:
    """An untrained VAE with one latent dimension, so log p(x) can be integrated on a grid.

    The decoder's first layer is scaled up so that p(x | z) depends strongly on z:
    the true posterior is then far from the untrained encoder's q(z | x) and the
    gap between the bounds and log p(x) is several nats, not hundredths.
    """
    model = fresh_init(lambda: VAE(VAEConfig(data_shape=(4,), latent_dim=1, hidden=16)), seed).double().eval()
    with torch.no_grad():
        model.decoder[0].weight.mul_(20.0)
    return model


def _grid(n: int = 20001) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes z on a fine grid over [-10, 10] and log N(z; 0, 1) + log dz, the prior's weight per point."""
    z = torch.linspace(-10, 10, n, dtype=torch.float64)[:, None]
    return z, -0.5 * z[:, 0] ** 2 - 0.5 * math.log(2 * math.pi) + (z[1, 0] - z[0, 0]).log()


@torch.no_grad()
def _log_px_by_quadrature(model: VAE, x: torch.Tensor) -> torch.Tensor:
    r"""log p(x) = log \int p(x | z) N(z; 0, 1) dz, with log p(x | z) summed by hand from the logits."""
    z, log_prior = _grid()
    log_probs = model.decode(z).log_softmax(-1)                               # (n, 4, 17)
    out = [torch.logsumexp(log_probs[:, torch.arange(4), xi].sum(1) + log_prior, 0) for xi in x]
    return torch.stack(out)


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


def test_impute_keeps_observed_pixels_and_matches_the_exact_conditional_mean(float64):
    model = _tiny_vae(seed=2)
    x = torch.randint(0, 17, (3, 4), generator=torch.Generator().manual_seed(5))
    observed = torch.tensor([True, True, False, False]).expand(3, 4).clone()
    filled = impute(model, x, observed, k=10_000, generator=torch.Generator().manual_seed(0), rounds=2)
    assert torch.equal(filled[observed], x[observed].double() / 16)
    # exact: E[x_m | x_o] = int p(x_o | z) p(z) E[x_m | z] dz / int p(x_o | z) p(z) dz, on a grid
    z, log_prior = _grid()
    with torch.no_grad():
        probs = model.decode(z).softmax(-1)                                   # (n, 4, 17)
    means = probs @ torch.linspace(0, 1, 17, dtype=torch.float64)            # (n, 4): E[x_j / 16 | z]
    for i in range(3):
        log_w = probs[:, :2].gather(-1, x[i, :2].expand(len(z), 2)[..., None]).log().sum((1, 2))
        w = (log_w + log_prior).softmax(0)
        assert torch.allclose(filled[i, 2:], w @ means[:, 2:], atol=3e-3)   # Monte Carlo error ~6e-4


def test_estimators_run_in_eval_mode_and_restore_the_mode():
    """They once raised 'call model.eval() first'; now they follow the one mode policy (utils.mode)."""
    model = fresh_init(lambda: VAE(VAEConfig(latent_dim=2, hidden=16, input_dropout=0.5)), seed=0)
    x = torch.randint(0, 17, (4, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    observed = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1)) < 0.5
    seed = torch.Generator().manual_seed
    for estimate in (lambda _: importance_weighted_log_likelihood(model, x, 5, generator=seed(2)),
                     lambda _: impute(model, x, observed, k=5, generator=seed(2))):
        in_training = estimate(model.train())
        assert model.training                                                  # restored
        assert torch.equal(in_training, estimate(model.eval())) and not model.training   # dropout off inside


def test_bad_arguments_raise_clear_errors():
    vae = fresh_init(lambda: VAE(VAEConfig(latent_dim=2, hidden=16)), seed=0)
    x = torch.zeros(2, 1, 8, 8, dtype=torch.long)
    with pytest.raises(ValueError, match="k must be a positive int"):
        importance_weighted_log_likelihood(vae, x, 0)
    with pytest.raises(ValueError, match="chunk must be a positive int"):
        importance_weighted_log_likelihood(vae, x, 5, chunk=0)
    with pytest.raises(ValueError, match="bool mask"):
        impute(vae, x, torch.ones(2, 1, 8, 8))
    with pytest.raises(ValueError, match="bool mask shaped like x"):
        impute(vae, x, torch.ones(2, 64, dtype=torch.bool))
    with pytest.raises(ValueError, match="rounds must be a positive int"):
        impute(vae, x, torch.ones(2, 1, 8, 8, dtype=torch.bool), rounds=0)
    with pytest.raises(ValueError, match="integer grey levels"):
        importance_weighted_log_likelihood(vae, x.float() / 16, 5)


@functools.lru_cache
def _hermite(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.hermite_e.hermegauss(nodes)


def _gaussian_elbo(model: VAE, x: torch.Tensor, mu: float, logvar: float, nodes: int = 80) -> float:
    """The ELBO of x under q = N(mu, exp(logvar)) without sampling: Gauss-Hermite quadrature for
    E_q[log p(x | z)], closed forms for E_q[log p(z)] - E_q[log q(z)] = -KL(q || N(0, 1))."""
    t, w = _hermite(nodes)                                                  # weight exp(-t^2 / 2)
    z = torch.as_tensor(mu + math.exp(0.5 * logvar) * t)[:, None]
    with torch.no_grad():
        log_lik = model.decode(z).log_softmax(-1)[:, torch.arange(4), x].sum(1).numpy()
    kl = 0.5 * (mu ** 2 + math.exp(logvar) - 1 - logvar)
    return float(w @ log_lik / math.sqrt(2 * math.pi) - kl)


def test_optimised_posterior_reaches_the_best_gaussian_elbo_found_by_quadrature(float64):
    """Per-example q: its ELBO beats the encoder's, stays below log p(x), and matches the best
    Gaussian found by Nelder-Mead on a quadrature ELBO (no sampling); IWAE with it reaches log p(x)."""
    model = _tiny_vae(seed=3)
    x = torch.randint(0, 17, (2, 4), generator=torch.Generator().manual_seed(7))
    before = {name: p.detach().clone() for name, p in model.state_dict().items()}
    mu, logvar = optimise_posterior(model, x, steps=300, lr=0.05, samples=16,
                                    generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(before[name], p) for name, p in model.state_dict().items())   # weights untouched
    g = torch.Generator().manual_seed(1)
    fitted = posterior_elbo(model, x, 20_000, generator=g, posterior=(mu, logvar))
    amortised = posterior_elbo(model, x, 20_000, generator=g)
    log_px = _log_px_by_quadrature(model, x)
    for i in range(2):
        starts = [(m, -3.0) for m in (-2.0, 0.0, 2.0)]
        best = max(-scipy.optimize.minimize(lambda p: -_gaussian_elbo(model, x[i], *p), s,
                                            method="Nelder-Mead").fun for s in starts)
        assert abs(fitted[i].item() - best) < 0.05, (fitted[i], best)
        assert abs(_gaussian_elbo(model, x[i], mu[i, 0].item(), logvar[i, 0].item()) - best) < 0.05
    assert (fitted > amortised + 0.5).all()                  # the untrained encoder is far from the optimum
    assert (fitted < log_px).all()
    iwae = importance_weighted_log_likelihood(model, x, 1000, generator=g, posterior=(mu, logvar))
    assert torch.allclose(iwae, log_px, atol=0.05)


def test_posterior_argument_defaults_to_the_encoder():
    vae = fresh_init(lambda: VAE(VAEConfig(latent_dim=2, hidden=16)), seed=0).eval()
    x = torch.randint(0, 17, (3, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        encoded = vae.encode(x)
    for estimate in (importance_weighted_log_likelihood, posterior_elbo):
        same = [estimate(vae, x, 7, generator=torch.Generator().manual_seed(1), posterior=p) for p in (None, encoded)]
        assert torch.equal(*same)


def test_posterior_elbo_averages_the_elbo(float64):
    model = _tiny_vae(seed=4)
    x = torch.randint(0, 17, (3, 4), generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        single = elbo(model, x.repeat(20_000, 1), generator=g).elbo.reshape(20_000, 3)
    estimate = posterior_elbo(model, x, 20_000, generator=g)
    assert (estimate - single.mean(0)).abs().max() < 5 * single.std(0).max() / math.sqrt(10_000)


def test_bad_posteriors_raise_clear_errors():
    vae = fresh_init(lambda: VAE(VAEConfig(latent_dim=2, hidden=16)), seed=0)
    x = torch.zeros(2, 1, 8, 8, dtype=torch.long)
    with pytest.raises(ValueError, match="tuple"):
        importance_weighted_log_likelihood(vae, x, 5, posterior=torch.zeros(2, 2))
    with pytest.raises(ValueError, match="mu"):
        posterior_elbo(vae, x, 5, posterior=(torch.zeros(3, 2), torch.zeros(3, 2)))
    with pytest.raises(ValueError, match="steps must be a positive int"):
        optimise_posterior(vae, x, steps=0)
