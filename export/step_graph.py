"""The ONNX step graph of docs/step-contract.md, built from a model's contract tensors.

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

import numpy as np
import onnx
from onnx import TensorProto, helper

import rnnrbm_live
from rnnrbm_live.errors import UserError
from rnnrbm_live.model.card import contract_shapes

from .graph_ops import Graph, f32, sigmoid_step, split_steps
from .sampler import Sampler
from .sampler_graph import sampler_nodes

DEFAULT_OPSET = 17
MIN_OPSET = 13  # Split, Unsqueeze and Pad take their sizes as inputs from opset 13 on
GRAPHS = ("sigmoid", "threshold")
HARD_STEP = float(2.0 ** 127)  # HardSigmoid slope: any positive normal float maps to >= 1


def build_step_graph(w: dict[str, np.ndarray], gibbs_steps: int, opset: int = DEFAULT_OPSET,
                     graph: str = "sigmoid", sampler: Sampler | None = None) -> onnx.ModelProto:
    """The contract's step for weights `w` (the contract tensors, float32): version 1 with
    K Gibbs steps from silence, or version 2 with `sampler` (its K is sampler.steps)."""
    if graph not in GRAPHS:
        raise UserError(f"graph must be one of {', '.join(GRAPHS)}, got {graph!r}")
    if sampler is not None and graph != "sigmoid":
        raise UserError(f"--graph {graph} builds version 1 steps only; use --graph sigmoid with a sampler")
    nv, nh = w["W"].shape
    nu = w["Wuu"].shape[0]
    g = Graph()
    b_hv, u_rec = _recurrent_biases(g, w)
    on, off = (0.0, 1.0) if graph == "threshold" else (-1.0, 2.0)  # noise values that force a unit
    g.const("W", f32(w["W"]))
    if sampler is not None and sampler.kind == "guided":  # holds its clamps itself: its noise is flat
        v = sampler_nodes(g, sampler, "noise", nh, nv, proposal={"P": w["P"], "pb": w["pb"]})
    elif sampler is not None:
        v = sampler_nodes(g, sampler, _clamped_noise(g, nh, on, off, axes=[1, 2]), nh, nv)
    else:
        noise = _clamped_noise(g, nh, on, off, axes=[1])
        v = g.op("Mul", ["clamp_mask", "clamp_value"], "v_init")  # the chain starts from the held units
        chain = _threshold_chain if graph == "threshold" else _sigmoid_chain
        v = chain(g, noise, b_hv, v, nh, nv, gibbs_steps)
    _next_state(g, w, v, u_rec)
    inputs, outputs = contract_shapes(nv, nh, nu, gibbs_steps if sampler is None else sampler.steps,
                                      None if sampler is None else sampler.chains,
                                      guided=sampler is not None and sampler.kind == "guided")
    info = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()]
    out_info = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs.items()]
    body = helper.make_graph(g.nodes, "rnnrbm_step", info, out_info, g.initializers)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(body, opset_imports=opsets, producer_name="rnnrbm-export",
                              producer_version=rnnrbm_live.__version__)
    model.ir_version = helper.find_min_ir_version_for(opsets)
    onnx.checker.check_model(model, full_check=True)
    return model


def _recurrent_biases(g: Graph, w: dict[str, np.ndarray]) -> tuple[str, str]:
    """[bh_t | bv_t] and u_prev Wuu in one Gemm. Gemm adds its bias after the product, as the
    reference's `bh + u_prev @ Wuh` does, and each column's sum is the same whatever sits
    beside it, so the concatenation changes no bit (u_prev Wuu + 0 is exact)."""
    nu = w["Wuu"].shape[0]
    weight = g.const("W_u", f32(np.concatenate([w["Wuh"], w["Wuv"], w["Wuu"]], axis=1)))
    bias = g.const("b_u", f32(np.concatenate([w["bh"], w["bv"], np.zeros(nu)])))
    both = g.op("Gemm", ["u_prev", weight, bias], "u_proj")
    sizes = g.const("u_split", np.array([w["W"].shape[0] + w["W"].shape[1], nu], np.int64))
    g.op("Split", [both, sizes], ["b_hv", "u_rec"], axis=1)
    return "b_hv", "u_rec"


def _clamped_noise(g: Graph, nh: int, on: float, off: float, axes: list[int]) -> str:
    """noise with every held visible unit replaced by a value that forces it on or off;
    `axes`: where the per-frame clamps broadcast over the noise's steps (and chains)."""
    pads = g.const("pad_hidden", np.array([0, nh, 0, 0], np.int64))
    axis1 = g.const("noise_axes", np.array(axes, np.int64))
    g.const("axis1", np.array([1], np.int64))
    held = g.op("Pad", ["clamp_mask", pads], "held_all")
    held = g.op("Cast", [held], "held_bool", to=TensorProto.BOOL)
    held = g.op("Unsqueeze", [held, axis1], "held_b3")
    off_units = g.op("Equal", ["clamp_value", g.const("zero", f32(0))], "held_off")
    fill = g.op("Where", [off_units, g.const("noise_off", f32(off)), g.const("noise_on", f32(on))], "fill")
    fill = g.op("Pad", [fill, pads], "fill_all")
    fill = g.op("Unsqueeze", [fill, axis1], "fill_b3")
    return g.op("Where", [held, fill, "noise"], "noise_clamped")


def _threshold_chain(g: Graph, noise: str, b_hv: str, v: str, nh: int, nv: int, k: int) -> str:
    axis1 = "axis1"
    rest = g.op("Sub", [g.const("one", f32(1)), noise], "noise_rest")
    odds = g.op("Div", [noise, rest], "odds")
    logit = g.op("Log", [odds], "logit")
    temp = g.op("Unsqueeze", ["temperature", axis1], "temperature_b3")
    threshold = g.op("Mul", [logit, temp], "threshold")
    bias = g.op("Unsqueeze", [b_hv, axis1], "b_hv_b3")
    bias = g.op("Sub", [bias, threshold], "step_bias")  # b_t - T logit(noise): > 0 after adding v W means on
    parts = split_steps(g, bias, nh, nv, k)
    for i in range(k):
        h = _hard_step(g, v, parts[2 * i], f"h{i}", trans=0)
        v = _hard_step(g, h, parts[2 * i + 1], "v" if i == k - 1 else f"v{i}", trans=1)
    return v


def _hard_step(g: Graph, x: str, bias: str, out: str, trans: int) -> str:
    pre = g.op("Gemm", [x, "W", bias], out + "_pre", transB=trans)
    return g.op("HardSigmoid", [pre], out, alpha=HARD_STEP, beta=0.0)


def _sigmoid_chain(g: Graph, noise: str, b_hv: str, v: str, nh: int, nv: int, k: int) -> str:
    parts = split_steps(g, noise, nh, nv, k)
    g.op("Split", [b_hv, g.const("hv_split", np.array([nh, nv], np.int64))], ["bh_t", "bv_t"], axis=1)
    neg_t = g.op("Neg", ["temperature"], "neg_temperature")  # x / -T == -(x / T) exactly
    one = g.const("one", f32(1))
    for i in range(k):
        h = sigmoid_step(g, v, "bh_t", parts[2 * i], neg_t, one, f"h{i}", trans=0)
        v = sigmoid_step(g, h, "bv_t", parts[2 * i + 1], neg_t, one, "v" if i == k - 1 else f"v{i}", trans=1)
    return v


def _next_state(g: Graph, w: dict[str, np.ndarray], v: str, u_rec: str) -> None:
    """u = tanh((bu + v Wvu) + u_prev Wuu), summed in the reference's order; tanh in float64
    then rounded, the closest onnxruntime gets to MKL's float32 tanh that torch uses."""
    drive = g.op("Gemm", [v, g.const("Wvu", f32(w["Wvu"])), g.const("bu", f32(w["bu"]))], "u_drive")
    total = g.op("Add", [drive, u_rec], "u_pre")
    wide = g.op("Cast", [total], "u_pre64", to=TensorProto.DOUBLE)
    g.op("Cast", [g.op("Tanh", [wide], "u64")], "u", to=TensorProto.FLOAT)
