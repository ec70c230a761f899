"""Tests of the character n-gram model: it is a proper distribution and its NLL is the counted one."""
from __future__ import annotations

import itertools
import math
import time
from collections import Counter

import pytest
import torch

from companion.data import CharTokenizer
from companion.ngram import NGramModel


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


def random_ids(gen: torch.Generator, n: int, v: int) -> torch.Tensor:
    return torch.randint(0, v, (n,), generator=gen)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_every_context_has_a_distribution_that_sums_to_one(gen, order):
    v = 4
    model = NGramModel(order, v, alpha=0.3).fit(random_ids(gen, 60, v)[:40] % 3)  # id 3 never seen
    for context in itertools.product(range(v), repeat=order - 1):  # seen and unseen contexts
        p = model.conditional(torch.tensor(context, dtype=torch.int64))
        assert p.shape == (v,)
        assert (p > 0).all()
        assert float(p.sum()) == pytest.approx(1.0, abs=1e-12)


def test_unseen_context_is_uniform_and_seen_context_is_the_smoothed_count():
    tok = CharTokenizer("abc")
    model = NGramModel(2, 3, alpha=0.5).fit(tok.encode("aab"))
    # pairs: (a, a), (a, b); context "a" seen twice; "c" never.
    torch.testing.assert_close(model.conditional(tok.encode("c")), torch.full((3,), 1 / 3, dtype=torch.float64))
    expected = torch.tensor([1 + 0.5, 1 + 0.5, 0 + 0.5], dtype=torch.float64) / (2 + 0.5 * 3)
    torch.testing.assert_close(model.conditional(tok.encode("a")), expected)


def test_nll_equals_a_hand_computation_on_a_tiny_text():
    text = "abab a"
    tok = CharTokenizer(text)  # vocabulary: ' ', 'a', 'b'  (V = 3)
    alpha, v = 1.0, 3
    model = NGramModel(2, v, alpha=alpha).fit(tok.encode(text))
    # bigrams of "abab a": ab, ba, ab, b_, _a  ->  N(a)=2, N(b)=2, N(' ')=1
    # N(a,b)=2, N(b,a)=1, N(b,' ')=1, N(' ',a)=1
    p = {("a", "b"): (2 + 1) / (2 + 3), ("b", "a"): (1 + 1) / (2 + 3),
         ("b", " "): (1 + 1) / (2 + 3), (" ", "a"): (1 + 1) / (1 + 3)}
    pairs = [("a", "b"), ("b", "a"), ("a", "b"), ("b", " "), (" ", "a")]
    hand = -sum(math.log(p[q]) for q in pairs) / len(pairs)
    assert model.nll(tok.encode(text)) == pytest.approx(hand, abs=1e-12)
    # an unseen pair in a seen context, and an unseen context:
    assert model.nll(tok.encode("aa")) == pytest.approx(-math.log((0 + 1) / (2 + 3)), abs=1e-12)
    model3 = NGramModel(3, v, alpha=alpha).fit(tok.encode(text))
    assert model3.nll(tok.encode("  b")) == pytest.approx(math.log(3), abs=1e-12)


def test_order_one_is_the_unigram_entropy_estimate(gen):
    v = 5
    ids = torch.multinomial(torch.tensor([0.4, 0.3, 0.15, 0.1, 0.05]), 5000, replacement=True, generator=gen)
    freq = torch.bincount(ids, minlength=v).double() / len(ids)
    entropy = -(freq[freq > 0] * freq[freq > 0].log()).sum().item()
    tiny = NGramModel(1, v, alpha=1e-12).fit(ids)
    assert tiny.nll(ids) == pytest.approx(entropy, abs=1e-8)  # alpha -> 0: the plug-in entropy
    # with smoothing: the cross-entropy of the frequencies with the smoothed estimate, >= entropy (Gibbs)
    alpha = 3.0
    smooth = NGramModel(1, v, alpha=alpha).fit(ids)
    q = (freq * len(ids) + alpha) / (len(ids) + alpha * v)
    assert smooth.nll(ids) == pytest.approx(-(freq * q.log()).sum().item(), abs=1e-10)
    assert smooth.nll(ids) >= entropy


def test_higher_order_fits_the_training_text_better_and_nll_counts_match_python(gen):
    text = "the cat sat on the mat; the rat ate the cat's hat. " * 4
    tok = CharTokenizer(text)
    ids = tok.encode(text)
    nlls = [NGramModel(k, tok.vocab_size, alpha=0.01).fit(ids).nll(ids[10:]) for k in (1, 2, 3, 4)]
    assert all(a > b for a, b in zip(nlls, nlls[1:]))  # on training text more context never hurts here
    # the vectorised counts equal a plain Python count
    model = NGramModel(3, tok.vocab_size, alpha=0.7).fit(ids)
    pairs = Counter(text[i:i + 3] for i in range(len(text) - 2))
    ctx = Counter(text[i:i + 2] for i in range(len(text) - 2))
    hand = -sum(math.log((pairs[text[i:i + 3]] + 0.7) / (ctx[text[i:i + 2]] + 0.7 * tok.vocab_size))
                for i in range(len(text) - 2)) / (len(text) - 2)
    assert model.nll(ids) == pytest.approx(hand, abs=1e-10)


def test_sampling_is_deterministic_with_a_seeded_generator_and_follows_the_counts(gen):
    text = "abcabcabcabd" * 20
    tok = CharTokenizer(text)
    model = NGramModel(3, tok.vocab_size, alpha=1e-6).fit(tok.encode(text))
    a = model.sample(200, generator=torch.Generator().manual_seed(7))
    b = model.sample(200, generator=torch.Generator().manual_seed(7))
    assert a.shape == (200,) and a.dtype == torch.int64
    assert torch.equal(a, b)
    # with almost no smoothing only continuations seen in training appear
    out = tok.decode(model.sample(300, generator=gen, prompt=tok.encode("ab")))
    full = "ab" + out
    seen = {text[i:i + 3] for i in range(len(text) - 2)}
    assert {full[i:i + 3] for i in range(len(full) - 2)} <= seen


def test_sample_frequencies_match_the_conditional(gen):
    model = NGramModel(1, 3, alpha=1.0).fit(torch.tensor([0, 0, 0, 0, 0, 0, 1, 1]))
    p = model.conditional(torch.tensor([], dtype=torch.int64))  # (6+1, 2+1, 0+1) / 11
    draws = model.sample(8_000, generator=gen)
    freq = torch.bincount(draws, minlength=3).double() / len(draws)
    torch.testing.assert_close(freq, p, atol=0.02, rtol=0)  # about 4 standard errors


def test_high_order_fits_any_order_and_without_smoothing_copies_the_training_text(gen):
    from companion.data import text_corpus

    corpus = text_corpus()
    tok = CharTokenizer(corpus)
    text = corpus[:30_000]
    ids = tok.encode(text)
    model = NGramModel(25, tok.vocab_size, alpha=1e-9).fit(ids)  # V**25 keys would overflow int64
    assert model.nll(ids) < 0.05  # almost every 24-character context has one continuation
    start = time.perf_counter()
    out = tok.decode(model.sample(300, generator=gen))  # starts from a context drawn from the text
    assert time.perf_counter() - start < 3.0
    # every 25-character window of the sample occurs in the training text
    assert all(out[i:i + 25] in text for i in range(len(out) - 24))
    # a held-out text is mostly unseen contexts: close to the uniform log V nats per character
    held_out = tok.encode(corpus[200_000:201_000])
    assert model.nll(held_out) > 0.5 * math.log(tok.vocab_size)


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="order"):
        NGramModel(0, 3)
    with pytest.raises(ValueError, match="vocab_size"):
        NGramModel(2, 0)
    with pytest.raises(ValueError, match="alpha"):
        NGramModel(2, 3, alpha=0.0)
    model = NGramModel(3, 4)
    with pytest.raises(ValueError, match="not fitted"):
        model.nll(torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"shape \(n,\)"):
        model.fit(torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="integer"):
        model.fit(torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="outside"):
        model.fit(torch.tensor([0, 1, 4]))
    with pytest.raises(ValueError, match="at least 3"):
        model.fit(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="torch.Tensor"):
        model.fit([0, 1, 2])
    model.fit(torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="context of shape"):
        model.conditional(torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="prompt needs at least 2"):
        model.sample(3, prompt=torch.tensor([1]))
    with pytest.raises(ValueError, match="n must be"):
        model.sample(-1)
