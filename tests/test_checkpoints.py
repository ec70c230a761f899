"""The shipped checkpoints are small, load, match the current recipes - and the script retrains them."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from companion import compare
from companion.utils import num_parameters
from companion.data import digits

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(compare.CHECKPOINTS.glob("*.pt"))


def _script():
    spec = importlib.util.spec_from_file_location("train_checkpoints", ROOT / "tools" / "train_checkpoints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_family_and_seed_is_shipped_and_small():
    names = {p.stem for p in SHIPPED}
    assert names == {f"{f}_seed{s}" for f in compare.FAMILIES for s in (0, 1, 2)}
    total = sum(p.stat().st_size for p in compare.CHECKPOINTS.iterdir())
    assert total < 4.8e6, total                               # under 5 MB, as the package promises
    assert max(p.stat().st_size for p in SHIPPED) < 800e3


@pytest.mark.parametrize("family", compare.FAMILIES)
def test_shipped_weights_load_and_were_trained_with_the_current_recipe(family):
    model, meta = compare.load_checkpoint(family, 0)
    assert meta["recipe"] == compare.RECIPES[family]
    assert meta["parameters"] == num_parameters(model)
    assert meta["train_cpu_seconds"] > 0
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_the_script_retrains_a_model_briefly(tmp_path):
    """Run tools/train_checkpoints.py for 30 steps of the VAE; its loss falls and the files load."""
    _script().main(["--families", "vae", "--seeds", "0", "--steps", "30", "--out", str(tmp_path), "--no-progress"])
    model, meta = compare.load_checkpoint("vae", 0, directory=tmp_path)
    assert meta["recipe"]["steps"] == 30 and meta["family"] == "vae"
    fresh = compare.build("vae", seed=0)
    x, _ = digits("val", as_levels=True)
    g = torch.Generator().manual_seed(0)
    before = compare.negative_log_likelihood("vae", fresh, x[:100], generator=g, k=1).mean()
    after = compare.negative_log_likelihood("vae", model, x[:100], generator=g, k=1).mean()
    assert after < before - 10
