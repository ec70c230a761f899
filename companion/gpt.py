r"""A tiny decoder-only transformer (GPT) for character-level language models.

In the spirit of Karpathy's minGPT/nanoGPT ``model.py``, shrunk to what a CPU
trains in a minute. A GPT models a sequence autoregressively,

.. math:: p_\theta(x_1, \dots, x_T) = \prod_{t=1}^{T} p_\theta(x_t \mid x_{<t}),

with a stack of *pre-norm* blocks (GPT-2, Radford et al., 2019): each adds a
causal self-attention and an MLP to the residual stream,

.. math:: h \leftarrow h + \mathrm{MHA}(\mathrm{LN}(h)), \qquad
          h \leftarrow h + \mathrm{MLP}(\mathrm{LN}(h)).

The input embedding and the output layer are **tied** by default: the logits
are :math:`\mathrm{LN}(h)\, E^\top` with the token embedding :math:`E`, as in
GPT-2 and nanoGPT (Press & Wolf, 2017); ``tie_embeddings=False`` gives the
output layer its own weights. Following the package's conventions the network
returns logits only; :func:`next_token_loss` is the loss and :func:`generate`
the sampler.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from companion.attention import (MultiHeadAttention, causal_mask,
                                 sinusoidal_positions)
from companion.utils import check_shape

__all__ = ["GPTConfig", "Block", "GPT", "next_token_loss", "generate"]


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
        for name in ("vocab_size", "context", "layers", "heads", "dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.dim % self.heads:
            raise ValueError("dim must be a multiple of heads, "
                             f"got dim={self.dim}, heads={self.heads}")
        if self.positions not in ("learned", "sinusoidal"):
            raise ValueError("positions must be 'learned' or 'sinusoidal', "
                             f"got {self.positions!r}")
        window = self.window
        if window is not None and (not isinstance(window, int) or window < 1):
            raise ValueError(f"window must be a positive int or None, got {window!r}")


class Block(nn.Module):
    """A pre-norm transformer block: attention, then a 4x-wide GELU MLP.

    With ``mask=None`` it is an encoder block (every token sees every
    token); with a causal mask, a decoder block.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        dim = config.dim
        self.ln1 = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, config.heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(),
                                 nn.Linear(4 * dim, dim))

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``h (b, n, dim)`` -> ``h (b, n, dim)``, ``weights (b, heads, n, n)``.

        ``mask``: bool, broadcastable to ``(b, heads, n, n)``, or None.
        """
        a, weights = self.attn(self.ln1(h), mask)
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
        self.config = config
        n, dim = config.context, config.dim
        self.tok_emb = nn.Embedding(config.vocab_size, dim)
        if config.positions == "learned":
            self.pos_emb = nn.Parameter(torch.zeros(n, dim))
        else:
            self.register_buffer("pos_emb", sinusoidal_positions(n, dim),
                                 persistent=False)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
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

    def _check_idx(self, idx: torch.Tensor) -> None:
        check_shape("idx", idx, "b n")
        if idx.dtype != torch.int64:
            raise ValueError(f"idx must hold int64 token ids, got {idx.dtype}")
        n, context, vocab = idx.shape[1], self.config.context, self.config.vocab_size
        if n > context:
            raise ValueError(f"sequence of length {n} exceeds the context {context}")
        if idx.numel() and (idx.min() < 0 or idx.max() >= vocab):
            raise ValueError(f"token ids must lie in [0, {vocab})")

    def _run(self, idx: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        self._check_idx(idx)
        n = idx.shape[1]
        h = self.tok_emb(idx) + self.pos_emb[:n]            # (b, n, dim)
        maps = []
        for block in self.blocks:
            h, weights = block(h, self.mask[:n, :n])
            maps.append(weights)
        return self.head(self.ln_f(h)), maps

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """``idx: (b, n)`` int64, ``n <= context`` -> logits ``(b, n, vocab)``."""
        return self._run(idx)[0]

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> torch.Tensor:
        """All attention weights for ``idx: (b, n)``: ``(layers, b, heads, n, n)``."""
        return torch.stack(self._run(idx)[1])

    def num_params(self) -> int:
        """Number of distinct parameters (a tied matrix counts once)."""
        return sum(p.numel() for p in self.parameters())


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    r"""Mean cross-entropy of each sequence in nats per token, ``(b,)``.

    ``logits: (b, n, vocab)`` predict ``targets: (b, n)``:

    .. math:: \ell = -\frac{1}{n} \sum_{t=1}^{n}
              \log p_\theta(x_{t+1} \mid x_{\le t})

    Example:
        >>> logits = torch.zeros(2, 3, 4)            # uniform over 4 tokens
        >>> next_token_loss(logits, torch.zeros(2, 3, dtype=torch.long))
        tensor([1.3863, 1.3863])
    """
    check_shape("logits", logits, "b n vocab")
    check_shape("targets", targets, "b n", b=logits.shape[0], n=logits.shape[1])
    nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    return nll.mean(dim=1)


@torch.no_grad()
def generate(model: GPT, idx: torch.Tensor, max_new_tokens: int, *,
             temperature: float = 1.0, top_k: int | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Sample ``max_new_tokens`` tokens after the prompt ``idx: (b, t)``.

    Each step feeds the last ``context`` tokens, takes the last position's
    logits, divides them by ``temperature`` (``0`` means greedy: argmax),
    keeps the ``top_k`` largest if given, and draws from
    :math:`\mathrm{softmax}(\text{logits} / T)`. Returns ``(b, t + new)``.

    Example:
        >>> model = GPT(GPTConfig(5, context=4, layers=1, heads=1, dim=8))
        >>> out = generate(model, torch.zeros(2, 1, dtype=torch.long), 6,
        ...                generator=torch.Generator().manual_seed(0))
        >>> tuple(out.shape)
        (2, 7)
    """
    vocab = model.config.vocab_size
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError("max_new_tokens must be a non-negative int, "
                         f"got {max_new_tokens!r}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and not 1 <= top_k <= vocab:
        raise ValueError(f"top_k must be in [1, {vocab}], got {top_k}")
    check_shape("idx", idx, "b t")
    if idx.shape[1] == 0:
        raise ValueError("the prompt idx must hold at least one token "
                         "per sequence")
    was_training = model.training
    model.eval()
    for _ in range(max_new_tokens):
        context = idx[:, -model.config.context:]
        logits = model(context)[:, -1]                  # (b, vocab)
        if temperature == 0:
            nxt = logits.argmax(dim=-1, keepdim=True)
        else:
            logits = logits / temperature
            if top_k is not None:
                kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = torch.softmax(logits, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator)
        idx = torch.cat([idx, nxt], dim=1)
    model.train(was_training)
    return idx
