"""Tests of companion.compare: the flow's dequantisation bound it adds, and the common interface.

(The diffusion bound and its decoder moved to companion.diffusion_bound, tested in test_diffusion_bound.py.)
"""
from __future__ import annotations

import math

import pytest
import torch

from companion import compare, flows


def test_dequantized_bound_is_above_the_exact_nll_and_tightens_with_k(float64):
    """A Gaussian 'flow' in 2-D: the probability of a unit bin is a product of normal CDF differences."""
    flow = flows.Flow([flows.ElementwiseAffine(2, shift=torch.tensor([0.5, 0.5]))], flows.StandardNormal(2))
    x = torch.tensor([[0, 1]])
    normal = torch.distributions.Normal(0.0, 1.0)
    exact = -sum(math.log(normal.cdf(torch.tensor(v + 0.5)) - normal.cdf(torch.tensor(v - 0.5))) for v in (0.0, 1.0))
    g = torch.Generator().manual_seed(0)
    one = compare.dequantized_nll(flow, x.expand(4000, 2), k=1, generator=g).mean().item()
    many = compare.dequantized_nll(flow, x, k=4000, generator=g).item()
    assert one > exact + 0.01                  # Jensen's gap with a single draw
    assert abs(many - exact) < 2e-2


@pytest.mark.parametrize("family", compare.FAMILIES)
def test_every_family_builds_samples_images_and_scores_the_test_split(family):
    model = compare.build(family, seed=0)
    if family == "flow":                       # ActNorm initialises on its first training batch
        model.train()
        model.log_prob(torch.rand(8, 64) * 17)
        model.eval()
    g = torch.Generator().manual_seed(0)
    images = compare.generate(family, model, 1, generator=g, ddim_steps=4)
    assert images.shape == (1, 1, 8, 8) and images.min() >= 0 and images.max() <= 1
    levels = torch.randint(0, 17, (3, 1, 8, 8), generator=g)
    nll = compare.negative_log_likelihood(family, model, levels, generator=g, k=2, timesteps=4)
    if family == "gan":
        assert nll is None
    else:
        assert nll.shape == (3,) and torch.isfinite(nll).all() and (nll > 0).all()


def test_checkpoint_round_trip(tmp_path):
    model = compare.build("vae", seed=3)
    compare.save_checkpoint("vae", 3, model, {"note": "test"}, directory=tmp_path)
    loaded, meta = compare.load_checkpoint("vae", 3, directory=tmp_path)
    assert meta == {"note": "test"}
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a.half().float(), b), k


def test_bad_input_raises(tmp_path):
    with pytest.raises(ValueError):
        compare.build("pixelcnn")
    with pytest.raises(ValueError):
        compare.load_checkpoint("vae", 7, directory=tmp_path)
    with pytest.raises(ValueError):
        compare.generate("vae", compare.build("vae"), 0)
    with pytest.raises(ValueError):
        compare.dequantized_nll(compare.build("flow"), torch.zeros(2, 1, 8, 8, dtype=torch.long), k=0)
