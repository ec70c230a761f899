import math

import numpy as np
import pytest
import torch

from companion.attention import sinusoidal_embedding
from companion.denoisers import MLPDenoiser, MLPDenoiserConfig, TinyUNet, UNetConfig
from companion.diffusion import ddpm_loss
from companion.schedules import NoiseSchedule
from companion.train import train
from companion.utils import fresh_init


def test_sinusoidal_embedding_is_the_transformer_formula():
    t = torch.tensor([0, 3, 250])
    e = sinusoidal_embedding(t, 8, max_period=10_000.0)
    for row, step in zip(e, t.tolist()):
        freqs = [10_000.0 ** (-i / 4) for i in range(4)]
        expected = [math.sin(step * f) for f in freqs] + [math.cos(step * f) for f in freqs]
        assert torch.allclose(row, torch.tensor(expected), atol=1e-4)


def test_nearby_timesteps_get_nearby_embeddings():
    e = sinusoidal_embedding(torch.arange(200), 32)
    d = torch.cdist(e, e)
    assert (d[100, 101] < d[100, 110]) and (d[100, 110] < d[100, 190])


def test_conditional_networks_treat_missing_labels_as_label_minus_one(g):
    for net, x in [(MLPDenoiser(MLPDenoiserConfig(num_classes=3)), torch.randn(4, 2, generator=g)),
                   (TinyUNet(UNetConfig(channels=8)), torch.randn(4, 1, 8, 8, generator=g))]:
        t = torch.tensor([0, 1, 50, 99])
        none = torch.full((4,), -1)
        assert torch.allclose(net(x, t), net(x, t, none), atol=1e-6)
        assert not torch.allclose(net(x, t, torch.tensor([0, 1, 2, 0])), net(x, t, none))


def test_every_parameter_of_the_unet_gets_a_gradient(g):
    net = TinyUNet(UNetConfig(channels=8))
    out = net(torch.randn(3, 1, 8, 8, generator=g), torch.tensor([1, 2, 3]), torch.tensor([0, -1, 9]))
    out.pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_the_mlp_learns_the_noise_of_a_gaussian_better_than_guessing_zero():
    # For data N(0, 0.1^2 I) most of x_t is noise: a trained denoiser must beat
    # the loss 1.0 of predicting zero noise by a wide margin.
    s = NoiseSchedule.linear(50)
    net = fresh_init(lambda: MLPDenoiser(MLPDenoiserConfig(hidden=32, layers=2)), seed=0)
    data = 0.1 * torch.randn(2048, 2, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    history = train(lambda x: ddpm_loss(net, x, s, generator=gen), net.parameters(), data,
                    steps=200, lr=3e-3, batch_size=128, progress=False)
    assert sum(history[-50:]) / 50 < 0.5


def test_bad_input_raises_clear_errors():
    mlp, unet = MLPDenoiser(), TinyUNet(UNetConfig(channels=8))
    t = torch.tensor([1, 2])
    with pytest.raises(ValueError, match="even"):
        sinusoidal_embedding(t, 7)
    with pytest.raises(ValueError, match=r"shape \(b, d\) with d=2"):
        mlp(torch.zeros(2, 3), t)
    with pytest.raises(ValueError, match="int64"):
        mlp(torch.zeros(2, 2), t.float())
    with pytest.raises(ValueError, match="unconditional"):
        mlp(torch.zeros(2, 2), t, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"shape \(b, 1, 8, 8\)"):
        unet(torch.zeros(2, 1, 16, 16), t)
    with pytest.raises(ValueError, match=r"in \[-1, 10\)"):
        unet(torch.zeros(2, 1, 8, 8), t, torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="t of shape"):
        unet(torch.zeros(2, 1, 8, 8), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="timesteps must be >= 0"):
        unet(torch.zeros(2, 1, 8, 8), torch.tensor([-1, 2]))
    with pytest.raises(ValueError, match="torch.Tensor"):
        unet(np.zeros((2, 1, 8, 8), dtype=np.float32), t)
    with pytest.raises(ValueError, match="at least one example"):
        unet(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.int64))
    with pytest.raises(ValueError, match="NaN"):
        mlp(torch.full((2, 2), float("nan")), t)
    with pytest.raises(ValueError, match="integer class ids"):
        unet(torch.zeros(2, 1, 8, 8), t, torch.tensor([1.0, 2.0]))


@pytest.mark.parametrize("make, message", [
    (lambda: MLPDenoiserConfig(hidden=0), "hidden must be a positive int"),
    (lambda: MLPDenoiserConfig(layers=0), "layers must be a positive int"),
    (lambda: MLPDenoiserConfig(data_dim=0), "data_dim must be a positive int"),
    (lambda: MLPDenoiserConfig(time_dim=7), "time_dim must be even"),
    (lambda: MLPDenoiserConfig(num_classes=-1), "num_classes must be an int >= 0"),
    (lambda: MLPDenoiserConfig(context_dim=2.5), "context_dim must be an int >= 0"),
    (lambda: UNetConfig(channels=0), "channels must be a positive int"),
    (lambda: UNetConfig(groups=0), "groups must be a positive int"),
    (lambda: UNetConfig(channels=12), r"channels \(12\) must be a multiple of groups \(8\)"),
    (lambda: UNetConfig(time_dim=0), "time_dim must be a positive int"),
])
def test_configs_that_would_build_a_broken_network_are_refused(make, message):
    # hidden=0 and channels=0 once built and ran; channels=12 with 8 groups failed inside GroupNorm
    with pytest.raises(ValueError, match=message):
        make()


def test_float64_inputs_are_cast_and_int32_labels_read_as_class_ids(g):
    unet = TinyUNet(UNetConfig(channels=8))
    x, t, y = torch.randn(3, 1, 8, 8, generator=g), torch.tensor([1, 20, 90]), torch.tensor([0, -1, 9])
    expected = unet(x, t, y)
    got = unet(x.double(), t, y.int())
    assert got.dtype == torch.float32 and torch.equal(got, expected)


def test_a_float64_network_computes_in_float64(g):
    net = MLPDenoiser(MLPDenoiserConfig(hidden=8, layers=1, num_classes=2)).double()
    out = net(torch.randn(4, 2, generator=g), torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, -1, 0]))
    assert out.dtype == torch.float64


def test_a_context_vector_conditions_the_mlp_and_is_checked(g):
    net = MLPDenoiser(MLPDenoiserConfig(data_dim=4, hidden=16, layers=2, context_dim=3))
    x, t = torch.randn(2, 4, generator=g), torch.tensor([3, 7])
    c1, c2 = torch.randn(2, 3, generator=g), torch.randn(2, 3, generator=g)
    assert net(x, t, context=c1).shape == (2, 4)
    assert not torch.allclose(net(x, t, context=c1), net(x, t, context=c2))
    with pytest.raises(ValueError, match="context of size 3"):
        net(x, t)                                                    # the context is required
    with pytest.raises(ValueError, match=r"shape \(b, c\) with c=3"):
        net(x, t, context=torch.randn(2, 5))
    with pytest.raises(ValueError, match="context of size 0"):
        MLPDenoiser()(torch.randn(2, 2), t, context=c1)              # an unconditioned net refuses one
