"""`rnnrbm-temper`: choose a sampling temperature on valid and fold it into a checkpoint.

The paper's two measures pull against each other. A temperature below 1 sharpens every
conditional RBM: its samples agree with the true frame more often (ACC rises) while the
probability it gives the true frame falls (LL falls). This measures each candidate
temperature on the valid split (the same AIS runs for each, so they compare closely),
keeps the one with the highest valid ACC among those whose valid LL is at least
--min-ll, and writes a checkpoint with it folded into the weights (RNNRBM.tempered).

--method is measures by importance sampling from the guided sampler's proposal instead of
AIS (export/importance.py): on sharp models, and the lower temperatures are sharper, AIS
with affordable temperatures understates ACC and flatters LL, and that settles. It costs
more per frame, so --every measures every N-th frame (take N prime to 8: most pieces are
whole bars).

The result is an ordinary RNN-RBM: at temperature 1 it plays what was measured, and
rnnrbm-eval and rnnrbm-export take it like any other. Its card keeps the source's
training record, the valid table and the rule that chose, and drops the source's metrics
(they describe another distribution). Fix --min-ll before looking at the test split.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from rnnrbm_live.errors import UserError

from .checkpoint import load_checkpoint, pick_device, resolve, save_checkpoint
from .evaluate import available_cores, load_sequences
from .importance import split_measures
from .measures import evaluate, sem
from .model import RNNRBM
from .proposal import fit_for_checkpoint


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="rnnrbm-temper", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a .safetensors checkpoint or a training folder (its best)")
    p.add_argument("--data", required=True, help="the dataset it was trained on: a bundled name or a folder")
    p.add_argument("--out", required=True, help="the tempered checkpoint to write (.safetensors; .json beside it)")
    p.add_argument("--min-ll", type=float, required=True,
                   help="the lowest valid LL (nats per frame) the chosen temperature may leave")
    p.add_argument("--candidates", default="1,0.95,0.9,0.85,0.8",
                   help="sampling temperatures to measure, comma-separated; 1 is always among them")
    p.add_argument("--max-seqs", type=int, default=0, help="measure on the first N valid sequences only (0 = all)")
    p.add_argument("--runs", type=int, default=100, help="AIS runs per frame")
    p.add_argument("--temperatures", type=int, default=500,
                   help="AIS intermediate temperatures (too few flatter LL, more so on sharper models)")
    p.add_argument("--method", choices=("ais", "is"), default="ais",
                   help="measure by AIS, or by importance sampling from the guided proposal (sharp models)")
    p.add_argument("--draws", type=int, default=65536, help="is: candidates per frame")
    p.add_argument("--every", type=int, default=1, help="is: measure every N-th frame (1: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = every core this process may use)")
    return p.parse_args(argv)


def parse_candidates(text: str) -> list[float]:
    """Distinct positive temperatures, highest first, with 1 (the model itself) among them."""
    try:
        values = {float(x) for x in text.split(",") if x.strip()}
    except ValueError:
        raise UserError(f"--candidates {text!r}: give numbers separated by commas, like 1,0.9,0.8") from None
    bad = sorted(t for t in values if not math.isfinite(t) or t <= 0)
    if bad:
        raise UserError(f"--candidates: temperature {bad[0]} is not positive; give numbers above 0")
    return sorted(values | {1.0}, reverse=True)


def measure(model: RNNRBM, sequences: list, candidates: list[float], *, n_runs: int, n_temps: int,
            seed: int, device: torch.device) -> list[dict]:
    """Valid LL and ACC of the model at each candidate temperature, by AIS."""
    rows = []
    for t in tqdm(candidates, desc="temperatures", unit="T", dynamic_ncols=True, leave=False):
        r = evaluate(model.tempered(t), sequences, n_runs=n_runs, n_temps=n_temps, acc_samples=0,
                     seed=seed, device=device, progress=False)
        rows.append({"temperature": t, "ll": r["ll"], "ll_sem": r["ll_sem"], "acc": r["acc"],
                     "acc_sem": r["acc_sem"], "frames": r["frames"]})
    return rows


def measure_is(model: RNNRBM, card: dict, data: str, sequences: list, candidates: list[float], *,
               draws: int, every: int, seed: int) -> list[dict]:
    """The same by importance sampling: one proposal, the same frames for each temperature."""
    proposal = fit_for_checkpoint(model, card, data)
    rows = []
    for t in tqdm(candidates, desc="temperatures", unit="T", dynamic_ncols=True, leave=False):
        r = split_measures(model, sequences, proposal, temperature=t, candidates=draws, every=every, seed=seed)
        rows.append({"temperature": t, "ll": float(r["ll"].mean()), "ll_sem": sem(r["ll"]),
                     "acc": 100 * float(r["acc"].mean()), "acc_sem": 100 * sem(r["acc"]),
                     "frames": len(r["ll"]), "ess_median": float(r["ess"].median())})
    return rows


def choose(rows: list[dict], min_ll: float) -> dict | None:
    """The highest valid ACC among the rows whose valid LL is at least min_ll (None: no row)."""
    allowed = [r for r in rows if r["ll"] >= min_ll]
    return max(allowed, key=lambda r: r["acc"]) if allowed else None


def no_choice(rows: list[dict], min_ll: float) -> str:
    best = max(rows, key=lambda r: r["ll"])
    return (f"--min-ll {min_ll:g}: no candidate reaches it on valid (the best is {best['ll']:.3f}, "
            f"at temperature {best['temperature']:g}); lower the floor or train a better model")


def rule(min_ll: float) -> str:
    return f"highest valid ACC with valid LL >= {min_ll:g}"


def table(rows: list[dict], chosen: dict | None, min_ll: float) -> str:
    lines = [f"{'temperature':>11}  {'valid LL':>16}  {'valid ACC':>14}",
             *(f"{r['temperature']:>11g}  {r['ll']:>8.3f} ± {r['ll_sem']:.3f}  {r['acc']:>6.2f} ± {r['acc_sem']:.2f}"
               f"{'   <- chosen' if r is chosen else ''}" for r in rows)]
    if chosen is not None:
        lines.append(f"chosen: the {rule(min_ll)}")
    return "\n".join(lines)


def temper(args: argparse.Namespace, command: str) -> dict:
    # Importance sampling runs where its proposal is fitted, on the CPU.
    device = pick_device(args.device) if args.method == "ais" else torch.device("cpu")
    torch.set_num_threads(args.threads or available_cores())
    candidates = parse_candidates(args.candidates)
    source, out = resolve(args.checkpoint), Path(args.out)
    if out.suffix != ".safetensors":
        raise UserError(f"--out {out}: name a .safetensors file to write")
    if out.resolve() == source.resolve():
        raise UserError(f"--out {out}: that is the source checkpoint; write the tempered one beside it")
    if args.max_seqs < 0:  # evaluate() checks the AIS sizes
        raise UserError(f"--max-seqs {args.max_seqs}: give 0 (all) or a positive number")
    if args.draws < 1 or args.every < 1:
        raise UserError(f"--draws {args.draws} --every {args.every}: give each as a positive number")
    model, card = load_checkpoint(source, device=str(device))
    sequences = load_sequences(args.data, "valid", card.get("config", {}))
    if args.max_seqs:
        sequences = sequences[:args.max_seqs]
    if args.method == "is":
        rows = measure_is(model, card, args.data, sequences, candidates, draws=args.draws, every=args.every,
                          seed=args.seed)
        how = {"importance_sampling": f"{args.draws:,} candidates a frame, "
                                      + ("every frame" if args.every == 1 else f"every {args.every}th frame")}
    else:
        rows = measure(model, sequences, candidates, n_runs=args.runs, n_temps=args.temperatures,
                       seed=args.seed, device=device)
        how = {"ais": f"{args.runs} runs x {args.temperatures} temperatures"}
    chosen = choose(rows, args.min_ll)
    if chosen is None:  # nothing to write; main still shows what was measured
        return {"rows": rows, "chosen": None, "out": None}
    record = {"temperature": chosen["temperature"], "from": str(source), "rule": rule(args.min_ll),
              "valid": rows, "valid_sequences": len(sequences), **how, "command": command}
    meta = {k: v for k, v in card.items() if k not in ("config", "metrics")}
    save_checkpoint(out, model.tempered(chosen["temperature"]), {**meta, "tempered": record})
    return {"rows": rows, "chosen": chosen, "out": str(out)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "rnnrbm-temper " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        result = temper(args, command)
    except UserError as e:
        print(f"rnnrbm-temper: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rnnrbm-temper: interrupted; nothing written", file=sys.stderr)
        return 130
    print(table(result["rows"], result["chosen"], args.min_ll))
    if result["chosen"] is None:
        print(f"rnnrbm-temper: {no_choice(result['rows'], args.min_ll)}", file=sys.stderr)
        return 2
    print(f"wrote {result['out']} (temperature {result['chosen']['temperature']:g} folded in)")
    print(json.dumps({"temperature": result["chosen"]["temperature"], "out": result["out"], "valid": result["rows"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
