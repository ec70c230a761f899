import pytest
import torch

from companion.utils import best_time, check_shape, get_device, seed_everything, show_source


def test_seed_everything_repeats_torch_and_numpy_draws():
    import numpy as np

    seed_everything(7)
    a = (torch.rand(3), np.random.rand(3))
    seed_everything(7)
    b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and (a[1] == b[1]).all()


def test_seed_everything_returns_a_generator_seeded_alike():
    x = torch.randn(4, generator=seed_everything(3))
    y = torch.randn(4, generator=seed_everything(3))
    assert torch.equal(x, y)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_seed_everything_rejects_bad_seeds(seed):
    with pytest.raises(ValueError, match="seed"):
        seed_everything(seed)


def test_get_device_defaults_and_rejects_unknown():
    assert get_device("cpu") == torch.device("cpu")
    assert get_device().type in {"cpu", "cuda", "mps"}
    with pytest.raises(ValueError, match="prefer"):
        get_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available"):
            get_device("cuda")


def test_show_source_renders_html_and_text():
    src = show_source(check_shape)
    assert "def check_shape" in str(src)
    assert "<span" in src._repr_html_()
    with pytest.raises(ValueError, match="cannot show"):
        show_source(3)


def test_check_shape_names_the_expected_and_actual_shape():
    check_shape("x", torch.zeros(2, 3), "b 3")
    check_shape("x", torch.zeros(2, 3), "b d", d=3)
    with pytest.raises(ValueError, match=r"expected x of shape \(b, 3\), got \(2, 4\)"):
        check_shape("x", torch.zeros(2, 4), "b 3")
    with pytest.raises(ValueError, match="with d=5"):
        check_shape("x", torch.zeros(2, 3), "b d", d=5)
    with pytest.raises(ValueError, match="torch.Tensor"):
        check_shape("x", [1, 2], "b")


def test_check_shape_ties_a_repeated_axis_name():
    check_shape("logits", torch.zeros(3, 3), "b b")
    with pytest.raises(ValueError, match=r"shape \(b, b\) with b=3, got \(3, 4\)"):
        check_shape("logits", torch.zeros(3, 4), "b b")


def test_best_time_is_the_fastest_of_the_repeats():
    calls = []
    elapsed = best_time(lambda: calls.append(1), repeats=4)
    assert len(calls) == 4 and 0 <= elapsed < 0.1
    with pytest.raises(ValueError, match="repeats"):
        best_time(lambda: None, repeats=0)


def test_mode_restores_every_part_a_frozen_part_stays_frozen():
    from companion.utils import mode
    model = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Dropout(0.5)).train()
    model[1].eval()                                   # a frozen part, as LatentSpace freezes its VAE
    with mode(model, training=False):
        assert not any(m.training for m in model.modules())
    assert model.training and model[0].training and not model[1].training
    with mode(lambda x: x, training=False) as f:      # a plain function has no mode
        assert f(3) == 3
