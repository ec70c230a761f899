"""The input checks every public boundary uses: each ordinary mistake gets a clear ValueError."""
import numpy as np
import pytest
import torch

from companion import checks


def test_tensor_refuses_numpy_with_a_hint():
    with pytest.raises(ValueError, match=r"torch.Tensor, got ndarray \(convert it with torch.as_tensor"):
        checks.tensor("x", np.zeros((2, 2)))


def test_tensor_refuses_an_empty_batch():
    with pytest.raises(ValueError, match="at least one example"):
        checks.tensor("x", torch.zeros(0, 3), "b 3")


def test_floats_casts_float64_to_the_model_dtype():
    model = torch.nn.Linear(2, 2)
    x = checks.floats("x", torch.zeros(3, 2, dtype=torch.float64), "b 2", model=model)
    assert x.dtype == torch.float32


def test_floats_refuses_integers_nan_and_out_of_range():
    with pytest.raises(ValueError, match="float tensor, got torch.int64"):
        checks.floats("x", torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN or infinite"):
        checks.floats("x", torch.tensor([[float("nan")]]))
    with pytest.raises(ValueError, match=r"in \[0.0, 1.0\]"):
        checks.floats("x", torch.tensor([[1.5]]), low=0.0, high=1.0)


def test_intensities_refuse_grey_levels():
    with pytest.raises(ValueError, match="divide them by 16"):
        checks.intensities("x", torch.full((2, 64), 16.0))
    with pytest.raises(ValueError, match="divide them by 16"):
        checks.intensities("x", torch.full((2, 64), 16))


def test_levels_refuse_floats_and_out_of_range():
    with pytest.raises(ValueError, match="integer grey levels 0..16"):
        checks.levels("x", torch.rand(2, 64))
    with pytest.raises(ValueError, match=r"grey levels 0..16, got values in \[0, 17\]"):
        checks.levels("x", torch.tensor([[0, 17]]))
    assert checks.levels("x", torch.tensor([[0, 16]], dtype=torch.uint8)).dtype == torch.int64


def test_labels_in_range_with_the_right_shape_and_dtype():
    with pytest.raises(ValueError, match=r"shape \(b\), got \(3, 1\)"):
        checks.labels("y", torch.zeros(3, 1, dtype=torch.long), 2)
    with pytest.raises(ValueError, match=r"in \[0, 2\)"):
        checks.labels("y", torch.tensor([0, 2]), 2)
    with pytest.raises(ValueError, match="integer class ids"):
        checks.labels("y", torch.tensor([0.0, 1.0]), 2)
    assert checks.labels("y", torch.tensor([-1, 1]), 2, allow_none=True).tolist() == [-1, 1]


def test_device_mismatch_is_named():
    model = torch.nn.Linear(2, 2).to("meta")
    with pytest.raises(ValueError, match="is on cpu but the model is on meta"):
        checks.same_device("x", torch.zeros(1, 2), model)


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "3"])
def test_positive_int_refuses(value):
    with pytest.raises(ValueError, match="must be a positive int"):
        checks.positive_int("width", value)


def test_fraction_and_positive():
    assert checks.fraction("p", 0.0) == 0.0
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\)"):
        checks.fraction("p", 1.0)
    with pytest.raises(ValueError, match="finite number > 0"):
        checks.positive("lr", float("inf"))


def test_intensities_allow_float_rounding_only():
    x = torch.tensor([[0.0, 1.0 + 1e-7, -1e-7]])
    assert checks.intensities("x", x) is not None
    with pytest.raises(ValueError, match=r"values up to 1.001"):
        checks.intensities("x", torch.tensor([[1.001]]))


@pytest.mark.parametrize("build", [
    "arm.PixelARM", "autoencoder.Autoencoder", "clip.CLIP", "clip.TextEncoder", "clip.ImageEncoder",
    "denoisers.MLPDenoiser", "denoisers.TinyUNet", "diffusion.Diffusion", "gan.Generator", "gan.Discriminator",
    "gan.ConvGenerator", "gan.ConvDiscriminator", "gpt.GPT", "realnvp.RealNVP", "vae.VAE"])
def test_every_model_refuses_what_is_not_its_config(build):
    """One check for every model: a wrong config (here a dict of sizes) is named, not an AttributeError deep inside."""
    import importlib
    module, name = build.split(".")
    model = getattr(importlib.import_module(f"companion.{module}"), name)
    with pytest.raises(ValueError, match=r"expected an? \w+Config, got dict \(build the model from a config"):
        model({"hidden": 8})
