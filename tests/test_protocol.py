"""One parametrised test of the families' shared protocol (see the package docstring).

Every family of :data:`companion.compare.FAMILIES` is built, trained for two steps, sampled
and scored with its own module's verbs, and must keep the same promises: shapes, the form
of the samples, finite values, the same generator giving the same samples, the global random
generator left alone, and the model's train/eval mode restored.
"""
import pytest
import torch

from companion import compare
from companion.data import DIGIT_LEVELS, digits

FAMILIES = list(compare.FAMILIES)
LIKELIHOOD_FAMILIES = [f for f in FAMILIES if compare.FAMILIES[f].likelihood != "none"]


@pytest.fixture(scope="module")
def trained():
    """Each family's recipe model after two optimiser steps (enough to move off the init)."""
    levels, _ = digits("train", as_levels=True)
    models = {}
    for name in FAMILIES:
        model = compare.build(name, seed=0)
        compare.fit(name, model, levels[:128], steps=2, progress=False)
        models[name] = model
    return models


def _check_sample_form(name, x, n):
    assert x.shape == (n, 1, 8, 8), (name, x.shape)
    if x.is_floating_point():                       # intensities in [0, 1]
        assert torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1, name
    else:                                           # integer grey levels
        assert x.dtype == torch.int64 and x.min() >= 0 and x.max() < DIGIT_LEVELS, name


@pytest.mark.parametrize("name", FAMILIES)
def test_sample_has_the_documented_form_and_follows_the_generator(trained, name):
    family, model = compare.FAMILIES[name], trained[name]
    model.train()                                   # the sampler must not leave it in eval mode
    state = torch.get_rng_state()
    a = family.module.sample(model, 5, generator=torch.Generator().manual_seed(0))
    b = family.module.sample(model, 5, generator=torch.Generator().manual_seed(0))
    c = family.module.sample(model, 5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), state), f"{name}.sample touched the global RNG"
    assert model.training, f"{name}.sample did not restore training mode"
    _check_sample_form(name, a, 5)
    assert torch.equal(a, b) and not torch.equal(a, c)
    images = compare.generate(name, model, 5, generator=torch.Generator().manual_seed(0))
    assert images.shape == (5, 1, 8, 8) and images.is_floating_point()
    assert images.min() >= 0 and images.max() <= 1


@pytest.mark.parametrize("name", LIKELIHOOD_FAMILIES)
def test_loss_and_nll_are_per_example_nats_and_accept_their_own_samples(trained, name):
    family, model = compare.FAMILIES[name], trained[name]
    levels, _ = digits("val", as_levels=True)
    x = levels[:6]
    loss = family.module.loss(model, x, generator=torch.Generator().manual_seed(0))
    assert loss.shape == (6,) and torch.isfinite(loss).all()
    model.eval()
    state = torch.get_rng_state()
    nll = family.module.nll(model, x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), state), f"{name}.nll touched the global RNG"
    assert not model.training, f"{name}.nll did not restore eval mode"
    assert nll.shape == (6,) and torch.isfinite(nll).all() and (nll > 0).all()
    # the comparison's own number is the module's nll, with the table's options
    torch.testing.assert_close(
        compare.negative_log_likelihood(name, model, x, generator=torch.Generator().manual_seed(0)),
        family.module.nll(model, x, generator=torch.Generator().manual_seed(0), **family.nll_options))
    own = family.module.sample(model, 3, generator=torch.Generator().manual_seed(2))
    assert torch.isfinite(family.module.nll(model, own, generator=torch.Generator().manual_seed(0))).all()


@pytest.mark.parametrize("name", LIKELIHOOD_FAMILIES)
def test_likelihoods_refuse_intensities_where_levels_are_expected(trained, name):
    family, model = compare.FAMILIES[name], trained[name]
    intensities, _ = digits("val")
    with pytest.raises(ValueError, match="grey levels"):
        family.module.nll(model, intensities[:4], generator=torch.Generator().manual_seed(0))
    levels, _ = digits("val", as_levels=True)
    with pytest.raises(ValueError, match="grey levels"):
        family.module.nll(model, levels[:4] + DIGIT_LEVELS, generator=torch.Generator().manual_seed(0))


def test_the_gan_has_no_likelihood(trained):
    assert compare.negative_log_likelihood("gan", trained["gan"], digits("val", as_levels=True)[0][:2]) is None


def test_build_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    a, b = compare.build("vae", seed=3), compare.build("vae", seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_unknown_family_is_named():
    with pytest.raises(ValueError, match="family must be one of"):
        compare.build("transformer")
