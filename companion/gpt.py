r"""A tiny decoder-only transformer (GPT) for character-level language models.

In the spirit of Karpathy's minGPT/nanoGPT ``model.py``, shrunk to what a CPU
trains in a minute. A GPT models a sequence autoregressively,

.. math:: p_\theta(x_1, \dots, x_n) = \prod_{i=1}^{n} p_\theta(x_i \mid x_{<i}),

with a stack of *pre-norm* blocks (GPT-2, Radford et al., 2019): each adds a
causal self-attention and an MLP to the residual stream,

.. math:: h \leftarrow h + \mathrm{MHA}(\mathrm{LN}(h)), \qquad
          h \leftarrow h + \mathrm{MLP}(\mathrm{LN}(h)).

The input embedding and the output layer are **tied** by default: the logits
are :math:`\mathrm{LN}(h)\, E^\top` with the token embedding :math:`E`, as in
GPT-2 and nanoGPT (Press & Wolf, 2017); ``tie_embeddings=False`` gives the
output layer its own weights. Following the package's conventions the network
returns logits only; :func:`next_token_loss` is the loss, :func:`generate`
the sampler and :func:`sample_next` its one step, shared with
:func:`companion.arm.sample`. Count parameters with
:func:`companion.utils.num_parameters` (a tied matrix counts once).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from companion import checks, rng
from companion.attention import (MultiHeadAttention, causal_mask, head_dim,
                                 sinusoidal_positions)
from companion.utils import mode

__all__ = ["GPTConfig", "Block", "GPT", "token_ids", "next_token_loss", "sample_next", "generate"]


@dataclass(frozen=True)
class GPTConfig:
    """Sizes of a :class:`GPT`; the defaults are nanoGPT's CPU character model.

    ``window`` restricts attention to the last ``window`` positions (``None``:
    the whole context); ``positions`` is ``"learned"`` (GPT-2) or
    ``"sinusoidal"`` (Vaswani et al., 2017).
    """

    vocab_size: int
    context: int = 64
    layers: int = 4
    heads: int = 4
    dim: int = 128
    tie_embeddings: bool = True
    positions: str = "learned"
    window: int | None = None

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context", "layers"):
            checks.positive_int(name, getattr(self, name))
        head_dim(self.dim, self.heads)
        if self.positions not in ("learned", "sinusoidal"):
            raise ValueError("positions must be 'learned' or 'sinusoidal', "
                             f"got {self.positions!r}")
        if self.window is not None:
            checks.positive_int("window", self.window)


class Block(nn.Module):
    """A pre-norm transformer block of width ``dim`` with ``heads`` heads: attention, then a 4x-wide GELU MLP.

    With ``mask=None`` it is an encoder block (every token sees every
    token); with a causal mask, a decoder block.

    Example:
        >>> h, weights = Block(dim=16, heads=2)(torch.randn(3, 5, 16))
        >>> tuple(h.shape), tuple(weights.shape)
        ((3, 5, 16), (3, 2, 5, 5))
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        head_dim(dim, heads)
        self.ln1 = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(),
                                 nn.Linear(4 * dim, dim))

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``h (b, n, dim)`` -> ``h (b, n, dim)``, ``weights (b, heads, n, n)``.

        ``mask``: bool, broadcastable to ``(b, heads, n, n)``, or None.
        A float64 ``h`` is cast to the block's dtype.
        """
        h = checks.floats("h", h, "b n dim", model=self, dim=self.attn.dim)
        a, weights = self.attn._attend(self.ln1(h), mask)     # h is checked: no second pass
        h = h + a                            # h <- h + MHA(LN(h))
        h = h + self.mlp(self.ln2(h))        # h <- h + MLP(LN(h))
        return h, weights


class GPT(nn.Module):
    """A decoder-only transformer: ids ``(b, n)`` -> next-token logits ``(b, n, vocab)``.

    Example:
        >>> config = GPTConfig(vocab_size=10, context=8, layers=2, heads=2, dim=16)
        >>> GPT(config)(torch.randint(0, 10, (3, 8))).shape
        torch.Size([3, 8, 10])
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = checks.config(config, GPTConfig)
        n, dim = config.context, config.dim
        self.tok_emb = nn.Embedding(config.vocab_size, dim)
        if config.positions == "learned":
            self.pos_emb = nn.Parameter(torch.zeros(n, dim))
        else:
            self.register_buffer("pos_emb", sinusoidal_positions(n, dim),
                                 persistent=False)
        self.blocks = nn.ModuleList(Block(dim, config.heads) for _ in range(config.layers))
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, config.vocab_size, bias=False)
        self.register_buffer("mask", causal_mask(n, config.window),
                             persistent=False)
        self._init_weights()
        if config.tie_embeddings:
            self.head.weight = self.tok_emb.weight   # logits = LN(h) E^T

    def _init_weights(self) -> None:
        """Normal(0, 1/dim) weights and zero biases; residual projections
        scaled down by sqrt(2 layers), as in GPT-2.

        GPT-2 and nanoGPT use a fixed standard deviation of 0.02, which suits
        widths of several hundred. At width 128 it is four times smaller than
        1/sqrt(dim), so Adam's first steps (each of size about the learning
        rate per weight) dominate the initial weights; without a learning-rate
        warm-up, which :func:`companion.train.train` does not have, such a
        model stalled near the bigram loss for hundreds of steps in our runs.
        """
        std = self.config.dim ** -0.5
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        if self.config.positions == "learned":
            nn.init.normal_(self.pos_emb, std=std)
        residual_std = std / math.sqrt(2 * self.config.layers)
        for block in self.blocks:
            for proj in (block.attn.proj, block.mlp[2]):
                nn.init.normal_(proj.weight, std=residual_std)

    def _run(self, idx: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        idx = token_ids("idx", idx, self.config.vocab_size)
        checks.same_device("idx", idx, self)
        n, context = idx.shape[1], self.config.context
        if n > context:
            raise ValueError(f"sequence of length {n} exceeds the context {context}")
        h = self.tok_emb(idx) + self.pos_emb[:n]            # (b, n, dim)
        maps = []
        for block in self.blocks:
            h, weights = block(h, self.mask[:n, :n])
            maps.append(weights)
        return self.head(self.ln_f(h)), maps

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """``idx: (b, n)`` integer token ids, ``1 <= n <= context`` -> logits ``(b, n, vocab)``."""
        return self._run(idx)[0]

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> torch.Tensor:
        """All attention weights for ``idx: (b, n)``: ``(layers, b, heads, n, n)``."""
        return torch.stack(self._run(idx)[1])


def token_ids(name: str, idx: object, vocab_size: int, *, padding: bool = False) -> torch.Tensor:
    """``idx`` checked as integer token ids ``(b, n)`` in ``[0, vocab_size)``, as int64; ``-1`` too if ``padding``.

    Example:
        >>> token_ids("idx", torch.tensor([[0, 4]], dtype=torch.int32), 5).dtype
        torch.int64
        >>> token_ids("idx", torch.tensor([[0, 5]]), 5)
        Traceback (most recent call last):
        ...
        ValueError: expected idx to hold token ids in [0, 5), got values in [0, 5]
    """
    idx = checks.tensor(name, idx, "b n")
    if idx.shape[1] == 0:
        raise ValueError(f"expected {name} to hold at least one token per sequence, got shape {tuple(idx.shape)}")
    if idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
        raise ValueError(f"expected {name} to hold integer token ids, got {idx.dtype}")
    low = -1 if padding else 0
    if bool((idx < low).any()) or bool((idx >= vocab_size).any()):
        allowed = f"[{low}, {vocab_size})" + (" (-1 = padding)" if padding else "")
        raise ValueError(f"expected {name} to hold token ids in {allowed}, got values in "
                         f"[{idx.min().item()}, {idx.max().item()}]")
    return idx.long()


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    r"""Mean cross-entropy of each sequence in nats per token, ``(b,)``.

    ``logits: (b, n, vocab)`` predict ``targets: (b, n)``:

    .. math:: \ell = -\frac{1}{n} \sum_{i=1}^{n}
              \log p_\theta(x_{i+1} \mid x_{\le i})

    Example:
        >>> logits = torch.zeros(2, 3, 4)            # uniform over 4 tokens
        >>> next_token_loss(logits, torch.zeros(2, 3, dtype=torch.long))
        tensor([1.3863, 1.3863])
    """
    logits = checks.floats("logits", logits, "b n vocab")
    targets = token_ids("targets", targets, logits.shape[2])
    checks.tensor("targets", targets, "b n", b=logits.shape[0], n=logits.shape[1])
    nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    return nll.mean(dim=1)


def sample_next(logits: torch.Tensor, *, temperature: float = 1.0, top_k: int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    r"""One token per row from :math:`\mathrm{softmax}(\text{logits} / \tau)`: ``logits (b, vocab)`` -> ids ``(b, 1)``.

    ``temperature`` :math:`\tau = 1` samples the model itself, :math:`\tau < 1` sharpens
    the distribution, :math:`\tau > 1` flattens it and :math:`\tau = 0` takes the argmax
    (greedy, no random draw). ``top_k`` keeps only the ``k`` largest logits. The
    draw is made on the CPU from ``generator`` (:func:`companion.rng.multinomial`)
    and returned on the logits' device. The one step of :func:`generate` and of
    :func:`companion.arm.sample`.

    Example:
        >>> logits = torch.tensor([[0.0, 2.0, 1.0]])
        >>> sample_next(logits, temperature=0).tolist()
        [[1]]
        >>> sample_next(logits, top_k=1, generator=torch.Generator().manual_seed(0)).tolist()
        [[1]]
    """
    logits = checks.floats("logits", logits, "b vocab")
    vocab = logits.shape[1]
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not 0 <= temperature < math.inf:
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or not 1 <= top_k <= vocab):
        raise ValueError(f"top_k must be an int in [1, {vocab}] or None, got {top_k!r}")
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return rng.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)


@torch.no_grad()
def generate(model: GPT, idx: torch.Tensor, max_new_tokens: int, *,
             temperature: float = 1.0, top_k: int | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Sample ``max_new_tokens`` tokens after the prompt ``idx: (b, t)``.

    Each step feeds the last ``context`` tokens, takes the last position's
    logits and draws the next token with :func:`sample_next` (``temperature``,
    ``top_k``, ``generator``). Returns ``(b, t + new)`` on the model's device; the
    model runs in evaluation mode and is left in the mode it was in.

    Example:
        >>> model = GPT(GPTConfig(5, context=4, layers=1, heads=1, dim=8))
        >>> out = generate(model, torch.zeros(2, 1, dtype=torch.long), 6,
        ...                generator=torch.Generator().manual_seed(0))
        >>> tuple(out.shape)
        (2, 7)
    """
    idx = token_ids("idx", idx, model.config.vocab_size)
    checks.same_device("idx", idx, model)
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be a non-negative int, got {max_new_tokens!r}")
    with mode(model, training=False):
        for _ in range(max_new_tokens):
            logits = model(idx[:, -model.config.context:])[:, -1]          # (b, vocab)
            nxt = sample_next(logits, temperature=temperature, top_k=top_k, generator=generator)
            idx = torch.cat([idx, nxt], dim=1)
    return idx
