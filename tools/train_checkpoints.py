"""Train the small models that the chapter "The families compared" loads, and ship them.

The comparison chapter measures five families (VAE, GAN, RealNVP flow, DDPM, a
pixel transformer) trained with three seeds each. Training all fifteen takes
minutes, more than a chapter's 90-second budget, so this script trains them once,
with the recipes of :data:`companion.compare.RECIPES`, and writes for each model

* ``companion/checkpoints/<family>_seed<k>.pt``: the weights, in half precision
  (tens to a few hundred kilobytes each);
* ``companion/checkpoints/<family>_seed<k>.json``: the metadata the chapter
  quotes - the recipe, the training time (CPU seconds of this process and wall
  seconds), the thread count, the torch version and the final training loss.

The exact command that produced the shipped files (from the repository root)::

    TQDM_DISABLE=1 .venv/bin/python tools/train_checkpoints.py --threads 1

Each model trains in its own pass with ``torch.set_num_threads(--threads)`` so that
its CPU time is comparable with the others'. ``--families``, ``--seeds`` and
``--steps`` (override every recipe's step count; the test uses it to retrain one
model briefly) and ``--out`` (another directory) serve checks and experiments.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from companion import compare  # noqa: E402
from companion.utils import num_parameters  # noqa: E402


def train_one(family: str, seed: int, *, steps: int | None, out: Path, progress: bool) -> dict:
    """Build, train and save one model; returns its metadata."""
    model = compare.build(family, seed=seed)
    cpu, wall = time.process_time(), time.perf_counter()
    history = compare.fit(family, model, seed=seed, steps=steps, progress=progress)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    recipe = dict(compare.RECIPES[family])
    if steps is not None:
        recipe["steps"] = steps
    tail = history[-100:]
    metadata = {
        "family": family, "seed": seed, "recipe": recipe,
        "train_cpu_seconds": round(cpu, 2), "train_wall_seconds": round(wall, 2),
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "machine": platform.machine(), "final_loss": sum(tail) / len(tail),
        "parameters": num_parameters(model),
    }
    compare.save_checkpoint(family, seed, model, metadata, directory=out)
    return metadata


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", nargs="+", default=list(compare.FAMILIES), choices=compare.FAMILIES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="override every recipe's step count")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=compare.CHECKPOINTS)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for family in args.families:
        for seed in args.seeds:
            meta = train_one(family, seed, steps=args.steps, out=args.out, progress=not args.no_progress)
            print(f"{family} seed {seed}: {meta['parameters']} parameters, "
                  f"{meta['train_cpu_seconds']:.1f} s CPU, final loss {meta['final_loss']:.3f}", flush=True)


if __name__ == "__main__":
    main()
