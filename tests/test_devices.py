"""The protocol on every device present: the CPU always, CUDA or Apple's MPS when there is one.

A model and its data moved to a device are trained and sampled with the package's own
functions, and - since every random draw comes from a CPU generator and is moved to the
model's device - the same seed gives the same samples as on the CPU, up to the last bits of
floating point (a level can flip where a value sits on a rounding boundary).

Run it on a GPU machine with ``python -m pytest tests/test_devices.py -v -s``; on a machine
with only a CPU it checks the CPU and skips the rest.
"""
import pytest
import torch

from companion import compare, gan, samplers
from companion.data import digits
from companion.denoisers import MLPDenoiser, MLPDenoiserConfig
from companion.schedules import NoiseSchedule
from companion.utils import get_device

ACCELERATORS = [d for d in ("cuda", "mps")
                if (d == "cuda" and torch.cuda.is_available())
                or (d == "mps" and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())]
DEVICES = ["cpu", *ACCELERATORS]


def _trained(name: str, device: str) -> torch.nn.Module:
    """The family's model built from seed 0, trained 3 steps on the device with data there."""
    levels, _ = digits("train", as_levels=True)
    model = compare.build(name, seed=0).to(device)
    compare.fit(name, model, levels[:128].to(device), steps=3, progress=False)
    return model


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(compare.FAMILIES))
def test_train_sample_and_score_on_the_device(name, device):
    family = compare.FAMILIES[name]
    model = _trained(name, device)
    x = family.module.sample(model, 4, generator=torch.Generator().manual_seed(0))
    assert x.device.type == device and x.shape == (4, 1, 8, 8)
    if family.likelihood != "none":
        levels = digits("val", as_levels=True)[0][:4].to(device)
        nll = compare.negative_log_likelihood(name, model, levels, generator=torch.Generator().manual_seed(0))
        assert nll.device.type == device and torch.isfinite(nll).all()


@pytest.mark.skipif(not ACCELERATORS, reason="no CUDA or MPS device on this machine")
@pytest.mark.parametrize("device", ACCELERATORS)
@pytest.mark.parametrize("name", list(compare.FAMILIES))
def test_one_seed_gives_the_same_samples_on_cpu_and_accelerator(name, device):
    family = compare.FAMILIES[name]
    cpu = compare.build(name, seed=0)
    acc = compare.build(name, seed=0).to(device)
    acc.load_state_dict(cpu.state_dict())
    a = family.module.sample(cpu, 16, generator=torch.Generator().manual_seed(0))
    b = family.module.sample(acc, 16, generator=torch.Generator().manual_seed(0)).cpu()
    if a.is_floating_point():
        agreement = ((a - b).abs() < 1e-3).float().mean().item()
    else:
        agreement = (a == b).float().mean().item()
    print(f"{name}: {agreement:.2%} of values agree between cpu and {device}")
    assert agreement > 0.95, (name, agreement)


@pytest.mark.parametrize("device", DEVICES)
def test_gan_game_and_conditional_diffusion_sampler_on_the_device(device):
    """The two trainers/samplers that made their noise on the CPU whatever the model's device."""
    config = gan.GANConfig()
    g, d = gan.Generator(config).to(device), gan.Discriminator(config).to(device)
    data = torch.randn(64, 2).to(device)
    gan.train_gan(g, d, data, steps=2, batch_size=16, progress=False)
    assert gan.sample(g, 3, generator=torch.Generator().manual_seed(0)).device.type == device
    net = MLPDenoiser(MLPDenoiserConfig(num_classes=2)).to(device)
    schedule = NoiseSchedule.linear(50)
    y = torch.tensor([0, 1, -1]).to(device)
    x = samplers.ddim_sample(net, schedule, (3, 2), steps=5, labels=y, guidance_scale=2.0,
                             generator=torch.Generator().manual_seed(0))
    assert x.device.type == device and torch.isfinite(x).all()


def test_get_device_names_what_is_there():
    assert get_device("cpu").type == "cpu"
    assert get_device().type in DEVICES
