"""Data sets that need no download: 2-D toys, the 8x8 digits, and an offline text corpus.

* 2-D toys (``two_moons``, ``eight_gaussians``, ``swiss_roll``, ``checkerboard``,
  ``gaussian_classes``) are sampled from an explicit generating process, so a
  chapter can compute their true density where it needs a floor to compare with.
  Each returns a float tensor ``x: (n, 2)``.
* ``digits(split)`` is scikit-learn's bundled 8x8 digits (1797 images, 17 grey
  levels) with the split of Tomczak's *Deep Generative Modeling* code: the first
  1000 images train, the next 350 validate, the last 447 test.
* ``text_corpus()`` is the English documentation text that ships inside CPython
  (``pydoc_data.topics``), with a character-level :class:`CharTokenizer`.
"""
from __future__ import annotations

import math

import torch

from companion.utils import check_shape

__all__ = [
    "two_moons", "eight_gaussians", "ring_modes", "swiss_roll", "checkerboard",
    "gaussian_classes", "digits", "DIGIT_SPLITS", "DIGIT_LEVELS",
    "to_intensities", "nats_to_bits_per_dim", "independent_pixels_nll", "text_corpus", "CharTokenizer",
]


def _generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator | None:
    """One generator from either a seed or a generator (not both)."""
    if seed is not None and generator is not None:
        raise ValueError("pass either seed or generator, not both")
    if seed is not None:
        return torch.Generator().manual_seed(seed)
    return generator


def _check_n(n: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")


def two_moons(n: int, *, noise: float = 0.1, seed: int | None = None,
              generator: torch.Generator | None = None,
              return_labels: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    r"""Two interleaved half circles with Gaussian noise.

    Each point picks a moon :math:`y \in \{0, 1\}` with probability 1/2 and an
    angle :math:`\theta \sim U(0, \pi)`; moon 0 is :math:`(\cos\theta, \sin\theta)`,
    moon 1 is :math:`(1 - \cos\theta, 1/2 - \sin\theta)`; then
    :math:`\mathcal{N}(0, \text{noise}^2 I)` is added. This is scikit-learn's
    ``make_moons`` with a random rather than an evenly spaced angle, which
    makes it a distribution whose density we can write down.

    Returns ``x: (n, 2)`` and, with ``return_labels``, ``y: (n,)`` (int64).

    Example:
        >>> two_moons(4, seed=0).shape
        torch.Size([4, 2])
    """
    _check_n(n)
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    g = _generator(seed, generator)
    y = torch.randint(0, 2, (n,), generator=g)
    theta = math.pi * torch.rand(n, generator=g)
    upper = torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)
    lower = torch.stack([1 - torch.cos(theta), 0.5 - torch.sin(theta)], dim=1)
    x = torch.where(y[:, None] == 0, upper, lower)
    x = x + noise * torch.randn(n, 2, generator=g)
    return (x, y) if return_labels else x


def ring_modes(k: int = 8, radius: float = 2.0) -> torch.Tensor:
    """The ``k`` centres of a ring of Gaussians, ``(k, 2)``, the first at angle 0."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    angle = 2 * math.pi * torch.arange(k) / k
    return radius * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)


def eight_gaussians(n: int, *, radius: float = 2.0, std: float = 0.02, seed: int | None = None,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """A ring of 8 equally weighted Gaussians: the classic test of mode collapse.

    The defaults (radius 2, standard deviation 0.02) are those of the unrolled
    GAN and VEEGAN experiments; :func:`ring_modes` gives the centres.

    Example:
        >>> eight_gaussians(3, seed=0).shape
        torch.Size([3, 2])
    """
    _check_n(n)
    g = _generator(seed, generator)
    centres = ring_modes(8, radius)
    which = torch.randint(0, 8, (n,), generator=g)
    return centres[which] + std * torch.randn(n, 2, generator=g)


def swiss_roll(n: int, *, noise: float = 0.5, seed: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    r"""A 2-D spiral: :math:`t \sim 1.5\pi(1 + 2U)`, :math:`x = (t\cos t, t\sin t)/5` plus noise.

    Example:
        >>> swiss_roll(3, seed=0).shape
        torch.Size([3, 2])
    """
    _check_n(n)
    g = _generator(seed, generator)
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=g))
    x = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1)
    return (x + noise * torch.randn(n, 2, generator=g)) / 5


def checkerboard(n: int, *, seed: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform on the 8 dark squares of a 4x4 board covering ``[-4, 4]^2``.

    Example:
        >>> checkerboard(3, seed=0).shape
        torch.Size([3, 2])
    """
    _check_n(n)
    g = _generator(seed, generator)
    x1 = 4 * torch.rand(n, generator=g) - 2
    x2 = torch.rand(n, generator=g) - 2 * torch.randint(0, 2, (n,), generator=g)
    x2 = x2 + torch.floor(x1) % 2
    return 2 * torch.stack([x1, x2], dim=1)


def gaussian_classes(n: int, means: torch.Tensor, covs: torch.Tensor, *,
                     weights: torch.Tensor | None = None, seed: int | None = None,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Labelled points from a mixture with one Gaussian per class.

    ``means: (k, 2)``, ``covs: (k, 2, 2)``, ``weights: (k,)`` (uniform if None).
    Returns ``x: (n, 2)`` and labels ``y: (n,)``.

    Example:
        >>> x, y = gaussian_classes(5, torch.zeros(2, 2), torch.eye(2).repeat(2, 1, 1), seed=0)
        >>> x.shape, y.shape
        (torch.Size([5, 2]), torch.Size([5]))
    """
    _check_n(n)
    check_shape("means", means, "k 2")
    check_shape("covs", covs, "k 2 2", k=means.shape[0])
    k = means.shape[0]
    weights = torch.full((k,), 1.0 / k) if weights is None else weights
    check_shape("weights", weights, "k", k=k)
    g = _generator(seed, generator)
    y = torch.multinomial(weights, n, replacement=True, generator=g)
    chol = torch.linalg.cholesky(covs.to(torch.float64)).to(torch.float32)
    eps = torch.randn(n, 2, generator=g)
    x = means[y].float() + torch.einsum("bij,bj->bi", chol[y], eps)
    return x, y


# --- the 8x8 digits ---------------------------------------------------------

DIGIT_SPLITS = {"train": slice(0, 1000), "val": slice(1000, 1350), "test": slice(1350, 1797)}
"""Tomczak's split of scikit-learn's digits, by index."""

DIGIT_LEVELS = 17
"""Grey levels of the digits: integers 0..16."""


def digits(split: str = "train", *, as_levels: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The 8x8 digits shipped with scikit-learn, split as in Tomczak's code.

    Returns ``(x, y)`` with ``x: (n, 1, 8, 8)`` and labels ``y: (n,)``;
    ``n`` is 1000, 350 or 447. ``x`` is float32 in [0, 1] (level / 16), or,
    with ``as_levels=True``, the integer grey levels 0..16 (int64), the form
    for discrete likelihoods.

    Example:
        >>> x, y = digits("test")
        >>> tuple(x.shape), float(x.max()) <= 1.0
        ((447, 1, 8, 8), True)
    """
    if split not in DIGIT_SPLITS:
        raise ValueError(f"split must be one of {sorted(DIGIT_SPLITS)}, got {split!r}")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    part = DIGIT_SPLITS[split]
    levels = torch.as_tensor(bunch.images[part], dtype=torch.int64).unsqueeze(1)
    labels = torch.as_tensor(bunch.target[part], dtype=torch.int64)
    if as_levels:
        return levels, labels
    return levels.float() / (DIGIT_LEVELS - 1), labels


def to_intensities(levels: torch.Tensor, num_levels: int = DIGIT_LEVELS) -> torch.Tensor:
    """Integer grey levels ``0 .. num_levels-1`` -> float intensities in [0, 1] (``level / 16``).

    Example:
        >>> to_intensities(torch.tensor([0, 8, 16])).tolist()
        [0.0, 0.5, 1.0]
    """
    if not isinstance(levels, torch.Tensor) or levels.is_floating_point() or levels.dtype == torch.bool:
        raise ValueError(f"expected integer grey levels, got {getattr(levels, 'dtype', type(levels).__name__)}")
    if levels.numel() and (levels.min() < 0 or levels.max() >= num_levels):
        raise ValueError(f"expected grey levels 0..{num_levels - 1}, got values in "
                         f"[{levels.min().item()}, {levels.max().item()}]")
    return levels.float() / (num_levels - 1)


def nats_to_bits_per_dim(nats: float | torch.Tensor, dims: int = 64) -> float | torch.Tensor:
    r"""Convert a negative log-likelihood in nats per example to bits per dimension.

    .. math:: \text{bpd} = \frac{\text{nats}}{D \ln 2}

    Example:
        >>> round(nats_to_bits_per_dim(64 * math.log(2), dims=64), 6)
        1.0
    """
    if dims < 1:
        raise ValueError(f"dims must be >= 1, got {dims}")
    return nats / (dims * math.log(2))


def independent_pixels_nll(train_levels: torch.Tensor, levels: torch.Tensor,
                           num_levels: int = DIGIT_LEVELS) -> torch.Tensor:
    r"""The yardstick of every likelihood in the book: :math:`-\log P(x)` in nats, ``(b,)``,
    for a model whose pixels are independent, each with its own histogram.

    .. math:: P(x) = \prod_j \frac{n_j(x_j) + 1}{n + K}

    :math:`n_j(k)` counts the training images whose pixel :math:`j` has level
    :math:`k` (one pseudo-count per level, so no level gets probability 0).
    ``train_levels: (n, ...)`` and ``levels: (b, ...)`` hold integer levels
    ``0 .. num_levels - 1`` with the same number of pixels.

    Example:
        >>> train = torch.tensor([[0, 1], [0, 1], [0, 0]])
        >>> nll = independent_pixels_nll(train, torch.tensor([[0, 1]]), num_levels=2)
        >>> round(nll.item(), 4) == round(-math.log(4 / 5 * 3 / 5), 4)
        True
    """
    if train_levels.is_floating_point() or levels.is_floating_point():
        raise ValueError("independent_pixels_nll takes integer levels (digits(as_levels=True))")
    train, test = train_levels.flatten(1), levels.flatten(1)
    if train.shape[1] != test.shape[1] or train.shape[0] == 0:
        raise ValueError(f"need non-empty training levels with as many pixels as levels, "
                         f"got {tuple(train_levels.shape)} and {tuple(levels.shape)}")
    if min(train.min(), test.min()) < 0 or max(train.max(), test.max()) >= num_levels:
        raise ValueError(f"levels must lie in 0 .. {num_levels - 1}")
    counts = torch.nn.functional.one_hot(train, num_levels).sum(0).double() + 1   # (pixels, K)
    log_p = (counts / counts.sum(1, keepdim=True)).log()
    return -log_p.gather(1, test.T).sum(0)


# --- text ---------------------------------------------------------------------

def text_corpus() -> str:
    """About 465k characters of English: the documentation topics that ship with CPython.

    ``pydoc_data.topics`` holds the text ``help()`` shows for keywords and
    topics; it is in every CPython installation, so nothing is downloaded.
    Topics are joined in sorted order, so the corpus is the same on every run.
    """
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


class CharTokenizer:
    """A character-level tokenizer: one token per distinct character of a text.

    Example:
        >>> tok = CharTokenizer("hello")
        >>> tok.vocab_size, tok.decode(tok.encode("hole"))
        (4, 'hole')
    """

    def __init__(self, text: str) -> None:
        if not text:
            raise ValueError("cannot build a vocabulary from an empty text")
        self.chars = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        """``text`` -> token ids ``(n,)`` int64; unknown characters raise."""
        unknown = sorted(set(text) - self.stoi.keys())
        if unknown:
            raise ValueError(f"characters not in the vocabulary: {unknown[:10]!r}")
        return torch.tensor([self.stoi[c] for c in text], dtype=torch.int64)

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        """Token ids ``(n,)`` -> text."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"token ids out of range [0, {self.vocab_size}): {bad[:10]}")
        return "".join(self.chars[i] for i in ids)
