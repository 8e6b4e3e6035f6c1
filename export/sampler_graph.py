"""The v2 step's samplers as ONNX nodes: export/sampler.py's reference, operation by
operation, on the chains' rows (frame b's chain r is row b * R + r).

The "sir" sampler keeps its annealed chains' weights in float32 as the reference does; the
weights only choose which chain's end is played, so an ulp between onnxruntime's and torch's
exp or log changes the frame only when two chains' Gumbel-perturbed weights tie to an ulp
(step_check.py counts that as a boundary case, like a unit whose noise ties its probability).
"""

from __future__ import annotations

import numpy as np

from .graph_ops import Graph, f32, sigmoid_draw, sigmoid_step, split_steps
from .sampler import Sampler, softplus_group


def sampler_nodes(g: Graph, sampler: Sampler, noise: str, nh: int, nv: int,
                  proposal: dict[str, np.ndarray] | None = None) -> str:
    """Nodes drawing the frame "v" from the biases "bh_t", "bv_t", the noise (clamped
    [B, R, K + 1, nh + nv]; guided: the input itself, [B, S]) and the inputs v_prev,
    clamp_mask, clamp_value, temperature; "guided" also needs the proposal's P and pb."""
    g.op("Split", ["b_hv", g.const("hv_split", np.array([nh, nv], np.int64))], ["bh_t", "bv_t"], axis=1)
    if sampler.kind == "guided":
        return _guided(g, sampler, noise, nh, nv, proposal)
    parts = split_steps(g, noise, nh, nv, sampler.steps + 1)
    g.const("one", f32(1))
    if sampler.kind == "chain":
        return _chain(g, sampler, parts)
    return _sir(g, sampler, parts, nh, nv)


def _chain(g: Graph, sampler: Sampler, parts: list[str]) -> str:
    neg_t = g.op("Neg", ["temperature"], "neg_temperature")  # x / -T == -(x / T) exactly
    v = g.op("Mul", ["clamp_mask", "clamp_value"], "held")
    if sampler.start == "previous":
        free = g.op("Sub", ["one", "clamp_mask"], "free")
        v = g.op("Add", [v, g.op("Mul", [free, "v_prev"], "free_prev")], "v_start")
    k = sampler.steps
    for i in range(1, k + 1):
        h = sigmoid_step(g, v, "bh_t", parts[2 * i], neg_t, "one", f"h{i}", trans=0)
        v = sigmoid_step(g, h, "bv_t", parts[2 * i + 1], neg_t, "one", "v" if i == k else f"v{i}", trans=1)
    return v


def _per_chain(g: Graph, r: int, inputs: list[str], outputs: list[str], widths: list[int]) -> None:
    """Per-frame inputs [B, ...] repeated for the R chains (row b * R + r) and split into
    `outputs` of `widths` columns: one Concat, Expand, Reshape and Split for all of them."""
    both = g.op("Concat", inputs, "per_frame", axis=1)
    wide = g.op("Unsqueeze", [both, g.const("axis1", np.array([1], np.int64))], "per_frame_b3")
    wide = g.op("Expand", [wide, g.const("chains_shape", np.array([1, r, 1], np.int64))], "per_chain_b3")
    flat = g.op("Reshape", [wide, g.const("per_chain_shape", np.array([-1, sum(widths)], np.int64))], "per_chain")
    g.op("Split", [flat, g.const("per_chain_split", np.array(widths, np.int64))], outputs, axis=1)


def _base(g: Graph, sampler: Sampler, nv: int) -> str:
    """Each chain's base visible logits bv_t + free * (lean_r * (2 v_prev - 1)), [B*R, nv]:
    broadcast over [B, R, nv] (the leans are per chain), every product exact as in torch."""
    r = sampler.chains
    axis1 = "axis1"
    sign = g.op("Sub", [g.op("Mul", [g.const("two", f32(2)), "v_prev"], "prev_twice"), "one"], "prev_sign")
    sign = g.op("Unsqueeze", [sign, axis1], "prev_sign_b3")
    leans = g.const("leans", f32(sampler.leans()).reshape(1, r, 1))
    shift = g.op("Mul", [leans, sign], "lean_shift")
    free = g.op("Unsqueeze", [g.op("Sub", ["one", "clamp_mask"], "free"), axis1], "free_b3")
    shift = g.op("Mul", [free, shift], "lean_free")
    base = g.op("Add", [g.op("Unsqueeze", ["bv_t", axis1], "bv_b3"), shift], "base_b3")
    return g.op("Reshape", [base, g.const("rows_nv", np.array([-1, nv], np.int64))], "base")


def _log_g(g: Graph, a: str, out: str) -> str:
    """sum(free * softplus(a) + held * a) over the last axis, keeping it."""
    sp = g.op("Softplus", [a], out + "_sp")
    terms = g.op("Add", [g.op("Mul", ["free_r", sp], out + "_free"), g.op("Mul", ["held_r", a], out + "_held")],
                 out + "_terms")
    return g.op("ReduceSum", [terms, g.const("last_axis", np.array([-1], np.int64))], out, keepdims=1)


def _sir(g: Graph, sampler: Sampler, parts: list[str], nh: int, nv: int) -> str:
    r, k = sampler.chains, sampler.steps
    _per_chain(g, r, ["b_hv", "clamp_mask", "clamp_value", "temperature"],
               ["bh_r", "bv_r", "mask_r", "value_r", "T_r"], [nh, nv, nv, nv, 1])
    base = _base(g, sampler, nv)
    g.op("Sub", ["one", "mask_r"], "free_r")
    g.op("Mul", ["mask_r", "value_r"], "held_r")
    neg_t = g.op("Neg", ["T_r"], "neg_T_r")
    toward = g.op("Sub", ["bv_r", base], "toward")
    h = sigmoid_draw(g, "bh_r", parts[0], neg_t, "one", "h0")  # the base's hidden layer, exactly
    log_w = _log_g(g, g.op("Div", [base, "T_r"], "a_base"), "log_w0")
    for i in range(1, k + 1):
        betas = g.const(f"betas{i}", f32([(i - 1) / k, i / k]).reshape(2, 1, 1))
        y = g.op("Gemm", [h, "W"], f"y{i}", transB=1)
        t = g.op("Add", [toward, y], f"t{i}")
        scaled = g.op("Mul", [betas, g.op("Unsqueeze", [t, g.const("axis0", np.array([0], np.int64))], f"t{i}_b3")],
                      f"bt{i}")
        a01 = g.op("Div", [g.op("Add", [base, scaled], f"pre{i}"), "T_r"], f"a{i}")  # [2, rows, nv]
        logs = _log_g(g, a01, f"g{i}")
        step = g.op("ReduceSum", [g.op("Mul", [logs, g.const("minus_plus", f32([-1, 1]).reshape(2, 1, 1))],
                                       f"g{i}_signed"), "axis0"], f"dlog_w{i}", keepdims=0)
        log_w = g.op("Add", [log_w, step], f"log_w{i}")
        a1 = g.op("Gather", [a01, g.const("index1", np.array(1, np.int64))], f"a{i}_1", axis=0)
        v = _draw_visible(g, a1, parts[2 * i + 1], f"v{i}")
        if i < k:
            pre = g.op("Gemm", [v, "W", "bh_r"], f"hpre{i}", alpha=i / k)  # beta (v W) + bh
            h = sigmoid_draw(g, pre, parts[2 * i], neg_t, "one", f"h{i}")
    return _pick(g, r, nv, log_w, v, parts[2 * k])


def _draw_visible(g: Graph, a: str, noise: str, out: str) -> str:
    """noise < sigmoid(a), with sigmoid(a) = 1 / (1 + exp(-a))."""
    e = g.op("Exp", [g.op("Neg", [a], out + "_na")], out + "_exp")
    p = g.op("Reciprocal", [g.op("Add", [e, "one"], out + "_den")], out + "_p")
    return g.op("Cast", [g.op("Less", [noise, p], out + "_on")], out, to=1)


def _pick(g: Graph, r: int, nv: int, log_w: str, v: str, last_hidden_noise: str, out: str = "v") -> str:
    """The chain with the largest log weight + Gumbel(noise), per frame (Gumbel-max)."""
    u = g.op("Slice", [last_hidden_noise, g.const("zero_i", np.array([0], np.int64)),
                       g.const("one_i", np.array([1], np.int64)), "axis1"], "pick_u")
    gumbel = g.op("Neg", [g.op("Log", [g.op("Neg", [g.op("Log", [u], "pick_l1")], "pick_n1")], "pick_l2")], "gumbel")
    score = g.op("Add", [log_w, gumbel], "score")
    score = g.op("Reshape", [score, g.const("frames_chains", np.array([-1, r], np.int64))], "score_bf")
    best = g.op("ArgMax", [score], "best", axis=1, keepdims=1)  # the first of equals, as torch
    best = g.op("Unsqueeze", [best, g.const("axis2", np.array([2], np.int64))], "best_b3")
    best = g.op("Expand", [best, g.const("nv_shape", np.array([1, 1, nv], np.int64))], "best_nv")
    ends = g.op("Reshape", [v, g.const("frames_chains_nv", np.array([-1, r, nv], np.int64))], "ends")
    chosen = g.op("GatherElements", [ends, best], "chosen", axis=1)
    return g.op("Reshape", [chosen, "rows_nv"], out)


def _guided(g: Graph, sampler: Sampler, noise: str, nh: int, nv: int, proposal: dict[str, np.ndarray]) -> str:
    """export/sampler.py's _guided: R candidates from the proposal, weighed, one picked, K sweeps."""
    r, k = sampler.chains, sampler.steps
    g.const("one", f32(1))
    free = g.op("Sub", ["one", "clamp_mask"], "free")
    held = g.op("Mul", ["clamp_mask", "clamp_value"], "held")
    inputs = g.op("Concat", ["u_prev", "v_prev"], "uv_prev", axis=1)
    a = g.op("Gemm", [inputs, g.const("P", f32(proposal["P"])), g.const("pb", f32(proposal["pb"]))], "proposal")
    c = g.op("Sub", ["bv_t", g.op("Mul", [free, a], "free_proposal")], "weight_bias")
    _per_chain(g, r, [a, c, "bh_t", free, held, "temperature"],
               ["a_r", "c_r", "bh_r", "free_r", "held_r", "T_r"], [nv, nv, nh, nv, nv, 1])
    g.op("Split", [noise, g.const("noise_split", np.array([r * (nv + 1), k * (nh + nv)], np.int64))],
         ["candidate_noise", "sweep_noise"], axis=1)
    rows = g.op("Reshape", ["candidate_noise", g.const("candidate_shape", np.array([-1, nv + 1], np.int64))],
                "candidate_rows")
    g.op("Split", [rows, g.const("candidate_split", np.array([nv, 1], np.int64))], ["candidate_u", "gumbel_u"], axis=1)
    on = sigmoid_draw(g, "a_r", "candidate_u", g.op("Neg", ["T_r"], "neg_T_r"), "one", "candidate_on")
    x = g.op("Add", ["held_r", g.op("Mul", ["free_r", on], "candidate_free")], "candidate")
    last = g.const("last_axis", np.array([-1], np.int64))
    linear = g.op("Div", [g.op("ReduceSum", [g.op("Mul", [x, "c_r"], "linear_terms"), last], "linear_sum",
                               keepdims=1), "T_r"], "linear")
    pre = g.op("Div", [g.op("Gemm", [x, "W", "bh_r"], "candidate_hpre"), "T_r"], "candidate_hpre_t")
    log_w = g.op("Add", [linear, _softplus_sum(g, pre, nh)], "log_w")
    g.const("rows_nv", np.array([-1, nv], np.int64))
    v = _pick(g, r, nv, log_w, x, "gumbel_u", out="picked")
    parts = split_steps(g, "sweep_noise", nh, nv, k)
    neg_t = g.op("Neg", ["temperature"], "neg_temperature")
    for i in range(1, k + 1):
        h = sigmoid_step(g, v, "bh_t", parts[2 * i - 2], neg_t, "one", f"h{i}", trans=0)
        drawn = sigmoid_step(g, h, "bv_t", parts[2 * i - 1], neg_t, "one", f"v{i}_drawn", trans=1)
        v = g.op("Add", [held, g.op("Mul", [free, drawn], f"v{i}_free")], "v" if i == k else f"v{i}")
    return v


def _softplus_sum(g: Graph, x: str, nh: int) -> str:
    """export/sampler.py's softplus_sum: relu(x) + log(1 + exp(-|x|)), one Log per group."""
    group = softplus_group(nh)
    last = "last_axis"
    factors = g.op("Add", [g.op("Exp", [g.op("Neg", [g.op("Abs", [x], "sp_abs")], "sp_neg")], "sp_exp"), "one"],
                   "sp_factor")
    grouped = g.op("Reshape", [factors, g.const("sp_groups", np.array([0, -1, group], np.int64))], "sp_grouped")
    logs = g.op("Log", [g.op("ReduceProd", [grouped], "sp_prod", axes=[-1], keepdims=0)], "sp_log")
    relu = g.op("ReduceSum", [g.op("Relu", [x], "sp_relu"), last], "sp_relu_sum", keepdims=1)
    return g.op("Add", [relu, g.op("ReduceSum", [logs, last], "sp_log_sum", keepdims=1)], "sp_sum")
