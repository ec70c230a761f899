"""The randomness rule: draws come from a CPU generator, land on the requested device, and
building a model from a seed leaves the global generator alone."""
import pytest
import torch

from companion import rng, utils


def test_same_seed_same_noise_and_requested_dtype():
    a = rng.randn((4, 3), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    b = rng.randn((4, 3), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert a.dtype == torch.float64 and torch.equal(a, b)
    # the CPU stream itself: the same numbers torch.randn draws from that generator
    torch.testing.assert_close(a.float(), torch.randn(4, 3, generator=torch.Generator().manual_seed(5)))


def test_a_non_cpu_generator_is_refused():
    with pytest.raises(ValueError, match="must be a torch.Generator, got int"):
        rng.randn((2,), generator=3)


def test_fresh_init_leaves_the_global_generator_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    utils.fresh_init(lambda: torch.nn.Linear(8, 8), seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_multinomial_and_bernoulli_follow_the_generator():
    probs = torch.tensor([[0.1, 0.9], [0.5, 0.5]])
    draws = [rng.multinomial(probs.repeat(50, 1), 1, generator=torch.Generator().manual_seed(s)) for s in (0, 0, 1)]
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])
    bits = rng.bernoulli(torch.full((10_000,), 0.3), generator=torch.Generator().manual_seed(0))
    assert abs(bits.mean().item() - 0.3) < 0.02
