import pytest
import torch

from companion.clip import NUMBER_WORDS, TRAIN_TEMPLATES, CLIPConfig, TextEncoder, WordTokenizer, digit_prompts
from companion.data import digits
from companion.diffusion import ddpm_loss
from companion.latent_diffusion import (LatentSpace, TextConditionedDenoiser, TextDenoiserConfig, caption_sampler,
                                        generate)
from companion.samplers import guided_eps
from companion.schedules import NoiseSchedule
from companion.vae import VAE, VAEConfig, decode_latent


@pytest.fixture
def tokenizer() -> WordTokenizer:
    return WordTokenizer([p for d in range(10) for p in digit_prompts(d)])


@pytest.fixture
def parts(tokenizer):
    torch.manual_seed(0)
    levels, _ = digits("train", as_levels=True)
    latent = LatentSpace(VAE(VAEConfig(latent_dim=4, hidden=32, likelihood="categorical")), levels[:200])
    denoiser = TextConditionedDenoiser(TextDenoiserConfig(latent_dim=4, hidden=32, layers=2),
                                       TextEncoder(CLIPConfig(vocab_size=tokenizer.vocab_size)))
    return latent, denoiser, levels[:200]


def test_latents_have_unit_scale_and_decode_to_images(parts):
    latent, _, levels = parts
    z = latent.encode(levels)
    assert z.shape == (200, 4)
    assert torch.isclose(z.std(), torch.tensor(1.0), atol=1e-5)     # scaled by the training latents' std
    images = latent.decode(z)
    assert images.shape == (200, 1, 8, 8) and images.min() >= 0 and images.max() <= 1
    mu, _ = latent.vae.encode(levels)                                # decode undoes the scaling
    expected = decode_latent(latent.vae, mu)
    assert torch.allclose(images, expected, atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        latent.decode(torch.zeros(3, 5))


def test_the_denoiser_encodes_each_prompt_once_with_the_same_result(parts, tokenizer, g):
    _, denoiser, _ = parts
    z, t = torch.randn(5, 4, generator=g), torch.tensor([0, 10, 10, 50, 99])
    tokens = tokenizer.encode(["seven", "the digit 3", "seven", "", "seven"])
    with torch.no_grad():
        direct = denoiser.net(z, t, context=denoiser.text(tokens))
        assert torch.allclose(denoiser(z, t, tokens), direct, atol=1e-6)
        assert not torch.allclose(denoiser(z[:1], t[:1], tokens[:1]), denoiser(z[:1], t[:1], tokens[1:2]))


def test_the_text_encoder_stays_frozen(parts, tokenizer, g):
    _, denoiser, _ = parts
    denoiser.train()
    assert not denoiser.text.training
    loss = ddpm_loss(denoiser, torch.randn(8, 4, generator=g), NoiseSchedule.linear(50),
                     labels=tokenizer.encode(["one"] * 8), p_uncond=0.5, generator=g).mean()
    loss.backward()
    assert all(p.grad is None for p in denoiser.text.parameters())
    assert all(p.grad is not None for p in denoiser.net.parameters())


def test_prompt_dropout_replaces_whole_prompts_by_the_empty_prompt(tokenizer, g):
    seen = []

    def recorder(x, t, y):
        seen.append(y.clone())
        return torch.zeros_like(x)

    prompts = tokenizer.encode(["the digit seven"] * 6)
    schedule = NoiseSchedule.linear(50)
    ddpm_loss(recorder, torch.randn(6, 4, generator=g), schedule, labels=prompts, p_uncond=1.0, generator=g)
    ddpm_loss(recorder, torch.randn(6, 4, generator=g), schedule, labels=prompts, p_uncond=0.0, generator=g)
    assert (seen[0] == -1).all() and torch.equal(seen[1], prompts)
    ddpm_loss(recorder, torch.randn(400, 4, generator=g), schedule,
              labels=tokenizer.encode(["the digit seven"] * 400), p_uncond=0.5, generator=g)
    dropped = (seen[2] == -1).all(dim=1)
    kept = (seen[2] >= 0).all(dim=1)
    assert torch.equal(dropped | kept, torch.ones(400, dtype=torch.bool))   # never part of a prompt
    assert 0.4 < dropped.float().mean() < 0.6


def test_guidance_with_prompts_extrapolates_from_the_empty_prompt(parts, tokenizer, g):
    _, denoiser, _ = parts
    z, t = torch.randn(3, 4, generator=g), torch.tensor([5, 5, 5])
    tokens = tokenizer.encode(["one", "two", "three"])
    with torch.no_grad():
        cond, uncond = denoiser(z, t, tokens), denoiser(z, t, torch.full_like(tokens, -1))
        assert torch.allclose(guided_eps(denoiser, z, t, tokens, 3.0), uncond + 3.0 * (cond - uncond), atol=1e-5)


def test_caption_sampler_captions_each_digit_with_its_own_word_or_numeral(tokenizer, g):
    caption = caption_sampler(tokenizer, TRAIN_TEMPLATES, generator=g)
    labels = torch.arange(10).repeat(20)
    for label, row in zip(labels.tolist(), caption(labels)):
        words = [tokenizer.words[i] for i in row if i >= 0]
        assert NUMBER_WORDS[label] in words or str(label) in words
        assert " ".join(words) in digit_prompts(label)


def test_generate_repeats_prompts_and_ignores_them_without_guidance(parts, tokenizer):
    latent, denoiser, _ = parts
    schedule = NoiseSchedule.linear(50)
    run = lambda prompts, w: generate(denoiser, latent, schedule, tokenizer, prompts, per_prompt=3, steps=5,
                                      guidance_scale=w, generator=torch.Generator().manual_seed(0))
    images = run(["one", "two"], 2.0)
    assert images.shape == (6, 1, 8, 8) and images.min() >= 0 and images.max() <= 1
    assert torch.allclose(run(["one"], 0.0), run(["seven"], 0.0))       # w = 0: the unconditional model
    assert not torch.allclose(run(["one"], 2.0), run(["seven"], 2.0))
    with pytest.raises(ValueError, match="non-empty list of prompts"):
        run([], 1.0)
    with pytest.raises(ValueError, match="non-empty list of prompts"):
        run("one", 1.0)
    with pytest.raises(ValueError, match="per_prompt must be a positive int"):
        generate(denoiser, latent, schedule, tokenizer, ["one"], per_prompt=0)


def test_the_denoiser_config_checks_itself_and_bad_inputs_raise(parts, tokenizer):
    _, denoiser, _ = parts
    assert denoiser.net.config.layers == 2 and denoiser.net.config.hidden == 32
    with pytest.raises(ValueError, match="layers must be a positive int"):
        TextDenoiserConfig(latent_dim=4, layers=0)
    with pytest.raises(ValueError, match="latent_dim must be a positive int"):
        TextDenoiserConfig(latent_dim=0)
    with pytest.raises(ValueError, match=r"expected TextConditionedDenoiser\(TextDenoiserConfig"):
        TextConditionedDenoiser(denoiser.text, TextDenoiserConfig(latent_dim=4))
    t, tokens = torch.tensor([1, 2]), tokenizer.encode(["one", "two"])
    with pytest.raises(ValueError, match=r"expected z of shape \(b, k\) with k=4"):
        denoiser(torch.zeros(2, 5), t, tokens)
    with pytest.raises(ValueError, match=r"token ids in \[-1, \d+\) \(-1 = padding\)"):
        denoiser(torch.zeros(2, 4), t, torch.full_like(tokens, -3))
    out = denoiser(torch.zeros(2, 4, dtype=torch.float64), t, tokens)       # float64: cast
    assert out.dtype == torch.float32
    caption = caption_sampler(tokenizer, ("the digit {}",))
    with pytest.raises(ValueError, match=r"expected labels in \[0, 10\)"):
        caption(torch.tensor([3, 10]))
    with pytest.raises(ValueError, match="integer class ids"):
        caption(torch.tensor([3.0]))
