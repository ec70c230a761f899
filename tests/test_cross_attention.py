import pytest
import torch
from torch import nn

from companion.clip import CLIPConfig, TextEncoder, WordTokenizer, digit_prompts
from companion.cross_attention import CrossAttention, CrossAttentionConfig, CrossAttentionDenoiser
from companion.diffusion import ddpm_loss
from companion.samplers import ddim_sample
from companion.schedules import NoiseSchedule


@pytest.fixture
def tokenizer() -> WordTokenizer:
    return WordTokenizer([p for d in range(10) for p in digit_prompts(d)])


@pytest.fixture
def denoiser(tokenizer) -> CrossAttentionDenoiser:
    torch.manual_seed(0)
    return CrossAttentionDenoiser(CrossAttentionConfig(latent_dim=4, dim=16, heads=2, layers=2),
                                  TextEncoder(CLIPConfig(vocab_size=tokenizer.vocab_size)))


def test_cross_attention_equals_torch_multihead_attention(float64, g):
    """Same weights, same padding mask: torch.nn.MultiheadAttention (kdim, vdim != dim) is the reference."""
    att = CrossAttention(dim=8, context_dim=6, heads=2)
    ref = nn.MultiheadAttention(8, 2, kdim=6, vdim=6, batch_first=True)
    with torch.no_grad():
        ref.q_proj_weight.copy_(att.q.weight)
        ref.k_proj_weight.copy_(att.kv.weight[:8])
        ref.v_proj_weight.copy_(att.kv.weight[8:])
        ref.in_proj_bias.copy_(torch.cat([att.q.bias, att.kv.bias]))
        ref.out_proj.weight.copy_(att.proj.weight)
        ref.out_proj.bias.copy_(att.proj.bias)
    h, c = torch.randn(3, 4, 8, generator=g), torch.randn(3, 5, 6, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    out, weights = att(h, c, mask)
    expected, expected_weights = ref(h, c, c, key_padding_mask=~mask, average_attn_weights=False)
    assert torch.allclose(out, expected, atol=1e-10)
    assert torch.allclose(weights, expected_weights, atol=1e-10)
    assert torch.all(weights[1, :, :, 2:] == 0) and torch.allclose(weights.sum(-1), torch.ones(3, 2, 4))


def test_padding_does_not_change_the_prediction(denoiser, tokenizer, g):
    z, t = torch.randn(2, 4, generator=g), torch.tensor([3, 40])
    short = tokenizer.encode(["seven", "one"])                        # (2, 1)
    padded = torch.cat([short, torch.full((2, 3), -1)], dim=1)         # (2, 4), the same prompts
    with torch.no_grad():
        assert torch.allclose(denoiser(z, t, short), denoiser(z, t, padded), atol=1e-6)
        assert not torch.allclose(denoiser(z, t, short), denoiser(z, t, short.flip(0)))   # the prompt matters


def test_trains_with_ddpm_loss_frozen_text_and_samples_with_guidance(denoiser, tokenizer, g):
    schedule = NoiseSchedule.linear(50)
    denoiser.train()
    assert not denoiser.text.training
    tokens = tokenizer.encode(["seven", "the digit 1"] * 4)
    loss = ddpm_loss(denoiser, torch.randn(8, 4, generator=g), schedule, labels=tokens, p_uncond=0.5,
                     generator=g).mean()
    loss.backward()
    assert all(p.grad is None for p in denoiser.text.parameters())
    assert denoiser.inp.grad is not None and denoiser.blocks[0].cross_att.kv.weight.grad is not None
    z = ddim_sample(denoiser.eval(), schedule, (8, 4), steps=5, labels=tokens, guidance_scale=3.0,
                    generator=torch.Generator().manual_seed(0))
    again = ddim_sample(denoiser, schedule, (8, 4), steps=5, labels=tokens, guidance_scale=3.0,
                        generator=torch.Generator().manual_seed(0))
    assert z.shape == (8, 4) and torch.isfinite(z).all() and torch.equal(z, again)


def test_bad_input_is_refused(denoiser, tokenizer):
    with pytest.raises(ValueError, match="shape"):
        denoiser(torch.zeros(2, 5), torch.tensor([0, 1]), tokenizer.encode(["one", "two"]))
    with pytest.raises(ValueError, match="integer"):
        denoiser(torch.zeros(2, 4), torch.tensor([0.5, 1.0]), tokenizer.encode(["one", "two"]))
    with pytest.raises(ValueError, match=">= 0"):
        denoiser(torch.zeros(2, 4), torch.tensor([-1, 1]), tokenizer.encode(["one", "two"]))
    with pytest.raises(ValueError, match="shape"):
        denoiser(torch.zeros(2, 4), torch.tensor([0, 1]), tokenizer.encode(["one"]))
    with pytest.raises(ValueError, match="bool"):
        CrossAttention(8, 6, 2)(torch.zeros(1, 2, 8), torch.zeros(1, 3, 6), torch.ones(1, 3))
    with pytest.raises(ValueError, match="divisible by heads"):
        CrossAttentionConfig(latent_dim=4, dim=10, heads=4)
    with pytest.raises(ValueError, match="TextEncoder"):
        CrossAttentionDenoiser(CrossAttentionConfig(latent_dim=4), nn.Linear(2, 2))
