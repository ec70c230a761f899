"""The GAN's networks, configs and ``sample`` (companion.gan)."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from companion import gan
from companion.gan import (ConvDiscriminator, ConvGenerator, DigitGANConfig, Discriminator, GANConfig,
                           Generator, Linears, sample)
from companion.utils import fresh_init

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) + (
    ["mps"] if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else [])
CHECKPOINT = Path(gan.__file__).parent / "checkpoints" / "gan_seed0.pt"


def test_networks_shapes_and_packing():
    cfg = GANConfig(pack=4)
    d = Discriminator(cfg)
    x = torch.randn(8, 2)
    out = d(x)
    assert out.shape == (2,)
    # The first logit depends on the first four samples only.
    x2 = x.clone()
    x2[4:] += 1.0
    assert torch.equal(d(x2)[0], out[0]) and not torch.equal(d(x2)[1], out[1])
    assert Generator(cfg)(torch.randn(5, cfg.latent_dim)).shape == (5, 2)
    images = ConvGenerator().eval()(torch.randn(4, 16), torch.arange(4))
    assert images.shape == (4, 1, 8, 8) and images.min() >= 0 and images.max() <= 1
    assert ConvDiscriminator()(images, torch.arange(4)).shape == (4,)


def test_one_copy_of_linears_is_an_nn_linear_with_the_same_draws(float64):
    torch.manual_seed(3)
    reference = torch.nn.Linear(4, 5)
    torch.manual_seed(3)
    layer = Linears(1, 4, 5)
    assert torch.allclose(layer.weight[0], reference.weight, rtol=1e-15, atol=0)     # bounds: rounding only
    assert torch.allclose(layer.bias[0, 0], reference.bias, rtol=1e-15, atol=0)
    x = torch.randn(7, 4)
    assert torch.allclose(layer(x[None])[0], reference(x), atol=1e-12)


def test_copies_are_independent_networks_side_by_side(float64):
    # Copy j of a network with copies=3 maps the j-th block of the batch exactly as a
    # one-copy network holding copy j's weights, and only that block reaches its weights.
    for build, cfg in ((Generator, dict(latent_dim=3)), (Discriminator, dict(pack=2))):
        many = fresh_init(lambda: build(GANConfig(copies=3, hidden=8, **cfg)), seed=0)
        x = torch.randn(12, 3 if build is Generator else 2)
        out = many(x)
        for j in range(3):
            one = build(GANConfig(hidden=8, **cfg))
            one.load_state_dict({k: v[j:j + 1] for k, v in many.state_dict().items()})
            per_copy = out.shape[0] // 3
            assert torch.allclose(one(x[4 * j:4 * j + 4]), out[per_copy * j:per_copy * (j + 1)], atol=1e-12)
        out[:per_copy].sum().backward()                   # the first copy's outputs only
        for p in many.parameters():
            assert p.grad[0].abs().sum() > 0 and p.grad[1:].abs().sum() == 0
    with pytest.raises(ValueError, match=r"not a multiple of copies \* pack = 3 \* 1"):
        Generator(GANConfig(copies=3))(torch.zeros(4, 2))


@pytest.mark.parametrize("config, field", [
    (GANConfig, "data_dim"), (GANConfig, "latent_dim"), (GANConfig, "hidden"), (GANConfig, "layers"),
    (GANConfig, "pack"), (GANConfig, "copies"), (DigitGANConfig, "latent_dim"), (DigitGANConfig, "width"),
    (DigitGANConfig, "num_classes")])
def test_configs_refuse_sizes_that_are_not_positive_ints(config, field):
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match=f"{field} must be a positive int"):
            config(**{field: bad})


def test_configs_are_frozen_and_name_num_classes():
    cfg = DigitGANConfig(num_classes=3)
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign"):
        cfg.width = 8
    with pytest.raises(TypeError, match="n_classes"):
        DigitGANConfig(n_classes=3)
    assert ConvGenerator(cfg).project[0].in_features == 16 + 3


def test_conv_generator_keeps_the_parameter_names_of_the_shipped_checkpoint():
    # compare.py builds the GAN as ConvGenerator(latent_dim=16, width=32, one class); the
    # shipped weights must load, in the order in which the parameters are created.
    shipped = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
    model = ConvGenerator(DigitGANConfig(latent_dim=16, width=32, num_classes=1))
    state = model.state_dict()
    assert list(state) == list(shipped)
    assert all(state[k].shape == shipped[k].shape for k in state)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in shipped.items()})


def test_sample_draws_g_of_z_from_the_generator_in_eval_mode():
    model = fresh_init(lambda: ConvGenerator(DigitGANConfig(latent_dim=5, width=4, num_classes=3)), seed=0)
    model.train()
    labels = torch.tensor([2, 0, 1, 2])
    x = sample(model, 4, generator=torch.Generator().manual_seed(7), labels=labels)
    assert model.training                                       # its mode is restored
    z = torch.randn(4, 5, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        reference = model.eval()(z, labels)                     # batch norm on running statistics
    assert torch.equal(x, reference)
    assert x.shape == (4, 1, 8, 8) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1


def test_sample_draws_labels_after_z_and_none_for_one_class():
    model = fresh_init(lambda: ConvGenerator(DigitGANConfig(latent_dim=3, width=4)), seed=1).eval()
    g = torch.Generator().manual_seed(3)
    z = torch.randn(200, 3, generator=g)
    y = torch.randint(0, 10, (200,), generator=g)
    with torch.no_grad():
        assert torch.equal(sample(model, 200, generator=torch.Generator().manual_seed(3)), model(z, y))
    assert set(y.tolist()) == set(range(10))                   # uniform over the classes
    one = fresh_init(lambda: ConvGenerator(DigitGANConfig(latent_dim=3, width=4, num_classes=1)), seed=1)
    g = torch.Generator().manual_seed(3)
    a = sample(one, 6, generator=g)
    after = torch.rand(1, generator=g)                          # nothing was drawn for the labels
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        b = one.eval()(torch.randn(6, 3, generator=g), torch.zeros(6, dtype=torch.long))
    assert torch.equal(a, b) and torch.equal(after, torch.rand(1, generator=g))


def test_sample_of_the_mlp_generator_gives_points_and_repeats_with_the_seed():
    model = Generator(GANConfig(data_dim=3, latent_dim=4))
    a = sample(model, 10, generator=torch.Generator().manual_seed(0))
    b = sample(model, 10, generator=torch.Generator().manual_seed(0))
    assert a.shape == (10, 3) and torch.equal(a, b) and not a.requires_grad
    assert not torch.equal(a, sample(model, 10, generator=torch.Generator().manual_seed(1)))


def test_networks_cast_float64_inputs_to_their_dtype():
    model, z = Generator(), torch.randn(5, 2)
    assert torch.equal(model(z.double()), model(z))
    disc, x, y = ConvDiscriminator(), torch.rand(3, 1, 8, 8), torch.tensor([0, 5, 9])
    assert torch.equal(disc(x.double(), y), disc(x, y))


def test_bad_input_raises_clear_errors():
    conv, mlp = ConvGenerator(), Generator()
    with pytest.raises(ValueError, match=r"shape \(b, latent_dim\)"):
        mlp(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="to be a float tensor"):
        mlp(torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="torch.Tensor, got ndarray"):
        mlp(np.zeros((4, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="at least one example"):
        mlp(torch.zeros(0, 2))
    with pytest.raises(ValueError, match=r"multiple of copies \* pack"):
        Discriminator(GANConfig(pack=2))(torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"expected y in \[0, 10\)"):
        conv(torch.zeros(2, 16), torch.tensor([3, 10]))
    with pytest.raises(ValueError, match=r"expected y in \[0, 10\)"):
        ConvDiscriminator()(torch.zeros(2, 1, 8, 8), torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match="integer class ids"):
        conv(torch.zeros(2, 16), torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="batch of at least 2"):
        conv.train()(torch.zeros(1, 16), torch.tensor([1]))
    with pytest.raises(ValueError, match="positive int"):
        sample(conv, 0)
    with pytest.raises(ValueError, match="unconditional"):
        sample(mlp, 2, labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"labels of shape \(b\) with b=3"):
        sample(conv, 3, labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"expected labels in \[0, 10\)"):
        sample(conv, 2, labels=torch.tensor([0, 12]))
    with pytest.raises(ValueError, match="gan.Generator or gan.ConvGenerator"):
        sample(Discriminator(), 2)
    with pytest.raises(ValueError, match="generator must be a torch.Generator"):
        sample(mlp, 2, generator=0)


def test_networks_and_sample_name_a_device_mismatch():
    # The meta device stands in for a GPU on machines without one.
    with pytest.raises(ValueError, match="z is on cpu but the model is on meta"):
        Generator().to("meta")(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="y is on cpu but the model is on meta"):
        ConvDiscriminator().to("meta")(torch.zeros(2, 1, 8, 8, device="meta"), torch.tensor([0, 1]))
    assert sample(Generator().to("meta"), 3).device.type == "meta"     # noise drawn, then moved


@pytest.mark.parametrize("device", DEVICES)
def test_sample_on_every_device_matches_the_cpu_for_one_seed(device):
    for build in (lambda: Generator(GANConfig(latent_dim=3)), lambda: ConvGenerator(DigitGANConfig(width=4))):
        model = fresh_init(build, seed=0)
        cpu = sample(model, 6, generator=torch.Generator().manual_seed(2))
        there = sample(model.to(device), 6, generator=torch.Generator().manual_seed(2))
        assert there.device.type == device
        torch.testing.assert_close(there.cpu(), cpu, atol=3e-3, rtol=0)   # TF32 convolutions on CUDA
