r"""Cross-attention conditioning: the latent's tokens attend to the prompt's tokens (Rombach et al. 2022, sec. 3.3).

:class:`companion.latent_diffusion.TextConditionedDenoiser` hears the prompt as one
pooled vector :math:`g(y)`. Stable Diffusion's U-Net instead lets every position of
its feature map attend to every token of the prompt:

.. math:: \mathrm{CrossAttn}(H, C) = \mathrm{softmax}\Big(\frac{(H W^Q)(C W^K)^\top}{\sqrt{d_k}}\Big)\, C W^V,

with queries from the image side :math:`H` (here: one token per latent number) and
keys and values from the text encoder's token states :math:`C` (padding masked out).
The empty prompt is the start token alone, so classifier-free guidance works as before.

:class:`CrossAttentionDenoiser` has the same call as the pooled denoiser,
``forward(z, t, tokens)``, so :func:`companion.diffusion.ddpm_loss`,
:func:`companion.samplers.ddim_sample` and :func:`companion.latent_diffusion.generate`
take either.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from companion import checks
from companion.attention import head_dim, scaled_dot_product_attention, sinusoidal_embedding
from companion.clip import TextEncoder, encode_once
from companion.denoisers import check_denoiser_inputs

__all__ = ["CrossAttention", "CrossAttentionConfig", "CrossAttentionDenoiser"]


class CrossAttention(nn.Module):
    r"""Multi-head attention of queries ``h: (b, k, dim)`` over a context ``c: (b, n, context_dim)``.

    :math:`Q = H W^Q`, :math:`K = C W^K`, :math:`V = C W^V`; ``mask: (b, n)`` bool, True
    for the context tokens that may be attended to. Returns ``(out (b, k, dim),
    weights (b, heads, k, n))``.

    Example:
        >>> att = CrossAttention(dim=8, context_dim=6, heads=2)
        >>> out, w = att(torch.randn(3, 4, 8), torch.randn(3, 5, 6), torch.ones(3, 5, dtype=torch.bool))
        >>> tuple(out.shape), tuple(w.shape)
        ((3, 4, 8), (3, 2, 4, 5))
    """

    def __init__(self, dim: int, context_dim: int, heads: int) -> None:
        super().__init__()
        checks.positive_int("context_dim", context_dim)
        head_dim(dim, heads)
        self.dim, self.context_dim, self.heads = dim, context_dim, heads
        self.q = nn.Linear(dim, dim)                 # W^Q
        self.kv = nn.Linear(context_dim, 2 * dim)    # W^K, W^V stacked
        self.proj = nn.Linear(dim, dim)              # W^O

    def forward(self, h: torch.Tensor, c: torch.Tensor, mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        h = checks.floats("h", h, "b k dim", model=self, dim=self.dim)
        c = checks.floats("c", c, "b n context_dim", model=self, b=h.shape[0], context_dim=self.context_dim)
        if mask is not None:
            checks.tensor("mask", mask, "b n", b=c.shape[0], n=c.shape[1])
            if mask.dtype != torch.bool:
                raise ValueError(f"mask must be bool (True = may attend), got {mask.dtype}")
            mask = mask[:, None, None, :]                                    # (b, 1, 1, n)
        q = rearrange(self.q(h), "b k (heads dk) -> b heads k dk", heads=self.heads)
        k, v = rearrange(self.kv(c), "b n (two heads dk) -> two b heads n dk", two=2, heads=self.heads)
        out, weights = scaled_dot_product_attention(q, k, v, mask)          # softmax(Q K^T / sqrt(dk)) V
        return self.proj(rearrange(out, "b heads k dk -> b k (heads dk)")), weights


@dataclass(frozen=True)
class CrossAttentionConfig:
    """Sizes of a :class:`CrossAttentionDenoiser`: the latent's width, each token's width, heads and blocks."""

    latent_dim: int
    dim: int = 32
    heads: int = 2
    layers: int = 1

    def __post_init__(self) -> None:
        for name in ("latent_dim", "dim", "layers"):
            checks.positive_int(name, getattr(self, name))
        head_dim(self.dim, self.heads)
        if self.dim % 2:
            raise ValueError(f"dim must be even (the timestep's sinusoidal embedding), got {self.dim}")


class _Block(nn.Module):
    """Pre-norm: self-attention among the latent tokens, cross-attention to the prompt, an MLP."""

    def __init__(self, dim: int, context_dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_att = CrossAttention(dim, dim, heads)               # a sequence attending to itself
        self.cross_att = CrossAttention(dim, context_dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.SiLU(), nn.Linear(2 * dim, dim))

    def forward(self, h: torch.Tensor, c: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.norm1(h)
        h = h + self.self_att(x, x)[0]
        out, weights = self.cross_att(self.norm2(h), c, mask)       # latent tokens ask the prompt's tokens
        h = h + out
        return h + self.mlp(self.norm3(h)), weights


class CrossAttentionDenoiser(nn.Module):
    r""":math:`\epsilon_\theta(z_t, t, y)` whose latent tokens cross-attend to the prompt's token states.

    ``forward(z, t, tokens)`` with ``z: (b, k)``, ``t: (b,)`` int64, ``tokens: (b, n)``
    (-1 padding; all -1 is the empty prompt) -> predicted noise ``(b, k)``. Each of
    the ``k`` latent numbers becomes a token, :math:`h_j = z_j\, u + p_j + e(t)`
    (``u`` a learned vector, ``p_j`` a learned position, ``e(t)`` the timestep's
    embedding); the blocks mix them with self-attention and read the prompt with
    :class:`CrossAttention`; a linear map turns each token back into its number's noise.
    The text encoder is frozen.

    Example:
        >>> from companion.clip import CLIPConfig
        >>> net = CrossAttentionDenoiser(CrossAttentionConfig(latent_dim=4, dim=8),
        ...                              TextEncoder(CLIPConfig(vocab_size=5)))
        >>> net(torch.zeros(2, 4), torch.tensor([0, 9]), torch.tensor([[1, 2], [3, -1]])).shape
        torch.Size([2, 4])
    """

    def __init__(self, config: CrossAttentionConfig, text_encoder: TextEncoder) -> None:
        super().__init__()
        self.config = c = checks.config(config, CrossAttentionConfig)
        if not isinstance(text_encoder, TextEncoder):
            raise ValueError(f"expected a companion.clip.TextEncoder, got {type(text_encoder).__name__}")
        self.text = text_encoder.eval().requires_grad_(False)
        self._memo: dict = {}                             # each distinct prompt's token states, computed once
        self.inp = nn.Parameter(torch.randn(c.dim) / c.dim ** 0.5)      # u
        self.pos = nn.Parameter(torch.randn(c.latent_dim, c.dim) / c.dim ** 0.5)   # p_j
        self.time = nn.Sequential(nn.Linear(c.dim, c.dim), nn.SiLU(), nn.Linear(c.dim, c.dim))
        self.blocks = nn.ModuleList(_Block(c.dim, text_encoder.config.text_dim, c.heads) for _ in range(c.layers))
        self.norm = nn.LayerNorm(c.dim)
        self.out = nn.Linear(c.dim, 1)

    def train(self, mode: bool = True) -> CrossAttentionDenoiser:
        super().train(mode)
        self.text.eval()                                  # frozen: always in eval mode
        return self

    def forward(self, z: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        z = check_denoiser_inputs(self, z, "b k", t, k=self.config.latent_dim)   # t: (b,) int64 >= 0
        checks.tensor("tokens", tokens, "b n", b=z.shape[0])
        context, mask = encode_once(self.text.token_states, tokens, self._memo)   # (b, n + 1, text_dim), (b, n + 1)
        e = self.time(sinusoidal_embedding(t, self.config.dim).to(z.dtype))   # (b, dim)
        h = z[:, :, None] * self.inp + self.pos + e[:, None, :]           # (b, k, dim): h_j = z_j u + p_j + e(t)
        for block in self.blocks:
            h, _ = block(h, context.to(h.dtype), mask)
        return self.out(self.norm(h)).squeeze(-1)                          # (b, k)
