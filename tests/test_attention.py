"""Tests for companion.attention: the hand-written attention is PyTorch's, masks mean what they say."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from companion.attention import (MultiHeadAttention, causal_mask, head_dim, padding_mask, patchify,
                                 scaled_dot_product_attention, sinusoidal_embedding, sinusoidal_positions)


def _qkv(g, b=2, h=3, n=5, m=7, dk=8, dv=4):
    q = torch.randn(b, h, n, dk, generator=g, dtype=torch.float64)
    k = torch.randn(b, h, m, dk, generator=g, dtype=torch.float64)
    v = torch.randn(b, h, m, dv, generator=g, dtype=torch.float64)
    return q, k, v


@pytest.mark.parametrize("mask_kind", ["none", "causal", "padding", "random"])
def test_equals_torch_sdpa(g, mask_kind):
    n = m = 6
    q, k, v = _qkv(g, n=n, m=m)
    mask = {
        "none": None,
        "causal": causal_mask(n),
        "padding": padding_mask(torch.tensor([3, 6]), m),
        "random": (torch.rand(2, 1, n, m, generator=g) < 0.6) | torch.eye(n, dtype=torch.bool),
    }[mask_kind]
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=0)
    torch.testing.assert_close(weights.sum(-1), torch.ones_like(weights.sum(-1)), atol=1e-12, rtol=0)
    if mask is not None:
        assert weights.masked_select(~mask.expand_as(weights)).abs().max() == 0


def test_cross_attention_and_gradients_equal_torch(g):
    q, k, v = _qkv(g, n=4, m=9, dk=6, dv=5)
    ours = [t.clone().requires_grad_() for t in (q, k, v)]
    theirs = [t.clone().requires_grad_() for t in (q, k, v)]
    out, _ = scaled_dot_product_attention(*ours)
    ref = F.scaled_dot_product_attention(*theirs)
    grad = torch.randn(out.shape, generator=g, dtype=torch.float64)
    out.backward(grad)
    ref.backward(grad)
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=0)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-10, rtol=0)


def test_fully_masked_query_gets_zero_output_like_torch(g):
    q, k, v = _qkv(g, n=3, m=4)
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1] = False
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    assert weights[:, :, 1].abs().max() == 0 and out[:, :, 1].abs().max() == 0
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-10, rtol=0)


def test_one_query_equals_the_formula_written_with_python_floats():
    """Attention(Q, K, V) computed entry by entry with math.exp, no tensor code shared with the package."""
    q = [[0.3, -1.2, 0.5], [1.0, 0.0, -0.7]]
    k = [[0.1, 0.4, -0.3], [-1.1, 0.2, 0.9], [0.6, -0.5, 0.2], [0.0, 1.3, -0.4]]
    v = [[1.0, 2.0], [-0.5, 0.3], [0.7, -1.4], [2.2, 0.1]]
    allowed = [[True, False, True, True], [True, True, True, False]]
    expected = []
    for qi, row in zip(q, allowed):
        scores = [sum(a * b for a, b in zip(qi, kj)) / math.sqrt(3) for kj in k]
        e = [math.exp(s) if ok else 0.0 for s, ok in zip(scores, row)]
        w = [x / sum(e) for x in e]
        expected.append([sum(wj * vj[c] for wj, vj in zip(w, v)) for c in range(2)])
    as_4d = lambda rows: torch.tensor(rows, dtype=torch.float64)[None, None]
    out, _ = scaled_dot_product_attention(as_4d(q), as_4d(k), as_4d(v), torch.tensor(allowed))
    torch.testing.assert_close(out[0, 0], torch.tensor(expected, dtype=torch.float64), atol=1e-12, rtol=0)


@pytest.mark.parametrize("dk", [4, 64, 512])
def test_scaling_gives_unit_score_variance_for_every_head_dim(g, dk):
    """With unit-variance q, k the scaled scores s_j have variance 1 whatever dk (att-variance).

    Read back from the package's weights: log A_j - log A_0 = s_j - s_0, whose variance is
    Var(s_j) + Var(s_0) = 2 (scores of independent keys are uncorrelated); without the
    scaling it would be 2 dk. Every one of the 3000 sequences has its own query and keys.
    """
    q = torch.randn(3000, 1, 1, dk, generator=g, dtype=torch.float64)
    k = torch.randn(3000, 1, 4, dk, generator=g, dtype=torch.float64)
    _, weights = scaled_dot_product_attention(q, k, torch.zeros(3000, 1, 4, 1, dtype=torch.float64))
    log_w = weights.log()[:, 0, 0]                                # (3000, 4)
    contrasts = log_w[:, 1:] - log_w[:, :1]
    assert abs(contrasts.var().item() - 2.0) < 0.2


def test_causal_mask_with_window():
    mask = causal_mask(6, window=3)
    i, j = torch.meshgrid(torch.arange(6), torch.arange(6), indexing="ij")
    assert torch.equal(mask, (j <= i) & (i - j < 3))
    assert torch.equal(causal_mask(4, window=10), causal_mask(4))


def test_multihead_equals_torch_multiheadattention(g, float64):
    dim, heads, n = 12, 3, 5
    ours = MultiHeadAttention(dim, heads)
    theirs = torch.nn.MultiheadAttention(dim, heads, batch_first=True)
    with torch.no_grad():
        theirs.in_proj_weight.copy_(ours.qkv.weight)
        theirs.in_proj_bias.copy_(ours.qkv.bias)
        theirs.out_proj.weight.copy_(ours.proj.weight)
        theirs.out_proj.bias.copy_(ours.proj.bias)
    x = torch.randn(2, n, dim, generator=g)
    for mask in (None, causal_mask(n)):
        out, weights = ours(x, mask)
        torch_mask = None if mask is None else ~mask      # torch: True = may NOT attend
        ref, ref_weights = theirs(x, x, x, attn_mask=torch_mask, need_weights=True,
                                  average_attn_weights=False)
        torch.testing.assert_close(out, ref, atol=1e-10, rtol=0)
        torch.testing.assert_close(weights, ref_weights, atol=1e-10, rtol=0)


def test_causal_output_ignores_the_future(g, float64):
    mha = MultiHeadAttention(8, 2)
    x = torch.randn(1, 6, 8, generator=g)
    y = x.clone()
    y[:, 4:] = torch.randn(1, 2, 8, generator=g)          # change positions 4 and 5
    out_x, _ = mha(x, causal_mask(6))
    out_y, _ = mha(y, causal_mask(6))
    torch.testing.assert_close(out_x[:, :4], out_y[:, :4], atol=1e-12, rtol=0)
    assert not torch.allclose(out_x[:, 4:], out_y[:, 4:])


def test_sinusoidal_positions_are_the_papers_code_and_the_embeddings_columns():
    """Vaswani et al.'s P[t, 2i] = sin(t / 10000^(2i/d)), P[t, 2i+1] = cos(...), written with NumPy."""
    n, dim = 50, 16
    t = np.arange(n)[:, None]
    angle = t / 10000.0 ** (2 * np.arange(dim // 2)[None, :] / dim)      # (n, dim/2)
    paper = np.zeros((n, dim))
    paper[:, 0::2], paper[:, 1::2] = np.sin(angle), np.cos(angle)
    p = sinusoidal_positions(n, dim).double()
    torch.testing.assert_close(p, torch.from_numpy(paper), atol=1e-7, rtol=0)
    # one implementation: the timestep embedding of the positions, its [sin..., cos...] columns interleaved
    interleave = [c for i in range(dim // 2) for c in (i, dim // 2 + i)]
    embedding = sinusoidal_embedding(torch.arange(n, dtype=torch.float64), dim)
    torch.testing.assert_close(p, embedding[:, interleave].float().double())


def test_sinusoidal_positions_shift_is_a_rotation():
    """P[t + s] = R(s) P[t] pair by pair, with R(s) independent of t."""
    p = sinusoidal_positions(50, 16).double()
    s = 7
    for t in (0, 10, 30):
        for i in range(8):
            sin_t, cos_t = p[t, 2 * i], p[t, 2 * i + 1]
            sin_s, cos_s = p[s, 2 * i], p[s, 2 * i + 1]
            assert torch.allclose(p[t + s, 2 * i], sin_t * cos_s + cos_t * sin_s, atol=1e-6)
            assert torch.allclose(p[t + s, 2 * i + 1], cos_t * cos_s - sin_t * sin_s, atol=1e-6)
    assert torch.allclose(p.pow(2).sum(1), torch.full((50,), 8.0, dtype=torch.float64))


def test_patchify_tokens_are_the_image_patches(g):
    images = torch.rand(3, 2, 8, 8, generator=g)
    tokens = patchify(images, 4)
    assert tokens.shape == (3, 4, 32)
    # token 1 is the top-right patch, channels first, then rows of the patch
    torch.testing.assert_close(tokens[:, 1], images[:, :, :4, 4:].reshape(3, 32))
    torch.testing.assert_close(tokens[:, 2], images[:, :, 4:, :4].reshape(3, 32))


def test_bad_input_raises_clear_errors(g):
    q, k, v = _qkv(g)
    with pytest.raises(ValueError, match="expected k of shape"):
        scaled_dot_product_attention(q, k[..., :3], v)              # head dims differ
    with pytest.raises(ValueError, match="expected v of shape"):
        scaled_dot_product_attention(q, k, v[:, :, :2])             # keys and values differ in m
    with pytest.raises(ValueError, match="expected q of shape"):
        scaled_dot_product_attention(q[0], k, v)                    # no batch axis
    with pytest.raises(ValueError, match="does not broadcast"):
        scaled_dot_product_attention(q, k, v, torch.ones(5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool tensor"):
        scaled_dot_product_attention(q, k, v, torch.ones(5, 7))
    with pytest.raises(ValueError, match="one dtype"):
        scaled_dot_product_attention(q, k.float(), v)
    with pytest.raises(ValueError, match="float tensors"):
        scaled_dot_product_attention(*(torch.ones(1, 1, 2, 2, dtype=torch.long),) * 3)
    with pytest.raises(ValueError, match="at least one example"):
        scaled_dot_product_attention(q[:0], k[:0], v[:0])
    with pytest.raises(ValueError, match=r"torch.Tensor, got ndarray \(convert it"):
        scaled_dot_product_attention(q.numpy(), k, v)
    with pytest.raises(ValueError, match="divisible by heads"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match="heads must be a positive int"):
        head_dim(8, 0)
    with pytest.raises(ValueError, match="expected x of shape"):
        MultiHeadAttention(8, 2)(torch.zeros(2, 3, 6))
    with pytest.raises(ValueError, match="at least one example"):
        MultiHeadAttention(8, 2)(torch.zeros(0, 3, 8))
    with pytest.raises(ValueError, match="expected x to be a float tensor"):
        MultiHeadAttention(8, 2)(torch.zeros(2, 3, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="window"):
        causal_mask(4, window=0)
    with pytest.raises(ValueError, match="lengths"):
        padding_mask(torch.tensor([0, 2]), 3)
    with pytest.raises(ValueError, match="even"):
        sinusoidal_positions(4, 5)
    with pytest.raises(ValueError, match="n must be a positive int"):
        sinusoidal_positions(0, 4)
    with pytest.raises(ValueError, match="dividing the image size"):
        patchify(torch.zeros(1, 1, 8, 8), 3)


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_attention_runs_where_its_inputs_are(g, device):
    mha = MultiHeadAttention(8, 2).to(device)
    x = torch.randn(2, 5, 8, generator=g).to(device)
    out, weights = mha(x, causal_mask(5, device=device))
    assert out.device.type == weights.device.type == device
    if device != "cpu":
        with pytest.raises(ValueError, match="mask is on cpu"):
            mha(x, causal_mask(5))
