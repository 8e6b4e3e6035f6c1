"""rnnrbm-export: a checkpoint -> the ONNX step graph of ../shared/docs/step-contract.md.

Writes STEM.onnx (one self-contained graph), STEM.onnx.json (the model card) and
STEM.safetensors (exactly the contract tensors), only after onnxruntime has been checked
against the float32 torch reference `RNNRBM.step` on random inputs.

The graph is built node by node with onnx.helper, for full control of the node count: on a
CPU one step at batch 1 is dominated by onnxruntime's per-node cost (~0.3 us), not by the
arithmetic. Two designs compute the contract's step:

"sigmoid" (the default, 15 + 14K + 5 nodes): the reference's own operations in its order,
  Gemm (with the bias, added after the product as in torch), Div, Exp, Add, Reciprocal,
  Less, Cast; the clamps are folded into the noise (-1: always on, 2: always off), so
  clamping costs nothing per step.
"threshold" (20 + 4K + 5 nodes; onnxruntime fuses each Gemm + HardSigmoid; 2x faster
  at batch 1, slower at large batches where its Log over all the noise dominates):
    noise < sigmoid(x / T)  <=>  x > T * logit(noise)   (T > 0)
  so the thresholds of all K steps are computed once and folded into the Gemm bias:
  unit = HardSigmoid(v W + (b_t - T logit(noise))) with a slope of 2^127, i.e. 1 where the
  sum is positive. Clamps become noise 0 (logit -inf: on) or 1 (+inf: off).

Neither can agree with torch bit for bit by construction: torch's sigmoid uses Sleef's exp
and its tanh MKL's, which onnxruntime cannot reproduce. Matmuls do agree exactly (same
summation order, for torch batches >= 2), the recurrent tanh is computed in float64 and
rounded (it then differs from MKL's in about 1% of units by 1 ulp), and a unit flips only
when its noise lies within float rounding of its probability. Measured on 3.2 million
random frames (88/150/100, K=25, T in 0.5..2, mid-range probabilities, the worst case):
"sigmoid" 1 frame with a flipped unit, "threshold" 13, as it does not round the way the
reference's sigmoid does. The self-check tells such boundary flips from real disagreements.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper
from safetensors.torch import save as safetensors_bytes

import rnnrbm_live
from rnnrbm_live.errors import UserError
from rnnrbm_live.model_card import FORMAT, contract_shapes
from rnnrbm_live.runners import session_options

from .checkpoint import load_checkpoint, weights
from .model import RNNRBM

DEFAULT_OPSET = 17
MIN_OPSET = 13  # Split, Unsqueeze and Pad take their sizes as inputs from opset 13 on
GRAPHS = ("sigmoid", "threshold")
HARD_STEP = float(2.0 ** 127)  # HardSigmoid slope: any positive normal float maps to >= 1
U_TOLERANCE = 1e-5  # the contract's bound on |u_onnx - u_torch|
BOUNDARY = 2.0 ** -20  # a flip is a boundary case when the noise is this close to its probability
CHECK_BATCHES = (1, 3, 8)
CHECK_FRAMES = 12


class ExportCheckError(UserError):
    """onnxruntime disagrees with the torch reference: the graph is wrong, nothing is written."""


# --- the graph ---------------------------------------------------------------------------

class _Graph:
    """Collects nodes and initializers; names every node after its output."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, value) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], output: str | list[str], **attrs) -> str:
        outputs = [output] if isinstance(output, str) else output
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=outputs[0], **attrs))
        return outputs[0]


def _f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def build_step_graph(w: dict[str, np.ndarray], gibbs_steps: int, opset: int = DEFAULT_OPSET,
                     graph: str = "sigmoid") -> onnx.ModelProto:
    """The contract's step for weights `w` (the contract tensors, float32) and K Gibbs steps."""
    if graph not in GRAPHS:
        raise UserError(f"graph must be one of {', '.join(GRAPHS)}, got {graph!r}")
    nv, nh = w["W"].shape
    nu = w["Wuu"].shape[0]
    g = _Graph()
    b_hv, u_rec = _recurrent_biases(g, w)
    on, off = (0.0, 1.0) if graph == "threshold" else (-1.0, 2.0)  # noise values that force a unit
    noise = _clamped_noise(g, nh, on, off)
    g.const("W", _f32(w["W"]))
    v = g.op("Mul", ["clamp_mask", "clamp_value"], "v_init")  # the chain starts from the held units
    if graph == "threshold":
        v = _threshold_chain(g, noise, b_hv, v, nh, nv, gibbs_steps)
    else:
        v = _sigmoid_chain(g, noise, b_hv, v, nh, nv, gibbs_steps)
    _next_state(g, w, v, u_rec)
    inputs, outputs = contract_shapes(nv, nh, nu, gibbs_steps)
    info = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()]
    out_info = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs.items()]
    body = helper.make_graph(g.nodes, "rnnrbm_step", info, out_info, g.initializers)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(body, opset_imports=opsets, producer_name="rnnrbm-export",
                              producer_version=rnnrbm_live.__version__)
    model.ir_version = helper.find_min_ir_version_for(opsets)
    onnx.checker.check_model(model, full_check=True)
    return model


def _recurrent_biases(g: _Graph, w: dict[str, np.ndarray]) -> tuple[str, str]:
    """[bh_t | bv_t] and u_prev Wuu in one Gemm. Gemm adds its bias after the product, as the
    reference's `bh + u_prev @ Wuh` does, and each column's sum is the same whatever sits
    beside it, so the concatenation changes no bit (u_prev Wuu + 0 is exact)."""
    nu = w["Wuu"].shape[0]
    weight = g.const("W_u", _f32(np.concatenate([w["Wuh"], w["Wuv"], w["Wuu"]], axis=1)))
    bias = g.const("b_u", _f32(np.concatenate([w["bh"], w["bv"], np.zeros(nu)])))
    both = g.op("Gemm", ["u_prev", weight, bias], "u_proj")
    sizes = g.const("u_split", np.array([w["W"].shape[0] + w["W"].shape[1], nu], np.int64))
    g.op("Split", [both, sizes], ["b_hv", "u_rec"], axis=1)
    return "b_hv", "u_rec"


def _clamped_noise(g: _Graph, nh: int, on: float, off: float) -> str:
    """noise with every held visible unit replaced by a value that forces it on or off."""
    pads = g.const("pad_hidden", np.array([0, nh, 0, 0], np.int64))
    axis1 = g.const("axis1", np.array([1], np.int64))
    held = g.op("Pad", ["clamp_mask", pads], "held_all")
    held = g.op("Cast", [held], "held_bool", to=TensorProto.BOOL)
    held = g.op("Unsqueeze", [held, axis1], "held_b3")
    off_units = g.op("Equal", ["clamp_value", g.const("zero", _f32(0))], "held_off")
    fill = g.op("Where", [off_units, g.const("noise_off", _f32(off)), g.const("noise_on", _f32(on))], "fill")
    fill = g.op("Pad", [fill, pads], "fill_all")
    fill = g.op("Unsqueeze", [fill, axis1], "fill_b3")
    return g.op("Where", [held, fill, "noise"], "noise_clamped")


def _split_steps(g: _Graph, tensor: str, nh: int, nv: int, k: int) -> list[str]:
    """[B, K, nh+nv] -> 2K tensors [B, nh], [B, nv], ... with one Reshape and one Split."""
    flat = g.op("Reshape", [tensor, g.const("flat_shape", np.array([0, k * (nh + nv)], np.int64))], tensor + "_flat")
    names = [f"{tensor}_{part}{i}" for i in range(k) for part in ("h", "v")]
    g.op("Split", [flat, g.const("step_split", np.array([nh, nv] * k, np.int64))], names, axis=1)
    return names


def _threshold_chain(g: _Graph, noise: str, b_hv: str, v: str, nh: int, nv: int, k: int) -> str:
    axis1 = "axis1"
    rest = g.op("Sub", [g.const("one", _f32(1)), noise], "noise_rest")
    odds = g.op("Div", [noise, rest], "odds")
    logit = g.op("Log", [odds], "logit")
    temp = g.op("Unsqueeze", ["temperature", axis1], "temperature_b3")
    threshold = g.op("Mul", [logit, temp], "threshold")
    bias = g.op("Unsqueeze", [b_hv, axis1], "b_hv_b3")
    bias = g.op("Sub", [bias, threshold], "step_bias")  # b_t - T logit(noise): > 0 after adding v W means on
    parts = _split_steps(g, bias, nh, nv, k)
    for i in range(k):
        h = _hard_step(g, v, parts[2 * i], f"h{i}", trans=0)
        v = _hard_step(g, h, parts[2 * i + 1], "v" if i == k - 1 else f"v{i}", trans=1)
    return v


def _hard_step(g: _Graph, x: str, bias: str, out: str, trans: int) -> str:
    pre = g.op("Gemm", [x, "W", bias], out + "_pre", transB=trans)
    return g.op("HardSigmoid", [pre], out, alpha=HARD_STEP, beta=0.0)


def _sigmoid_chain(g: _Graph, noise: str, b_hv: str, v: str, nh: int, nv: int, k: int) -> str:
    parts = _split_steps(g, noise, nh, nv, k)
    g.op("Split", [b_hv, g.const("hv_split", np.array([nh, nv], np.int64))], ["bh_t", "bv_t"], axis=1)
    neg_t = g.op("Neg", ["temperature"], "neg_temperature")  # x / -T == -(x / T) exactly
    one = g.const("one", _f32(1))
    for i in range(k):
        h = _sigmoid_step(g, v, "bh_t", parts[2 * i], neg_t, one, f"h{i}", trans=0)
        v = _sigmoid_step(g, h, "bv_t", parts[2 * i + 1], neg_t, one, "v" if i == k - 1 else f"v{i}", trans=1)
    return v


def _sigmoid_step(g: _Graph, x: str, bias: str, noise: str, neg_t: str, one: str, out: str, trans: int) -> str:
    pre = g.op("Gemm", [x, "W", bias], out + "_pre", transB=trans)
    z = g.op("Div", [pre, neg_t], out + "_z")
    e = g.op("Exp", [z], out + "_exp")
    p = g.op("Reciprocal", [g.op("Add", [e, one], out + "_den")], out + "_p")
    on = g.op("Less", [noise, p], out + "_on")
    return g.op("Cast", [on], out, to=TensorProto.FLOAT)


def _next_state(g: _Graph, w: dict[str, np.ndarray], v: str, u_rec: str) -> None:
    """u = tanh((bu + v Wvu) + u_prev Wuu), summed in the reference's order; tanh in float64
    then rounded, the closest onnxruntime gets to MKL's float32 tanh that torch uses."""
    drive = g.op("Gemm", [v, g.const("Wvu", _f32(w["Wvu"])), g.const("bu", _f32(w["bu"]))], "u_drive")
    total = g.op("Add", [drive, u_rec], "u_pre")
    wide = g.op("Cast", [total], "u_pre64", to=TensorProto.DOUBLE)
    g.op("Cast", [g.op("Tanh", [wide], "u64")], "u", to=TensorProto.FLOAT)


# --- the self-check ------------------------------------------------------------------------

@torch.no_grad()
def reference_step(model: RNNRBM, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(v, u) of the float32 torch reference. A single row is run inside a batch of two:
    torch's batch-1 matmul (MKL gemv) sums in another order than its own batched gemm, so
    its batch-1 rounding is not the reference's function of one row."""
    args = [torch.from_numpy(feeds[name]) for name in ("u_prev", "noise", "clamp_mask", "clamp_value", "temperature")]
    single = args[0].shape[0] == 1
    if single:
        args = [a.expand(2, *a.shape[1:]) for a in args]
    v, u = model.step(*[a.contiguous() for a in args])
    return v[:1].numpy() if single else v.numpy(), u[:1].numpy() if single else u.numpy()


@torch.no_grad()
def decision_margins(model: RNNRBM, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """Per row, the smallest |noise - probability| over the sampled units of the reference
    chain: a row whose v may flip between two float implementations has one near zero."""
    u_prev, noise, mask, value, temp = (torch.from_numpy(feeds[n]).double() for n in
                                        ("u_prev", "noise", "clamp_mask", "clamp_value", "temperature"))
    m, nh = model, model.config.n_hidden
    W, bh_t = m.W.double(), m.bh.double() + u_prev @ m.Wuh.double()
    bv_t = m.bv.double() + u_prev @ m.Wuv.double()
    held, free, v = mask * value, 1 - mask, mask * value
    margin = torch.full((u_prev.shape[0],), float("inf"), dtype=torch.float64)
    for k in range(noise.shape[1]):
        ph = torch.sigmoid((v @ W + bh_t) / temp)
        margin = torch.minimum(margin, (noise[:, k, :nh] - ph).abs().amin(1))
        h = (noise[:, k, :nh] < ph).double()
        pv = torch.sigmoid((h @ W.T + bv_t) / temp)
        gap = torch.where(free > 0, (noise[:, k, nh:] - pv).abs(), torch.inf)
        margin = torch.minimum(margin, gap.amin(1))
        v = held + free * (noise[:, k, nh:] < pv).double()
    return margin.numpy()


def _check_inputs(rng: np.random.Generator, state: np.ndarray, nv: int, frame: int) -> dict[str, np.ndarray]:
    """Random clamps (every fourth frame listens: all units held) and temperatures 0.5..2."""
    b = state.shape[0]
    mask = (rng.random((b, nv)) < 0.25).astype(np.float32)
    if frame % 4 == 3:
        mask[:] = 1  # listening: every unit held
    return {"u_prev": state, "noise": None, "clamp_mask": mask,
            "clamp_value": (rng.random((b, nv)) < 0.3).astype(np.float32),
            "temperature": rng.uniform(0.5, 2.0, (b, 1)).astype(np.float32)}


def verify_step_graph(model: RNNRBM, onnx_bytes: bytes, gibbs_steps: int, seed: int = 0,
                      batches: tuple[int, ...] = CHECK_BATCHES, frames: int = CHECK_FRAMES) -> dict:
    """onnxruntime (CPU, the runtime's session options) against `model.step` on random
    inputs; raises ExportCheckError unless v agrees at every row but for boundary flips
    (noise within BOUNDARY of its probability) and u within U_TOLERANCE. Each frame starts
    both sides from the reference's state, so even a chaotic RNN is checked step by step."""
    session = _check_session(onnx_bytes)
    c = model.config
    rng = np.random.default_rng(seed)
    rows = boundary = 0
    max_du = 0.0
    for b in batches:
        state = np.tanh(rng.standard_normal((b, c.n_recurrent)) * 2).astype(np.float32)
        state[: (b + 1) // 2] = model.u0.detach().numpy()
        for frame in range(frames):
            feeds = _check_inputs(rng, state, c.n_visible, frame)
            feeds["noise"] = rng.random((b, gibbs_steps, c.n_hidden + c.n_visible), dtype=np.float32)
            v_ref, u_ref = reference_step(model, feeds)
            v, u = _run(session, feeds)
            flipped = (v != v_ref).any(1)
            if flipped.any():
                real = flipped & ~(decision_margins(model, feeds) < BOUNDARY)
                if real.any():
                    raise ExportCheckError(_disagreement(model, "v", int(real.sum()), b, frame))
                boundary += int(flipped.sum())
            gap = np.abs(u - u_ref)[~flipped]  # a flipped row's u follows its other frame
            off = ~(gap <= U_TOLERANCE)  # NaN is off too
            if off.any():
                worst = float(np.where(np.isnan(gap), np.inf, gap).max())
                raise ExportCheckError(_disagreement(model, f"u (by {worst:.2g} > {U_TOLERANCE:g})",
                                                     int(off.any(-1).sum()), b, frame))
            max_du = max(max_du, float(gap.max(initial=0.0)))
            rows += b
            state = u_ref
    return {"rows": rows, "batch_sizes": list(batches), "boundary_flips": boundary, "max_abs_u_diff": max_du}


def _check_session(onnx_bytes: bytes) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(onnx_bytes, session_options(threads=1), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's pybind errors: an opset it does not know, ...
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise UserError(f"onnxruntime {ort.__version__} cannot load the exported graph ({reason}); "
                        f"try --opset {DEFAULT_OPSET}") from None


def _run(session: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    try:
        return session.run(["v", "u"], feeds)
    except Exception as e:  # a graph for other sizes or another K refuses the contract's inputs
        reason = str(e).strip().splitlines()[0][:200]
        raise ExportCheckError(f"self-check failed: the graph does not take this model's inputs ({reason}); "
                               f"nothing was written") from None


def _disagreement(model: RNNRBM, what: str, rows: int, batch: int, frame: int) -> str:
    bad = [n for n, t in weights(model).items() if not torch.isfinite(t).all()]
    hint = (f"; the checkpoint has non-finite values in {', '.join(bad)}: its training diverged"
            if bad else "; this is a bug in rnnrbm-export, please report it")
    return (f"self-check failed: onnxruntime and the torch reference disagree on {what} in {rows} of {batch} "
            f"rows (batch {batch}, frame {frame}); nothing was written{hint}")


# --- files ---------------------------------------------------------------------------------

def _tempered(checkpoint_card: dict) -> dict | None:
    """A sampling temperature rnnrbm-temper folded into the weights: which, and by what rule."""
    t = checkpoint_card.get("tempered")
    return None if t is None else {"temperature": t["temperature"], "rule": t["rule"]}


def model_card(model: RNNRBM, checkpoint_card: dict, gibbs_steps: int, opset: int, graph: str,
               nodes: int, weights_sha256: str, check: dict) -> dict:
    """The `.onnx.json` card: what the runtime needs, where the model came from, how good it is."""
    c = model.config
    inputs, outputs = contract_shapes(c.n_visible, c.n_hidden, c.n_recurrent, gibbs_steps)
    return {
        "format": FORMAT,
        "n_visible": c.n_visible, "lowest_pitch": c.lowest_pitch, "n_hidden": c.n_hidden,
        "n_recurrent": c.n_recurrent, "gibbs_steps": gibbs_steps, "frames_per_beat": c.frames_per_beat,
        "u0": [float(x) for x in model.u0.detach().float().tolist()],
        "dataset": c.dataset, "transposed_to": c.transposed_to,
        "metrics": checkpoint_card.get("metrics"),
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
                 opset: int = DEFAULT_OPSET, graph: str = "sigmoid") -> dict[str, Path]:
    """Build, check and write STEM.onnx, STEM.onnx.json and STEM.safetensors; their paths."""
    k = model.config.gibbs_steps if gibbs_steps is None else gibbs_steps
    if not isinstance(k, int) or k < 1:
        raise UserError(f"--gibbs-steps must be a positive integer, got {k!r}")
    if not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise UserError(f"--opset {opset} is not supported; use {MIN_OPSET}..{onnx.defs.onnx_opset_version()} "
                        f"(default {DEFAULT_OPSET})")
    tensors = weights(model)
    graph_proto = build_step_graph({n: t.numpy() for n, t in tensors.items()}, k, opset, graph)
    onnx_bytes = graph_proto.SerializeToString()
    check = verify_step_graph(model, onnx_bytes, k)
    weights_bytes = safetensors_bytes(tensors, metadata={"format": FORMAT})
    sha = hashlib.sha256(weights_bytes).hexdigest()
    out_card = model_card(model, card, k, opset, graph, len(graph_proto.graph.node), sha, check)
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
    p.add_argument("--gibbs-steps", type=int, metavar="K", help="Gibbs steps per frame (default: the model's)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, metavar="N",
                   help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--graph", choices=GRAPHS, default="sigmoid",
                   help="sigmoid: the reference's own ops (default); threshold: 2x faster at batch 1, compares "
                        "T*logit(noise) and flips units on rounding boundaries ~10x more often")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        model, card = load_checkpoint(args.checkpoint)
        paths = export_model(model, card, args.out, args.gibbs_steps, args.opset, args.graph)
    except ExportCheckError as e:
        print(f"rnnrbm-export: {e}", file=sys.stderr)
        return 1
    except UserError as e:
        print(f"rnnrbm-export: {e}", file=sys.stderr)
        return 2
    written = json.loads(paths["card"].read_text())
    check = written["self_check"]
    print(f"wrote {paths['onnx']} ({written['graph']['nodes']} nodes, K={written['gibbs_steps']}), "
          f"{paths['card'].name}, {paths['weights'].name}")
    print(f"self-check: {check['rows']} random rows agree with torch (max |u diff| {check['max_abs_u_diff']:.1e}, "
          f"{check['boundary_flips']} boundary flips)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
