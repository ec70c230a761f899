"""Tests of companion.arm: the pixel transformer is a normalised, causal, exact likelihood."""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch

from companion import arm
from companion.arm import PixelARM, PixelARMConfig, log_prob, sample
from companion.train import train
from companion.utils import fresh_init, num_parameters

CHECKPOINTS = Path(arm.__file__).parent / "checkpoints"


def tiny(levels: int = 17, pixels: int = 64, seed: int = 0) -> PixelARM:
    return fresh_init(lambda: PixelARM(PixelARMConfig(levels=levels, pixels=pixels, layers=1, heads=2, dim=16)), seed)


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
    train(lambda b: arm.loss(model, b), model.parameters(), x[:100], steps=25, lr=1e-2, batch_size=32,
          progress=False)
    with torch.no_grad():
        after = -log_prob(model, x[:100]).mean().item()
    assert after < before - 40


def test_sample_is_reproducible_and_temperature_zero_is_greedy():
    model = tiny().train()
    a = sample(model, 2, generator=torch.Generator().manual_seed(5))
    b = sample(model, 2, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.shape == (2, 1, 8, 8) and a.dtype == torch.int64
    assert model.training                             # the sampler restored the mode
    greedy = sample(model, 2, temperature=0)
    cold = sample(model, 2, temperature=1e-4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(greedy[0], greedy[1]) and torch.equal(cold, greedy)    # T -> 0: the argmax image
    with torch.no_grad():                             # each greedy pixel is the argmax of its conditional
        assert torch.equal(model(greedy).argmax(-1), greedy.reshape(2, 64))


def test_the_protocol_loss_and_nll_are_minus_the_exact_log_likelihood():
    model = tiny().train()
    x = sample(model, 3, generator=torch.Generator().manual_seed(1))      # nll(model, sample(model, n)) works
    expected = -log_prob(model, x)
    torch.testing.assert_close(arm.loss(model, x), expected)
    nll = arm.nll(model, x, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(nll, expected.detach())
    assert nll.shape == (3,) and not nll.requires_grad and model.training


def test_the_shipped_checkpoints_load_into_the_model():
    """compare.py's arm_seed*.pt: the parameter names of PixelARM / GPT / Block are unchanged."""
    model = PixelARM(PixelARMConfig(layers=3, heads=4, dim=96))
    state = torch.load(CHECKPOINTS / "arm_seed0.pt", map_location="cpu", weights_only=True)
    model.load_state_dict({k: v.float() for k, v in state.items()})          # strict: every key matches
    assert num_parameters(model) == 343_584                                # arm_seed0.json's count


@pytest.mark.parametrize("bad, message", [
    (torch.rand(2, 64), r"integer grey levels 0..16 \(digits\(as_levels=True\)\), got torch.float32"),
    (torch.zeros(2, 64, dtype=torch.float64), "integer grey levels 0..16.*got torch.float64"),
    (torch.full((2, 64), 17), r"grey levels 0..16, got values in \[17, 17\]"),
    (torch.full((2, 64), -1), r"grey levels 0..16, got values in \[-1, -1\]"),
    (torch.zeros(2, 63, dtype=torch.long), r"expected x of shape \(b, 64\)"),
    (torch.zeros(0, 64, dtype=torch.long), "at least one example"),
    (torch.zeros(2, 64, dtype=torch.long).numpy(), r"torch.Tensor, got ndarray \(convert it"),
])
def test_bad_input_raises(bad, message):
    for fn in (log_prob, arm.loss, arm.nll):
        with pytest.raises(ValueError, match=message):
            fn(tiny(), bad)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="n must be a positive int"):
        sample(tiny(), 0)
    with pytest.raises(ValueError, match="temperature must be a finite number >= 0"):
        sample(tiny(), 2, temperature=-1.0)
    with pytest.raises(ValueError, match="generator must be a CPU torch.Generator|generator must be a torch"):
        sample(tiny(), 2, generator="seed")
    with pytest.raises(ValueError, match="levels must be an int >= 2"):
        PixelARMConfig(levels=1)
    with pytest.raises(ValueError, match="dim must be a positive int"):
        PixelARMConfig(dim=0)
    with pytest.raises(ValueError, match="divisible by heads"):
        PixelARMConfig(dim=30, heads=4)
