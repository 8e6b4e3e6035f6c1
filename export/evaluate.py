"""`rnnrbm-eval`: the two measures of the paper's Table 1 for an RNN-RBM checkpoint, on a
whole split or on one shard of it (--shard I/N, then --combine the parts); measures.py
says how each is measured.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from rnnrbm_live.errors import UserError
from rnnrbm_live.midi.datasets import DATASETS, load_split

from . import played
from .checkpoint import json_path, load_checkpoint, pick_device, resolve
from .eval_parts import combine, part_path, save_part
from .measures import frame_results, summarize
from .model import RNNRBM

# Table 1 of Boulanger-Lewandowski, Bengio & Vincent (ICML 2012), RNN-RBM row: (LL, ACC %).
PAPER_RNN_RBM = {"jsb_chorales": (-6.27, 33.12), "nottingham": (-2.39, 75.40),
                 "musedata": (-6.01, 34.02), "piano_midi": (-7.09, 28.92)}

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
    p.add_argument("checkpoint", nargs="?", help="a .safetensors checkpoint or a training folder (its best)")
    p.add_argument("--data", help=f"one of {', '.join(DATASETS)}, or a folder of MIDI files")
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
    p.add_argument("--shard", metavar="I/N", type=_shard, default=None,
                   help="evaluate only part I of N of the split's frames and write its per-frame results "
                        "to --parts-dir; --combine then gives the split's numbers exactly as one run would")
    p.add_argument("--parts-dir", default="eval-parts", metavar="DIR",
                   help="where --shard writes part-I-of-N.safetensors (default %(default)s)")
    p.add_argument("--combine", nargs="+", metavar="PART",
                   help="print the split's numbers from the part files of every shard (no checkpoint or "
                        "--data needed: the parts record them)")
    p.add_argument("--save-metrics", action="store_true",
                   help="record the result in the checkpoint's .json as its metrics (rnnrbm-export puts "
                        "them in the model card); with --combine, in the checkpoint given (the same "
                        "weights, moved) or else where the parts say it was")
    return p.parse_args(argv)


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give I/N, e.g. 2/8") from None
    if not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"{text!r}: give I/N with 1 <= I <= N, e.g. 2/8")
    return i, n


def _table(r: dict) -> str:
    paper = PAPER_RNN_RBM.get(r["data"])
    ll_paper = f"   (paper's RNN-RBM: {paper[0]:.2f})" if paper else ""
    acc_paper = f"   (paper's RNN-RBM: {paper[1]:.2f})" if paper else ""
    subset = f" (first {r['sequences']} sequences only)" if r["max_seqs"] else ""
    if r.get("shard") and r["shard"] != [1, 1]:
        subset += f" (shard {r['shard'][0]}/{r['shard'][1]}: frames {r['first_frame']:,}-{r['end_frame'] - 1:,})"
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
    if args.combine:
        return _run_combine(args)
    if not args.checkpoint or not args.data:
        raise UserError("give a checkpoint and --data (or --combine with the part files of a sharded run)")
    device = pick_device(args.device)
    torch.set_num_threads(args.threads or available_cores())
    if args.max_seqs < 0:
        raise UserError(f"--max-seqs {args.max_seqs}: give 0 (all) or a positive number")
    if args.shard and args.save_metrics:
        raise UserError("--save-metrics with --shard: a shard is part of the split; save the metrics when "
                        "you --combine the parts")
    played.check(args)
    path = resolve(args.checkpoint)
    model, card = load_checkpoint(path, device=str(device))
    model = at_temperature(model, args.sampling_temperature, args.save_metrics)
    sequences = load_sequences(args.data, args.split, card.get("config", {}))
    if args.max_seqs:
        sequences = sequences[:args.max_seqs]
    start = time.perf_counter()
    frames = frame_results(model, sequences, n_runs=args.runs, n_temps=args.temperatures,
                           acc_samples=args.acc_samples, acc_gibbs=args.acc_gibbs, seed=args.seed,
                           device=device, progress=not args.json_only, shard=args.shard or (1, 1))
    # "ACC, played" needs no AIS; measured on the shard's frames, with a whole run's draws.
    frames.played, played_facts = played.measure(args, model, sequences,
                                                 slice(frames.meta["first_frame"], frames.meta["end_frame"]))
    frames.meta.update(played_facts)
    data = args.data if args.data in DATASETS else str(Path(args.data))
    run_facts = {"checkpoint": str(path), "checkpoint_sha256": _sha256(path), "data": data,
                 "split": args.split, "max_seqs": args.max_seqs,
                 "sampling_temperature": args.sampling_temperature, "device": str(device),
                 "seconds": time.perf_counter() - start}
    if args.shard:
        out = part_path(args.parts_dir, args.shard)
        save_part(out, frames, run_facts)
        run_facts["part"] = str(out)
    return _result(frames, run_facts)


def _run_combine(args: argparse.Namespace) -> dict:
    frames, facts = combine(args.combine)
    if args.save_metrics and facts.get("sampling_temperature", 1) != 1:
        raise UserError("--save-metrics: these parts measured the model at a sampling temperature; fold it "
                        "into a checkpoint with rnnrbm-temper, then save that one's metrics")
    result = _result(frames, facts)
    if args.save_metrics:
        result["checkpoint"] = str(_measured_checkpoint(args.checkpoint or facts["checkpoint"], facts))
    return result


def _measured_checkpoint(given: str, facts: dict) -> Path:
    """The checkpoint the combined parts measured: the one given (or recorded), if its
    weights are the ones the parts record."""
    try:
        path = resolve(given)
    except UserError:
        raise UserError(f"--save-metrics: no checkpoint at {given} (with its .json); the parts measured "
                        f"{facts['checkpoint']}: name where it is now, before --combine "
                        "(rnnrbm-eval CHECKPOINT --combine ...)") from None
    recorded = facts.get("checkpoint_sha256")
    if recorded and _sha256(path) != recorded:
        raise UserError(f"--save-metrics: {path} holds other weights than the parts measured "
                        f"({facts['checkpoint']}); give the checkpoint they measured")
    return path


def _result(frames, facts: dict) -> dict:
    keep = ("checkpoint", "data", "split", "max_seqs", "sampling_temperature")
    return {**{k: facts[k] for k in keep}, **summarize(frames), **played.summary(frames.played, frames.meta),
            "seconds": facts["seconds"],
            "device": facts["device"], "shard": frames.meta["shard"],
            "first_frame": frames.meta["first_frame"], "end_frame": frames.meta["end_frame"],
            "paper_rnn_rbm": PAPER_RNN_RBM.get(facts["data"])}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        if result.get("part"):
            print(f"wrote {result['part']}: combine every shard's part with rnnrbm-eval --combine")
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
