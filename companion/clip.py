r"""A tiny CLIP: a transformer text encoder and an image encoder trained to agree (Radford et al. 2021).

Both encoders map their input to a unit vector in the same space. For a batch of
images :math:`x_i` with captions :math:`y_i`, the similarity
:math:`\ell_{ij} = f(x_i)^\top g(y_j) / \tau` (:math:`\tau` a learned temperature; ``log_tau`` stores :math:`\log 1/\tau`)
is trained so that each image picks out its own caption among the batch's captions
and each caption its own image: :func:`contrastive_loss`. Afterwards the text
encoder alone turns a typed prompt into a vector that
:mod:`companion.latent_diffusion` conditions on, and the pair classifies images
"zero-shot" by the nearest caption (:func:`zero_shot_logits`).

The captions are made from the digits' labels (:func:`digit_prompts`): a word
vocabulary (:class:`WordTokenizer`) is enough for them, where CLIP uses byte-pair
encoding over 49 152 tokens. The text encoder is the transformer block of
:mod:`companion.gpt` without the causal mask.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import nn

from companion import checks
from companion.attention import head_dim, sinusoidal_positions
from companion.gpt import Block, token_ids
from companion.utils import mode

__all__ = ["NUMBER_WORDS", "TRAIN_TEMPLATES", "HELD_OUT_TEMPLATES", "digit_prompts", "WordTokenizer",
           "CLIPConfig", "TextEncoder", "ImageEncoder", "CLIP", "contrastive_loss", "zero_shot_logits",
           "encode_once"]

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TRAIN_TEMPLATES = ("{}", "the digit {}", "a handwritten {}", "the number {}", "draw the digit {}",
                   "a picture of the number {}")
"""Caption templates seen in training; ``{}`` is a number word or a numeral."""
HELD_OUT_TEMPLATES = ("a handwritten digit {}", "draw the number {}", "a picture of the digit {}")
"""Never seen in training, made only of words that were: do the encoders generalise?"""


def digit_prompts(label: int, templates: tuple[str, ...] = TRAIN_TEMPLATES) -> list[str]:
    """Every caption of digit ``label`` from ``templates``, with the word and with the numeral.

    Example:
        >>> digit_prompts(7, ("the digit {}",))
        ['the digit seven', 'the digit 7']
    """
    if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label <= 9:
        raise ValueError(f"label must be a digit 0..9, got {label!r}")
    return [t.format(w) for t in templates for w in (NUMBER_WORDS[label], str(label))]


class WordTokenizer:
    """Lower-cased words and numerals -> ids; ``encode`` pads with -1, unknown words get ``<unk>``.

    Example:
        >>> tok = WordTokenizer(["the digit seven", "seven"])
        >>> tok.words
        ['<unk>', 'digit', 'seven', 'the']
        >>> tok.encode(["seven", "the digit seven!"]).tolist()
        [[2, -1, -1], [3, 1, 2]]
    """

    def __init__(self, prompts: list[str]) -> None:
        self.words = ["<unk>"] + sorted({w for p in prompts for w in self.split(p)})
        self.ids = {w: i for i, w in enumerate(self.words)}

    @staticmethod
    def split(prompt: str) -> list[str]:
        return re.findall(r"[a-z]+|[0-9]", prompt.lower())

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    def unknown(self, prompt: str) -> list[str]:
        """The words of ``prompt`` the vocabulary does not have."""
        return [w for w in self.split(prompt) if w not in self.ids]

    def encode(self, prompts: list[str]) -> torch.Tensor:
        """``b`` prompts -> token ids ``(b, n)``, ``n`` the longest prompt (at least 1), -1 padding."""
        if isinstance(prompts, str):
            raise ValueError("encode takes a list of prompts, got one string")
        rows = [[self.ids.get(w, 0) for w in self.split(p)] for p in prompts]
        n = max([1, *map(len, rows)])
        return torch.tensor([r + [-1] * (n - len(r)) for r in rows], dtype=torch.int64).reshape(len(rows), n)


@dataclass(frozen=True)
class CLIPConfig:
    """Sizes of :class:`CLIP` (course-sized defaults for digit captions and 8x8 images)."""

    vocab_size: int
    embed_dim: int = 32     # the shared space
    text_dim: int = 64
    text_layers: int = 2
    heads: int = 4
    image_hidden: int = 128
    image_dim: int = 64     # pixels of an 8x8 image

    def __post_init__(self) -> None:
        for name in ("vocab_size", "embed_dim", "text_layers", "image_hidden"):
            checks.positive_int(name, getattr(self, name))
        if self.image_dim != 64:
            raise ValueError(f"image_dim must be 64, the pixels of an 8x8 image, got {self.image_dim!r}")
        head_dim(self.text_dim, self.heads, name="text_dim")


class TextEncoder(nn.Module):
    r"""Prompt tokens ``(b, n)`` (-1 padding) -> unit text embeddings :math:`g(y)`, ``(b, embed_dim)``.

    A start token is put before every prompt and its output after the
    transformer blocks summarises the prompt, like BERT's classification token
    (CLIP's causal text transformer reads an end token instead):
    :math:`g(y) = \mathrm{normalize}(W\,\mathrm{LN}(h_0))`. Padding is masked
    out of attention, so a prompt of padding only - the empty prompt - is just
    the start token: the unconditional input of classifier-free guidance.
    """

    def __init__(self, config: CLIPConfig) -> None:
        super().__init__()
        c = self.config = checks.config(config, CLIPConfig)
        self.start = c.vocab_size                        # the start token's id
        self.token_emb = nn.Embedding(c.vocab_size + 1, c.text_dim)
        self.blocks = nn.ModuleList(Block(c.text_dim, c.heads) for _ in range(c.text_layers))
        self.ln = nn.LayerNorm(c.text_dim)
        self.proj = nn.Linear(c.text_dim, c.embed_dim, bias=False)

    def token_states(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every token's output ``(b, n + 1, text_dim)`` (start token first, after the final LayerNorm)
        and which of them are real ``(b, n + 1)`` bool (padding False): what cross-attention reads."""
        tokens = token_ids("tokens", tokens, self.config.vocab_size, padding=True)
        checks.same_device("tokens", tokens, self)
        b, n = tokens.shape
        ids = torch.cat([torch.full((b, 1), self.start, device=tokens.device), tokens.clamp(min=0)], dim=1)
        real = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=tokens.device), tokens >= 0], dim=1)
        positions = sinusoidal_positions(n + 1, self.config.text_dim)       # (n + 1, text_dim), on the CPU
        h = self.token_emb(ids) + positions.to(device=tokens.device, dtype=self.token_emb.weight.dtype)
        mask = real[:, None, None, :]                      # (b, 1, 1, n + 1): keys that are words
        for block in self.blocks:
            h, _ = block(h, mask)
        return self.ln(h), real

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        states, _ = self.token_states(tokens)
        return nn.functional.normalize(self.proj(states[:, 0]), dim=-1)   # g(y) from the start token


@torch.no_grad()
def encode_once(encode, tokens: torch.Tensor, memo: dict) -> tuple[torch.Tensor, ...]:
    """``encode(tokens)`` for a *frozen* text encoder, each distinct prompt computed once and remembered.

    ``tokens: (b, n)``; ``encode`` maps prompts ``(p, n)`` to a tensor or a tuple of
    tensors with ``p`` rows; returns that tuple for all ``b`` rows. ``memo`` (a dict the
    caller owns) keeps each prompt's rows by its tokens, device and dtype: a denoiser
    trained on a fixed set of captions encodes each of them once, not at every step.
    Only valid while the encoder does not change.

    Example:
        >>> enc = TextEncoder(CLIPConfig(vocab_size=5)).eval()
        >>> memo, tokens = {}, torch.tensor([[1, 2], [3, -1], [1, 2]])
        >>> (g,) = encode_once(enc, tokens, memo)
        >>> len(memo), torch.allclose(g, enc(tokens), atol=1e-6)
        (2, True)
    """
    prompts, which = torch.unique(tokens, dim=0, return_inverse=True)
    owner = getattr(encode, "__self__", encode)              # a module, or the module of a bound method
    dtype = next((p.dtype for p in owner.parameters()), None) if isinstance(owner, nn.Module) else None
    keys = [(str(tokens.device), dtype, tuple(row)) for row in prompts.tolist()]
    missing = [i for i, key in enumerate(keys) if key not in memo]
    if missing:
        out = encode(prompts[missing])
        out = out if isinstance(out, tuple) else (out,)
        for j, i in enumerate(missing):
            memo[keys[i]] = tuple(o[j] for o in out)
    rows = [memo[key] for key in keys]
    return tuple(torch.stack(parts)[which] for parts in zip(*rows))


class ImageEncoder(nn.Module):
    r"""Images ``(b, 1, 8, 8)`` in [0, 1] -> unit image embeddings :math:`f(x)`, ``(b, embed_dim)``: an MLP."""

    def __init__(self, config: CLIPConfig) -> None:
        super().__init__()
        c = checks.config(config, CLIPConfig)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(c.image_dim, c.image_hidden), nn.GELU(),
                                 nn.Linear(c.image_hidden, c.image_hidden), nn.GELU(),
                                 nn.Linear(c.image_hidden, c.embed_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        images = checks.intensities("images", images, "b 1 8 8", model=self)
        return nn.functional.normalize(self.net(images), dim=-1)


class CLIP(nn.Module):
    r"""The two encoders and the learned temperature: ``log_tau`` stores :math:`\log 1/\tau` (:math:`\tau` = 0.07 at first, as CLIP)."""

    def __init__(self, config: CLIPConfig) -> None:
        super().__init__()
        self.config = checks.config(config, CLIPConfig)
        self.text = TextEncoder(config)
        self.image = ImageEncoder(config)
        self.log_tau = nn.Parameter(torch.tensor(1 / 0.07).log())

    def logits(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        r""":math:`\ell_{ij} = f(x_i)^\top g(y_j) / \tau`, ``(b_images, b_prompts)``; :math:`1/\tau \le 100`."""
        return self.log_tau.clamp(max=math.log(100.0)).exp() * self.image(images) @ self.text(tokens).T


def contrastive_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    r"""The symmetric contrastive loss of CLIP, one value per pair ``(b,)``.

    .. math:: L_i = -\tfrac12 \Big[\log \frac{e^{\ell_{ii}}}{\sum_j e^{\ell_{ij}}}
              + \log \frac{e^{\ell_{ii}}}{\sum_j e^{\ell_{ji}}}\Big]

    ``logits: (b, b)`` pairs image :math:`i` with caption :math:`i` on the
    diagonal. Captions made from labels repeat: two sevens in a batch make two
    right answers for each of them. So the target of row :math:`i` is spread
    evenly over every :math:`j` with the same label (``labels: (b,)``); with all
    labels distinct this is exactly CLIP's loss.
    """
    logits = checks.floats("logits", logits, "b b")
    labels = checks.tensor("labels", labels, "b", b=logits.shape[0])
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"expected labels to hold integer class ids, got {labels.dtype}")
    same = (labels[:, None] == labels[None, :]).to(logits.dtype)
    target = same / same.sum(dim=1, keepdim=True)            # rows sum to 1; symmetric
    image_to_text = -(target * logits.log_softmax(dim=1)).sum(dim=1)
    text_to_image = -(target * logits.log_softmax(dim=0)).sum(dim=0)
    return (image_to_text + text_to_image) / 2


@torch.no_grad()
def zero_shot_logits(model: CLIP, images: torch.Tensor, tokenizer: WordTokenizer,
                     template: str = "the digit {}") -> torch.Tensor:
    """Score ``images (b, 1, 8, 8)`` against one caption per digit: ``(b, 10)``; argmax classifies.

    The captions are encoded on the model's device; the model runs in evaluation
    mode and is left in the mode it was in.
    """
    if not isinstance(template, str) or "{}" not in template:
        raise ValueError(f"template must be a string with one '{{}}' for the number word, got {template!r}")
    tokens = tokenizer.encode([template.format(w) for w in NUMBER_WORDS]).to(checks.model_device(model))
    with mode(model, training=False):
        return model.logits(images, tokens)
