"""rnnrbm-export: a checkpoint -> the ONNX step graph of docs/step-contract.md.

Writes STEM.onnx (one self-contained graph, step_graph.py), STEM.onnx.json (the model card)
and STEM.safetensors (exactly the contract tensors), only after onnxruntime has been
checked against the float32 torch reference `RNNRBM.step` on random inputs (step_check.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import onnx
import onnxruntime as ort
import torch
from safetensors.torch import save as safetensors_bytes

import rnnrbm_live
from rnnrbm_live.errors import UserError
from rnnrbm_live.model.card import FORMAT, FORMAT_V1, contract_shapes

from .checkpoint import load_checkpoint, weights
from .model import RNNRBM
from .proposal import fit_for_checkpoint
from .sampler import DEFAULT_SAMPLER, GUIDED, KINDS, STARTS, Sampler
from .step_check import ExportCheckError, verify_step_graph
from .step_graph import DEFAULT_OPSET, GRAPHS, MIN_OPSET, build_step_graph


# --- files ---------------------------------------------------------------------------------

def _tempered(checkpoint_card: dict) -> dict | None:
    """A sampling temperature rnnrbm-temper folded into the weights: which, and by what rule."""
    t = checkpoint_card.get("tempered")
    return None if t is None else {"temperature": t["temperature"], "rule": t["rule"]}


def model_card(model: RNNRBM, checkpoint_card: dict, gibbs_steps: int, opset: int, graph: str,
               nodes: int, weights_sha256: str, check: dict, sampler: Sampler | None = None,
               sampler_metrics: dict | None = None) -> dict:
    """The `.onnx.json` card: what the runtime needs, where the model came from, how good it is."""
    c = model.config
    chains = None if sampler is None else sampler.chains
    guided = sampler is not None and sampler.kind == "guided"
    inputs, outputs = contract_shapes(c.n_visible, c.n_hidden, c.n_recurrent, gibbs_steps, chains, guided=guided)
    fitted = {"proposal": model.proposal.fit} if guided else {}
    versioned = {} if sampler is None else {"sampler": {**sampler.to_dict(), "label": sampler.label(), **fitted},
                                            "sampler_metrics": sampler_metrics}
    return {
        "format": FORMAT_V1 if sampler is None else FORMAT,
        "n_visible": c.n_visible, "lowest_pitch": c.lowest_pitch, "n_hidden": c.n_hidden,
        "n_recurrent": c.n_recurrent, "gibbs_steps": gibbs_steps, "frames_per_beat": c.frames_per_beat,
        "u0": [float(x) for x in model.u0.detach().float().tolist()],
        "dataset": c.dataset, "transposed_to": c.transposed_to,
        "metrics": checkpoint_card.get("metrics"),
        **versioned,
        "tempered": _tempered(checkpoint_card),
        "opset": opset,
        "inputs": [{"name": n, "shape": s, "dtype": "float32"} for n, s in inputs.items()],
        "outputs": [{"name": n, "shape": s, "dtype": "float32"} for n, s in outputs.items()],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "safetensors_sha256": weights_sha256,
        "graph": {"design": graph, "nodes": nodes},
        "self_check": check,
        "exporter": {"tool": "rnnrbm-export", "version": rnnrbm_live.__version__, "torch": torch.__version__,
                     "onnx": onnx.__version__, "onnxruntime": ort.__version__},
    }


def card_json(card: dict) -> str:
    """Indented JSON with the long u0 list on one line, so the card stays readable."""
    marker = "@@u0@@"
    text = json.dumps({**card, "u0": marker}, indent=1)
    return text.replace(json.dumps(marker), json.dumps(card["u0"])) + "\n"


def stem_paths(out_stem: str | Path) -> dict[str, Path]:
    stem = str(out_stem).removesuffix(".json").removesuffix(".onnx")
    return {"onnx": Path(stem + ".onnx"), "card": Path(stem + ".onnx.json"), "weights": Path(stem + ".safetensors")}


def _write_all(contents: dict[Path, bytes]) -> None:
    """All files or none: each is written beside its target first, then renamed over it."""
    temps = {path: path.with_name(path.name + ".tmp") for path in contents}
    try:
        for path, data in contents.items():
            temps[path].write_bytes(data)
        for path, tmp in temps.items():
            os.replace(tmp, path)
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)


def export_model(model: RNNRBM, card: dict, out_stem: str | Path, gibbs_steps: int | None = None,
                 opset: int = DEFAULT_OPSET, graph: str = "sigmoid", sampler: Sampler | None = None,
                 sampler_metrics: dict | None = None) -> dict[str, Path]:
    """Build, check and write STEM.onnx, STEM.onnx.json and STEM.safetensors; their paths.
    With a sampler, a version 2 step (its K is sampler.steps); without, version 1."""
    k = sampler.steps if sampler is not None else model.config.gibbs_steps if gibbs_steps is None else gibbs_steps
    if not isinstance(k, int) or k < 1:
        raise UserError(f"--gibbs-steps must be a positive integer, got {k!r}")
    if not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise UserError(f"--opset {opset} is not supported; use {MIN_OPSET}..{onnx.defs.onnx_opset_version()} "
                        f"(default {DEFAULT_OPSET})")
    tensors = weights(model)
    if sampler is not None and sampler.kind == "guided":
        if model.proposal is None:
            raise UserError("the guided sampler needs a proposal: fit one first (export/proposal.py)")
        tensors.update(model.proposal.tensors())
    graph_proto = build_step_graph({n: t.numpy() for n, t in tensors.items()}, k, opset, graph, sampler)
    onnx_bytes = graph_proto.SerializeToString()
    check = verify_step_graph(model, onnx_bytes, k, sampler=sampler)
    weights_bytes = safetensors_bytes(tensors, metadata={"format": FORMAT if sampler else FORMAT_V1})
    sha = hashlib.sha256(weights_bytes).hexdigest()
    out_card = model_card(model, card, k, opset, graph, len(graph_proto.graph.node), sha, check, sampler,
                          sampler_metrics)
    paths = stem_paths(out_stem)
    paths["onnx"].parent.mkdir(parents=True, exist_ok=True)
    _write_all({paths["onnx"]: onnx_bytes, paths["weights"]: weights_bytes,
                paths["card"]: card_json(out_card).encode()})
    return paths


# --- the command line ----------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rnnrbm-export", description=(
        "Export an rnnrbm checkpoint to the ONNX step graph the live runtime plays "
        "(STEM.onnx, STEM.onnx.json, STEM.safetensors), after checking onnxruntime against torch."))
    p.add_argument("checkpoint", help="a .safetensors checkpoint or a training folder (its best one)")
    p.add_argument("-o", "--out", required=True, metavar="DIR/STEM", help="where to write, without extension")
    p.add_argument("--gibbs-steps", type=int, metavar="K",
                   help=f"Gibbs sweeps per chain (default: {DEFAULT_SAMPLER.steps} for the default sampler; the "
                        "model's own for --sampler v1)")
    p.add_argument("--sampler", choices=(*KINDS, "v1"), default=DEFAULT_SAMPLER.kind,
                   help=f"how a frame is drawn (docs/step-contract.md): sir (default: {DEFAULT_SAMPLER.label()}), "
                        "chain, or v1 (a version 1 step: one chain from silence, no v_prev)")
    p.add_argument("--chains", type=int, metavar="R",
                   help=f"sir: chains per frame (default {DEFAULT_SAMPLER.chains}); guided: candidates "
                        f"(default {GUIDED.chains})")
    p.add_argument("--previous", type=int, metavar="P",
                   help=f"sir: chains whose start leans to the previous frame (default {DEFAULT_SAMPLER.previous})")
    p.add_argument("--lean", type=float, metavar="L",
                   help=f"sir: how far they lean (default {DEFAULT_SAMPLER.lean:g}); guided: how far the proposal "
                        f"leans to the previous frame (default {GUIDED.lean:g})")
    p.add_argument("--spread", type=float, metavar="S",
                   help=f"guided: divide the fitted proposal's logits by S (wider; default {GUIDED.spread:g})")
    p.add_argument("--data", metavar="NAME|DIR",
                   help="guided: the training data to fit the proposal on (default: what the checkpoint's card names)")
    p.add_argument("--start", choices=STARTS, default="previous", help="chain: where it starts (default previous)")
    p.add_argument("--sampler-metrics", metavar="FILE.json",
                   help="measured numbers of the sampler (scripts/bench_sampler.py --save) to record in the card")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, metavar="N",
                   help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--graph", choices=GRAPHS, default="sigmoid",
                   help="sigmoid: the reference's own ops (default); threshold: 2x faster at batch 1, compares "
                        "T*logit(noise) and flips units on rounding boundaries ~10x more often")
    return p


def sampler_from_args(args: argparse.Namespace) -> Sampler | None:
    if args.sampler == "v1":
        return None
    d = GUIDED if args.sampler == "guided" else DEFAULT_SAMPLER
    steps = d.steps if args.gibbs_steps is None else args.gibbs_steps
    if not isinstance(steps, int) or steps < 1:
        raise UserError(f"--gibbs-steps must be a positive integer, got {steps!r}")
    try:
        if args.sampler == "chain":
            return Sampler("chain", steps, start=args.start)
        if args.sampler == "guided":
            return Sampler("guided", steps, chains=d.chains if args.chains is None else args.chains,
                           lean=d.lean if args.lean is None else args.lean,
                           spread=d.spread if args.spread is None else args.spread)
        chains = d.chains if args.chains is None else args.chains
        previous = min(d.previous, chains) if args.previous is None else args.previous
        return Sampler("sir", steps, chains=chains, previous=previous, lean=d.lean if args.lean is None else args.lean,
                       spread=1.0 if args.spread is None else args.spread)
    except ValueError as e:
        raise UserError(f"--sampler {args.sampler}: {e}") from None


def _sampler_metrics(path: str | None) -> dict | None:
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"--sampler-metrics {path}: cannot read it as json ({e})") from None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        sampler = sampler_from_args(args)
        metrics = _sampler_metrics(args.sampler_metrics)
        model, card = load_checkpoint(args.checkpoint)
        if sampler is not None and sampler.kind == "guided":
            model.proposal = fit_for_checkpoint(model, card, args.data).shaped(sampler.lean, sampler.spread)
        paths = export_model(model, card, args.out, args.gibbs_steps, args.opset, args.graph, sampler, metrics)
    except ExportCheckError as e:
        print(f"rnnrbm-export: {e}", file=sys.stderr)
        return 1
    except UserError as e:
        print(f"rnnrbm-export: {e}", file=sys.stderr)
        return 2
    written = json.loads(paths["card"].read_text())
    check = written["self_check"]
    how = written["sampler"]["label"] if "sampler" in written else f"v1, K={written['gibbs_steps']}"
    print(f"wrote {paths['onnx']} ({written['graph']['nodes']} nodes, {how}), "
          f"{paths['card'].name}, {paths['weights'].name}")
    print(f"self-check: {check['rows']} random rows agree with torch (max |u diff| {check['max_abs_u_diff']:.1e}, "
          f"{check['boundary_flips']} boundary flips)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
