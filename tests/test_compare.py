"""Tests of companion.compare: a table of families that uses nothing but their protocol."""
from __future__ import annotations

import inspect

import pytest
import torch

from companion import compare
from companion.data import digits


def test_the_table_knows_no_family_by_name():
    source = inspect.getsource(compare)
    assert "family ==" not in source and 'if family' not in source
    for name, row in compare.FAMILIES.items():
        assert row.recipe is compare.RECIPES[name]
        for verb in ("sample",) + (("nll",) if row.likelihood != "none" else ()) + (("loss",) if row.game is None else ()):
            assert callable(getattr(row.module, verb)), (name, verb)


@pytest.mark.parametrize("family", list(compare.FAMILIES))
def test_every_family_builds_generates_images_and_scores_levels(family):
    model = compare.build(family, seed=0)
    levels, _ = digits("train", as_levels=True)
    compare.fit(family, model, levels[:64], steps=1, progress=False)     # the flow's ActNorm needs a batch
    g = torch.Generator().manual_seed(0)
    images = compare.generate(family, model, 2, generator=g, steps=4)
    assert images.shape == (2, 1, 8, 8) and images.min() >= 0 and images.max() <= 1
    nll = compare.negative_log_likelihood(family, model, levels[:3], generator=g, k=2, timesteps=4)
    if compare.FAMILIES[family].likelihood == "none":
        assert nll is None
    else:
        assert nll.shape == (3,) and torch.isfinite(nll).all() and (nll > 0).all()


def test_fit_trains_on_the_train_split_and_keeps_the_mode():
    model = compare.build("arm", seed=0).eval()
    history = compare.fit("arm", model, steps=2, progress=False)
    assert len(history) == 2 and not model.training


def test_checkpoint_round_trip(tmp_path):
    model = compare.build("vae", seed=3)
    compare.save_checkpoint("vae", 3, model, {"note": "test"}, directory=tmp_path)
    loaded, meta = compare.load_checkpoint("vae", 3, directory=tmp_path)
    assert meta == {"note": "test"} and not loaded.training
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a.half().float(), b), k


def test_bad_input_raises(tmp_path):
    with pytest.raises(ValueError, match="family must be one of"):
        compare.build("pixelcnn")
    with pytest.raises(ValueError, match="no checkpoint"):
        compare.load_checkpoint("vae", 7, directory=tmp_path)
    with pytest.raises(ValueError, match="n must be a positive int"):
        compare.generate("vae", compare.build("vae"), 0)
    with pytest.raises(ValueError, match="integer grey levels"):
        compare.fit("arm", compare.build("arm"), digits("train")[0][:8], steps=1, progress=False)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        compare.fit("arm", compare.build("arm"), steps=0, progress=False)


def test_an_option_of_none_reaches_the_family():
    """timesteps=None means all T steps of the diffusion bound; the table must not replace it by its default."""
    from companion import diffusion
    model = compare.build("diffusion", seed=0)
    x = digits("val", as_levels=True)[0][:2]
    got = compare.negative_log_likelihood("diffusion", model, x, generator=torch.Generator().manual_seed(0),
                                          timesteps=None)
    torch.testing.assert_close(got, diffusion.nll(model, x, generator=torch.Generator().manual_seed(0),
                                                  timesteps=None))
