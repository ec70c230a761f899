"""Tests of companion.arm: the pixel transformer is a normalised, causal, exact likelihood."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from companion.arm import PixelARM, PixelARMConfig, log_prob, sample
from companion.train import train


def tiny(levels: int = 17, pixels: int = 64, seed: int = 0) -> PixelARM:
    torch.manual_seed(seed)
    return PixelARM(PixelARMConfig(levels=levels, pixels=pixels, layers=1, heads=2, dim=16))


def test_probabilities_sum_to_one_over_every_image(float64):
    """On 3 pixels with 3 levels, summing p(x) over all 27 images gives exactly 1."""
    model = tiny(levels=3, pixels=3).double()
    images = torch.tensor(list(itertools.product(range(3), repeat=3)))
    total = log_prob(model, images).exp().sum()
    assert abs(total.item() - 1.0) < 1e-10


def test_causal_a_pixel_only_depends_on_earlier_pixels():
    """Changing pixel j leaves the conditionals of pixels 1..j unchanged and changes a later one."""
    model = tiny().eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 17, (1, 64), generator=g)
    y = x.clone()
    j = 30
    y[0, j] = (x[0, j] + 5) % 17
    with torch.no_grad():
        a, b = model(x), model(y)
    assert torch.allclose(a[:, :j + 1], b[:, :j + 1], atol=1e-6)   # logits of x_1..x_{j+1} see x_{<=j-1}... and not x_j
    assert not torch.allclose(a[:, j + 1:], b[:, j + 1:], atol=1e-6)


def test_log_prob_is_the_sum_of_the_conditionals_of_the_sampler_order():
    """log p(x) equals the chain rule computed one prefix at a time, as the sampler does."""
    model = tiny().eval()
    x = torch.randint(0, 17, (2, 64), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        idx = torch.cat([torch.full((2, 1), model.bos), x], dim=1)
        step = sum(model.gpt(idx[:, :i + 1])[:, -1, :17].log_softmax(-1).gather(1, x[:, i:i + 1]).squeeze(1)
                   for i in range(64))
        assert torch.allclose(log_prob(model, x), step, atol=1e-4)


def test_untrained_model_is_near_uniform_and_training_lowers_the_nll():
    from companion.data import digits

    x, _ = digits("train", as_levels=True)
    model = tiny()
    with torch.no_grad():
        before = -log_prob(model, x[:100]).mean().item()
    assert before < 64 * math.log(17) + 40             # a random GPT is not far from uniform
    train(lambda b: -log_prob(model, b), model.parameters(), x[:100], steps=25, lr=1e-2, batch_size=32,
          progress=False)
    with torch.no_grad():
        after = -log_prob(model, x[:100]).mean().item()
    assert after < before - 40


def test_sample_is_reproducible_and_temperature_zero_limit_is_greedy():
    model = tiny()
    a = sample(model, 2, generator=torch.Generator().manual_seed(5))
    b = sample(model, 2, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.shape == (2, 1, 8, 8)
    cold = sample(model, 2, temperature=1e-4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(cold[0], cold[1])              # (almost) argmax: the same image twice


@pytest.mark.parametrize("bad", [torch.rand(2, 64), torch.full((2, 64), 17), torch.full((2, 64), -1),
                                 torch.zeros(2, 63, dtype=torch.long), torch.zeros(0, 64, dtype=torch.long)])
def test_bad_input_raises(bad):
    with pytest.raises(ValueError):
        log_prob(tiny(), bad)


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        sample(tiny(), 0)
    with pytest.raises(ValueError):
        sample(tiny(), 2, temperature=0.0)
    with pytest.raises(ValueError):
        PixelARMConfig(levels=1)
