"""Tests for companion.realnvp: the config, the model of levels (shipped weights), dequantisation, the verbs."""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from companion import realnvp
from companion.data import two_moons
from companion.flows import ActNorm, AffineCoupling, ElementwiseAffine, Flow, Logit, Permutation, StandardNormal
from companion.realnvp import RealNVP, RealNVPConfig, dequantize, dequantized_nll, loss, nll, sample
from companion.utils import fresh_init

CHECKPOINTS = Path(realnvp.__file__).parent / "checkpoints"
DIGITS = RealNVPConfig(dim=64, layers=8, hidden=48, levels=17)     # the comparison's flow


def _randomize(flow: Flow, g: torch.Generator, scale: float = 0.3) -> Flow:
    with torch.no_grad():
        for p in flow.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return flow


def _levels(g: torch.Generator, b: int = 5, side: int = 8) -> torch.Tensor:
    return torch.randint(0, 17, (b, 1, side, side), generator=g)


def test_the_model_of_levels_has_the_layout_of_the_shipped_weights():
    """Scale by 1/17, logit(0.05), then ActNorm + coupling per layer: the flow_seed*.pt keys, loaded strictly."""
    flow = RealNVP(DIGITS)
    kinds = [type(t) for t in flow.transforms]
    assert kinds == [ElementwiseAffine, Logit] + [ActNorm, AffineCoupling] * 8
    assert torch.allclose(flow.transforms[0].log_scale, torch.full((64,), math.log(17)))
    assert flow.transforms[1].alpha == 0.05 and not list(flow.transforms[0].parameters())
    for seed in (0, 1, 2):
        state = torch.load(CHECKPOINTS / f"flow_seed{seed}.pt", weights_only=True)
        assert list(state) == list(flow.state_dict())
        flow.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})


def test_fresh_init_from_a_seed_is_reproducible_and_leaves_the_global_rng_alone():
    before = torch.random.get_rng_state()
    a = fresh_init(lambda: RealNVP(DIGITS), 3)
    b = fresh_init(lambda: RealNVP(DIGITS), 3)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_permute_seed_adds_the_same_random_permutations_between_layers():
    config = RealNVPConfig(dim=6, layers=3, hidden=4, actnorm=False, permute_seed=7)
    perms = [t.perm for t in RealNVP(config).transforms if isinstance(t, Permutation)]
    g = torch.Generator().manual_seed(7)
    assert len(perms) == 2 and all(torch.equal(p, torch.randperm(6, generator=g)) for p in perms)


def test_flow_density_integrates_to_one_on_a_grid(g, float64):
    flow = _randomize(RealNVP(RealNVPConfig(dim=2, layers=4, hidden=16, actnorm=False)).double(), g)
    xs = torch.linspace(-12, 12, 481)
    xx, yy = torch.meshgrid(xs, xs, indexing="ij")
    grid = torch.stack([xx.flatten(), yy.flatten()], dim=1)
    mass = nll(flow, grid).neg().exp().sum() * (xs[1] - xs[0]) ** 2
    assert abs(mass.item() - 1) < 2e-3, mass


@pytest.mark.parametrize("alpha", [0.0, 0.05])
def test_bin_probabilities_of_a_model_of_levels_sum_to_its_mass_in_the_cube(alpha, g, float64):
    """exp(-nll) estimates P(x) without bias; over all 3^4 images of 2x2 pixels with 3 levels the
    estimates sum to 1 when the logit keeps every mass in [0, 3)^4 (alpha = 0), to less otherwise."""
    flow = _randomize(RealNVP(RealNVPConfig(dim=4, layers=2, hidden=8, levels=3, alpha=alpha)).double(), g)
    images = torch.tensor(list(itertools.product(range(3), repeat=4))).reshape(81, 1, 2, 2)
    total = nll(flow, images, k=500, generator=g).neg().exp().sum().item()
    # the mass outside the cube, from samples: their floor is out of range before the clamp
    y = flow.sample(20000, generator=g)
    inside = ((y >= 0) & (y < 3)).all(1).double().mean().item()
    assert abs(total - inside) < 0.02, (total, inside)
    assert (inside == 1.0) == (alpha == 0.0)


def test_the_dequantized_bound_is_above_the_exact_nll_and_tightens_with_k(float64):
    """A Gaussian 'flow' in 2-D: the probability of a unit bin is a product of normal CDF differences."""
    flow = Flow([ElementwiseAffine(2, shift=torch.tensor([0.5, 0.5]))], StandardNormal(2))
    x = torch.tensor([[0, 1]])
    normal = torch.distributions.Normal(0.0, 1.0)
    exact = -sum(math.log(normal.cdf(torch.tensor(v + 0.5)) - normal.cdf(torch.tensor(v - 0.5))) for v in (0.0, 1.0))
    g = torch.Generator().manual_seed(0)
    one = dequantized_nll(flow, x.expand(4000, 2), k=1, generator=g).mean().item()
    many = dequantized_nll(flow, x, k=4000, generator=g).item()
    assert one > exact + 0.01                  # Jensen's gap with a single draw
    assert abs(many - exact) < 2e-2


def test_loss_of_levels_is_the_one_draw_bound_and_follows_the_generator(g):
    flow = _randomize(RealNVP(RealNVPConfig(dim=16, layers=2, hidden=8, levels=17)), g)
    x = _levels(g, b=4, side=4)
    first = loss(flow, x, generator=torch.Generator().manual_seed(1))
    same = dequantized_nll(flow, x, k=1, generator=torch.Generator().manual_seed(1))
    assert first.shape == (4,) and torch.allclose(first, same)
    y = x.flatten(1) + torch.rand(4, 16, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(first, -flow.log_prob(y))
    assert not torch.equal(first, loss(flow, x, generator=torch.Generator().manual_seed(2)))


def test_loss_and_nll_of_points_are_the_exact_negative_log_density(g):
    flow = _randomize(RealNVP(RealNVPConfig(dim=2, layers=2, hidden=8)), g)
    x = torch.randn(6, 2, generator=g)
    assert torch.equal(loss(flow, x), -flow.log_prob(x)) and torch.equal(nll(flow, x), -flow.log_prob(x))
    assert loss(flow, x).requires_grad and not nll(flow, x).requires_grad


def test_sample_is_in_the_form_of_the_data_and_the_floor_of_the_flows_sample(g):
    flow = _randomize(RealNVP(RealNVPConfig(dim=64, layers=2, hidden=8, levels=17)), g)
    x = sample(flow, 7, generator=torch.Generator().manual_seed(4))
    y = flow.sample(7, generator=torch.Generator().manual_seed(4))
    assert x.shape == (7, 1, 8, 8) and x.dtype == torch.int64
    assert torch.equal(x.flatten(1), y.floor().clamp(0, 16).long())
    assert torch.equal(x, sample(flow, 7, generator=torch.Generator().manual_seed(4)))
    assert nll(flow, x, k=2).shape == (7,)                                  # nll(model, sample(model, n))
    points = sample(RealNVP(RealNVPConfig(dim=3, layers=2, hidden=4)), 5, generator=g)
    assert points.shape == (5, 3) and points.is_floating_point()


@pytest.mark.parametrize("training", [True, False])
def test_the_estimators_and_the_sampler_restore_the_mode(training, g):
    flow = RealNVP(RealNVPConfig(dim=16, layers=2, hidden=4, levels=17)).train(training)
    x = _levels(g, b=3, side=4)
    nll(flow, x, k=2), sample(flow, 2), dequantized_nll(flow, x, k=2)
    assert all(m.training is training for m in flow.modules())
    assert not any(t.initialized for t in flow.transforms if isinstance(t, ActNorm))   # no init on eval data


def test_dequantize_stays_in_the_unit_bin(g):
    levels = torch.randint(0, 17, (2000, 64), generator=g)
    y = dequantize(levels, generator=g)
    assert torch.all(y >= levels) and torch.all(y < levels + 1)
    assert abs((y - levels).mean().item() - 0.5) < 0.01


def test_two_moons_log_prob_integrates_to_one_and_matches_the_data(float64):
    xs = torch.linspace(-2.0, 3.0, 201)
    ys = torch.linspace(-1.5, 2.0, 141)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([xx.flatten(), yy.flatten()], dim=1)
    mass = realnvp.two_moons_log_prob(grid, n_theta=128).exp().sum() * (xs[1] - xs[0]) * (ys[1] - ys[0])
    assert abs(mass.item() - 1) < 1e-3, mass
    # the data's mean log density under its own law beats a shifted copy of the law
    x = two_moons(4000, noise=0.1, seed=0).double()
    assert realnvp.two_moons_log_prob(x).mean() > realnvp.two_moons_log_prob(x + 0.1).mean() + 0.2


def test_a_model_of_levels_refuses_what_is_not_levels(g):
    """Intensities, levels above 16, floats: these gave plausible numbers or NaN before."""
    flow = RealNVP(RealNVPConfig(dim=64, layers=2, hidden=8, levels=17))
    x = _levels(g)
    for verb in (loss, nll):
        with pytest.raises(ValueError, match=r"integer grey levels 0..16 \(digits\(as_levels=True\)\), got torch.float32"):
            verb(flow, x.float() / 16)
        with pytest.raises(ValueError, match=r"grey levels 0..16, got values in \[\d+, 17\]"):
            verb(flow, torch.where(x == 0, 17, x))
        with pytest.raises(ValueError, match=r"expected x of shape \(b, 1, h, w\) with h=8"):
            verb(flow, x.reshape(5, 1, 4, 16))
        with pytest.raises(ValueError, match=r"expected x of shape \(b, 1, h, w\), got \(5, 64\)"):
            verb(flow, x.flatten(1))
        with pytest.raises(ValueError, match="at least one example"):
            verb(flow, x[:0])
        with pytest.raises(ValueError, match="torch.as_tensor"):
            verb(flow, x.numpy())


def test_a_model_of_points_refuses_what_is_not_points():
    flow = RealNVP(RealNVPConfig(dim=2, layers=2, hidden=4))
    for verb in (loss, nll):
        with pytest.raises(ValueError, match="expected x to be a float tensor, got torch.int64"):
            verb(flow, torch.zeros(3, 2, dtype=torch.int64))
        with pytest.raises(ValueError, match=r"expected x of shape \(b, d\) with d=2, got \(3, 3\)"):
            verb(flow, torch.zeros(3, 3))
        with pytest.raises(ValueError, match="NaN"):
            verb(flow, torch.tensor([[0.0, float("nan")]]))
        with pytest.raises(ValueError, match="torch.as_tensor"):
            verb(flow, np.zeros((3, 2)))
        assert verb(flow, torch.zeros(3, 2, dtype=torch.float64)).dtype == torch.float32


def test_bad_configs_and_options_raise_clear_errors():
    for kwargs, match in [(dict(dim=1), "dim >= 2"), (dict(layers=0), "layers must be a positive int"),
                          (dict(hidden=0), "hidden"), (dict(net_layers=0), "net_layers"),
                          (dict(clamp=-1.0), "clamp"), (dict(alpha=0.5), "alpha"),
                          (dict(dim=60, levels=17), "dim must be a square"), (dict(dim=4, levels=1), "levels"),
                          (dict(permute_seed=-1), "permute_seed"), (dict(actnorm=1), "actnorm")]:
        with pytest.raises(ValueError, match=match):
            RealNVPConfig(**kwargs)
    with pytest.raises(ValueError, match="expected a RealNVPConfig"):
        RealNVP(dict(dim=2))
    with pytest.raises(ValueError, match="brings its own preprocessing"):
        RealNVP(RealNVPConfig(dim=4, levels=17), preprocess=[Logit(4)])
    flow = RealNVP(RealNVPConfig(dim=4, layers=2, hidden=4, levels=17))
    levels = torch.zeros(2, 1, 2, 2, dtype=torch.int64)
    with pytest.raises(ValueError, match="k must be a positive int"):
        nll(flow, levels, k=0)
    with pytest.raises(ValueError, match="n must be a positive int"):
        sample(flow, 0)
    with pytest.raises(ValueError, match="expected a companion.flows.Flow"):
        loss(torch.nn.Linear(2, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"expected levels of shape \(b, 4\)"):
        dequantized_nll(flow, torch.zeros(2, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match="integer levels"):
        dequantize(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"expected x of shape \(b, 2\)"):
        realnvp.two_moons_log_prob(torch.zeros(4, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_verbs_on_cuda_give_the_cpu_answers_for_one_seed(g):
    flow = _randomize(RealNVP(RealNVPConfig(dim=64, layers=2, hidden=8, levels=17)), g)
    x = _levels(g)
    on_cpu = [sample(flow, 4, generator=torch.Generator().manual_seed(0)),
              nll(flow, x, k=3, generator=torch.Generator().manual_seed(0))]
    flow.cuda()
    on_gpu = [sample(flow, 4, generator=torch.Generator().manual_seed(0)),
              nll(flow, x.cuda(), k=3, generator=torch.Generator().manual_seed(0))]
    assert on_gpu[0].device.type == "cuda" and (on_gpu[0].cpu() != on_cpu[0]).float().mean() < 0.01
    assert torch.allclose(on_gpu[1].cpu(), on_cpu[1], atol=1e-3)
    assert loss(flow, x.cuda(), generator=g).device.type == "cuda"


def test_the_dequantisation_bound_refuses_levels_out_of_range():
    flow = RealNVP(RealNVPConfig(dim=4, layers=1, hidden=8, levels=17))
    with pytest.raises(ValueError, match=r"grey levels 0..16, got values in \[-5, 50\]"):
        dequantized_nll(flow, torch.tensor([[0, 1, -5, 50]]), k=2)
