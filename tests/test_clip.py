import math

import pytest
import torch

from companion.clip import (CLIP, NUMBER_WORDS, TRAIN_TEMPLATES, CLIPConfig, TextEncoder, WordTokenizer,
                            contrastive_loss, digit_prompts, encode_once, zero_shot_logits)
from companion.data import digits
from companion.latent_diffusion import caption_sampler
from companion.train import train
from companion.utils import fresh_init


@pytest.fixture
def tokenizer() -> WordTokenizer:
    return WordTokenizer([p for d in range(10) for p in digit_prompts(d)])


def test_every_digit_has_a_caption_with_its_word_and_its_numeral():
    for d in range(10):
        captions = digit_prompts(d)
        assert len(captions) == 2 * len(TRAIN_TEMPLATES)
        assert any(NUMBER_WORDS[d] in c.split() for c in captions) and any(str(d) in c.split() for c in captions)
    with pytest.raises(ValueError, match="digit"):
        digit_prompts(10)


def test_tokenizer_pads_with_minus_one_and_maps_unknown_words_to_unk(tokenizer):
    tokens = tokenizer.encode(["The digit SEVEN!", "sevn", ""])
    assert tokens.shape == (3, 3) and tokens.dtype == torch.int64
    assert [tokenizer.words[i] for i in tokens[0]] == ["the", "digit", "seven"]
    assert tokens[1].tolist() == [0, -1, -1] and tokenizer.words[0] == "<unk>"
    assert tokens[2].tolist() == [-1, -1, -1]                       # the empty prompt is all padding
    assert tokenizer.unknown("not a sevn") == ["not", "sevn"]
    with pytest.raises(ValueError, match="list"):
        tokenizer.encode("seven")


def test_padding_does_not_change_the_text_embedding(tokenizer, g):
    enc = fresh_init(lambda: TextEncoder(CLIPConfig(vocab_size=tokenizer.vocab_size)), seed=0)
    short = tokenizer.encode(["seven"])                               # (1, 1)
    padded = torch.tensor([short[0].tolist() + [-1, -1, -1]])         # the same prompt, padded to 4
    e1, e2 = enc(short), enc(padded)
    assert torch.allclose(e1, e2, atol=1e-6)
    assert torch.allclose(e1.norm(dim=1), torch.ones(1), atol=1e-6)  # unit vectors
    # the empty prompt is the start token alone, whatever its padded length
    assert torch.allclose(enc(torch.full((1, 1), -1)), enc(torch.full((1, 5), -1)), atol=1e-6)
    assert not torch.allclose(enc(short), enc(tokenizer.encode(["one"])))


def test_text_encoder_rejects_bad_tokens(tokenizer):
    enc = TextEncoder(CLIPConfig(vocab_size=tokenizer.vocab_size))
    v = tokenizer.vocab_size
    with pytest.raises(ValueError, match=rf"token ids in \[-1, {v}\) \(-1 = padding\), got values in \[{v}, {v}\]"):
        enc(torch.tensor([[v]]))
    with pytest.raises(ValueError, match=r"token ids in \[-1, \d+\).*got values in \[-2, 1\]"):
        enc(torch.tensor([[1, -2]]))
    with pytest.raises(ValueError, match="integer token ids, got torch.float32"):
        enc(torch.tensor([[0.5]]))
    with pytest.raises(ValueError, match=r"expected tokens of shape \(b, n\)"):
        enc(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="at least one example"):
        enc(torch.zeros(0, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"torch.Tensor, got ndarray \(convert it"):
        enc(tokenizer.encode(["seven"]).numpy())


@pytest.mark.parametrize("sizes, message", [
    ({"text_dim": 30, "heads": 4}, "text_dim must be divisible by heads"),
    ({"embed_dim": 0}, "embed_dim must be a positive int"), ({"text_layers": 0}, "text_layers must be a positive int"),
    ({"vocab_size": 0}, "vocab_size must be a positive int"), ({"image_hidden": -1}, "image_hidden must be a positive"),
    ({"image_dim": 32}, "image_dim must be 64"),
])
def test_the_config_checks_itself(sizes, message):
    with pytest.raises(ValueError, match=message):
        CLIPConfig(**{"vocab_size": 5, **sizes})


def test_image_encoder_takes_intensities_and_casts_float64(tokenizer, g):
    clip = CLIP(CLIPConfig(vocab_size=tokenizer.vocab_size))
    x = torch.rand(3, 1, 8, 8, generator=g, dtype=torch.float64)
    torch.testing.assert_close(clip.image(x), clip.image(x.float()))
    with pytest.raises(ValueError, match="float intensities in \\[0, 1\\].*got torch.int64"):
        clip.image(torch.full((3, 1, 8, 8), 16))
    with pytest.raises(ValueError, match="intensities in \\[0, 1\\].*got values up to 16"):
        clip.image(torch.full((3, 1, 8, 8), 16.0))


def test_contrastive_loss_with_distinct_labels_is_clips_symmetric_cross_entropy(g):
    logits = torch.randn(6, 6, generator=g, dtype=torch.float64)
    labels = torch.arange(6)
    target = torch.arange(6)
    expected = (torch.nn.functional.cross_entropy(logits, target, reduction="none")
                + torch.nn.functional.cross_entropy(logits.T, target, reduction="none")) / 2
    assert torch.allclose(contrastive_loss(logits, labels), expected, atol=1e-12)


def test_contrastive_loss_spreads_the_target_over_captions_of_the_same_label(g):
    logits = torch.randn(4, 4, generator=g, dtype=torch.float64)
    labels = torch.tensor([3, 5, 3, 1])
    # row 0 (a 3) has two right captions, 0 and 2: target 1/2 on each
    row0 = -(0.5 * logits[0].log_softmax(0)[0] + 0.5 * logits[0].log_softmax(0)[2])
    col0 = -(0.5 * logits[:, 0].log_softmax(0)[0] + 0.5 * logits[:, 0].log_softmax(0)[2])
    assert torch.isclose(contrastive_loss(logits, labels)[0], (row0 + col0) / 2, atol=1e-12)
    # logits that score only same-label pairs high reach the minimum, the entropy of the target
    good = 50.0 * (labels[:, None] == labels[None, :]).double()
    minimum = (math.log(2) + 0 + math.log(2) + 0) / 4              # the two 3s: log 2 each way
    assert math.isclose(contrastive_loss(good, labels).mean().item(), minimum, abs_tol=1e-9)
    with pytest.raises(ValueError, match="shape"):
        contrastive_loss(torch.zeros(3, 4), torch.arange(3))


def test_the_temperature_is_capped_at_100(tokenizer):
    clip = CLIP(CLIPConfig(vocab_size=tokenizer.vocab_size))
    with torch.no_grad():
        clip.log_tau.fill_(10.0)
    images, tokens = torch.rand(2, 1, 8, 8), tokenizer.encode(["one", "two"])
    assert clip.logits(images, tokens).abs().max() <= 100.0 + 1e-4


def test_zero_shot_logits_restore_the_mode_and_run_on_every_device(tokenizer, g):
    images = torch.rand(4, 1, 8, 8, generator=g)
    clip = CLIP(CLIPConfig(vocab_size=tokenizer.vocab_size)).train()
    ref = zero_shot_logits(clip, images, tokenizer)
    assert ref.shape == (4, 10) and clip.training
    if torch.cuda.is_available():
        on_gpu = zero_shot_logits(clip.cuda(), images.cuda(), tokenizer)       # the captions follow the model
        torch.testing.assert_close(on_gpu.cpu(), ref, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="template must be a string with one"):
        zero_shot_logits(clip, images, tokenizer, "a digit")


def test_contrastive_loss_rejects_bad_labels():
    with pytest.raises(ValueError, match="integer class ids"):
        contrastive_loss(torch.zeros(3, 3), torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"expected labels of shape \(b\) with b=3"):
        contrastive_loss(torch.zeros(3, 3), torch.tensor([0, 1]))


def test_a_briefly_trained_clip_classifies_digits_zero_shot(tokenizer):
    gen = torch.Generator().manual_seed(0)
    x, y = digits("train")
    x_test, y_test = digits("test")
    clip = fresh_init(lambda: CLIP(CLIPConfig(vocab_size=tokenizer.vocab_size)), seed=0)
    caption = caption_sampler(tokenizer, TRAIN_TEMPLATES, generator=gen)
    train(lambda xb, yb: contrastive_loss(clip.logits(xb, caption(yb)), yb), clip.parameters(), (x, y),
          steps=150, lr=2e-3, batch_size=128, progress=False)
    clip.eval()
    accuracy = (zero_shot_logits(clip, x_test, tokenizer).argmax(1) == y_test).float().mean().item()
    assert accuracy > 0.6                                            # chance is 0.1


def test_encode_once_remembers_each_prompt_and_keys_by_dtype():
    """The memo returns what the encoder returns, encodes a repeated prompt once, and a cast model re-encodes."""
    torch.manual_seed(0)
    enc = TextEncoder(CLIPConfig(vocab_size=6)).eval()
    calls = []

    def counting(tokens):
        calls.append(len(tokens))
        return enc(tokens)

    memo, tokens = {}, torch.tensor([[1, 2], [3, -1], [1, 2], [3, -1]])
    (first,) = encode_once(counting, tokens, memo)
    (again,) = encode_once(counting, tokens, memo)
    assert calls == [2] and torch.equal(first, again) and torch.allclose(first, enc(tokens), atol=1e-6)
    states, real = encode_once(enc.token_states, tokens, {})
    expected_states, expected_real = enc.token_states(tokens)
    assert torch.allclose(states, expected_states, atol=1e-6) and torch.equal(real, expected_real)
    enc.double()
    (cast,) = encode_once(enc, tokens, memo)
    assert cast.dtype == torch.float64
