"""Building blocks of the ONNX step graphs (step_graph.py, sampler_graph.py): a node
collector, and the sampling step both graph designs share."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class Graph:
    """Collects nodes and initializers; names every node after its output."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names: set[str] = set()

    def const(self, name: str, value) -> str:
        """An initializer, added once: a later call with the same name reuses it."""
        if name not in self._names:
            self._names.add(name)
            self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], output: str | list[str], **attrs) -> str:
        outputs = [output] if isinstance(output, str) else output
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=outputs[0], **attrs))
        return outputs[0]


def f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def split_steps(g: Graph, tensor: str, nh: int, nv: int, k: int) -> list[str]:
    """[B, K, nh+nv] (or [B, R, K, nh+nv], rows B*R) -> 2K tensors [rows, nh], [rows, nv], ...
    with one Reshape and one Split."""
    flat = g.op("Reshape", [tensor, g.const(tensor + "_flat_shape", np.array([-1, k * (nh + nv)], np.int64))],
                tensor + "_flat")
    names = [f"{tensor}_{part}{i}" for i in range(k) for part in ("h", "v")]
    g.op("Split", [flat, g.const(tensor + "_step_split", np.array([nh, nv] * k, np.int64))], names, axis=1)
    return names


def sigmoid_draw(g: Graph, pre: str, noise: str, neg_t: str, one: str, out: str) -> str:
    """noise < sigmoid(pre / T) as 0/1 floats, with sigmoid(x) = 1 / (1 + exp(x / -T))."""
    z = g.op("Div", [pre, neg_t], out + "_z")
    e = g.op("Exp", [z], out + "_exp")
    p = g.op("Reciprocal", [g.op("Add", [e, one], out + "_den")], out + "_p")
    on = g.op("Less", [noise, p], out + "_on")
    return g.op("Cast", [on], out, to=TensorProto.FLOAT)


def sigmoid_step(g: Graph, x: str, bias: str, noise: str, neg_t: str, one: str, out: str, trans: int) -> str:
    """One layer of a Gibbs sweep: noise < sigmoid((x W + bias) / T) (x W^T with trans=1)."""
    pre = g.op("Gemm", [x, "W", bias], out + "_pre", transB=trans)
    return sigmoid_draw(g, pre, noise, neg_t, one, out)
