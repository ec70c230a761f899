r"""Latent diffusion from text, in miniature: a VAE, a text encoder and a denoiser together (Rombach et al. 2022).

Stable Diffusion is three trained parts:

1. an autoencoder that maps an image to a small latent :math:`z` and back
   (here :class:`companion.vae.VAE`, wrapped by :class:`LatentSpace`);
2. a text encoder that maps a prompt :math:`y` to a vector :math:`g(y)`
   (here the frozen text half of :class:`companion.clip.CLIP`);
3. a diffusion model :math:`\epsilon_\theta(z_t, t, g(y))` that learns the
   distribution of latents given the prompt (here :class:`TextConditionedDenoiser`
   around :class:`companion.denoisers.MLPDenoiser`), trained with
   :func:`companion.diffusion.ddpm_loss`, with the prompt dropped 10% of the time
   so that classifier-free guidance can be used.

:func:`generate` chains them: prompt -> tokens -> DDIM in latent space with
guidance (:func:`companion.samplers.ddim_sample`) -> decoder -> image. Nothing in
this module is a new model; it only connects the earlier ones.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from companion import checks, rng, samplers
from companion.clip import TextEncoder, WordTokenizer, digit_prompts, encode_once
from companion.denoisers import MLPDenoiser, MLPDenoiserConfig
from companion.schedules import NoiseSchedule
from companion.utils import check_shape
from companion.vae import VAE, decode_latent

__all__ = ["LatentSpace", "TextDenoiserConfig", "TextConditionedDenoiser", "caption_sampler", "generate"]


class LatentSpace(nn.Module):
    r"""The autoencoder stage: images ``(b, 1, 8, 8)`` <-> latents ``(b, k)`` of unit scale.

    ``encode`` takes the VAE's posterior mean :math:`\mu_\phi(x)` and divides it by
    one number, ``scale``, the standard deviation of the training latents, so the
    diffusion model sees data of unit variance as its noise schedule assumes
    (Stable Diffusion multiplies by 0.18215 for the same reason).
    ``decode`` returns the decoder's mean image in [0, 1]. The VAE is frozen
    (``eval`` mode, no gradients): it is trained before this stage.
    """

    def __init__(self, vae: VAE, train_images: torch.Tensor) -> None:
        super().__init__()
        self.vae = vae.eval().requires_grad_(False)
        with torch.no_grad():
            mu, _ = self.vae.encode(train_images)
        self.register_buffer("scale", mu.std())

    @property
    def dim(self) -> int:
        return self.vae.config.latent_dim

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        mu, _ = self.vae.encode(images)
        return mu / self.scale

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        check_shape("z", z, "b k", k=self.dim)
        return decode_latent(self.vae, z * self.scale)


@dataclass(frozen=True)
class TextDenoiserConfig:
    """Sizes of a :class:`TextConditionedDenoiser`: the latent's width, the MLP's width and its residual blocks."""

    latent_dim: int
    hidden: int = 128
    layers: int = 3

    def __post_init__(self) -> None:
        for name in ("latent_dim", "hidden", "layers"):
            checks.positive_int(name, getattr(self, name))


class TextConditionedDenoiser(nn.Module):
    r""":math:`\epsilon_\theta(z_t, t, g(y))`: a frozen text encoder feeding a residual MLP denoiser.

    ``forward(z, t, tokens)`` with ``z: (b, k)``, ``t: (b,)``, ``tokens: (b, n)``
    (-1 padding; all -1 is the empty prompt) -> predicted noise ``(b, k)``. The
    prompt's embedding is added to the timestep embedding in every block, the
    "pooled text embedding" conditioning of Imagen; Stable Diffusion
    cross-attends to every token's output instead
    (:class:`companion.cross_attention.CrossAttentionDenoiser`).

    Example:
        >>> from companion.clip import CLIPConfig
        >>> denoiser = TextConditionedDenoiser(TextDenoiserConfig(latent_dim=4, hidden=16, layers=1),
        ...                                    TextEncoder(CLIPConfig(vocab_size=5)))
        >>> denoiser(torch.zeros(2, 4), torch.tensor([0, 9]), torch.tensor([[1, 2], [3, -1]])).shape
        torch.Size([2, 4])
    """

    def __init__(self, config: TextDenoiserConfig, text_encoder: TextEncoder) -> None:
        super().__init__()
        if not isinstance(config, TextDenoiserConfig) or not isinstance(text_encoder, TextEncoder):
            raise ValueError("expected TextConditionedDenoiser(TextDenoiserConfig(...), text_encoder), got "
                             f"({type(config).__name__}, {type(text_encoder).__name__})")
        self.config = config
        self.text = text_encoder.eval().requires_grad_(False)
        self._memo: dict = {}                             # each distinct prompt's g(y), computed once
        self.net = MLPDenoiser(MLPDenoiserConfig(data_dim=config.latent_dim, hidden=config.hidden,
                                                 layers=config.layers, context_dim=text_encoder.config.embed_dim))

    def train(self, mode: bool = True) -> TextConditionedDenoiser:
        super().train(mode)
        self.text.eval()                                  # frozen: always in eval mode
        return self

    def forward(self, z: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        z = checks.floats("z", z, "b k", model=self, k=self.config.latent_dim)
        checks.tensor("tokens", tokens, "b n", b=z.shape[0])
        (context,) = encode_once(self.text, tokens, self._memo)             # g(y): (b, embed_dim), frozen
        return self.net(z, t, context=context)


def caption_sampler(tokenizer: WordTokenizer, templates: tuple[str, ...], *,
                    generator: torch.Generator | None = None):
    """A function ``labels (b,) -> tokens (b, n)`` that captions each digit with a random template.

    Example:
        >>> tok = WordTokenizer(digit_prompts(3) + digit_prompts(5))
        >>> caption = caption_sampler(tok, ("the digit {}",), generator=torch.Generator().manual_seed(0))
        >>> tokens = caption(torch.tensor([3, 5]))            # "the digit three" or "the digit 3", ...
        >>> tokens.shape, [tok.words[i] for i in tokens[0, :2]]
        (torch.Size([2, 3]), ['the', 'digit'])
    """
    table = [tokenizer.encode(digit_prompts(d, templates)) for d in range(10)]
    n = max(t.shape[1] for t in table)
    table = torch.stack([nn.functional.pad(t, (0, n - t.shape[1]), value=-1) for t in table])  # (10, m, n)

    def caption(labels: torch.Tensor) -> torch.Tensor:
        labels = checks.labels("labels", labels, 10)
        pick = rng.randint(0, table.shape[1], labels.shape, generator=generator, device=labels.device)
        return table.to(labels.device)[labels, pick]

    return caption


@torch.no_grad()
def generate(denoiser: TextConditionedDenoiser, latent: LatentSpace, schedule: NoiseSchedule,
             tokenizer: WordTokenizer, prompts: list[str], *, per_prompt: int = 1, steps: int = 50,
             guidance_scale: float = 3.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Text to images: ``per_prompt`` images for each prompt, ``(len(prompts) * per_prompt, 1, 8, 8)`` in [0, 1].

    Prompts are repeated in place (``[p0, p0, ..., p1, p1, ...]``). The empty
    prompt ``""`` with any ``guidance_scale`` is the unconditional model.
    """
    if isinstance(prompts, str) or not prompts:
        raise ValueError(f"need a non-empty list of prompts, got {prompts!r}")
    checks.positive_int("per_prompt", per_prompt)
    tokens = tokenizer.encode(prompts).to(checks.model_device(denoiser)).repeat_interleave(per_prompt, dim=0)
    z = samplers.ddim_sample(denoiser, schedule, (tokens.shape[0], latent.dim), steps=steps, labels=tokens,
                             guidance_scale=guidance_scale, generator=generator)
    return latent.decode(z)
