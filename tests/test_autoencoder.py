"""The plain and denoising autoencoder: configs, shapes, corruption, masking noise, and clear errors."""
import numpy as np
import pytest
import torch

from companion.autoencoder import Autoencoder, AutoencoderConfig, InputDropout, corrupt, reconstruction_error
from companion.data import digits
from companion.train import train
from companion.utils import fresh_init


def _ae(**sizes) -> Autoencoder:
    return fresh_init(lambda: Autoencoder(AutoencoderConfig(**sizes)), seed=0)


def test_config_validates_itself():
    assert AutoencoderConfig(data_shape=[2]).data_shape == (2,)          # a list is stored as a tuple
    with pytest.raises(ValueError, match="latent_dim must be a positive int"):
        AutoencoderConfig(latent_dim=0)
    with pytest.raises(ValueError, match="hidden must be a positive int"):
        AutoencoderConfig(hidden=0)
    with pytest.raises(ValueError, match="every axis of data_shape must be a positive int"):
        AutoencoderConfig(data_shape=(1, 0, 8))
    with pytest.raises(ValueError, match="data_shape must be a tuple of positive ints"):
        AutoencoderConfig(data_shape=64)
    with pytest.raises(ValueError, match="expected an AutoencoderConfig"):
        Autoencoder(64)


def test_codes_and_outputs_have_the_data_shape():
    ae = _ae(latent_dim=3, hidden=16)
    x = torch.rand(5, 1, 8, 8)
    assert ae.encode(x).shape == (5, 3) and ae(x).shape == (5, 1, 8, 8)
    points = _ae(data_shape=(2,), latent_dim=1, hidden=8)
    assert points(torch.rand(4, 2)).shape == (4, 2)


def test_reconstruction_error_is_the_squared_distance_to_the_target(g):
    ae = _ae(latent_dim=3, hidden=16)
    x = torch.rand(4, 1, 8, 8, generator=g)
    noisy = corrupt(x, 0.5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = ae(noisy).numpy().reshape(4, 64).astype(np.float64)
    expected = ((out - x.numpy().reshape(4, 64)) ** 2).sum(1)             # NumPy, in float64
    assert np.allclose(reconstruction_error(ae, noisy, target=x).detach().numpy(), expected, rtol=1e-5)
    with torch.no_grad():
        assert torch.equal(reconstruction_error(ae, x), (ae(x) - x).pow(2).flatten(1).sum(1))


def test_corrupt_is_seeded_clipped_and_leaves_the_global_rng_alone(g):
    x = torch.rand(4, 1, 8, 8, generator=g)
    state = torch.get_rng_state()
    noisy = corrupt(x, 0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(noisy, corrupt(x, 0.5, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(torch.get_rng_state(), state)
    assert noisy.min() >= 0 and noisy.max() <= 1 and not torch.equal(noisy, x)
    assert torch.equal(corrupt(x, 0.0), x)
    inside = torch.full((200_000,), 0.5)                                   # far from the clip: plain noise
    noise = corrupt(inside, 0.1, generator=torch.Generator().manual_seed(1)) - 0.5
    assert abs(noise.mean()) < 1e-3 and abs(noise.std() - 0.1) < 1e-3


def test_input_dropout_draws_its_mask_from_the_generator_and_keeps_the_mean():
    drop = InputDropout(0.3)
    u = torch.full((100_000, 4), 0.5)
    state = torch.get_rng_state()
    a = drop(u, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, drop(u, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(torch.get_rng_state(), state)
    assert abs((a == 0).float().mean() - 0.3) < 0.005                      # a fraction p is zeroed
    assert abs(a.mean() - 0.5) < 0.005                                     # E[output] = input
    assert torch.equal(drop.eval()(u), u) and torch.equal(InputDropout(0.0)(u), u)
    with pytest.raises(ValueError, match=r"p must lie in \[0, 1\)"):
        InputDropout(1.0)


def test_an_autoencoder_learns_to_reconstruct_the_digits():
    x, _ = digits("train")
    ae = _ae(latent_dim=8, hidden=64)
    before = reconstruction_error(ae, x).mean().item()
    train(lambda batch: reconstruction_error(ae, batch), ae.parameters(), x, steps=60, lr=3e-3, batch_size=64,
          progress=False)
    assert reconstruction_error(ae, x).mean().item() < 0.5 * before


def test_grey_levels_are_refused_where_intensities_are_expected():
    ae = _ae(hidden=8)
    levels, _ = digits("val", as_levels=True)
    with pytest.raises(ValueError, match="divide them by 16"):
        ae(levels.float())                                # levels 0..16 as floats: once silently accepted
    with pytest.raises(ValueError, match="float intensities"):
        ae(levels)
    with pytest.raises(ValueError, match="divide them by 16"):
        reconstruction_error(ae, levels.float() / 16, target=levels.float())
    with pytest.raises(ValueError, match="divide them by 16"):
        corrupt(levels.float())


def test_bad_input_raises_clear_errors():
    ae = _ae(hidden=8)
    with pytest.raises(ValueError, match="torch.Tensor, got ndarray"):
        ae(np.zeros((2, 1, 8, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="at least one example"):
        ae(torch.zeros(0, 1, 8, 8))
    with pytest.raises(ValueError, match=r"expected x of shape \(b, 1, 8, 8\), got \(3, 64\)"):
        ae(torch.zeros(3, 64))
    with pytest.raises(ValueError, match="NaN or infinite"):
        ae(torch.full((1, 1, 8, 8), float("nan")))
    with pytest.raises(ValueError, match=r"expected target of shape \(b, 1, 8, 8\) with b=2"):
        reconstruction_error(ae, torch.zeros(2, 1, 8, 8), target=torch.zeros(3, 1, 8, 8))
    with pytest.raises(ValueError, match="expected z of shape"):
        ae.decode(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="std must be a finite number >= 0"):
        corrupt(torch.zeros(2, 64), -0.1)
    x64 = torch.rand(3, 1, 8, 8, dtype=torch.float64)                      # float64: cast, same answer
    assert torch.equal(ae(x64), ae(x64.float()))
