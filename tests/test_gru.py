"""Tests for companion.gru: the written-out cell equals torch.nn.GRU, causality, tying, bad input."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from companion.gpt import next_token_loss
from companion.gru import CharGRU, GRUConfig, gru_cell
from companion.utils import fresh_init, num_parameters


def test_unrolled_cell_equals_torch_gru(float64, g):
    gru = nn.GRU(5, 7, batch_first=True)
    x = torch.randn(3, 6, 5, generator=g)
    h = torch.zeros(3, 7)
    steps = []
    for t in range(6):
        h = gru_cell(x[:, t], h, gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0)
        steps.append(h)
    reference, last = gru(x)
    torch.testing.assert_close(torch.stack(steps, dim=1), reference, atol=1e-10, rtol=0)
    torch.testing.assert_close(h, last[0], atol=1e-10, rtol=0)


def test_logits_at_t_ignore_tokens_after_t(g):
    model = fresh_init(lambda: CharGRU(GRUConfig(vocab_size=11, dim=16)), seed=0)
    idx = torch.randint(0, 11, (2, 9), generator=g)
    changed = idx.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 11
    a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :5], b[:, :5], atol=1e-6, rtol=0)
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_no_window_the_first_token_reaches_the_last_logit(float64, g):
    # in principle it always does; in float32 its influence fades below rounding after ~100 steps
    model = fresh_init(lambda: CharGRU(GRUConfig(vocab_size=11, dim=16)), seed=0)
    idx = torch.randint(0, 11, (1, 80), generator=g)
    changed = idx.clone()
    changed[0, 0] = (changed[0, 0] + 1) % 11
    assert not torch.equal(model(idx)[0, -1], model(changed)[0, -1])


def test_tied_output_layer_and_parameter_count():
    model = CharGRU(GRUConfig(vocab_size=11, dim=16, layers=2))
    assert model.head.weight is model.tok_emb.weight
    # embedding, 2 layers of 3 gates (input + recurrent weights and biases), layer norm
    expected = 11 * 16 + 2 * (3 * 16 * (16 + 16) + 2 * 3 * 16) + 2 * 16
    assert num_parameters(model) == expected


def test_trains_below_uniform(g):
    model = fresh_init(lambda: CharGRU(GRUConfig(vocab_size=3, dim=8, layers=1)), seed=0)
    seq = torch.tensor([[0, 1, 2] * 6])
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(60):
        opt.zero_grad()
        loss = next_token_loss(model(seq[:, :-1]), seq[:, 1:]).mean()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * torch.log(torch.tensor(3.0)).item()


def test_bad_input_raises_clear_errors():
    model = CharGRU(GRUConfig(vocab_size=5, dim=8))
    with pytest.raises(ValueError, match="token ids"):
        model(torch.tensor([[0, 5]]))
    with pytest.raises(ValueError, match="integer token ids"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="vocab_size"):
        GRUConfig(vocab_size=0)
    with pytest.raises(ValueError, match="shape"):
        gru_cell(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(12, 3), torch.zeros(12, 5),
                 torch.zeros(12), torch.zeros(12))
    with pytest.raises(ValueError, match="finite|NaN"):
        gru_cell(torch.full((2, 3), float("nan")), torch.zeros(2, 4), torch.zeros(12, 3),
                 torch.zeros(12, 4), torch.zeros(12), torch.zeros(12))
