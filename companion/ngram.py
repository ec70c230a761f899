r"""A character n-gram language model: the smallest generative model of text.

An n-gram model of order :math:`n` assumes that each character depends only on
the :math:`n - 1` characters before it (a Markov chain of order :math:`n - 1`,
the model Shannon used in 1948 to generate English-like text):

.. math:: p(x_1, \dots, x_T) \approx \prod_t p(x_t \mid x_{t-n+1:t-1}).

Fitting is counting. With :math:`N(c, x)` the number of times character
:math:`x` follows the context :math:`c` in the training text and
:math:`N(c) = \sum_x N(c, x)`, *add-alpha* (Lidstone) smoothing over a vocabulary
of :math:`V` characters gives

.. math:: p(x \mid c) = \frac{N(c, x) + \alpha}{N(c) + \alpha V},

which is the maximum-likelihood estimate as :math:`\alpha \to 0`, Laplace's
add-one rule at :math:`\alpha = 1`, and the uniform distribution for a context
never seen in training. Order 1 has an empty context: it is the unigram
(character frequency) model.

Counts are stored sparsely: a context :math:`c = (c_1, \dots, c_{n-1})` is the
integer :math:`\sum_k c_k V^{n-1-k}` (its digits in base :math:`V`), and a
(context, next) pair is :math:`cV + x`; the sorted unique keys and their counts
are all the model keeps, so a high order costs memory in proportion to the text,
not to :math:`V^{n}`.

Example:
    >>> from companion.data import CharTokenizer
    >>> tok = CharTokenizer("abracadabra")
    >>> ids = tok.encode("abracadabra")  # (11,)
    >>> model = NGramModel(order=2, vocab_size=tok.vocab_size, alpha=0.5).fit(ids)
    >>> model.conditional(tok.encode("r"))  # "r" is followed by "a" twice: (2 + .5) / (2 + .5 * 5)
    tensor([0.5556, 0.1111, 0.1111, 0.1111, 0.1111], dtype=torch.float64)
    >>> round(model.nll(ids), 4)  # nats per character
    0.8889
    >>> model.sample(8, generator=torch.Generator().manual_seed(0), prompt=tok.encode("a")).shape
    torch.Size([8])
"""
from __future__ import annotations

import math

import torch

__all__ = ["NGramModel"]


class NGramModel:
    """A character n-gram model with add-alpha smoothing.

    Args:
        order: :math:`n \\ge 1`; each character is predicted from the previous ``order - 1``.
        vocab_size: :math:`V`, the number of distinct token ids (ids are ``0..V-1``).
        alpha: the smoothing pseudo-count :math:`\\alpha > 0` added to every (context, next) count.
    """

    def __init__(self, order: int, vocab_size: int, alpha: float = 1.0) -> None:
        if not isinstance(order, int) or isinstance(order, bool) or order < 1:
            raise ValueError(f"order must be an int >= 1, got {order!r}")
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 1:
            raise ValueError(f"vocab_size must be an int >= 1, got {vocab_size!r}")
        if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not alpha > 0 \
                or not math.isfinite(alpha):
            raise ValueError(f"alpha must be a finite number > 0 (alpha = 0 gives log 0 for unseen pairs), "
                             f"got {alpha!r}")
        if vocab_size ** order >= 2 ** 62:
            raise ValueError(f"vocab_size ** order = {vocab_size}**{order} does not fit the int64 keys; "
                             f"use a lower order or a smaller vocabulary")
        self.order = order
        self.vocab_size = vocab_size
        self.alpha = float(alpha)
        self._pair_keys: torch.Tensor | None = None  # sorted unique (context * V + next), (p,)
        self._pair_counts: torch.Tensor | None = None  # (p,) float64
        self._context_keys: torch.Tensor | None = None  # sorted unique contexts, (c,)
        self._context_counts: torch.Tensor | None = None  # (c,) float64

    def __repr__(self) -> str:
        fitted = "unfitted" if self._pair_keys is None else f"{len(self._context_keys)} contexts"
        return f"NGramModel(order={self.order}, vocab_size={self.vocab_size}, alpha={self.alpha}, {fitted})"

    # --- input checks and keys ----------------------------------------------

    def _check_ids(self, name: str, ids: torch.Tensor, min_len: int) -> torch.Tensor:
        if not isinstance(ids, torch.Tensor):
            raise ValueError(f"expected {name} to be a torch.Tensor of token ids, got {type(ids).__name__}")
        if ids.dim() != 1:
            raise ValueError(f"expected {name} of shape (n,), got {tuple(ids.shape)}")
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise ValueError(f"expected {name} to hold integer token ids, got dtype {ids.dtype}")
        if len(ids) < min_len:
            raise ValueError(f"{name} needs at least {min_len} ids for order {self.order}, got {len(ids)}")
        if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise ValueError(f"{name} holds ids outside [0, {self.vocab_size}): "
                             f"min {int(ids.min())}, max {int(ids.max())}")
        return ids.to(torch.int64).cpu()

    def _context_and_pair_keys(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys of every window of ``order`` ids: contexts ``(n - order + 1,)`` and pairs (same shape)."""
        windows = ids.unfold(0, self.order, 1)  # (w, order): w = n - order + 1
        powers = self.vocab_size ** torch.arange(self.order - 1, -1, -1, dtype=torch.int64)  # V^(n-1) .. 1
        pairs = windows @ powers  # c * V + x
        contexts = pairs // self.vocab_size
        return contexts, pairs

    def _require_fit(self) -> None:
        if self._pair_keys is None:
            raise ValueError("the model is not fitted yet: call .fit(ids) first")

    @staticmethod
    def _lookup(keys: torch.Tensor, counts: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """``counts`` of each ``query`` key in the sorted ``keys``, 0 where absent."""
        pos = torch.searchsorted(keys, query).clamp(max=len(keys) - 1)
        return torch.where(keys[pos] == query, counts[pos], torch.zeros((), dtype=counts.dtype))

    # --- the model -------------------------------------------------------------

    def fit(self, ids: torch.Tensor) -> NGramModel:
        r"""Count every (context, next) pair of ``ids: (n,)``; returns ``self``.

        Fitting again replaces the counts. The first ``order - 1`` ids serve only
        as context: :math:`n - \text{order} + 1` pairs are counted.
        """
        ids = self._check_ids("ids", ids, self.order)
        contexts, pairs = self._context_and_pair_keys(ids)
        self._pair_keys, pair_counts = torch.unique(pairs, sorted=True, return_counts=True)
        self._context_keys, context_counts = torch.unique(contexts, sorted=True, return_counts=True)
        self._pair_counts = pair_counts.double()
        self._context_counts = context_counts.double()
        return self

    def conditional(self, context: torch.Tensor) -> torch.Tensor:
        r"""The distribution :math:`p(\cdot \mid c)` of the next id after ``context: (order - 1,)``.

        Returns probabilities ``(V,)`` (float64) that sum to one; an unseen
        context gives the uniform distribution.
        """
        self._require_fit()
        context = self._check_ids("context", context, self.order - 1)
        if len(context) != self.order - 1:
            raise ValueError(f"expected context of shape ({self.order - 1},) for order {self.order}, "
                             f"got {tuple(context.shape)}")
        return self._conditional_from_key(self._context_key(context))

    def _context_key(self, context: torch.Tensor) -> int:
        key = 0
        for c in context.tolist():
            key = key * self.vocab_size + c
        return key

    def _conditional_from_key(self, key: int) -> torch.Tensor:
        v = self.vocab_size
        lo = int(torch.searchsorted(self._pair_keys, torch.tensor(key * v)))
        hi = int(torch.searchsorted(self._pair_keys, torch.tensor(key * v + v)))
        counts = torch.zeros(v, dtype=torch.float64)
        counts[self._pair_keys[lo:hi] - key * v] = self._pair_counts[lo:hi]
        # p(x | c) = (N(c, x) + alpha) / (N(c) + alpha V)
        return (counts + self.alpha) / (counts.sum() + self.alpha * v)

    def nll(self, ids: torch.Tensor) -> float:
        r"""Mean negative log-likelihood in nats per predicted character of ``ids: (n,)``.

        .. math:: \text{NLL} = -\frac{1}{n - \text{order} + 1}
                  \sum_{t=\text{order}}^{n} \log p(x_t \mid x_{t-\text{order}+1:t-1})

        Every id from position ``order`` on is predicted from the ``order - 1``
        before it (the first ``order - 1`` ids are context only). Divide by
        :math:`\ln 2` for bits per character.
        """
        self._require_fit()
        ids = self._check_ids("ids", ids, self.order)
        contexts, pairs = self._context_and_pair_keys(ids)
        pair_counts = self._lookup(self._pair_keys, self._pair_counts, pairs)
        context_counts = self._lookup(self._context_keys, self._context_counts, contexts)
        log_p = torch.log(pair_counts + self.alpha) - torch.log(context_counts + self.alpha * self.vocab_size)
        return -log_p.mean().item()

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None,
               prompt: torch.Tensor | None = None) -> torch.Tensor:
        r"""Draw ``n`` new ids ``(n,)``, one at a time, each from :math:`p(\cdot \mid \text{last order-1 ids})`.

        The first context is the last ``order - 1`` ids of ``prompt`` (which must
        have at least that many), or, without a prompt, a context drawn from the
        training text with the frequency it has there. Neither the prompt nor the
        drawn context is part of the output.
        """
        self._require_fit()
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        k, v = self.order - 1, self.vocab_size
        if prompt is not None:
            prompt = self._check_ids("prompt", prompt, k)
            key = self._context_key(prompt[len(prompt) - k:])
        else:
            which = torch.multinomial(self._context_counts, 1, generator=generator)
            key = int(self._context_keys[which])
        out = torch.empty(n, dtype=torch.int64)
        modulus = v ** k  # keeps the key to the last k ids: drop the oldest digit
        for t in range(n):
            x = int(torch.multinomial(self._conditional_from_key(key), 1, generator=generator))
            out[t] = x
            key = (key * v + x) % modulus if k > 0 else 0
        return out
