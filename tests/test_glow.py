"""Tests for companion.glow: the 1x1 convolution against torch's conv2d and the slogdet of its full Jacobian."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from companion.glow import InvertibleConv1x1
from companion.realnvp import RealNVP, RealNVPConfig


def _perturbed(conv: InvertibleConv1x1, g: torch.Generator) -> InvertibleConv1x1:
    """Move every parameter off its rotation start, so W is a general invertible matrix (|det W| != 1)."""
    with torch.no_grad():
        for p in conv.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return conv


@pytest.mark.parametrize("lu", [True, False])
def test_log_det_is_h_w_log_det_w_and_the_slogdet_of_the_full_jacobian(lu, g, float64):
    c, h, w = 3, 2, 2
    conv = _perturbed(InvertibleConv1x1(c, h, w, lu=lu, generator=g), g)
    x = torch.randn(4, c * h * w, generator=g)
    _, log_det = conv(x)
    weight, _ = conv._weight_and_log_det()
    assert abs(torch.linalg.slogdet(weight).logabsdet.item()) > 0.05          # a non-trivial volume change
    expected_w = h * w * torch.linalg.slogdet(weight).logabsdet
    for i in range(x.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda v: conv(v[None])[0][0], x[i])   # (c h w, c h w)
        assert torch.allclose(log_det[i], torch.linalg.slogdet(jac).logabsdet, atol=1e-10)
        assert torch.allclose(log_det[i], expected_w, atol=1e-10)


def test_it_is_a_1x1_convolution(g, float64):
    conv = _perturbed(InvertibleConv1x1(3, 2, 4, generator=g), g)
    x = torch.randn(5, 3 * 2 * 4, generator=g)
    weight, _ = conv._weight_and_log_det()
    expected = F.conv2d(x.reshape(5, 3, 2, 4), weight[:, :, None, None]).flatten(1)
    assert torch.allclose(conv(x)[0], expected, atol=1e-12)


@pytest.mark.parametrize("lu", [True, False])
def test_inverse_undoes_forward_and_log_dets_cancel(lu, g, float64):
    conv = _perturbed(InvertibleConv1x1(4, 3, 1, lu=lu, generator=g), g)
    x = torch.randn(6, 12, generator=g)
    z, ld = conv(x)
    back, ld_inv = conv.inverse(z)
    assert torch.allclose(back, x, atol=1e-10)
    assert torch.allclose(ld + ld_inv, torch.zeros(6), atol=1e-10)


def test_it_starts_as_a_rotation_from_the_generator():
    a = InvertibleConv1x1(5, generator=torch.Generator().manual_seed(0))
    b = InvertibleConv1x1(5, generator=torch.Generator().manual_seed(0))
    wa, log_det = a._weight_and_log_det()
    assert torch.equal(wa, b._weight_and_log_det()[0])
    assert torch.allclose(wa @ wa.T, torch.eye(5), atol=1e-5) and abs(log_det.item()) < 1e-5


def test_realnvp_with_conv1x1_mixes_with_learned_matrices(g, float64):
    flow = RealNVP(RealNVPConfig(dim=4, layers=3, hidden=8, permute_seed=0, conv1x1=True))
    assert sum(isinstance(m, InvertibleConv1x1) for m in flow.transforms) == 2
    x = torch.randn(5, 4, generator=g)
    flow(x)                                                         # ActNorm initialisation
    _, log_det = flow(x)
    for i in range(2):
        jac = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], x[i])
        assert torch.allclose(log_det[i], torch.linalg.slogdet(jac).logabsdet, atol=1e-8)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="channels must be a positive int"):
        InvertibleConv1x1(0)
    with pytest.raises(ValueError, match="height must be a positive int"):
        InvertibleConv1x1(2, 0)
    with pytest.raises(ValueError, match="lu must be a bool"):
        InvertibleConv1x1(2, lu=1)
    with pytest.raises(ValueError, match=r"expected x of shape \(b, d\) with d=8"):
        InvertibleConv1x1(2, 2, 2)(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="floating-point"):
        InvertibleConv1x1(2)(torch.zeros(3, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="permute_seed"):
        RealNVPConfig(dim=4, conv1x1=True)
    with pytest.raises(ValueError, match="conv1x1 must be a bool"):
        RealNVPConfig(dim=4, permute_seed=0, conv1x1=1)
