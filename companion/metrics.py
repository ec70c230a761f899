r"""Measurements of generated samples: distances between sample sets, sharpness, memorisation.

The chapters turn claims ("blurrier", "more diverse", "it copies its training
data") into numbers with these functions:

* :func:`energy_distance` for 2-D point sets (no features needed);
* :func:`frechet_distance` between Gaussians fitted to feature sets, used with the
  features of a small :class:`DigitClassifier` trained on the 8x8 digits (the
  same idea as the FID of Heusel et al. 2017, which uses an Inception network);
* :func:`sharpness`, the mean squared response to a Laplacian filter;
* :func:`nearest_neighbour_distance` to a reference set, a memorisation check;
* :func:`within_class_distance`, the diversity of samples of one class.
"""
from __future__ import annotations

import torch
from torch import nn

from companion import checks
from companion.data import digits
from companion.train import train
from companion.utils import check_shape, fresh_init, mode

__all__ = ["energy_distance", "frechet_distance", "sharpness", "nearest_neighbour_distance",
           "within_class_distance", "DigitClassifier", "train_digit_classifier", "classifier_scores"]


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    r"""The squared energy distance between two samples ``x: (n, d)`` and ``y: (m, d)``.

    .. math:: \mathcal{E}^2 = 2\,\mathbb{E}\|X - Y\| - \mathbb{E}\|X - X'\| - \mathbb{E}\|Y - Y'\|

    (Szekely & Rizzo 2013). It is zero exactly when the two distributions are
    equal. The within-sample terms leave out the zero diagonal, so they are
    unbiased.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> a, b = torch.randn(500, 2, generator=g), torch.randn(500, 2, generator=g)
        >>> abs(energy_distance(a, b)) < 0.02, energy_distance(a, b + 3) > 1
        (True, True)
    """
    checks.floats("x", x, "n d")
    checks.floats("y", y, "m d", d=x.shape[1])
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError(f"need at least 2 points in each sample, got {x.shape[0]} and {y.shape[0]}")
    x, y = x.double(), y.double()
    n, m = x.shape[0], y.shape[0]
    xy = torch.cdist(x, y).mean()
    xx = torch.cdist(x, x).sum() / (n * (n - 1))
    yy = torch.cdist(y, y).sum() / (m * (m - 1))
    return (2 * xy - xx - yy).item()


def _sqrtm_psd(a: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix, by eigendecomposition."""
    evals, evecs = torch.linalg.eigh(a)
    return evecs @ torch.diag(evals.clamp(min=0).sqrt()) @ evecs.T


def frechet_distance(fa: torch.Tensor, fb: torch.Tensor) -> float:
    r"""Frechet distance between Gaussians fitted to two feature sets ``(n, k)`` and ``(m, k)``.

    .. math:: d^2 = \|\mu_a - \mu_b\|^2 + \operatorname{tr}\big(\Sigma_a + \Sigma_b
              - 2(\Sigma_a^{1/2}\Sigma_b\Sigma_a^{1/2})^{1/2}\big)

    The trace term is computed from the symmetric matrix
    :math:`\Sigma_a^{1/2}\Sigma_b\Sigma_a^{1/2}`, which has the same
    eigenvalues as :math:`\Sigma_a\Sigma_b` and is numerically stable.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> f = torch.randn(2000, 3, generator=g)
        >>> round(frechet_distance(f, f), 6), round(frechet_distance(f, f + 1), 2)
        (0.0, 3.0)
    """
    checks.floats("fa", fa, "n k")
    checks.floats("fb", fb, "m k", k=fa.shape[1])
    if fa.shape[0] < 2 or fb.shape[0] < 2:
        raise ValueError("need at least 2 feature vectors in each set")
    fa, fb = fa.double(), fb.double()
    mu_a, mu_b = fa.mean(0), fb.mean(0)
    cov_a, cov_b = torch.cov(fa.T, correction=1), torch.cov(fb.T, correction=1)
    cov_a, cov_b = torch.atleast_2d(cov_a), torch.atleast_2d(cov_b)
    root_a = _sqrtm_psd(cov_a)
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    d2 = (mu_a - mu_b).pow(2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * cross
    return d2.clamp(min=0).item()


LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
"""The discrete Laplacian: large where intensity changes abruptly (edges)."""


def sharpness(images: torch.Tensor) -> torch.Tensor:
    r"""Per-image sharpness: the mean squared Laplacian response over the interior pixels.

    ``images: (b, 1, h, w)`` -> ``(b,)``. A blurred image has weaker second
    derivatives, so a lower value; the variance of the Laplacian is the classic
    focus measure (Pech-Pacheco et al. 2000).

    Example:
        >>> flat, edge = torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)
        >>> edge[..., 4:] = 1.0
        >>> bool(sharpness(edge) > sharpness(flat))
        True
    """
    checks.floats("images", images, "b 1 h w")
    if images.shape[-1] < 3 or images.shape[-2] < 3:
        raise ValueError(f"images must be at least 3x3, got {tuple(images.shape[-2:])}")
    kernel = LAPLACIAN.to(images)[None, None]
    return nn.functional.conv2d(images, kernel).pow(2).mean(dim=(1, 2, 3))


def nearest_neighbour_distance(samples: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Euclidean distance from each sample to its nearest reference item.

    ``samples: (b, ...)``, ``reference: (m, ...)`` with the same trailing shape;
    returns ``(b,)``. A generator that copies its training set has distances
    near zero to it.
    """
    if samples.shape[1:] != reference.shape[1:]:
        raise ValueError(f"samples {tuple(samples.shape)} and reference {tuple(reference.shape)} "
                         "must share their trailing shape")
    if samples.shape[0] == 0 or reference.shape[0] == 0:
        raise ValueError("samples and reference must not be empty")
    a = samples.reshape(samples.shape[0], -1).double()
    b = reference.reshape(reference.shape[0], -1).double()
    return torch.cdist(a, b).min(dim=1).values.float()


def within_class_distance(images: torch.Tensor, labels: torch.Tensor) -> float:
    r"""Diversity: the mean distance between two different images of the same class.

    .. math:: \frac{1}{K} \sum_k \operatorname{mean}_{i \ne j,\ y_i = y_j = k} \lVert x_i - x_j \rVert

    ``images: (b, ...)``, ``labels: (b,)``; every class present needs two images.
    Samples that all look alike score near zero however good each one is.

    Example:
        >>> within_class_distance(torch.tensor([[0.], [3.], [5.], [5.]]), torch.tensor([0, 0, 1, 1]))
        1.5
    """
    check_shape("labels", labels, "b", b=images.shape[0])
    flat = images.reshape(images.shape[0], -1).double()
    classes = labels.unique()
    if any((labels == c).sum() < 2 for c in classes):
        raise ValueError("every class in labels needs at least two images")
    return torch.stack([torch.pdist(flat[labels == c]).mean() for c in classes]).mean().item()


class DigitClassifier(nn.Module):
    """A small CNN for the 8x8 digits: ``x: (b, 1, 8, 8)`` in [0, 1] -> logits ``(b, 10)``.

    ``features(x) -> (b, 64)`` is the penultimate layer, the feature space of
    :func:`frechet_distance` in the chapters.
    """

    def __init__(self, width: int = 32, feature_dim: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),                                   # (b, width, 4, 4)
            nn.Flatten(), nn.Linear(width * 16, feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        check_shape("x", x, "b 1 8 8")
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_digit_classifier(seed: int = 0, steps: int = 600) -> DigitClassifier:
    """Train a :class:`DigitClassifier` on the train split (a few seconds on a CPU).

    Small random shifts of up to one pixel make it robust to the slight
    misalignments of generated digits. Returned in ``eval`` mode. The initial
    weights come from ``seed`` without touching the global random generator.
    """
    x, y = digits("train")
    model = fresh_init(DigitClassifier, seed)
    gen = torch.Generator().manual_seed(seed)

    def loss_fn(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        shift = torch.randint(-1, 2, (2,), generator=gen).tolist()
        xb = torch.roll(xb, shifts=shift, dims=(2, 3))
        return nn.functional.cross_entropy(model(xb), yb, reduction="none")

    train(loss_fn, model.parameters(), (x, y), steps=steps, lr=2e-3, batch_size=128,
          seed=seed, weight_decay=1e-4, desc="digit classifier")
    return model.eval()


@torch.no_grad()
def classifier_scores(classifier: DigitClassifier, images: torch.Tensor,
                      reference: torch.Tensor | None = None) -> dict[str, object]:
    """Score generated digits ``images: (b, 1, 8, 8)`` in [0, 1] with a trained classifier.

    ``images`` (and ``reference``) must be intensities in [0, 1] on the classifier's
    device: grey levels 0..16 are refused, not scored as if they were intensities.
    Returns a dict with ``fd`` (Frechet distance of classifier features to
    ``reference``, by default the test split), ``confidence`` (mean largest
    class probability), ``labels`` (predicted class per image, ``(b,)``) and
    ``class_histogram`` (share of each predicted class, ``(10,)``).
    """
    images = checks.intensities("images", images, "b 1 8 8", model=classifier)
    if reference is None:
        reference = digits("test")[0].to(checks.model_device(classifier))
    reference = checks.intensities("reference", reference, "m 1 8 8", model=classifier)
    with mode(classifier, training=False):
        probs = classifier(images).softmax(dim=1)
        features, reference_features = classifier.features(images), classifier.features(reference)
    labels = probs.argmax(dim=1)
    return {
        "fd": frechet_distance(features.cpu(), reference_features.cpu()),
        "confidence": probs.max(dim=1).values.mean().item(),
        "labels": labels,
        "class_histogram": torch.bincount(labels, minlength=10).float() / labels.numel(),
    }
