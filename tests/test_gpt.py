"""Tests for companion.gpt: causality, the loss, tied weights, seeded generation, bad input."""
from __future__ import annotations

import math
import time

import pytest
import torch
import torch.nn.functional as F

from companion.attention import MultiHeadAttention, sinusoidal_positions
from companion.gpt import GPT, Block, GPTConfig, generate, next_token_loss, sample_next
from companion.utils import fresh_init, num_parameters


def _cpu_seconds(fn) -> float:
    """CPU seconds of fn() on one thread: the work, whatever else the machine runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.process_time()
        fn()
        return time.process_time() - start
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def model() -> GPT:
    return fresh_init(lambda: GPT(GPTConfig(vocab_size=11, context=8, layers=2, heads=2, dim=16)), seed=0).eval()


def test_logits_at_t_ignore_tokens_after_t(model, g):
    idx = torch.randint(0, 11, (2, 8), generator=g)
    changed = idx.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 11
    a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :5], b[:, :5], atol=1e-6, rtol=0)
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_window_limits_what_a_one_layer_model_sees(g):
    """With one layer and window w, the logits at t depend on tokens t-w+1..t only."""
    model = fresh_init(lambda: GPT(GPTConfig(vocab_size=11, context=8, layers=1, heads=2, dim=16, window=3)),
                       seed=0).eval()
    idx = torch.randint(0, 11, (1, 8), generator=g)
    changed = idx.clone()
    changed[:, 2] = (changed[:, 2] + 1) % 11
    a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, 5:], b[:, 5:], atol=1e-6, rtol=0)     # t >= 5 cannot see 2
    assert not torch.allclose(a[:, 2:5], b[:, 2:5])


def test_next_token_loss_is_mean_cross_entropy(g, float64):
    logits = torch.randn(3, 4, 5, generator=g)
    targets = torch.randint(0, 5, (3, 4), generator=g)
    manual = -logits.log_softmax(-1).gather(-1, targets[..., None])[..., 0].mean(1)
    torch.testing.assert_close(next_token_loss(logits, targets), manual, atol=1e-12, rtol=0)
    torch.testing.assert_close(next_token_loss(logits, targets).mean(),
                               F.cross_entropy(logits.flatten(0, 1), targets.flatten()), atol=1e-12, rtol=0)
    uniform = next_token_loss(torch.zeros(2, 3, 7), torch.zeros(2, 3, dtype=torch.long))
    torch.testing.assert_close(uniform, torch.full((2,), math.log(7)), atol=1e-12, rtol=0)


def test_tied_and_untied_embeddings():
    config = GPTConfig(vocab_size=11, context=8, layers=1, heads=2, dim=16)
    tied = GPT(config)
    untied = GPT(GPTConfig(**{**config.__dict__, "tie_embeddings": False}))
    assert tied.head.weight is tied.tok_emb.weight
    assert untied.head.weight is not untied.tok_emb.weight
    assert num_parameters(untied) - num_parameters(tied) == 11 * 16     # a tied matrix counts once


def test_generate_is_deterministic_given_a_generator(model):
    prompt = torch.zeros(2, 1, dtype=torch.long)
    a = generate(model, prompt, 20, generator=torch.Generator().manual_seed(3))
    b = generate(model, prompt, 20, generator=torch.Generator().manual_seed(3))
    c = generate(model, prompt, 20, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a[:, :1], prompt) and a.shape == (2, 21)


def test_greedy_equals_top_1_and_prompts_longer_than_the_context_work(model, g):
    prompt = torch.randint(0, 11, (2, 12), generator=g)        # longer than context 8
    greedy = generate(model, prompt, 5, temperature=0)
    top1 = generate(model, prompt, 5, top_k=1, generator=g)
    assert torch.equal(greedy, top1)
    assert torch.equal(greedy[:, 12], model(prompt[:, -8:])[:, -1].argmax(-1))


def test_attention_maps_are_causal_distributions_and_fast():
    model = GPT(GPTConfig(vocab_size=103, context=64, layers=2, heads=4, dim=128)).eval()
    idx = torch.randint(0, 103, (1, 64))
    maps = model.attention_maps(idx)                        # what the chapter's widget calls
    elapsed = min(_cpu_seconds(lambda: model.attention_maps(idx)) for _ in range(3))
    assert maps.shape == (2, 1, 4, 64, 64)
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 1, 4, 64))
    assert maps.triu(1).abs().max() == 0
    assert elapsed < 0.1, elapsed


@pytest.mark.parametrize("sizes, message", [
    ({"dim": 10, "heads": 4}, "dim must be divisible by heads"), ({"layers": 0}, "layers must be a positive int"),
    ({"vocab_size": 0}, "vocab_size must be a positive int"), ({"context": 0}, "context must be a positive int"),
    ({"window": 0}, "window must be a positive int"), ({"positions": "rotary"}, "positions must be"),
])
def test_the_config_checks_itself(sizes, message):
    with pytest.raises(ValueError, match=message):
        GPTConfig(**{"vocab_size": 5, **sizes})


def test_bad_input_raises_clear_errors(model):
    with pytest.raises(ValueError, match="exceeds the context"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"token ids in \[0, 11\), got values in \[0, 11\]"):
        model(torch.tensor([[0, 11, 3]]))
    with pytest.raises(ValueError, match=r"token ids in \[0, 11\), got values in \[-1, 0\]"):
        model(torch.tensor([[0, -1]]))
    with pytest.raises(ValueError, match="integer token ids, got torch.float32"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="integer token ids, got torch.float64"):
        model(torch.zeros(1, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"torch.Tensor, got ndarray \(convert it"):
        model(torch.zeros(1, 3, dtype=torch.long).numpy())
    with pytest.raises(ValueError, match="at least one example"):
        model(torch.zeros(0, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="at least one token per sequence"):
        model(torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="expected idx of shape"):
        model(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature"):
        generate(model, torch.zeros(1, 1, dtype=torch.long), 3, temperature=-1)
    with pytest.raises(ValueError, match="top_k"):
        generate(model, torch.zeros(1, 1, dtype=torch.long), 3, top_k=0)
    with pytest.raises(ValueError, match="at least one token"):
        generate(model, torch.zeros(1, 0, dtype=torch.long), 3)
    with pytest.raises(ValueError, match=r"token ids in \[0, 11\)"):
        generate(model, torch.full((1, 2), 11), 3)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, torch.zeros(1, 1, dtype=torch.long), -1)
    with pytest.raises(ValueError, match="expected targets of shape"):
        next_token_loss(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"targets to hold token ids in \[0, 5\)"):
        next_token_loss(torch.zeros(2, 3, 5), torch.full((2, 3), 5))
    with pytest.raises(ValueError, match="integer token ids"):
        next_token_loss(torch.zeros(2, 3, 5), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="dim must be a positive int"):
        Block(0, 1)
    with pytest.raises(ValueError, match=r"expected h of shape \(b, n, dim\) with dim=8"):
        Block(8, 2)(torch.zeros(1, 3, 6))


def test_sinusoidal_positions_are_a_fixed_buffer():
    model = GPT(GPTConfig(vocab_size=5, context=6, layers=1, heads=2, dim=8, positions="sinusoidal"))
    assert not any(p is model.pos_emb for p in model.parameters())
    torch.testing.assert_close(model.pos_emb, sinusoidal_positions(6, 8))


def test_block_takes_its_sizes_and_keeps_the_parameter_names_and_order():
    """Block(dim, heads): the names and creation order behind the shipped PixelARM checkpoints."""
    names = [(name, tuple(p.shape)) for name, p in Block(dim=8, heads=2).named_parameters()]
    assert names == [("ln1.weight", (8,)), ("ln1.bias", (8,)), ("attn.qkv.weight", (24, 8)), ("attn.qkv.bias", (24,)),
                     ("attn.proj.weight", (8, 8)), ("attn.proj.bias", (8,)), ("ln2.weight", (8,)), ("ln2.bias", (8,)),
                     ("mlp.0.weight", (32, 8)), ("mlp.0.bias", (32,)), ("mlp.2.weight", (8, 32)), ("mlp.2.bias", (8,))]


@pytest.mark.parametrize("layer", [MultiHeadAttention(8, 2), Block(8, 2)], ids=["MultiHeadAttention", "Block"])
def test_a_float64_batch_is_cast_to_the_layers_dtype(g, layer):
    h = torch.randn(2, 3, 8, generator=g, dtype=torch.float64)
    out, _ = layer(h)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, layer(h.float())[0])


def test_sample_next_draws_from_the_tempered_softmax(g):
    """Frequencies of 20 000 draws match exp(l / T) / sum exp(l / T), computed with Python floats."""
    logits = [1.0, 0.0, -1.0, 2.0]
    for temperature in (0.5, 1.0, 2.0):
        e = [math.exp(l / temperature) for l in logits]
        expected = torch.tensor([x / sum(e) for x in e])
        draws = sample_next(torch.tensor([logits]).repeat(20_000, 1), temperature=temperature, generator=g)
        freq = torch.bincount(draws[:, 0], minlength=4) / 20_000
        assert draws.shape == (20_000, 1) and draws.dtype == torch.int64
        assert (freq - expected).abs().max() < 0.015, (temperature, freq, expected)
    top2 = sample_next(torch.tensor([logits]).repeat(2000, 1), top_k=2, generator=g)
    assert set(top2[:, 0].tolist()) == {0, 3}                      # only the two largest logits
    assert sample_next(torch.tensor([logits]), temperature=0).item() == 3
    with pytest.raises(ValueError, match="temperature must be a finite number >= 0"):
        sample_next(torch.tensor([logits]), temperature=float("nan"))
    with pytest.raises(ValueError, match="generator must be a torch.Generator"):
        sample_next(torch.tensor([logits]), generator=0)


def test_generate_restores_the_mode_and_works_on_every_device(model):
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    outs = []
    for device in devices:
        m = model.to(device).train()
        out = generate(m, torch.zeros(2, 1, dtype=torch.long, device=device), 10,
                       generator=torch.Generator().manual_seed(0))
        assert m.training and out.device.type == device
        outs.append(out.cpu())
    model.cpu()
    assert all(torch.equal(outs[0], o) for o in outs)                  # one seed, the same text everywhere
