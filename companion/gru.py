r"""A character-level GRU language model: the recurrent baseline of the attention chapter.

A recurrent network reads a sequence one token at a time and carries all it
remembers in a state :math:`h_t` of fixed size. The gated recurrent unit (GRU;
Cho et al., 2014) updates it with two gates, in ``torch.nn.GRU``'s convention,

.. math::
    r_t &= \mathrm{sigmoid}(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\
    z_t &= \mathrm{sigmoid}(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
    c_t &= \tanh\big(W_{ic} x_t + b_{ic} + r_t \odot (W_{hc} h_{t-1} + b_{hc})\big) \\
    h_t &= (1 - z_t) \odot c_t + z_t \odot h_{t-1}

(PyTorch calls the candidate :math:`c_t` "n"; here :math:`n` is the sequence
length). Unlike an n-gram model or a sliding-window attention it has no window:
:math:`h_t` depends on every earlier token. Unlike a causal transformer it
cannot compute the :math:`n` positions of a training sequence at once: step
:math:`t` needs :math:`h_{t-1}`. :func:`gru_cell` writes one step out;
:class:`CharGRU` runs ``torch.nn.GRU`` (the same equations, fused) between a
token embedding and a tied output layer, like :class:`companion.gpt.GPT`, and
returns logits that :func:`companion.gpt.next_token_loss` scores.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from companion import checks
from companion.gpt import token_ids

__all__ = ["GRUConfig", "CharGRU", "gru_cell"]


@dataclass(frozen=True)
class GRUConfig:
    """Sizes of a :class:`CharGRU`: ``layers`` stacked GRUs of state size ``dim``."""

    vocab_size: int
    dim: int = 128
    layers: int = 2

    def __post_init__(self) -> None:
        for name in ("vocab_size", "dim", "layers"):
            checks.positive_int(name, getattr(self, name))


class CharGRU(nn.Module):
    """A GRU language model: ids ``(b, n)`` -> next-token logits ``(b, n, vocab)``.

    Token embedding, ``layers`` GRUs, a layer norm and the output layer, tied to
    the embedding (logits :math:`\\mathrm{LN}(h) E^\\top`, as in the GPT).

    Example:
        >>> model = CharGRU(GRUConfig(vocab_size=10, dim=16, layers=2))
        >>> model(torch.randint(0, 10, (3, 8))).shape
        torch.Size([3, 8, 10])
    """

    def __init__(self, config: GRUConfig) -> None:
        super().__init__()
        self.config = checks.config(config, GRUConfig)
        dim = config.dim
        self.tok_emb = nn.Embedding(config.vocab_size, dim)
        nn.init.normal_(self.tok_emb.weight, std=dim ** -0.5)   # as the GPT's embedding
        self.rnn = nn.GRU(dim, dim, num_layers=config.layers, batch_first=True)
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, config.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight                  # logits = LN(h) E^T

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """``idx: (b, n)`` integer token ids -> logits ``(b, n, vocab)``; the state starts at 0."""
        idx = token_ids("idx", idx, self.config.vocab_size)
        checks.same_device("idx", idx, self)
        h, _ = self.rnn(self.tok_emb(idx))                      # (b, n, dim): h_1 .. h_n
        return self.head(self.ln_f(h))


def gru_cell(x: torch.Tensor, h: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
             b_ih: torch.Tensor, b_hh: torch.Tensor) -> torch.Tensor:
    r"""One GRU step written out: ``x (b, d_in)``, ``h (b, dim)`` -> ``h_t (b, dim)``.

    The weights are laid out as one layer of ``torch.nn.GRU``: ``w_ih (3 dim, d_in)``,
    ``w_hh (3 dim, dim)``, ``b_ih`` and ``b_hh (3 dim,)``, each stacking the reset,
    update and candidate rows in that order.

    Example:
        >>> gru = nn.GRU(3, 4)
        >>> x, h = torch.randn(2, 3), torch.zeros(2, 4)
        >>> ours = gru_cell(x, h, gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0)
        >>> torch.allclose(ours, gru(x[None], h[None])[0][0], atol=1e-6)
        True
    """
    x = checks.floats("x", x, "b d_in")
    b, d_in = x.shape
    h = checks.floats("h", h, "b dim", b=b)
    dim = h.shape[1]
    checks.tensor("w_ih", w_ih, "three_dim d_in", three_dim=3 * dim, d_in=d_in)
    checks.tensor("w_hh", w_hh, "three_dim dim", three_dim=3 * dim, dim=dim)
    checks.tensor("b_ih", b_ih, "three_dim", three_dim=3 * dim)
    checks.tensor("b_hh", b_hh, "three_dim", three_dim=3 * dim)
    xr, xz, xc = rearrange(x @ w_ih.T + b_ih, "b (three dim) -> three b dim", three=3)
    hr, hz, hc = rearrange(h @ w_hh.T + b_hh, "b (three dim) -> three b dim", three=3)
    r = torch.sigmoid(xr + hr)               # r_t: how much of h_{t-1} the candidate sees
    z = torch.sigmoid(xz + hz)               # z_t: how much of h_{t-1} is kept
    c = torch.tanh(xc + r * hc)              # c_t = tanh(W_ic x + b_ic + r * (W_hc h + b_hc))
    return (1 - z) * c + z * h               # h_t = (1 - z) c + z h_{t-1}
