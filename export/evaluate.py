"""`rnnrbm-eval`: the two measures of the paper's Table 1 for an RNN-RBM checkpoint.

LL: mean over all frames of log P(v_t | v_<t) = -F_t(v_t) - log Z_t in nats, with each
frame's RBM conditioned on the true history and log Z_t estimated by AIS (export/ais.py).
ACC: expected frame-level accuracy TP / (TP + FP + FN) in %, of samples of each frame's
RBM given the true history, averaged over samples, then over frames. The samples are the
AIS runs' own (importance-weighted): a Gibbs chain from silence does not reach the
distribution of a well-trained conditional RBM in any affordable number of steps (it sits
in the silent mode; on Nottingham valid, 2,000 steps from silence gave ACC 56, the AIS
runs and chains started at the previous frame both 64). The chain measure is kept beside
it as acc_chain: it is what the exported step function, which starts from silence, plays.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from rnnrbm_live.midi.datasets import DATASETS, load_split
from rnnrbm_live.errors import UserError

from . import played
from .ais import ais, free_energy
from .checkpoint import json_path, load_checkpoint, pick_device, resolve
from .frames import frame_accuracy, frame_biases
from .model import RNNRBM
from .uniforms import Uniforms

# Table 1 of Boulanger-Lewandowski, Bengio & Vincent (ICML 2012), RNN-RBM row: (LL, ACC %).
PAPER_RNN_RBM = {"jsb_chorales": (-6.27, 33.12), "nottingham": (-2.39, 75.40),
                 "musedata": (-6.01, 34.02), "piano_midi": (-7.09, 28.92)}

_ACC_CHAINS_PER_CHUNK = 2 ** 16


# --- the two measures ------------------------------------------------------------------------


def ais_measures(W: torch.Tensor, v: torch.Tensor, bv: torch.Tensor, bh: torch.Tensor, *,
                 n_runs: int, n_temps: int, generator: torch.Generator,
                 progress: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """From one set of AIS runs per frame: log P(v_t | v_<t) [N] (float64), the AIS
    standard error of each log Z_t, each frame's expected accuracy [N] under its RBM
    (weighted over the runs' samples) and the effective sample size of those weights."""
    with tqdm(total=len(v), desc="AIS", unit="frame", disable=not progress,
              dynamic_ncols=True, leave=False) as bar:
        lock = threading.Lock()  # chunks finish on several threads

        def advance(n: int) -> None:
            with lock:
                bar.update(n)

        def accuracy(rows: slice, samples: torch.Tensor) -> torch.Tensor:
            return frame_accuracy(samples, v[rows].repeat_interleave(n_runs, 0))[0]

        est = ais(W, bv, bh, n_runs=n_runs, n_temps=n_temps, generator=generator,
                  progress=advance, statistic=accuracy)
    neg_f = -free_energy(W.double(), v.double(), bv.double(), bh.double())
    return neg_f - est.log_z, est.se, est.mean, est.ess


@torch.no_grad()
def chain_accuracies(model: RNNRBM, v: torch.Tensor, bv: torch.Tensor, bh: torch.Tensor, *, samples: int,
                     gibbs: int, uniforms: Uniforms, progress: bool) -> torch.Tensor:
    """Expected accuracy of each frame [N] over `samples` draws, each the end of a
    `gibbs`-step chain from silence: how the exported step function samples."""
    per_chunk = max(1, _ACC_CHAINS_PER_CHUNK // samples)
    accs = []
    for start in tqdm(range(0, len(v), per_chunk), desc="ACC chains", unit="chunk",
                      disable=not progress, dynamic_ncols=True, leave=False):
        rows = slice(start, start + per_chunk)
        bvr = bv[rows].repeat_interleave(samples, 0)
        bhr = bh[rows].repeat_interleave(samples, 0)
        drawn = model.gibbs_chain(torch.zeros_like(bvr), bvr, bhr, gibbs, uniforms)
        acc = frame_accuracy(drawn, v[rows].repeat_interleave(samples, 0))[0]
        accs.append(acc.double().view(-1, samples).mean(1))
    return torch.cat(accs)


def _sem(x: torch.Tensor) -> float:
    return float(x.std() / math.sqrt(len(x))) if len(x) > 1 else math.nan


def _ais_generator(device: torch.device, seed: int) -> torch.Generator:
    # Its own stream, apart from the ACC samples' Uniforms(device, [seed, 1]).
    state = np.random.SeedSequence([seed, 0]).generate_state(1)[0]
    return torch.Generator(device).manual_seed(int(state))


def evaluate(model: RNNRBM, sequences: list[np.ndarray], *, n_runs: int = 100, n_temps: int = 500,
             acc_samples: int = 20, acc_gibbs: int | None = None, seed: int = 0,
             device: str | torch.device = "cpu", progress: bool = True) -> dict:
    """LL (nats per frame) and ACC (%) of `model` on `sequences` ([T, n_v] 0/1 arrays).

    Returns ll, ll_sem (SEM over frames), logz_sem_mean (mean AIS standard error of
    log Z_t), acc and acc_sem (over the AIS runs' weighted samples), acc_ess_median and
    acc_ess_min (effective samples per frame), acc_chain and acc_chain_sem (acc_samples
    chains of acc_gibbs steps from silence per frame; acc_samples=0 skips them), frames,
    sequences, n_runs, n_temps, acc_samples, acc_gibbs, seed, seconds.
    Same seed and device, same result. The model itself is left as it was."""
    start = time.perf_counter()
    device = torch.device(device)
    sequences = [s for s in sequences if len(s)]
    if not sequences:
        raise UserError("no frames to evaluate: the sequences are empty")
    n_v = model.config.n_visible
    odd = next((s for s in sequences if s.ndim != 2 or s.shape[1] != n_v), None)
    if odd is not None:
        raise UserError(f"the data has frames of shape {odd.shape[1:]}, the model takes {n_v} keys")
    if n_runs < 1 or n_temps < 1 or acc_samples < 0:
        raise UserError("runs and temperatures must each be at least 1, acc samples at least 0")
    gibbs = model.config.gibbs_steps if acc_gibbs is None else acc_gibbs
    if model.W.device.type != device.type or device.index not in (None, model.W.device.index):
        model = copy.deepcopy(model).to(device)  # the caller's model stays where it is
    device = model.W.device

    with torch.no_grad():
        v, bv, bh = frame_biases(model, sequences)
        ll, logz_se, acc, ess = ais_measures(model.W.detach(), v, bv, bh, n_runs=n_runs, n_temps=n_temps,
                                             generator=_ais_generator(device, seed), progress=progress)
        chain = None
        if acc_samples:
            chain = chain_accuracies(model, v, bv, bh, samples=acc_samples, gibbs=gibbs,
                                     uniforms=Uniforms(device, [seed, 1]), progress=progress)
    return {
        "ll": float(ll.mean()), "ll_sem": _sem(ll), "logz_sem_mean": float(logz_se.mean()),
        "acc": 100 * float(acc.mean()), "acc_sem": 100 * _sem(acc),
        "acc_ess_median": float(ess.median()), "acc_ess_min": float(ess.min()),
        "acc_chain": None if chain is None else 100 * float(chain.mean()),
        "acc_chain_sem": None if chain is None else 100 * _sem(chain),
        "frames": len(v), "sequences": len(sequences),
        "n_runs": n_runs, "n_temps": n_temps, "acc_samples": acc_samples, "acc_gibbs": gibbs,
        "seed": seed, "seconds": time.perf_counter() - start,
    }


# --- the command line ---------------------------------------------------------------------


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def load_sequences(data: str, split: str, card_config: dict) -> list[np.ndarray]:
    """A bundled dataset on its own grid (the paper's setting), or a folder read the way
    the model's training data was: its grid and key normalisation."""
    if data in DATASETS:
        return load_split(data, split)
    return load_split(data, split, frames_per_beat=card_config.get("frames_per_beat", 2),
                      transpose_to_c=card_config.get("transposed_to", "none") != "none", progress=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="rnnrbm-eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a .safetensors checkpoint or a training folder (its best)")
    p.add_argument("--data", required=True, help=f"one of {', '.join(DATASETS)}, or a folder of MIDI files")
    p.add_argument("--split", choices=("valid", "test"), default="valid",
                   help="valid to choose settings; test only for final numbers")
    p.add_argument("--max-seqs", type=int, default=0, help="evaluate the first N sequences only (0 = all)")
    p.add_argument("--runs", type=int, default=100, help="AIS runs per frame (paper: 100)")
    p.add_argument("--temperatures", type=int, default=500, help="AIS intermediate temperatures")
    p.add_argument("--acc-samples", type=int, default=20,
                   help="chains from silence per frame for the chain ACC beside the paper's (0 = skip)")
    p.add_argument("--acc-gibbs", type=int, default=None,
                   help="Gibbs steps of each such chain (default: the model's, what its step graph plays)")
    played.add_arguments(p)
    p.add_argument("--sampling-temperature", type=float, default=1.0, metavar="T",
                   help="measure the model as it plays at temperature T (the contract's input; default 1, "
                        "the model itself); rnnrbm-temper folds a chosen T into a checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = every core this process may use)")
    p.add_argument("--json-only", action="store_true", help="print only the JSON line")
    p.add_argument("--save-metrics", action="store_true",
                   help="record the result in the checkpoint's .json as its metrics (rnnrbm-export puts "
                        "them in the model card)")
    return p.parse_args(argv)


def _table(r: dict) -> str:
    paper = PAPER_RNN_RBM.get(r["data"])
    ll_paper = f"   (paper's RNN-RBM: {paper[0]:.2f})" if paper else ""
    acc_paper = f"   (paper's RNN-RBM: {paper[1]:.2f})" if paper else ""
    subset = f" (first {r['sequences']} sequences only)" if r["max_seqs"] else ""
    rows = [
        ("checkpoint", r["checkpoint"]),
        ("dataset", f"{r['data']}, {r['split']} split{subset}"),
        *_temperature_row(r),
        ("sequences", str(r["sequences"])),
        ("frames", f"{r['frames']:,}"),
        ("LL", f"{r['ll']:.3f} ± {r['ll_sem']:.3f} nats/frame (AIS SE of log Z: {r['logz_sem_mean']:.3f}){ll_paper}"),
        ("ACC", f"{r['acc']:.2f} ± {r['acc_sem']:.2f} %{acc_paper}"),
        ("ACC samples", (f"the AIS runs' ends, weighted: {r['acc_ess_median']:.0f} effective per frame "
                         f"(median; fewest {r['acc_ess_min']:.1f})")),
        ("AIS", f"{r['n_runs']} runs x {r['n_temps']} temperatures"),
        *_chain_row(r),
        *played.table_rows(r),
        ("seconds", f"{r['seconds']:.1f} on {r['device']}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _temperature_row(r: dict) -> list[tuple[str, str]]:
    t = r["sampling_temperature"]
    return [] if t == 1 else [("temperature", f"{t:g}: the model as it plays at this sampling temperature")]


def _chain_row(r: dict) -> list[tuple[str, str]]:
    if r["acc_chain"] is None:
        return []
    return [("ACC, chains", (f"{r['acc_chain']:.2f} ± {r['acc_chain_sem']:.2f} %   ({r['acc_samples']} chains of "
                             f"{r['acc_gibbs']} Gibbs steps from silence per frame, as the step graph plays)"))]


def _json_safe(value):
    # NaN (an SEM of one frame) is not JSON: write null.
    return None if isinstance(value, float) and not math.isfinite(value) else value


def at_temperature(model: RNNRBM, temperature: float, saving_metrics: bool) -> RNNRBM:
    if not math.isfinite(temperature) or temperature <= 0:
        raise UserError(f"--sampling-temperature {temperature}: give a positive number (1 = the model itself)")
    if temperature == 1:
        return model
    if saving_metrics:
        # The card's metrics describe the checkpoint as it plays at temperature 1.
        raise UserError(f"--save-metrics with --sampling-temperature {temperature:g}: fold the temperature "
                        "into a checkpoint with rnnrbm-temper, then save that one's metrics")
    return model.tempered(temperature)


def run(args: argparse.Namespace) -> dict:
    device = pick_device(args.device)
    torch.set_num_threads(args.threads or available_cores())
    if args.max_seqs < 0:
        raise UserError(f"--max-seqs {args.max_seqs}: give 0 (all) or a positive number")
    played.check(args)
    path = resolve(args.checkpoint)
    model, card = load_checkpoint(path, device=str(device))
    model = at_temperature(model, args.sampling_temperature, args.save_metrics)
    sequences = load_sequences(args.data, args.split, card.get("config", {}))
    if args.max_seqs:
        sequences = sequences[:args.max_seqs]
    result = evaluate(model, sequences, n_runs=args.runs, n_temps=args.temperatures,
                      acc_samples=args.acc_samples, acc_gibbs=args.acc_gibbs, seed=args.seed,
                      device=device, progress=not args.json_only)
    result.update(played.measure(args, model, sequences))
    data = args.data if args.data in DATASETS else str(Path(args.data))
    return {"checkpoint": str(path), "data": data, "split": args.split, "max_seqs": args.max_seqs,
            "sampling_temperature": args.sampling_temperature, **result, "device": str(device),
            "paper_rnn_rbm": PAPER_RNN_RBM.get(data)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = run(args)
    except UserError as e:
        print(f"rnnrbm-eval: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rnnrbm-eval: interrupted", file=sys.stderr)
        return 130
    if not args.json_only:
        print(_table(result))
    paper = result.pop("paper_rnn_rbm")
    result["paper_rnn_rbm"] = {"ll": paper[0], "acc": paper[1]} if paper else None
    line = {k: _json_safe(v) for k, v in result.items()}
    print(json.dumps(line))
    if args.save_metrics:
        save_metrics(Path(result["checkpoint"]), line)
    return 0


def save_metrics(checkpoint: Path, result: dict) -> None:
    """Keep the result in the checkpoint's card, where rnnrbm-export finds it."""
    card_path = json_path(checkpoint)
    card = json.loads(card_path.read_text())
    card["metrics"] = {"split": result["split"], "LL": result["ll"], "ACC": result["acc"], **result,
                       "estimated_by": (f"rnnrbm-eval: AIS with {result['n_runs']} runs x "
                                        f"{result['n_temps']} temperatures per frame, given the true "
                                        "history; ACC over the runs' importance-weighted samples")}
    tmp = card_path.with_name(card_path.name + ".tmp")
    tmp.write_text(json.dumps(card, indent=1) + "\n")
    os.replace(tmp, card_path)


if __name__ == "__main__":
    sys.exit(main())
