"""Shipped weights: save a model's state in half precision with JSON metadata, load it back.

The comparison chapter restores fifteen small models (five families, three seeds) from
``companion/checkpoints`` instead of training them live; ``tools/train_checkpoints.py``
writes them. Half precision halves the files (4.6 MB in all) and changes no number the
chapters report beyond their stated precision; loading casts back to float32.

Example:
    >>> import tempfile
    >>> net = torch.nn.Linear(2, 1)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = save_weights(net, Path(d) / "net", {"steps": 3})
    ...     state, meta = load_weights(Path(d) / "net")
    >>> sorted(state), meta
    (['bias', 'weight'], {'steps': 3})
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

__all__ = ["CHECKPOINTS", "save_weights", "load_weights"]

CHECKPOINTS = Path(__file__).parent / "checkpoints"
"""Where the shipped weights live (small files, trained by ``tools/train_checkpoints.py``)."""


def save_weights(model: nn.Module, stem: Path | str, metadata: dict) -> Path:
    """Write ``stem.pt`` (floating tensors in half precision) and ``stem.json``; returns the ``.pt`` path."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"expected a torch.nn.Module, got {type(model).__name__}")
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu())
             for k, v in model.state_dict().items()}
    path = stem.with_suffix(".pt")
    torch.save(state, path)
    stem.with_suffix(".json").write_text(json.dumps(metadata, indent=1, sort_keys=True) + "\n")
    return path


def load_weights(stem: Path | str) -> tuple[dict[str, torch.Tensor], dict]:
    """The state dict of ``stem.pt`` in float32 (on the CPU) and the metadata of ``stem.json``."""
    stem = Path(stem)
    path = stem.with_suffix(".pt")
    if not path.exists():
        raise ValueError(f"no checkpoint {path}; train it with tools/train_checkpoints.py")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    return state, json.loads(stem.with_suffix(".json").read_text())
