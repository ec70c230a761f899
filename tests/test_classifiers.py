import pytest
import torch

from companion.classifiers import GaussianClassifier, LogisticRegression, accuracy
from companion.data import gaussian_classes, two_moons


def test_gaussian_classifier_mle_matches_sample_moments(g, float64):
    x, y = two_moons(500, seed=0, return_labels=True)
    model = GaussianClassifier(shared_covariance=False, ridge=0.0).fit(x, y)
    for c in (0, 1):
        xc = x[y == c].double()
        assert torch.allclose(model.means[c], xc.mean(0))
        assert torch.allclose(model.covs[c], torch.cov(xc.T, correction=0))
        assert model.log_prior[c].exp().item() == pytest.approx((y == c).double().mean().item())


def test_posterior_is_bayes_rule_and_the_marginal_integrates_to_one():
    x, y = two_moons(300, seed=1, return_labels=True)
    model = GaussianClassifier().fit(x, y)
    joint = model.log_joint(x).exp()
    assert torch.allclose(model.predict_proba(x).double(), joint / joint.sum(1, keepdim=True), atol=1e-6)
    # integrate p(x) numerically on a grid that holds all its mass
    xs = torch.linspace(-8, 9, 400)
    grid = torch.cartesian_prod(xs, xs)
    mass = model.log_prob(grid).exp().sum() * (xs[1] - xs[0]) ** 2
    assert mass.item() == pytest.approx(1.0, abs=1e-3)


def test_shared_covariance_log_odds_are_linear(float64):
    x, y = two_moons(300, seed=2, return_labels=True)
    model = GaussianClassifier(shared_covariance=True).fit(x, y)
    log_odds = model.log_joint(x) @ torch.tensor([-1.0, 1.0], dtype=torch.float64)
    design = torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], dim=1)
    coef = torch.linalg.lstsq(design, log_odds[:, None]).solution
    assert torch.allclose(design @ coef, log_odds[:, None], atol=1e-8)


def test_samples_have_the_fitted_moments(g):
    means = torch.tensor([[0.0, 0.0], [4.0, 1.0]])
    covs = torch.stack([torch.eye(2), torch.tensor([[1.0, 0.5], [0.5, 2.0]])])
    x, y = gaussian_classes(2000, means, covs, generator=g)
    model = GaussianClassifier(shared_covariance=False).fit(x, y)
    xs, ys = model.sample(40_000, generator=g)
    for c in (0, 1):
        assert torch.allclose(xs[ys == c].mean(0).double(), model.means[c], atol=0.05)
        assert torch.allclose(torch.cov(xs[ys == c].T).double(), model.covs[c], atol=0.08)


def test_logistic_regression_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression as SkLogistic

    x, y = two_moons(400, noise=0.3, seed=3, return_labels=True)
    ours = LogisticRegression(C=0.5).fit(x, y)
    ref = SkLogistic(C=0.5, tol=1e-10, max_iter=1000).fit(x.double().numpy(), y.numpy())
    assert torch.allclose(ours.weight, torch.as_tensor(ref.coef_[0]), atol=1e-5)
    assert ours.bias.item() == pytest.approx(ref.intercept_[0], abs=1e-5)
    assert accuracy(ours, x, y) == pytest.approx(ref.score(x.double().numpy(), y.numpy()))


def test_bad_input_raises():
    x, y = two_moons(20, seed=0, return_labels=True)
    with pytest.raises(ValueError, match="fit"):
        GaussianClassifier().predict(x)
    with pytest.raises(ValueError, match="shape"):
        GaussianClassifier().fit(x, y[:5])
    with pytest.raises(ValueError, match="integer"):
        GaussianClassifier().fit(x, y.float())
    with pytest.raises(ValueError, match="at least one point"):
        GaussianClassifier().fit(x, torch.zeros(20, dtype=torch.int64), num_classes=2)
    with pytest.raises(ValueError, match="0 or 1"):
        LogisticRegression().fit(x, y + 1)
    with pytest.raises(ValueError, match="shape"):
        LogisticRegression().fit(x, y).predict(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="at least one example"):
        GaussianClassifier().fit(torch.zeros(0, 2), torch.zeros(0, dtype=torch.int64))


def test_accuracy_refuses_a_column_of_labels():
    x, y = two_moons(40, seed=0, return_labels=True)
    model = LogisticRegression().fit(x, y)
    assert accuracy(model, x, model.predict(x)) == 1.0
    with pytest.raises(ValueError, match=r"expected y of shape \(n\)"):
        accuracy(model, x, model.predict(x)[:, None])


def test_diagonal_is_gaussian_naive_bayes_of_scikit_learn():
    from sklearn.naive_bayes import GaussianNB

    x, y = two_moons(300, noise=0.3, seed=4, return_labels=True)
    ours = GaussianClassifier(shared_covariance=False, diagonal=True, ridge=0.0).fit(x, y)
    ref = GaussianNB(var_smoothing=0.0).fit(x.double().numpy(), y.numpy())
    assert torch.allclose(ours.means, torch.as_tensor(ref.theta_))
    assert torch.allclose(torch.diagonal(ours.covs, dim1=-2, dim2=-1), torch.as_tensor(ref.var_))
    assert torch.allclose(ours.predict_proba(x).double(), torch.as_tensor(ref.predict_proba(x.double().numpy())),
                          atol=1e-6)
    shared = GaussianClassifier(diagonal=True).fit(x, y)       # shared and diagonal: off-diagonals are zero
    assert torch.count_nonzero(shared.covs[0] - torch.diag(torch.diagonal(shared.covs[0]))) == 0
