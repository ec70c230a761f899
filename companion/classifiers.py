r"""A generative and a discriminative classifier for the first chapter.

* :class:`GaussianClassifier` models the joint :math:`p(x, y) = p(x \mid y)\,p(y)`
  with one Gaussian per class (a shared covariance gives linear discriminant
  analysis, separate ones quadratic). It is fitted in closed form by maximum
  likelihood, classifies with Bayes' rule, and - being a model of :math:`x` -
  can also sample new points and score how typical a point is.
* :class:`LogisticRegression` models :math:`p(y \mid x) = \sigma(w^\top x + b)`
  directly and is fitted by minimising the penalised cross-entropy with L-BFGS.
  It has nothing to say about :math:`x` itself.

Both take ``x: (n, d)`` float tensors and labels ``y: (n,)`` in ``{0, ..., k-1}``.
"""
from __future__ import annotations

import torch

from companion import checks
from companion.utils import check_shape

__all__ = ["GaussianClassifier", "LogisticRegression", "accuracy"]


def _check_xy(x: torch.Tensor, y: torch.Tensor) -> None:
    checks.floats("x", x, "n d")
    check_shape("y", y, "n", n=x.shape[0])
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"y must hold integer class labels, got dtype {y.dtype}")


class GaussianClassifier:
    r"""Class-conditional Gaussians :math:`p(x \mid y) = \mathcal{N}(x; \mu_y, \Sigma_y)` and class priors :math:`\pi_y`.

    Maximum-likelihood estimates (closed form):

    .. math:: \pi_y = \frac{n_y}{n}, \quad \mu_y = \frac{1}{n_y}\sum_{i: y_i = y} x_i, \quad
              \Sigma_y = \frac{1}{n_y}\sum_{i: y_i = y} (x_i - \mu_y)(x_i - \mu_y)^\top

    With ``shared_covariance=True`` one pooled :math:`\Sigma` serves every class
    (LDA). With ``diagonal=True`` only the variances are kept, :math:`\Sigma_y =
    \operatorname{diag}(\sigma^2_{y,1}, \dots, \sigma^2_{y,D})`: the features are
    independent given the class, which is Gaussian naive Bayes (with a shared
    covariance too, the naive Bayes of Ng & Jordan 2001, whose posterior is
    logistic). ``ridge`` is added to the covariance diagonal so that a handful
    of points still gives an invertible matrix.

    Example:
        >>> x = torch.tensor([[0., 0.], [0., 1.], [3., 0.], [3., 1.]])
        >>> model = GaussianClassifier().fit(x, torch.tensor([0, 0, 1, 1]))
        >>> model.predict(torch.tensor([[0.2, 0.5], [2.9, 0.5]])).tolist()
        [0, 1]
    """

    def __init__(self, shared_covariance: bool = True, ridge: float = 1e-3, diagonal: bool = False) -> None:
        if ridge < 0:
            raise ValueError(f"ridge must be >= 0, got {ridge}")
        self.shared_covariance = shared_covariance
        self.ridge = ridge
        self.diagonal = diagonal

    def fit(self, x: torch.Tensor, y: torch.Tensor, num_classes: int | None = None) -> GaussianClassifier:
        _check_xy(x, y)
        k = int(num_classes if num_classes is not None else y.max().item() + 1)
        counts = torch.bincount(y, minlength=k)
        if (counts == 0).any():
            raise ValueError(f"every class needs at least one point, got counts {counts.tolist()}")
        x = x.double()
        d = x.shape[1]
        self.log_prior = (counts.double() / counts.sum()).log()                   # log pi_y
        self.means = torch.stack([x[y == c].mean(0) for c in range(k)])            # mu_y: (k, d)
        centred = x - self.means[y]
        covs = torch.stack([centred[y == c].T @ centred[y == c] / counts[c] for c in range(k)])
        if self.shared_covariance:
            pooled = (centred.T @ centred) / x.shape[0]                             # Sigma: (d, d)
            covs = pooled.expand(k, d, d).clone()
        if self.diagonal:                                                           # naive Bayes
            covs = torch.diag_embed(torch.diagonal(covs, dim1=-2, dim2=-1))
        self.covs = covs + self.ridge * torch.eye(d, dtype=torch.float64)          # Sigma_y: (k, d, d)
        self._dist = torch.distributions.MultivariateNormal(self.means, covariance_matrix=self.covs)
        return self

    def _fitted(self) -> None:
        if not hasattr(self, "_dist"):
            raise ValueError("call fit(x, y) before using the model")

    def log_joint(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(x, y) = \log \mathcal{N}(x; \mu_y, \Sigma_y) + \log \pi_y` for every class: ``(n, k)``."""
        self._fitted()
        check_shape("x", x, "n d", d=self.means.shape[1])
        return self._dist.log_prob(x.double()[:, None, :]) + self.log_prior

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        r"""The marginal density :math:`\log p(x) = \log \sum_y p(x, y)`: ``(n,)``."""
        return torch.logsumexp(self.log_joint(x), dim=1)

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        r"""Bayes' rule, :math:`p(y \mid x) = p(x, y) / p(x)`: ``(n, k)``."""
        return self.log_joint(x).softmax(dim=1).float()

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_joint(x).argmax(dim=1)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` new labelled points: first :math:`y \\sim \\pi`, then :math:`x \\sim p(x \\mid y)`.

        Returns ``x: (n, d)`` (float32) and ``y: (n,)``.
        """
        self._fitted()
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        y = torch.multinomial(self.log_prior.exp(), n, replacement=True, generator=generator)
        chol = torch.linalg.cholesky(self.covs)[y]                                    # (n, d, d)
        eps = torch.randn(n, self.means.shape[1], generator=generator, dtype=torch.float64)
        x = self.means[y] + torch.einsum("nij,nj->ni", chol, eps)                   # x = mu + L eps
        return x.float(), y


class LogisticRegression:
    r"""Binary logistic regression, :math:`p(y = 1 \mid x) = \sigma(w^\top x + b)`.

    Fitted by minimising the mean cross-entropy plus an L2 penalty,

    .. math:: \mathcal{L}(w, b) = \frac{1}{n}\sum_i \big[\log(1 + e^{a_i}) - y_i a_i\big]
              + \frac{1}{2Cn}\|w\|^2, \quad a_i = w^\top x_i + b,

    the objective of scikit-learn's ``LogisticRegression(C=C)`` divided by
    :math:`n`, with L-BFGS. The loss is convex, so the optimum is unique.

    Example:
        >>> x = torch.tensor([[0.], [1.], [3.], [4.]])
        >>> LogisticRegression().fit(x, torch.tensor([0, 0, 1, 1])).predict(x).tolist()
        [0, 0, 1, 1]
    """

    def __init__(self, C: float = 1.0, max_iter: int = 200) -> None:
        if C <= 0:
            raise ValueError(f"C must be > 0, got {C}")
        self.C = C
        self.max_iter = max_iter

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> LogisticRegression:
        _check_xy(x, y)
        if not set(y.unique().tolist()) <= {0, 1}:
            raise ValueError(f"labels must be 0 or 1, got {sorted(y.unique().tolist())}")
        x, t = x.double(), y.double()
        n, d = x.shape
        w = torch.zeros(d, dtype=torch.float64, requires_grad=True)
        b = torch.zeros((), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=self.max_iter, tolerance_grad=1e-10,
                                tolerance_change=1e-12, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            a = x @ w + b
            loss = (torch.nn.functional.softplus(a) - t * a).mean() + (w @ w) / (2 * self.C * n)
            loss.backward()
            return loss

        opt.step(closure)
        self.weight, self.bias = w.detach(), b.detach()
        return self

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        if not hasattr(self, "weight"):
            raise ValueError("call fit(x, y) before using the model")
        check_shape("x", x, "n d", d=self.weight.shape[0])
        return x.double() @ self.weight + self.bias

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 2)``: the probabilities of class 0 and class 1."""
        p1 = torch.sigmoid(self.logits(x))
        return torch.stack([1 - p1, p1], dim=1).float()

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return (self.logits(x) > 0).long()


def accuracy(model: GaussianClassifier | LogisticRegression, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of points ``x: (n, d)`` whose predicted class equals ``y: (n,)``.

    ``y`` must have one label per point: a column ``(n, 1)`` would broadcast
    against the predictions into an ``(n, n)`` table and give a meaningless share.

    Example:
        >>> x = torch.tensor([[0.], [1.], [3.], [4.]])
        >>> y = torch.tensor([0, 0, 1, 1])
        >>> accuracy(LogisticRegression().fit(x, y), x, y)
        1.0
    """
    _check_xy(x, y)
    return (model.predict(x) == y).double().mean().item()

