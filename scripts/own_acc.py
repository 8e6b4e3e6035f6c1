#!/usr/bin/env python
"""The model's own ACC on every frame of a split, cached for scripts/bench_sampler.py.

Each frame's conditional RBM given the true history is sampled either by AIS
(export/ais.py, as rnnrbm-eval measures ACC: the runs' importance-weighted samples) or,
with --method is, by importance sampling from the guided proposal fitted on the training
split, mixed over --spreads (export/importance.py: on sharp models AIS with affordable
temperatures understates the model's ACC, and this settles). The per-frame expected
accuracy and effective sample size go to runs/sampler/own_acc_<data>_<split>.npz. It is
the one expensive measurement of the sampler benchmark, so it is computed once per model
and read back after.

    python scripts/own_acc.py --data jsb_chorales --runs 100 --temperatures 500
    python scripts/own_acc.py --data nottingham --method is --every 7
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rnnrbm_export.checkpoint import load_checkpoint  # noqa: E402
from rnnrbm_export.frames import frame_biases  # noqa: E402
from rnnrbm_export.importance import split_measures  # noqa: E402
from rnnrbm_export.measures import ais_measures  # noqa: E402
from rnnrbm_export.proposal import fit_for_checkpoint  # noqa: E402
from rnnrbm_live.midi.datasets import load_split  # noqa: E402

CACHE = Path("runs/sampler")


def cache_path(data: str, split: str) -> Path:
    return CACHE / f"own_acc_{data}_{split}.npz"


def own_accuracy(data: str, split: str, runs: int, temperatures: int, every: int = 1, seed: int = 0) -> Path:
    """Every `every`-th frame of the split (all frames of every sequence, in order)."""
    model, _ = load_checkpoint(f"checkpoints/{data}/best.safetensors")
    v, bv, bh = frame_biases(model, load_split(data, split))
    frames = np.arange(0, len(v), every)
    v, bv, bh = v[frames], bv[frames], bh[frames]
    start = time.perf_counter()
    _, _, acc, ess = ais_measures(model.W.detach(), v, bv, bh, n_runs=runs, n_temps=temperatures,
                                  generator=torch.Generator().manual_seed(seed), progress=True)
    return _save(data, split, frames, acc, ess, start, f"AIS {runs} runs x {temperatures} temperatures",
                 runs=runs, temperatures=temperatures, seed=seed)


def own_accuracy_is(data: str, split: str, candidates: int, spreads: list[float], every: int = 1,
                    seed: int = 0) -> Path:
    """The same frames by importance sampling from the fitted proposal at each spread."""
    model, card = load_checkpoint(f"checkpoints/{data}/best.safetensors")
    start = time.perf_counter()
    r = split_measures(model, load_split(data, split), fit_for_checkpoint(model, card), candidates=candidates,
                       every=every, spreads=tuple(spreads), seed=seed, progress=True)
    label = f"importance sampling, {candidates:,} candidates from the proposal at spreads {', '.join(map(str, spreads))}"
    return _save(data, split, r["frames"].numpy(), r["acc"], r["ess"], start, label, candidates=candidates,
                 spreads=spreads, seed=seed)


def _save(data, split, frames, acc, ess, start, label, **settings) -> Path:
    path = cache_path(data, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, frames=frames, acc=acc.numpy(), ess=ess.numpy(), method=label,
             seconds=time.perf_counter() - start, **settings)
    print(f"{data} {split}: {len(acc)} frames (every {int(frames[1]) if len(frames) > 1 else 1}), own ACC "
          f"{100 * float(acc.mean()):.2f} by {label} (ESS median {float(ess.median()):.0f}), "
          f"{time.perf_counter() - start:.0f} s -> {path}")
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="valid")
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--temperatures", type=int, default=500)
    p.add_argument("--method", choices=("ais", "is"), default="ais",
                   help="AIS, or importance sampling from the guided sampler's proposal")
    p.add_argument("--candidates", type=int, default=65536, help="is: draws per frame")
    p.add_argument("--spreads", default="1,2.25", help="is: the proposal's spreads, mixed evenly")
    p.add_argument("--every", type=int, default=1, help="measure every N-th frame (1: all); take N prime to the "
                   "bar (7, not 8): most pieces are whole bars, so every 8th frame falls on the same beat of most bars")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.method == "is":
        own_accuracy_is(args.data, args.split, args.candidates, [float(x) for x in args.spreads.split(",")], args.every)
    else:
        own_accuracy(args.data, args.split, args.runs, args.temperatures, args.every)


if __name__ == "__main__":
    main()
