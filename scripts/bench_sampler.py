#!/usr/bin/env python
"""Which sampler should the step use? Per candidate (export/sampler.py) and model:

- ACC, played: what the step plays given the true history (the torch reference, batched
  over frames: exactly what the graph computes), beside the model's own ACC on the same
  frames (AIS weighted samples, as rnnrbm-eval measures it; scripts/own_acc.py caches them);
- the B=1 one-thread latency of its ONNX step (onnxruntime, bound buffers: median, p99);
- musical statistics of free generation (64 bars x 16 seeds) beside the training data's.

    python scripts/own_acc.py --data nottingham --temperatures 200 --every 8   # once, slow
    python scripts/bench_sampler.py --data nottingham [--save]

Prints tables; --save writes the chosen (first) candidate's numbers to
runs/sampler/metrics_<data>.json for `rnnrbm-export --sampler-metrics`.
Goal (issue 13): played within 1 point of the model's own ACC on both models; B=1 median
<= 0.20 ms nottingham, <= 0.50 ms jsb_chorales, p99 <= 2x median; music neither stickier
nor more broken up than the data.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_step import bare_run, timings  # noqa: E402
from own_acc import cache_path  # noqa: E402
from rnnrbm_export.checkpoint import load_checkpoint  # noqa: E402
from rnnrbm_export.frames import frame_inputs  # noqa: E402
from rnnrbm_export.onnx_export import export_model  # noqa: E402
from rnnrbm_export.played import accuracies_given, previous_frames  # noqa: E402
from rnnrbm_export.proposal import Proposal, fit_for_checkpoint  # noqa: E402
from rnnrbm_export.sampler import DEFAULT_SAMPLER, GUIDED, Sampler, noise_shape  # noqa: E402
from rnnrbm_live.midi.datasets import load_split  # noqa: E402
from rnnrbm_live.model.card import load_model  # noqa: E402

CANDIDATES = [
    DEFAULT_SAMPLER,
    Sampler("chain", 25, start="silence"),
    Sampler("chain", 10, start="previous"),
    Sampler("chain", 25, start="previous"),
    Sampler("sir", 10, chains=8),
    Sampler("sir", 10, chains=8, previous=8, lean=2.0),
    Sampler("sir", 10, chains=8, previous=4, lean=4.0),
    Sampler("sir", 20, chains=8, previous=8, lean=2.0),
    Sampler("sir", 5, chains=4, previous=4, lean=2.0),
    Sampler("sir", 10, chains=2, previous=2, lean=2.0),
    Sampler("sir", 10, chains=4, previous=2, lean=2.0),
    Sampler("chain", 100, start="silence"),
    Sampler("sir", 40, chains=4, previous=4, lean=2.0),
    Sampler("sir", 20, chains=4, previous=4, lean=3.0),
    Sampler("sir", 40, chains=2, previous=2, lean=2.0),
    Sampler("chain", 200, start="silence"),
    Sampler("sir", 100, chains=2, previous=2, lean=2.0),
    Sampler("sir", 10, chains=4, previous=4, lean=1.0),
    Sampler("sir", 10, chains=4, previous=4, lean=1.5),
    Sampler("sir", 10, chains=4, previous=4, lean=3.0),
    Sampler("sir", 8, chains=5, previous=5, lean=2.0),
    Sampler("sir", 10, chains=4, previous=4, lean=2.25),
    Sampler("sir", 10, chains=4, previous=4, lean=2.0),  # nottingham's before lean 2.5
    Sampler("sir", 10, chains=4, previous=4, lean=2.75),
    Sampler("guided", 1, chains=64, lean=0.0),
    Sampler("guided", 1, chains=64, lean=1.0),
    Sampler("guided", 2, chains=64, lean=1.0),
    Sampler("guided", 1, chains=128, lean=0.0),
    Sampler("guided", 1, chains=128, lean=1.0),
    Sampler("guided", 1, chains=256, lean=1.0),
    Sampler("guided", 1, chains=128, spread=2.0),
    Sampler("guided", 1, chains=128, spread=2.25),
    Sampler("guided", 1, chains=128, spread=2.5),
    Sampler("guided", 1, chains=64, spread=2.25),
    Sampler("guided", 1, chains=128, spread=1.75),
    Sampler("guided", 2, chains=128, spread=1.75),
    Sampler("guided", 2, chains=128, spread=2.0),
    Sampler("guided", 1, chains=192, spread=1.75),
    Sampler("guided", 1, chains=192, spread=2.0),
    Sampler("guided", 2, chains=128, spread=1.9),
    Sampler("guided", 1, chains=128, spread=2.5, lean=0.5),
    Sampler("guided", 1, chains=128, spread=3.0, lean=0.75),
    Sampler("guided", 1, chains=128, spread=2.0, lean=0.5),
    Sampler("guided", 1, chains=128, spread=2.25),  # nottingham's in session 8
]
# Each bundled model's sampler: first in the tables, what --save records.
BUNDLED = {"nottingham": Sampler("guided", 1, chains=128, spread=2.75, lean=0.5), "jsb_chorales": GUIDED}
# Not a step (far too slow to play): many candidates and sweeps, close to the model's own
# frames; its free generation is what the model itself makes of the music.
REFERENCE = Sampler("guided", 20, chains=4096, spread=2.25)
BARS, SEEDS, BEATS_PER_BAR = 64, 16, 4


# --- ACC -------------------------------------------------------------------------------------

def acc_rows(model, data: str, candidates: list[Sampler], samples: int, seed: int) -> tuple[dict, list[dict]]:
    cache = np.load(cache_path(data, "valid"))
    frames = torch.from_numpy(cache["frames"])
    sequences = load_split(data, "valid")
    v, u_prev, bv, bh = frame_inputs(model, sequences)
    prev = previous_frames(sequences)
    v, u_prev, bv, bh, prev = v[frames], u_prev[frames], bv[frames], bh[frames], prev[frames]
    own = torch.from_numpy(cache["acc"]).double()
    method = str(cache["method"]) if "method" in cache else \
        f"AIS {int(cache['runs'])} runs x {int(cache['temperatures'])} temperatures"
    head = {"frames": len(frames), "of": int(sum(len(s) for s in sequences)), "every": int(cache["frames"][1]),
            "own_acc": 100 * float(own.mean()), "own_sem": 100 * float(own.std() / math.sqrt(len(own))),
            "own_by": method}
    rows = []
    for s in candidates:
        start = time.perf_counter()
        a = model.proposal.logits(u_prev, prev) if with_proposal(model, s) else None
        played = accuracies_given(model.W.detach(), v, bv, bh, prev, s, samples=samples, seed=seed, proposal=a)
        diff = played - own
        rows.append({"sampler": s.label(), "played_acc": 100 * float(played.mean()),
                     "minus_own": 100 * float(diff.mean()), "minus_own_sem": 100 * float(diff.std() / math.sqrt(len(diff))),
                     "seconds": time.perf_counter() - start})
    return head, rows


# --- latency ---------------------------------------------------------------------------------

_FITTED: dict[int, Proposal] = {}


def with_proposal(model, sampler: Sampler) -> bool:
    """For a guided sampler, fit the model's proposal (once per model) and lean it as the
    sampler says; whether the sampler is guided."""
    if sampler.kind != "guided":
        return False
    if id(model) not in _FITTED:
        _FITTED[id(model)] = fit_for_checkpoint(model, {"train_settings": {"data": model.config.dataset}})
    model.proposal = _FITTED[id(model)].shaped(sampler.lean, sampler.spread)
    return True


def latency(model, sampler: Sampler, folder: Path, calls: int) -> dict:
    with_proposal(model, sampler)
    paths = export_model(model, {}, folder / f"m{abs(hash(sampler))}", sampler=sampler)
    t = timings(bare_run(load_model(paths["onnx"]), 1, 1), calls, warmup=200)
    return {"median_ms": 1e3 * float(np.median(t)), "p99_ms": 1e3 * float(np.percentile(t, 99)),
            "nodes": json.loads(paths["card"].read_text())["graph"]["nodes"]}


# --- music ----------------------------------------------------------------------------------

@torch.no_grad()
def generate(model, sampler: Sampler, frames: int, seeds: int, seed: int) -> np.ndarray:
    """[seeds, frames, n_v] free-running pieces from u0 after silence, as the step plays them."""
    c = model.config
    g = torch.Generator().manual_seed(seed)
    u = model.u0.detach().expand(seeds, -1).contiguous()
    v = torch.zeros(seeds, c.n_visible)
    zeros, ones = torch.zeros(seeds, c.n_visible), torch.ones(seeds, 1)
    out = []
    with_proposal(model, sampler)
    for _ in range(frames):
        noise = torch.rand(seeds, *noise_shape(sampler, c.n_hidden, c.n_visible), generator=g)
        v, u = model.sampler_step(sampler, u, v, noise, zeros, zeros, ones)
        out.append(v)
    return torch.stack(out, 1).numpy().astype(bool)


def music_stats(pieces: list[np.ndarray], frames_per_bar: int) -> dict:
    """Notes per bar, mean polyphony, mean note length (frames), pitch range, fraction of
    frames equal to the one before; over all pieces ([T, n_v] bool each), and the
    standard error of each over the pieces (free pieces wander: one seed is one sample)."""
    whole = _stats(pieces, frames_per_bar)
    if len(pieces) > 1:
        each = [_stats([p], frames_per_bar) for p in pieces]
        whole.update({f"{k}_sem": float(np.std([e[k] for e in each], ddof=1) / math.sqrt(len(each))) for k in whole})
    return whole


def _stats(pieces: list[np.ndarray], frames_per_bar: int) -> dict:
    onsets = bars = sounding = frames = same = 0
    lengths, ranges = [], []
    for p in pieces:
        before = np.vstack([np.zeros((1, p.shape[1]), bool), p[:-1]])
        onsets += int((p & ~before).sum())
        bars += len(p) / frames_per_bar
        sounding += int(p.sum())
        frames += len(p)
        same += int((p[1:] == p[:-1]).all(1).sum())
        lengths += _run_lengths(p)
        keys = np.flatnonzero(p.any(0))
        ranges.append(int(keys[-1] - keys[0]) if len(keys) else 0)
    return {"notes_per_bar": onsets / max(bars, 1), "polyphony": sounding / max(frames, 1),
            "note_length": float(np.mean(lengths)) if lengths else 0.0, "pitch_range": float(np.mean(ranges)),
            "same_as_previous": same / max(frames - len(pieces), 1)}


def _run_lengths(p: np.ndarray) -> list[int]:
    padded = np.vstack([np.zeros((1, p.shape[1]), np.int8), p.astype(np.int8), np.zeros((1, p.shape[1]), np.int8)])
    d = np.diff(padded, axis=0)
    starts, ends = np.nonzero(d.T == 1), np.nonzero(d.T == -1)
    return list(ends[1] - starts[1])


# --- the tables ------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, choices=("nottingham", "jsb_chorales"))
    p.add_argument("--samples", type=int, default=2, help="frames drawn per true frame for ACC, played")
    p.add_argument("--calls", type=int, default=3000, help="timed B=1 steps per candidate")
    p.add_argument("--only", type=int, nargs="*", help="candidate numbers to run (default: all; 0 is the bundled "
                   "model's, then CANDIDATES in order)")
    p.add_argument("--skip", nargs="*", default=[], choices=("acc", "latency", "music"))
    p.add_argument("--reference", action="store_true", help="also generate music with REFERENCE (slow)")
    p.add_argument("--save", action="store_true", help="write the first candidate's numbers for rnnrbm-export")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model, card = load_checkpoint(f"checkpoints/{args.data}/best.safetensors")
    candidates = [BUNDLED[args.data], *(c for c in CANDIDATES if c != BUNDLED[args.data])]
    chosen = [candidates[i] for i in (args.only or range(len(candidates)))]
    result = {"data": args.data, "candidates": [s.to_dict() for s in chosen]}
    if "acc" not in args.skip:
        head, rows = acc_rows(model, args.data, chosen, args.samples, args.seed)
        result["acc"] = {**head, "rows": rows}
        print(f"{args.data} valid: ACC on {head['frames']:,} of {head['of']:,} frames (every {head['every']}); "
              f"model's own ACC {head['own_acc']:.2f} ± {head['own_sem']:.2f} ({head['own_by']})")
        print(f"{'sampler':44s} {'played':>7} {'- own':>7} {'± sem':>6}")
        for r in rows:
            print(f"{r['sampler']:44s} {r['played_acc']:7.2f} {r['minus_own']:+7.2f} {r['minus_own_sem']:6.2f}")
    if "latency" not in args.skip:
        folder = Path(tempfile.mkdtemp(prefix="bench-sampler-"))
        result["latency"] = [{"sampler": s.label(), **latency(model, s, folder, args.calls)} for s in chosen]
        print(f"\n{'B=1, one thread, onnxruntime':44s} {'median':>8} {'p99':>8} {'nodes':>6}")
        for r in result["latency"]:
            print(f"{r['sampler']:44s} {r['median_ms']:6.3f}ms {r['p99_ms']:6.3f}ms {r['nodes']:6d}")
    if "music" not in args.skip:
        fpb = model.config.frames_per_beat * BEATS_PER_BAR
        data_stats = _stats([s.astype(bool) for s in load_split(args.data, "train")], fpb)
        result["music"] = [{"sampler": "training data", **data_stats}]
        for s in chosen + ([REFERENCE] if args.reference else []):
            pieces = generate(model, s, BARS * fpb, SEEDS, args.seed)
            name = s.label() if s is not REFERENCE else f"reference: {s.label()}"
            result["music"].append({"sampler": name, **music_stats(list(pieces), fpb)})
        print(f"\nfree generation, {BARS} bars x {SEEDS} seeds ({fpb} frames a bar; ± over the seeds)")
        print(f"{'':44s} {'notes/bar':>11} {'polyphony':>11} {'length':>11} {'range':>6} {'same':>11}")
        for r in result["music"]:
            cells = [_cell(r, k, 2) for k in ("notes_per_bar", "polyphony", "note_length")]
            print(f"{r['sampler']:44s} {' '.join(cells)} {r['pitch_range']:6.1f} {_cell(r, 'same_as_previous', 2)}")
    out = Path("runs/sampler") / f"bench_{args.data}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    if args.save:
        save_metrics(result, args.data)
    return 0


def _cell(row: dict, key: str, digits: int) -> str:
    sem = row.get(f"{key}_sem")
    text = f"{row[key]:.{digits}f}" + (f"±{sem:.{digits}f}" if sem is not None else "")
    return f"{text:>11}"


def save_metrics(result: dict, data: str) -> None:
    """The first candidate's numbers, as the model card records them (sampler_metrics)."""
    label = result["candidates"] and Sampler.from_dict(result["candidates"][0]).label()
    out = {"sampler": label, "measured_by": "scripts/bench_sampler.py on the valid split"}
    if "acc" in result:
        out["acc"] = result["acc"]["rows"][0]
        out["acc_frames"] = {k: v for k, v in result["acc"].items() if k != "rows"}
    if "latency" in result:
        out["latency_b1_one_thread"] = result["latency"][0]
    if "music" in result:
        out["music_training_data"], out["music_64_bars_16_seeds"] = result["music"][:2]
    path = Path("runs/sampler") / f"metrics_{data}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
