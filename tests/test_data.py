import math

import pytest
import torch

from companion import data


@pytest.mark.parametrize("sampler", [data.two_moons, data.eight_gaussians, data.swiss_roll, data.checkerboard])
def test_toy_sets_are_seeded_float_tensors(sampler):
    a, b = sampler(500, seed=3), sampler(500, seed=3)
    assert a.shape == (500, 2) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, sampler(500, seed=4))
    with pytest.raises(ValueError, match="n must be"):
        sampler(0, seed=0)
    with pytest.raises(ValueError, match="either seed or generator"):
        sampler(5, seed=0, generator=torch.Generator())


def test_two_moons_lies_on_the_two_half_circles_without_noise():
    x, y = data.two_moons(2000, noise=0.0, seed=0, return_labels=True)
    upper = x[y == 0]
    lower = x[y == 1]
    assert torch.allclose(upper.norm(dim=1), torch.ones(len(upper)), atol=1e-5)
    assert (upper[:, 1] >= -1e-6).all()
    assert torch.allclose((lower - torch.tensor([1.0, 0.5])).norm(dim=1), torch.ones(len(lower)), atol=1e-5)
    assert abs(y.float().mean().item() - 0.5) < 0.05


def test_eight_gaussians_puts_equal_mass_near_each_mode():
    x = data.eight_gaussians(8000, seed=1)
    modes = data.ring_modes(8, 2.0)
    nearest = torch.cdist(x, modes).argmin(dim=1)
    share = torch.bincount(nearest, minlength=8) / len(x)
    assert (share - 1 / 8).abs().max() < 0.02
    assert torch.cdist(x, modes).min(dim=1).values.max() < 0.02 * 6


def test_checkerboard_fills_only_dark_squares():
    x = data.checkerboard(4000, seed=0) / 2          # back to [-2, 2]^2 unit squares
    cell = torch.floor(x[:, 0]) + torch.floor(x[:, 1])
    assert (cell % 2 == 0).all()


def test_gaussian_classes_match_their_moments(g):
    means = torch.tensor([[0.0, 0.0], [3.0, -1.0]])
    covs = torch.stack([torch.eye(2), torch.tensor([[2.0, 0.8], [0.8, 1.0]])])
    x, y = data.gaussian_classes(40_000, means, covs, generator=g)
    for c in range(2):
        assert torch.allclose(x[y == c].mean(0), means[c], atol=0.05)
        assert torch.allclose(torch.cov(x[y == c].T), covs[c], atol=0.08)
    with pytest.raises(ValueError, match="covs"):
        data.gaussian_classes(5, means, torch.eye(2)[None])


def test_digits_split_matches_tomczak_by_index():
    from sklearn.datasets import load_digits

    raw = load_digits()
    sizes = {s: data.digits(s)[0].shape[0] for s in data.DIGIT_SPLITS}
    assert sizes == {"train": 1000, "val": 350, "test": 447}
    x_test, y_test = data.digits("test", as_levels=True)
    assert x_test.shape == (447, 1, 8, 8) and x_test.dtype == torch.int64
    assert torch.equal(x_test[0, 0], torch.as_tensor(raw.images[1350], dtype=torch.int64))
    assert torch.equal(y_test, torch.as_tensor(raw.target[1350:]))
    x_float, _ = data.digits("test")
    assert torch.allclose(x_float * 16, x_test.float())
    assert x_test.min() >= 0 and x_test.max() <= 16
    with pytest.raises(ValueError, match="split"):
        data.digits("validation")


def test_bits_per_dim_and_the_uniform_reference_from_package_code():
    """A training set in which every pixel takes every level equally often gives the independent-pixels
    model a uniform histogram: its NLL of any image is 64 ln 17 nats (181.3), log2 17 bits per dimension."""
    train = torch.arange(17).repeat_interleave(64).reshape(17, 64)   # image k: every pixel at level k
    test = torch.randint(0, 17, (5, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    nll = data.independent_pixels_nll(train, test)
    torch.testing.assert_close(nll, torch.full((5,), 64 * math.log(17), dtype=torch.float64))
    assert data.nats_to_bits_per_dim(nll).tolist() == pytest.approx([math.log2(17)] * 5)
    with pytest.raises(ValueError, match="dims must be >= 1"):
        data.nats_to_bits_per_dim(1.0, dims=0)


def test_to_intensities_refuses_what_is_not_levels():
    assert data.to_intensities(torch.tensor([0, 16])).tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="expected integer grey levels"):
        data.to_intensities(torch.tensor([0.5]))
    with pytest.raises(ValueError, match=r"grey levels 0..16, got values in \[0, 17\]"):
        data.to_intensities(torch.tensor([0, 17]))


def test_text_corpus_is_offline_deterministic_and_round_trips():
    text = data.text_corpus()
    assert len(text) > 400_000 and text == data.text_corpus()
    tok = data.CharTokenizer(text)
    assert 80 <= tok.vocab_size <= 120
    sample = text[1000:1500]
    assert tok.decode(tok.encode(sample)) == sample
    with pytest.raises(ValueError, match="not in the vocabulary"):
        data.CharTokenizer("abc").encode("abd")
    with pytest.raises(ValueError, match="out of range"):
        data.CharTokenizer("abc").decode([0, 3])
    with pytest.raises(ValueError, match="empty"):
        data.CharTokenizer("")


def test_independent_pixels_nll_is_the_product_of_smoothed_histograms(g):
    train = torch.randint(0, 5, (40, 6), generator=g)
    test = torch.randint(0, 5, (7, 6), generator=g)
    nll = data.independent_pixels_nll(train, test, num_levels=5)
    expected = torch.zeros(7, dtype=torch.float64)
    for j in range(6):
        p = (torch.bincount(train[:, j], minlength=5).double() + 1) / (40 + 5)
        expected -= p[test[:, j]].log()
    assert torch.allclose(nll, expected, atol=1e-12)
    # the training images themselves are likelier on average than uniform noise
    assert data.independent_pixels_nll(train, train, num_levels=5).mean() < 6 * math.log(5)
    with pytest.raises(ValueError, match="integer"):
        data.independent_pixels_nll(train.float(), test, num_levels=5)
    with pytest.raises(ValueError, match="0 .. 4"):
        data.independent_pixels_nll(train, test + 5, num_levels=5)
