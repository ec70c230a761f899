r"""A character n-gram language model: the smallest generative model of text.

An n-gram model of order :math:`n` assumes that each character depends only on
the :math:`n - 1` characters before it (a Markov chain of order :math:`n - 1`;
Shannon generated English-like text this way in 1948):

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

How the counts are stored: every distinct substring of length :math:`k` of the
training text gets a rank (its index in a sorted table), built one character at
a time, ``rank_k(s) = index of  rank_{k-1}(s[:-1]) * V + s[-1]`` in the sorted
table of level :math:`k`. Keys stay below :math:`nV` for a text of :math:`n`
characters, so any order fits in int64, and memory grows with the text, not
with :math:`V^{n}`. A substring never seen in training has no rank (``-1``).
The sorting and searching run in NumPy, whose sort is single-threaded: counting
costs the same on a busy machine as on an idle one.

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

import bisect
import math
from array import array

import numpy as np
import torch

from companion import rng

__all__ = ["NGramModel"]


class NGramModel:
    r"""A character n-gram model with add-alpha smoothing.

    Args:
        order: :math:`n \ge 1`; each character is predicted from the previous ``order - 1``.
        vocab_size: :math:`V`, the number of distinct token ids (ids are ``0..V-1``).
        alpha: the pseudo-count :math:`\alpha > 0` added to every (context, next) count.
            The default, 1, is Laplace's rule; high orders need a much smaller one.
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
        self.order = order
        self.vocab_size = vocab_size
        self.alpha = float(alpha)
        self._tables: list[np.ndarray] | None = None  # level k = 1..order: sorted keys, (u_k,)
        self._arrays: list[array] = []  # the same memory as int64 arrays, for fast scalar bisection
        self._pair_counts: torch.Tensor | None = None  # N(c, x) per rank of level `order`, (u_order,)
        self._context_counts: torch.Tensor | None = None  # N(c) per rank of level `order - 1`

    def __repr__(self) -> str:
        fitted = "unfitted" if self._tables is None else f"{len(self._context_counts)} contexts"
        return f"NGramModel(order={self.order}, vocab_size={self.vocab_size}, alpha={self.alpha}, {fitted})"

    # --- input checks and ranks -----------------------------------------------

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

    def _require_fit(self) -> None:
        if self._tables is None:
            raise ValueError("the model is not fitted yet: call .fit(ids) first")

    def _ranks(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ranks of every context and every (context, next) pair of ``ids``, -1 where unseen in training.

        Returns two ``(n - order + 1,)`` arrays: the rank of ``ids[i : i + order - 1]``
        and of ``ids[i : i + order]``.
        """
        n, w = len(ids), len(ids) - self.order + 1
        rank = np.zeros(n + 1, dtype=np.int64)  # level 0: the empty string, rank 0
        context = rank[:w]
        for k in range(1, self.order + 1):
            table = self._tables[k - 1]
            key = rank[: n - k + 1] * self.vocab_size + ids[k - 1:]  # (n - k + 1,)
            pos = np.minimum(np.searchsorted(table, key), len(table) - 1)
            found = (table[pos] == key) & (rank[: n - k + 1] >= 0)
            rank = np.where(found, pos, -1)
            if k == self.order - 1:
                context = rank[:w]
        return context, rank[:w]

    def _rank_of(self, context: list[int]) -> int:
        """Rank of one context (a list of ids), -1 if it never occurred in training."""
        rank = 0
        for k, x in enumerate(context):
            table = self._arrays[k]
            key = rank * self.vocab_size + x
            pos = bisect.bisect_left(table, key)
            if pos == len(table) or table[pos] != key:
                return -1
            rank = pos
        return rank

    # --- the model -------------------------------------------------------------

    def fit(self, ids: torch.Tensor) -> NGramModel:
        r"""Count every (context, next) pair of ``ids: (n,)``; returns ``self``.

        Fitting again replaces the counts. The first ``order - 1`` ids serve only
        as context: :math:`n - \text{order} + 1` pairs are counted.
        """
        ids = self._check_ids("ids", ids, self.order).numpy()
        n, tables = len(ids), []
        rank = np.zeros(n + 1, dtype=np.int64)
        for k in range(1, self.order + 1):  # rank every substring of length k
            key = rank[: n - k + 1] * self.vocab_size + ids[k - 1:]
            table, rank = np.unique(key, return_inverse=True)  # sorted keys; rank = index into them
            tables.append(table)
            if k == self.order - 1:
                context_rank = rank[: n - self.order + 1]  # contexts that have a next character
        # keep each table once, as an int64 array that NumPy views without a copy
        self._arrays = [array("q", t.tobytes()) for t in tables]
        self._tables = [np.frombuffer(a, dtype=np.int64) for a in self._arrays]
        pair_counts = np.bincount(rank, minlength=len(tables[-1]))  # N(c, x)
        self._pair_counts = torch.from_numpy(pair_counts.astype(np.float64))
        if self.order == 1:
            self._context_counts = torch.tensor([float(n)], dtype=torch.float64)
        else:
            context_counts = np.bincount(context_rank, minlength=len(tables[-2]))  # N(c)
            self._context_counts = torch.from_numpy(context_counts.astype(np.float64))
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
        return self._conditional_from_rank(self._rank_of(context.tolist()))

    def _conditional_from_rank(self, rank: int) -> torch.Tensor:
        v = self.vocab_size
        counts = torch.zeros(v, dtype=torch.float64)
        if rank >= 0:  # the pairs (c, x) of a context are one contiguous block of the sorted table
            table = self._arrays[-1]
            lo, hi = bisect.bisect_left(table, rank * v), bisect.bisect_left(table, rank * v + v)
            counts[torch.from_numpy(self._tables[-1][lo:hi] - rank * v)] = self._pair_counts[lo:hi]
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
        context, pair = self._ranks(self._check_ids("ids", ids, self.order).numpy())
        pair_counts, context_counts = self._pair_counts.numpy(), self._context_counts.numpy()
        n_cx = np.where(pair >= 0, pair_counts[np.maximum(pair, 0)], 0.0)  # N(c, x)
        n_c = np.where(context >= 0, context_counts[np.maximum(context, 0)], 0.0)  # N(c)
        log_p = np.log(n_cx + self.alpha) - np.log(n_c + self.alpha * self.vocab_size)
        return float(-log_p.mean())

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
        k = self.order - 1
        if prompt is not None:
            prompt = self._check_ids("prompt", prompt, k)
            context = prompt[len(prompt) - k:].tolist()
        else:
            rank = int(rng.multinomial(self._context_counts[None], 1, generator=generator))
            context = self._spell(rank, k)
        out = []
        for _ in range(n):
            p = self._conditional_from_rank(self._rank_of(context))
            x = int(rng.multinomial(p[None], 1, generator=generator))
            out.append(x)
            context = (context + [x])[1:] if k > 0 else []
        return torch.tensor(out, dtype=torch.int64)

    def _spell(self, rank: int, length: int) -> list[int]:
        """The ids of the substring with this rank at level ``length`` (inverse of :meth:`_rank_of`)."""
        ids = []
        for k in range(length, 0, -1):
            rank, x = divmod(self._arrays[k - 1][rank], self.vocab_size)
            ids.append(x)
        return ids[::-1]
