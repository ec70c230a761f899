"""Tests for companion.gpt: causality, the loss, tied weights, seeded generation, bad input."""
from __future__ import annotations

import math
import time

import pytest
import torch
import torch.nn.functional as F

from companion.attention import sinusoidal_positions
from companion.gpt import GPT, GPTConfig, generate, next_token_loss


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
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=11, context=8, layers=2, heads=2, dim=16)).eval()


def test_logits_at_t_ignore_tokens_after_t(model, g):
    idx = torch.randint(0, 11, (2, 8), generator=g)
    changed = idx.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 11
    a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :5], b[:, :5], atol=1e-6, rtol=0)
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_window_limits_what_a_one_layer_model_sees(g):
    """With one layer and window w, the logits at t depend on tokens t-w+1..t only."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, context=8, layers=1, heads=2, dim=16, window=3)).eval()
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
    assert untied.num_params() - tied.num_params() == 11 * 16


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


def test_bad_input_raises_clear_errors(model):
    with pytest.raises(ValueError, match="exceeds the context"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 11\)"):
        model(torch.full((1, 3), 11))
    with pytest.raises(ValueError, match="int64"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="expected idx of shape"):
        model(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="multiple of heads"):
        GPTConfig(vocab_size=5, dim=10, heads=4)
    with pytest.raises(ValueError, match="positions"):
        GPTConfig(vocab_size=5, positions="rotary")
    with pytest.raises(ValueError, match="temperature"):
        generate(model, torch.zeros(1, 1, dtype=torch.long), 3, temperature=-1)
    with pytest.raises(ValueError, match="top_k"):
        generate(model, torch.zeros(1, 1, dtype=torch.long), 3, top_k=0)
    with pytest.raises(ValueError, match="at least one token"):
        generate(model, torch.zeros(1, 0, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="expected targets of shape"):
        next_token_loss(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))


def test_sinusoidal_positions_are_a_fixed_buffer():
    model = GPT(GPTConfig(vocab_size=5, context=6, layers=1, heads=2, dim=8, positions="sinusoidal"))
    assert not any(p is model.pos_emb for p in model.parameters())
    torch.testing.assert_close(model.pos_emb, sinusoidal_positions(6, 8))
