"""Tests for companion.flows: invertibility, log-dets against autograd Jacobians, normalisation."""
from __future__ import annotations


import pytest
import torch
from torch import nn

from companion.data import two_moons
from companion.flows import (ActNorm, AffineCoupling, ElementwiseAffine, Flow, Logit, Permutation,
                             RealNVPConfig, Reverse, StandardNormal, dequantize, realnvp,
                             two_moons_log_prob)


def _randomize(module: nn.Module, g: torch.Generator, scale: float = 0.5) -> nn.Module:
    """Give every parameter random values, so no layer is the identity it starts as."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def _bijections(g: torch.Generator, dim: int = 4) -> dict[str, tuple[nn.Module, torch.Tensor]]:
    """Each bijection with a batch of inputs from its domain, float64, parameters randomised."""
    x = torch.randn(6, dim, generator=g)
    mask = (torch.arange(dim) % 2).double()
    actnorm = ActNorm(dim).double()
    actnorm(torch.randn(16, dim, generator=g))          # data-dependent initialisation
    flow = realnvp(RealNVPConfig(dim=dim, n_layers=3, hidden=8, permute_seed=0)).double()
    flow(torch.randn(16, dim, generator=g))             # initialises its ActNorms
    return {
        "affine": (_randomize(ElementwiseAffine(dim).double(), g), x),
        "logit": (Logit(dim, alpha=0.05), torch.rand(6, dim, generator=g) * 0.9 + 0.05),
        "coupling": (_randomize(AffineCoupling(dim, mask, hidden=8).double(), g), x),
        "coupling_deep": (_randomize(AffineCoupling(dim, 1 - mask, hidden=8, depth=3).double(), g), x),
        "permutation": (Permutation(torch.randperm(dim, generator=g)), x),
        "reverse": (Reverse(dim), x),
        "actnorm": (_randomize(actnorm, g), x),
        "flow": (_randomize(flow, g, 0.3), x),
    }


NAMES = ["affine", "logit", "coupling", "coupling_deep", "permutation", "reverse", "actnorm", "flow"]


@pytest.mark.parametrize("name", NAMES)
def test_inverse_undoes_forward(name, g, float64):
    layer, x = _bijections(g)[name]
    z, _ = layer(x)
    x_back, _ = layer.inverse(z)
    assert torch.allclose(x_back, x, atol=1e-5, rtol=0)
    assert torch.allclose(layer(x_back)[0], z, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_log_det_is_log_abs_det_of_autograd_jacobian(name, g, float64):
    layer, x = _bijections(g)[name]
    _, log_det = layer(x)
    assert log_det.shape == (x.shape[0],)
    for i in range(x.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda v: layer(v[None])[0][0], x[i])
        expected = torch.linalg.slogdet(jac).logabsdet
        assert torch.allclose(log_det[i], expected, atol=1e-8), (name, i, log_det[i], expected)


@pytest.mark.parametrize("name", NAMES)
def test_forward_and_inverse_log_dets_cancel(name, g, float64):
    layer, x = _bijections(g)[name]
    z, ld_forward = layer(x)
    _, ld_inverse = layer.inverse(z)
    assert torch.allclose(ld_forward + ld_inverse, torch.zeros_like(ld_forward), atol=1e-8)


def test_coupling_leaves_the_masked_half_alone(g):
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0])
    layer = _randomize(AffineCoupling(4, mask, hidden=8), g)
    x = torch.randn(10, 4, generator=g)
    z, _ = layer(x)
    assert torch.equal(z[:, mask == 1], x[:, mask == 1])
    assert not torch.allclose(z[:, mask == 0], x[:, mask == 0])


def test_coupling_scale_is_bounded_by_the_clamp(g):
    layer = _randomize(AffineCoupling(2, torch.tensor([1.0, 0.0]), hidden=8, clamp=1.5), g, scale=20.0)
    _, log_det = layer(10 * torch.randn(200, 2, generator=g))
    assert log_det.abs().max() <= 1.5


def test_actnorm_initialises_to_zero_mean_unit_variance(g):
    x = 3 + 2 * torch.randn(500, 3, generator=g)
    z, _ = ActNorm(3)(x)
    assert torch.allclose(z.mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(z.std(0), torch.ones(3), atol=1e-5)


def test_flow_density_integrates_to_one_on_a_grid(g, float64):
    flow = _randomize(realnvp(RealNVPConfig(dim=2, n_layers=4, hidden=16, actnorm=False)).double(), g, 0.3)
    xs = torch.linspace(-12, 12, 481)
    xx, yy = torch.meshgrid(xs, xs, indexing="ij")
    grid = torch.stack([xx.flatten(), yy.flatten()], dim=1)
    with torch.no_grad():
        mass = flow.log_prob(grid).exp().sum() * (xs[1] - xs[0]) ** 2
    assert abs(mass.item() - 1) < 2e-3, mass


def test_flow_log_prob_of_a_linear_flow_is_the_gaussian_density(float64):
    flow = Flow([ElementwiseAffine(2, shift=torch.tensor([1.0, -1.0]), log_scale=torch.tensor([0.5, -0.3]))],
                StandardNormal(2)).double()
    x = torch.tensor([[0.3, 0.4], [2.0, -1.0]])
    scale = torch.tensor([0.5, -0.3]).exp()
    expected = torch.distributions.Normal(torch.tensor([1.0, -1.0]), scale).log_prob(x).sum(1)
    assert torch.allclose(flow.log_prob(x), expected, atol=1e-10)


def test_sampling_is_the_inverse_of_the_base_sample(g):
    flow = _randomize(realnvp(RealNVPConfig(dim=2, n_layers=2, hidden=8, actnorm=False)), g, 0.3)
    samples = flow.sample(5, generator=torch.Generator().manual_seed(3))
    z = StandardNormal(2).sample(5, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(samples, flow.inverse(z)[0])
    assert torch.equal(samples, flow.sample(5, generator=torch.Generator().manual_seed(3)))


def test_two_moons_log_prob_integrates_to_one_and_matches_the_data(float64):
    xs = torch.linspace(-2.0, 3.0, 201)
    ys = torch.linspace(-1.5, 2.0, 141)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([xx.flatten(), yy.flatten()], dim=1)
    mass = two_moons_log_prob(grid, n_theta=128).exp().sum() * (xs[1] - xs[0]) * (ys[1] - ys[0])
    assert abs(mass.item() - 1) < 1e-3, mass
    # the data's mean log density under its own law beats a shifted copy of the law
    x = two_moons(4000, noise=0.1, seed=0).double()
    assert two_moons_log_prob(x).mean() > two_moons_log_prob(x + 0.1).mean() + 0.2


def test_dequantize_stays_in_the_unit_bin(g):
    levels = torch.randint(0, 17, (2000, 64), generator=g)
    y = dequantize(levels, generator=g)
    assert torch.all(y >= levels) and torch.all(y < levels + 1)
    assert abs((y - levels).mean().item() - 0.5) < 0.01


def test_bad_inputs_raise_clear_errors():
    coupling = AffineCoupling(4, torch.tensor([1.0, 0.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match=r"expected x of shape \(b, d\) with d=4"):
        coupling(torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"expected z of shape"):
        coupling.inverse(torch.zeros(3, 4, 1))
    with pytest.raises(ValueError, match="mask"):
        AffineCoupling(4, torch.tensor([1.0, 0.0, 1.0]))          # wrong length
    with pytest.raises(ValueError, match="mask"):
        AffineCoupling(2, torch.tensor([1.0, 1.0]))               # nothing would change
    with pytest.raises(ValueError, match="mask"):
        AffineCoupling(2, torch.tensor([0.5, 0.0]))               # not binary
    with pytest.raises(ValueError, match="floating-point"):
        Reverse(2)(torch.zeros(3, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="permutation"):
        Permutation(torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="alpha"):
        Logit(2, alpha=0.5)
    with pytest.raises(ValueError, match="at least one transform"):
        Flow([], StandardNormal(2))
    with pytest.raises(ValueError, match="positive int"):
        realnvp(RealNVPConfig(dim=2, n_layers=2, hidden=4)).sample(0)
    with pytest.raises(ValueError, match="dim >= 2"):
        realnvp(RealNVPConfig(dim=1))
    with pytest.raises(ValueError, match="integer levels"):
        dequantize(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"expected x of shape \(b, 2\)"):
        two_moons_log_prob(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="at least 2"):
        ActNorm(2)(torch.zeros(1, 2))
