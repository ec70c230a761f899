"""Tests of companion.guidance: classifier guidance against the exact scores of a Gaussian mixture."""
import pytest
import torch

from companion.guidance import ClassifierGuidance, NoisyClassifier, NoisyClassifierConfig, noisy_classifier_loss
from companion.samplers import ddim_sample
from companion.schedules import NoiseSchedule
from companion.train import train

# Two classes of 2-D data: x0 | y ~ N(MEANS[y], STD^2 I), equally likely.
MEANS, STD = torch.tensor([[2.0, 0.0], [-1.0, 1.5]], dtype=torch.float64), 0.4


def _class_eps(x, t, schedule):
    r"""Exact E[eps | x_t, y] for every class, ``(b, K, d)``, and log N(x_t | y) ``(b, K)`` (closed form)."""
    ab = schedule.alpha_bars[t][:, None, None]
    var = ab * STD**2 + 1 - ab                                     # Var(x_t | y) per coordinate
    centred = x[:, None, :] - ab.sqrt() * MEANS[None]              # (b, K, d)
    log_lik = (-0.5 * centred.pow(2) / var - 0.5 * torch.log(2 * torch.pi * var)).sum(2)
    return (1 - ab).sqrt() * centred / var, log_lik


def _exact(schedule):
    """The exact unconditional denoiser of the mixture and its exact noisy classifier p_t(y | x_t)."""
    def uncond(x, t, y=None):
        eps, log_lik = _class_eps(x, t, schedule)
        return (log_lik.softmax(1)[:, :, None] * eps).sum(1)      # E[eps | x_t] = sum_y p(y | x_t) E[eps | x_t, y]

    def classifier(x, t):
        return _class_eps(x, t, schedule)[1]                       # logits = log p(x_t | y) + const
    return uncond, classifier


def test_guidance_at_scale_one_with_the_exact_classifier_is_the_conditional_denoiser(g):
    s = NoiseSchedule.linear(100)
    uncond, classifier = _exact(s)
    x, t = torch.randn(64, 2, generator=g, dtype=torch.float64), torch.randint(0, 100, (64,), generator=g)
    y = torch.randint(0, 2, (64,), generator=g)
    guided = ClassifierGuidance(uncond, classifier, s, scale=1.0)(x, t, y)
    conditional = _class_eps(x, t, s)[0][torch.arange(64), y]      # Bayes: score(x | y) = score(x) + score(y | x)
    torch.testing.assert_close(guided, conditional, rtol=1e-9, atol=1e-9)


def test_scale_zero_and_no_label_leave_the_denoiser_alone(g):
    s = NoiseSchedule.linear(50)
    uncond, classifier = _exact(s)
    x, t = torch.randn(8, 2, generator=g, dtype=torch.float64), torch.randint(0, 50, (8,), generator=g)
    y = torch.tensor([0, 1, -1, -1, 0, 1, -1, 0])
    plain = uncond(x, t)
    torch.testing.assert_close(ClassifierGuidance(uncond, classifier, s, scale=0.0)(x, t, y), plain)
    out = ClassifierGuidance(uncond, classifier, s, scale=3.0)(x, t, y)
    torch.testing.assert_close(out[y < 0], plain[y < 0])
    assert not torch.allclose(out[y >= 0], plain[y >= 0])


def test_guided_samples_land_in_the_requested_class(g):
    s = NoiseSchedule.linear(200)
    uncond, classifier = _exact(s)
    y = torch.tensor([0, 1]).repeat(200)
    x = ddim_sample(ClassifierGuidance(uncond, classifier, s, scale=1.0), s, (400, 2), steps=50, labels=y,
                    noise=torch.randn(400, 2, generator=g, dtype=torch.float64))
    nearest = torch.cdist(x, MEANS).argmin(1)
    assert (nearest == y).double().mean() > 0.98
    for k in range(2):                                             # the conditional p(x | y), not a sharpened one
        torch.testing.assert_close(x[y == k].mean(0), MEANS[k], atol=0.1, rtol=0)
        assert abs(x[y == k].std(0).mean().item() - STD) < 0.08


def test_the_noisy_classifier_learns_to_classify_lightly_noised_data(g):
    s = NoiseSchedule.linear(50)
    y = torch.randint(0, 2, (2000,), generator=g)
    x0 = MEANS.float()[y] + STD * torch.randn(2000, 2, generator=g)
    net = NoisyClassifier(NoisyClassifierConfig(data_dim=2, hidden=32, num_classes=2))
    train(lambda a, b: noisy_classifier_loss(net, a, b, s, generator=g), net.parameters(), (x0, y),
          steps=300, batch_size=128, lr=1e-2, seed=0, progress=False)
    with torch.no_grad():
        accuracy = (net(x0, torch.zeros(2000, dtype=torch.int64)).argmax(1) == y).double().mean()
    assert accuracy > 0.97


def test_bad_input_raises_clear_errors():
    s = NoiseSchedule.linear(50)
    net = NoisyClassifier()
    with pytest.raises(ValueError, match="64 entries"):
        net(torch.randn(3, 2), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="int64"):
        net(torch.randn(3, 64), torch.zeros(3))
    with pytest.raises(ValueError, match="in \\[0, 10\\)"):
        noisy_classifier_loss(net, torch.randn(2, 64), torch.tensor([0, 10]), s)
    with pytest.raises(ValueError, match="scale"):
        ClassifierGuidance(lambda x, t: x, net, s, scale=-1.0)
    with pytest.raises(ValueError, match="even"):
        NoisyClassifierConfig(time_dim=3)
    guided = ClassifierGuidance(lambda x, t: x, lambda x, t: torch.zeros(x.shape[0], 3), s, scale=1.0)
    with pytest.raises(ValueError, match="y in \\[-1, 3\\)"):
        guided(torch.randn(2, 2), torch.zeros(2, dtype=torch.int64), torch.tensor([0, 3]))
