"""Tests for companion.flows: invertibility, log-dets against autograd Jacobians, normalisation, bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from companion.flows import ActNorm, AffineCoupling, ElementwiseAffine, Flow, Logit, Permutation, StandardNormal
from companion.realnvp import RealNVP, RealNVPConfig


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
    flow = RealNVP(RealNVPConfig(dim=dim, layers=3, hidden=8, permute_seed=0)).double()
    flow(torch.randn(16, dim, generator=g))             # initialises its ActNorms
    return {
        "affine": (_randomize(ElementwiseAffine(dim).double(), g), x),
        "logit": (Logit(dim, alpha=0.05), torch.rand(6, dim, generator=g) * 0.9 + 0.05),
        "logit_margin": (Logit(dim, alpha=0.05), torch.tensor([[-0.05, 1.05, 0.0, 1.0]]).expand(6, dim)),
        "coupling": (_randomize(AffineCoupling(dim, mask, hidden=8).double(), g), x),
        "coupling_deep": (_randomize(AffineCoupling(dim, 1 - mask, hidden=8, net_layers=3).double(), g), x),
        "permutation": (Permutation(torch.randperm(dim, generator=g)), x),
        "actnorm": (_randomize(actnorm, g), x),
        "flow": (_randomize(flow, g, 0.3), x),
    }


NAMES = ["affine", "logit", "logit_margin", "coupling", "coupling_deep", "permutation", "actnorm", "flow"]


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


def test_logit_is_the_log_odds_of_the_squeezed_input(float64):
    """z = log(y / (1 - y)) with y = alpha + (1 - 2 alpha) x, against the closed form."""
    x = torch.tensor([[0.0, 0.25, 0.5, 1.0]])
    y = 0.1 + 0.8 * x
    z, _ = Logit(4, alpha=0.1)(x)
    assert torch.allclose(z, torch.log(y / (1 - y)), atol=1e-12)


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


def test_flow_log_prob_of_a_linear_flow_is_the_gaussian_density(float64):
    flow = Flow([ElementwiseAffine(2, shift=torch.tensor([1.0, -1.0]), log_scale=torch.tensor([0.5, -0.3]))],
                StandardNormal(2)).double()
    x = torch.tensor([[0.3, 0.4], [2.0, -1.0]])
    scale = torch.tensor([0.5, -0.3]).exp()
    expected = torch.distributions.Normal(torch.tensor([1.0, -1.0]), scale).log_prob(x).sum(1)
    assert torch.allclose(flow.log_prob(x), expected, atol=1e-10)


def test_logit_flow_is_the_logit_normal_density(float64):
    """x = sigmoid(z), z ~ N(0, 1): p(x) = N(logit x) / (x (1 - x)), the logit-normal law."""
    flow = Flow([Logit(1)], StandardNormal(1))
    x = torch.tensor([[0.1], [0.5], [0.97]])
    logit = torch.log(x / (1 - x))
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(logit) - torch.log(x * (1 - x))
    assert torch.allclose(flow.log_prob(x), expected[:, 0], atol=1e-12)


def test_sampling_is_the_inverse_of_a_base_sample_from_the_cpu_generator(g):
    flow = _randomize(RealNVP(RealNVPConfig(dim=2, layers=2, hidden=8, actnorm=False)), g, 0.3)
    samples = flow.sample(5, generator=torch.Generator().manual_seed(3))
    z = torch.randn(5, 2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(StandardNormal(2).sample(5, generator=torch.Generator().manual_seed(3)), z)
    assert torch.allclose(samples, flow.inverse(z)[0])
    assert torch.equal(samples, flow.sample(5, generator=torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("training", [True, False])
def test_sample_restores_the_mode(training):
    flow = RealNVP(RealNVPConfig(dim=2, layers=2, hidden=4)).train(training)
    flow.sample(3)
    assert flow.training is training and all(m.training is training for m in flow.modules())


def test_float64_input_is_cast_to_the_flows_dtype():
    flow = RealNVP(RealNVPConfig(dim=2, layers=2, hidden=4))
    x = torch.randn(3, 2, dtype=torch.float64)
    log_p = flow.log_prob(x)
    assert log_p.dtype == torch.float32
    assert torch.equal(log_p, flow.log_prob(x.float()))


def test_logit_outside_its_domain_raises_instead_of_nan():
    with pytest.raises(ValueError, match=r"Logit\(alpha=0\) is defined for x in \(0, 1\)"):
        Logit(2)(torch.tensor([[0.0, 0.5]]))            # log 0: was -inf and a NaN log-det
    with pytest.raises(ValueError, match=r"defined for x in \(0, 1\).*got values in \[0.5, 1.2\]"):
        Logit(2)(torch.tensor([[0.5, 1.2]]))            # was NaN
    with pytest.raises(ValueError, match=r"Logit\(alpha=0.05\) is defined for x in \(-0.05556, 1.056\)"):
        Logit(1, alpha=0.05)(torch.tensor([[-0.1]]))
    with pytest.raises(ValueError, match="defined for x in"):
        Logit(1)(torch.tensor([[float("nan")]]))
    assert torch.isfinite(Logit(2, alpha=0.05)(torch.tensor([[0.0, 1.0]]))[1]).all()


def test_bad_inputs_raise_clear_errors():
    coupling = AffineCoupling(4, torch.tensor([1.0, 0.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match=r"expected x of shape \(b, d\) with d=4"):
        coupling(torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"expected z of shape"):
        coupling.inverse(torch.zeros(3, 4, 1))
    with pytest.raises(ValueError, match="at least one example"):
        coupling(torch.zeros(0, 4))
    with pytest.raises(ValueError, match=r"torch.Tensor, got ndarray \(convert it with torch.as_tensor"):
        coupling(np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="floating-point tensor, got torch.int64.*dequantize"):
        Permutation(torch.tensor([1, 0]))(torch.zeros(3, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="mask"):
        AffineCoupling(4, torch.tensor([1.0, 0.0, 1.0]))          # wrong length
    with pytest.raises(ValueError, match="mask"):
        AffineCoupling(2, torch.tensor([1.0, 1.0]))               # nothing would change
    with pytest.raises(ValueError, match="mask"):
        AffineCoupling(2, torch.tensor([0.5, 0.0]))               # not binary
    with pytest.raises(ValueError, match="hidden must be a positive int"):
        AffineCoupling(2, torch.tensor([1.0, 0.0]), hidden=0)
    with pytest.raises(ValueError, match="clamp must be a finite number > 0"):
        AffineCoupling(2, torch.tensor([1.0, 0.0]), clamp=0.0)
    with pytest.raises(ValueError, match="permutation"):
        Permutation(torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="alpha"):
        Logit(2, alpha=0.5)
    with pytest.raises(ValueError, match="dim must be a positive int"):
        ElementwiseAffine(0)
    with pytest.raises(ValueError, match="at least one transform"):
        Flow([], StandardNormal(2))
    with pytest.raises(ValueError, match="n must be a positive int"):
        Flow([Logit(2)], StandardNormal(2)).sample(0)
    with pytest.raises(ValueError, match="at least 2"):
        ActNorm(2)(torch.zeros(1, 2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_flow_on_cuda_samples_what_it_samples_on_the_cpu():
    flow = RealNVP(RealNVPConfig(dim=2, layers=2, hidden=8))
    cpu = flow.sample(4, generator=torch.Generator().manual_seed(0))
    gpu = flow.cuda().sample(4, generator=torch.Generator().manual_seed(0))
    assert gpu.device.type == "cuda" and torch.allclose(gpu.cpu(), cpu, atol=1e-5)
    with pytest.raises(ValueError, match="is on cpu but the model is on cuda"):
        flow.log_prob(torch.zeros(3, 2))
    assert math.isfinite(flow.log_prob(torch.zeros(3, 2, device="cuda")).sum().item())


def test_a_fixed_map_keeps_float64():
    """A map without floating parameters (the logit, a permutation) computes in the dtype it is given:
    float64 round trips stay exact (the flows chapter checks one to 1e-9)."""
    logit = Logit(2, alpha=0.05)
    x = torch.tensor([[0.3, 0.7]], dtype=torch.float64)
    z, _ = logit(x)
    back, _ = logit.inverse(z)
    assert z.dtype == torch.float64 and (back - x).abs().max() < 1e-12
    assert Permutation(torch.tensor([1, 0]))(x)[0].dtype == torch.float64
