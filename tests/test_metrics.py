import math

import pytest
import torch

from companion.data import digits
from companion.metrics import (DigitClassifier, classifier_scores, energy_distance, frechet_distance,
                               nearest_neighbour_distance, sharpness, train_digit_classifier,
                               within_class_distance)


def test_energy_distance_is_zero_for_equal_laws_and_matches_scipy_and_the_closed_form(g):
    from scipy.stats import energy_distance as scipy_energy

    a, b = torch.randn(6000, 1, generator=g), torch.randn(6000, 1, generator=g)
    assert abs(energy_distance(a, b)) < 5e-3
    # scipy's 1-D version is the square root of the (V-statistic) squared distance.
    assert energy_distance(a, b + 1) == pytest.approx(scipy_energy(a[:, 0], b[:, 0] + 1) ** 2, rel=2e-3)
    # N(0,1) vs N(1,1): X - Y ~ N(-1, 2), so E|X-Y| = (2/sqrt(pi)) exp(-1/4) + (1 - 2 Phi(-1/sqrt2)),
    # and E|X-X'| = E|Y-Y'| = 2/sqrt(pi).
    normal = torch.distributions.Normal(0.0, 1.0)
    root_pi = torch.pi ** 0.5
    exy = 2 / root_pi * torch.exp(torch.tensor(-0.25)) + 1 - 2 * normal.cdf(torch.tensor(-(0.5 ** 0.5)))
    closed = 2 * exy - 2 * (2 / root_pi)
    assert energy_distance(a, b + 1) == pytest.approx(closed.item(), abs=0.05)


def test_frechet_distance_matches_the_formula_for_known_gaussians(g, float64):
    cov_a = torch.tensor([[2.0, 0.3], [0.3, 1.0]])
    cov_b = torch.tensor([[1.0, -0.2], [-0.2, 0.5]])
    la, lb = torch.linalg.cholesky(cov_a), torch.linalg.cholesky(cov_b)
    fa = torch.randn(200_000, 2, generator=g) @ la.T
    fb = torch.randn(200_000, 2, generator=g) @ lb.T + torch.tensor([1.0, 2.0])
    from scipy.linalg import sqrtm

    cross = torch.as_tensor(sqrtm((cov_a @ cov_b).numpy()).real)
    expected = 5.0 + torch.trace(cov_a + cov_b - 2 * cross)
    assert frechet_distance(fa, fb) == pytest.approx(expected.item(), rel=0.02)
    assert frechet_distance(fa, fa) == pytest.approx(0.0, abs=1e-8)


def test_sharpness_drops_when_images_are_blurred():
    x, _ = digits("test")
    blur = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    assert (sharpness(blur) < sharpness(x)).float().mean() > 0.95


def test_nearest_neighbour_distance_is_zero_for_copies(g):
    ref = torch.randn(20, 1, 8, 8, generator=g)
    d = nearest_neighbour_distance(torch.cat([ref[:3], ref[:3] + 1]), ref)
    assert torch.allclose(d[:3], torch.zeros(3)) and (d[3:] > 0).all()


def test_digit_classifier_learns_and_scores_real_digits_as_close():
    clf = train_digit_classifier(seed=0, steps=300)
    x_test, y_test = digits("test")
    assert (clf(x_test).argmax(1) == y_test).float().mean() > 0.93
    real = classifier_scores(clf, digits("val")[0])
    noise = classifier_scores(clf, torch.rand(350, 1, 8, 8))
    assert real["fd"] < noise["fd"] / 5
    assert real["confidence"] > noise["confidence"]
    assert real["class_histogram"].sum().item() == pytest.approx(1.0)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="shape"):
        energy_distance(torch.zeros(5, 2), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(torch.zeros(1, 2), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="shape"):
        sharpness(torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match="trailing shape"):
        nearest_neighbour_distance(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="shape"):
        DigitClassifier()(torch.zeros(2, 1, 9, 9))


def test_within_class_distance_is_the_mean_pairwise_distance_per_class(g):
    images = torch.rand(30, 1, 8, 8, generator=g)
    labels = torch.arange(3).repeat(10)
    flat = images.flatten(1).double()
    brute = []
    for c in range(3):
        members = flat[labels == c]
        d = torch.cdist(members, members)
        brute.append(d.sum() / (len(members) * (len(members) - 1)))
    assert math.isclose(within_class_distance(images, labels), torch.stack(brute).mean().item(), rel_tol=1e-9)
    assert within_class_distance(images[:2].repeat(5, 1, 1, 1), torch.zeros(10, dtype=torch.long)) > 0
    with pytest.raises(ValueError, match="two images"):
        within_class_distance(images[:3], torch.tensor([0, 0, 1]))


def test_classifier_scores_refuse_grey_levels_and_training_leaves_the_global_rng_alone():
    torch.manual_seed(7)
    expected = torch.rand(2)
    torch.manual_seed(7)
    clf = train_digit_classifier(seed=0, steps=2)
    assert torch.equal(torch.rand(2), expected)
    levels, _ = digits("test", as_levels=True)
    with pytest.raises(ValueError, match="divide them by 16"):
        classifier_scores(clf, levels[:10])
    with pytest.raises(ValueError, match="divide them by 16"):
        classifier_scores(clf, levels[:10].float())
