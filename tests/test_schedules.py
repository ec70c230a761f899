"""Tests of companion.schedules: the schedules against their closed forms and an independent computation."""
import math

import numpy as np
import pytest
import torch

from companion.schedules import NoiseSchedule


@pytest.mark.parametrize("make", [NoiseSchedule.linear, NoiseSchedule.cosine])
def test_alpha_bars_are_the_product_of_alphas(make, float64):
    s = make(300)
    assert torch.allclose(s.alphas, 1 - s.betas)
    assert torch.allclose(s.alpha_bars, torch.tensor(np.cumprod(s.alphas.numpy())), rtol=1e-12)
    assert torch.allclose(s.alpha_bars_prev[1:], s.alpha_bars[:-1]) and s.alpha_bars_prev[0] == 1
    assert (s.alpha_bars.diff() < 0).all() and (s.snr().diff() < 0).all()


def test_linear_schedule_matches_an_independent_computation_of_ho_et_al():
    # Ho et al. 2020, Sec. 4: T = 1000, beta linear from 1e-4 to 0.02. Computed here in
    # numpy through log1p, a different path from the module's cumprod. (diffusers'
    # DDPMScheduler(beta_schedule="linear").alphas_cumprod would be a third; it is not a
    # dependency of the course.)
    s = NoiseSchedule.linear(1000)
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    alpha_bars = np.exp(np.cumsum(np.log1p(-betas)))
    np.testing.assert_allclose(s.betas.numpy(), betas, rtol=1e-12)
    np.testing.assert_allclose(s.alpha_bars.numpy(), alpha_bars, rtol=1e-10)
    # the well-known end point: sqrt(alpha_bar_T) ~ 0.0064, almost no signal left
    assert s.alpha_bars[-1].sqrt().item() == pytest.approx(0.00635, abs=5e-5)
    # rescaled to T = 200 steps (Nichol & Dhariwal 2021): betas times 1000 / T
    np.testing.assert_allclose(NoiseSchedule.linear(200).betas.numpy(), np.linspace(5e-4, 0.1, 200), rtol=1e-12)


def test_cosine_schedule_follows_its_closed_form():
    T, s_ = 1000, 0.008
    s = NoiseSchedule.cosine(T)
    t = np.arange(1, T + 1)
    f = np.cos((t / T + s_) / (1 + s_) * np.pi / 2) ** 2 / np.cos(s_ / (1 + s_) * np.pi / 2) ** 2
    # equal wherever beta was not clipped (only the very last steps are)
    unclipped = s.betas.numpy() < 0.999
    assert unclipped[: T - 5].all()
    np.testing.assert_allclose(s.alpha_bars.numpy()[unclipped], f[unclipped], rtol=1e-9)


def test_at_picks_values_per_example_in_the_dtype_and_device_of_x():
    s = NoiseSchedule.linear(50)
    x = torch.zeros(3, 1, 2, 2)
    got = s.at(s.alpha_bars, torch.tensor([0, 10, 49]), x)
    assert got.shape == (3, 1, 1, 1) and got.dtype == torch.float32 and got.device == x.device
    assert torch.allclose(got.flatten(), s.alpha_bars[[0, 10, 49]].float())


def test_bad_input_raises_clear_errors():
    s = NoiseSchedule.linear(10, 1e-3, 0.2)
    with pytest.raises(ValueError, match=r"in \[0, 10\)"):
        s.check_t(torch.tensor([0, 5, 10]), 3)
    with pytest.raises(ValueError, match="int64"):
        s.check_t(torch.tensor([0.0, 1.0, 2.0]), 3)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        NoiseSchedule(torch.tensor([0.1, 1.5]))
    with pytest.raises(ValueError, match="T must be"):
        NoiseSchedule.linear(1)
    with pytest.raises(ValueError, match="T must be"):
        NoiseSchedule.cosine(True)
    with pytest.raises(ValueError, match="delta"):
        NoiseSchedule.cosine(100, delta=-0.1)
    with pytest.raises(ValueError, match="T > 20"):
        NoiseSchedule.linear(10)
    assert math.isfinite(s.snr()[-1].item())
