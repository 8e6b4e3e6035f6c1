"""Runners: one onnxruntime session (and its bound buffers) per execution provider.

`CpuRunner` binds numpy buffers once and refills the noise from a seeded numpy generator.
`DeviceRunner` keeps the state on the GPU: a small second graph draws the noise there
(RandomUniform) and carries u_t over to u_prev, and the step graph is replayed as a CUDA
graph. The runtime cannot depend on the onnx package, so that second graph is written as
protobuf bytes by the few helpers at the end.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import io
import os
import struct
from pathlib import Path

import numpy as np
import onnxruntime as ort

from rnnrbm_live.errors import UserError
from rnnrbm_live.model.card import StepModel

DEVICES = ("auto", "cpu", "cuda")
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
WARM_UP_STEPS = 3  # onnxruntime captures a CUDA graph after a couple of ordinary runs


def session_options(threads: int = 1) -> ort.SessionOptions:
    """Options for a latency-bound graph of small nodes: one sequential stream and every
    graph optimization (in the "threshold" graph it fuses each Gemm with its HardSigmoid)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads > 1:  # spinning threads would steal the cores of a DAW running beside us
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


# --- runners: one provider each -------------------------------------------------------------

def open_runner(model: StepModel, batch: int, device: str, seed: int | None,
                threads: int) -> tuple["CpuRunner | DeviceRunner", str]:
    """The runner for `device`, and a note saying why "auto" did not get the GPU."""
    if device not in DEVICES:
        raise UserError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "cpu":
        return CpuRunner(model, batch, seed, threads), ""
    reason = cuda_unavailable_reason()
    if reason is None:
        try:
            return DeviceRunner(model, batch, seed, threads, "cuda"), ""
        except CudaUnavailable as e:
            reason = str(e)
    if device == "cuda":
        raise UserError(f"cuda was asked for but onnxruntime's CUDAExecutionProvider is not available "
                        f"({reason}); use --device cpu or install onnxruntime-gpu with CUDA 12/13")
    return CpuRunner(model, batch, seed, threads), f"no cuda: {reason}; running on the cpu"


class CudaUnavailable(Exception):
    """The CUDA provider could not run the model; the message says why, for the user."""


def cuda_unavailable_reason() -> str | None:
    """None when onnxruntime's CUDA provider library loads, else a short reason. Loading
    it here first keeps onnxruntime from logging a multi-line error of its own."""
    if CUDA not in ort.get_available_providers():
        return f"this onnxruntime {ort.__version__} is built without it"
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:  # onnxruntime-gpu >= 1.21: finds the CUDA pip packages
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(Exception):
            preload()
    name = "onnxruntime_providers_cuda.dll" if os.name == "nt" else "libonnxruntime_providers_cuda.so"
    try:
        ctypes.CDLL(str(Path(ort.__file__).parent / "capi" / name))
    except OSError as e:
        return _first_line(e)
    return None


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:160] if text else type(error).__name__


def _float32(shape: tuple[int, ...], fill: float = 0.0) -> np.ndarray:
    return np.full(shape, fill, dtype=np.float32)


def initial_state(model: StepModel, batch: int) -> np.ndarray:
    """[batch, state_size]: u0, then (version 2) silence as the previous frame."""
    state = _float32((batch, model.state_size))
    state[:, :model.n_recurrent] = model.u0
    return state


class CpuRunner:
    """The step graph on the CPU provider, its inputs and outputs bound once to numpy
    buffers. Two bindings alternate the state buffers (u_t of one step is u_prev of the
    next, and for a version 2 model v_t is v_prev) so that the state is never copied."""

    def __init__(self, model: StepModel, batch: int, seed: int | None, threads: int) -> None:
        self.session = ort.InferenceSession(str(model.onnx_path), session_options(threads), providers=[CPU])
        self.provider = self.session.get_providers()[0]
        self._rng = np.random.default_rng(seed)
        self._nu, self._previous = model.n_recurrent, model.takes_previous
        self.noise = _float32((batch, *model.noise_shape))
        self.clamp_mask = _float32((batch, model.n_visible))
        self.clamp_value = _float32((batch, model.n_visible))
        self.temperature = _float32((batch, 1), 1.0)
        start = initial_state(model, batch)
        self._u = [np.ascontiguousarray(start[:, :self._nu]), _float32((batch, model.n_recurrent))]
        self._v = [np.ascontiguousarray(start[:, self._nu:]) if self._previous else _float32((batch, model.n_visible)),
                   _float32((batch, model.n_visible))]
        self._bindings = [self._bind(0), self._bind(1)]
        self._current = 0  # which of self._u (and self._v) holds the state

    def _bind(self, i: int) -> ort.IOBinding:
        binding = self.session.io_binding()
        inputs = {"u_prev": self._u[i], "noise": self.noise, "clamp_mask": self.clamp_mask,
                  "clamp_value": self.clamp_value, "temperature": self.temperature}
        if self._previous:
            inputs["v_prev"] = self._v[i]
        for name, array in inputs.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array))
        binding.bind_ortvalue_output("v", ort.OrtValue.ortvalue_from_numpy(self._v[1 - i]))
        binding.bind_ortvalue_output("u", ort.OrtValue.ortvalue_from_numpy(self._u[1 - i]))
        return binding

    def step(self) -> np.ndarray:
        self._rng.random(out=self.noise, dtype=np.float32)
        self.session.run_with_iobinding(self._bindings[self._current])
        self._current = 1 - self._current
        return self._v[self._current]

    def get_state(self) -> np.ndarray:
        u = self._u[self._current]
        return np.concatenate([u, self._v[self._current]], axis=1) if self._previous else u.copy()

    def set_state(self, state: np.ndarray) -> None:
        self._u[self._current][:] = state[:, :self._nu]
        if self._previous:
            self._v[self._current][:] = state[:, self._nu:]

    def get_noise_state(self) -> dict:
        return copy.deepcopy(self._rng.bit_generator.state)

    def set_noise_state(self, state: dict) -> None:
        self._rng.bit_generator.state = copy.deepcopy(state)


class DeviceRunner:
    """The step graph on a device whose memory holds every input and output. A small
    second graph ("prep") draws the noise on the device and copies u_t into u_prev, so
    only the clamps (when they change), the temperatures and the frame cross to the host.
    On cuda the step graph is captured once and replayed as a CUDA graph, which needs
    fixed buffer addresses: hence the copy rather than alternating buffers."""

    def __init__(self, model: StepModel, batch: int, seed: int | None, threads: int, device: str) -> None:
        provider = CUDA if device == "cuda" else CPU
        options = {"device_id": "0"} if device == "cuda" else {}
        try:
            self.session = ort.InferenceSession(str(model.onnx_path), session_options(threads), providers=[
                (provider, {**options, "enable_cuda_graph": "1"} if device == "cuda" else options)])
            self.prep = ort.InferenceSession(prep_graph(batch, model, seed), session_options(threads),
                                             providers=[(provider, options)])
        except Exception as e:  # onnxruntime's pybind errors
            raise CudaUnavailable(f"onnxruntime failed to set it up: {_first_line(e)}") from None
        for s in (self.session, self.prep):
            if s.get_providers()[0] != provider:
                raise CudaUnavailable("onnxruntime could not start it on this machine; see its log above")
        self.provider = provider
        self._nu, self._previous = model.n_recurrent, model.takes_previous
        shapes = {"u_prev": (batch, model.n_recurrent), "noise": (batch, *model.noise_shape),
                  "clamp_mask": (batch, model.n_visible), "clamp_value": (batch, model.n_visible),
                  "temperature": (batch, 1), "v": (batch, model.n_visible), "u": (batch, model.n_recurrent),
                  **({"v_prev": (batch, model.n_visible)} if self._previous else {})}
        self._dev = {n: ort.OrtValue.ortvalue_from_shape_and_type(s, np.float32, device, 0) for n, s in shapes.items()}
        self.clamp_mask, self.clamp_value = _float32(shapes["clamp_mask"]), _float32(shapes["clamp_value"])
        self.temperature = _float32(shapes["temperature"], 1.0)
        self._sent: dict[str, np.ndarray] = {}
        self.set_state(initial_state(model, batch))
        previous = ["v_prev"] if self._previous else []
        self._binding = self._bind(self.session, ["u_prev", *previous, "noise", "clamp_mask", "clamp_value",
                                                  "temperature"], {"v": "v", "u": "u"})
        self._prep_binding = self._bind(self.prep, [], {"u_prev": "u_prev", "noise": "noise", **{p: p for p in previous}},
                                        {"u_state": "u", **({"v_state": "v"} if previous else {})})
        self._warm_up(initial_state(model, batch))

    def _warm_up(self, start: np.ndarray) -> None:
        """A few steps now, so that the CUDA graph is captured (or fails) here and not in a
        live step; then back to the start (u0, and silence before it)."""
        try:
            for _ in range(WARM_UP_STEPS):
                self.step()
        except Exception as e:  # onnxruntime's pybind errors
            raise CudaUnavailable(f"its first steps failed: {_first_line(e)}") from None
        self.set_state(start)

    def _bind(self, session: ort.InferenceSession, inputs: list[str], outputs: dict[str, str],
              renamed: dict[str, str] | None = None) -> ort.IOBinding:
        binding = session.io_binding()
        for name, buffer in {**{n: n for n in inputs}, **(renamed or {})}.items():
            binding.bind_ortvalue_input(name, self._dev[buffer])
        for name, buffer in outputs.items():
            binding.bind_ortvalue_output(name, self._dev[buffer])
        return binding

    def _upload(self, name: str, host: np.ndarray) -> None:
        """Host -> device only when the values changed since the last upload."""
        last = self._sent.get(name)
        if last is None or not np.array_equal(last, host):
            self._dev[name].update_inplace(host)
            self._sent[name] = host.copy()

    def step(self) -> np.ndarray:
        for name in ("clamp_mask", "clamp_value", "temperature"):
            self._upload(name, getattr(self, name))
        self.prep.run_with_iobinding(self._prep_binding)
        self._prep_binding.synchronize_outputs()  # the two sessions may run on different streams
        self.session.run_with_iobinding(self._binding)
        self._binding.synchronize_outputs()
        return self._dev["v"].numpy()

    def get_state(self) -> np.ndarray:
        u = self._dev["u"].numpy()
        return np.concatenate([u, self._dev["v"].numpy()], axis=1) if self._previous else u

    def set_state(self, state: np.ndarray) -> None:
        self._dev["u"].update_inplace(np.ascontiguousarray(state[:, :self._nu], dtype=np.float32))
        if self._previous:
            self._dev["v"].update_inplace(np.ascontiguousarray(state[:, self._nu:], dtype=np.float32))

    def get_noise_state(self) -> dict:
        raise UserError("the noise of a gpu session is drawn on the gpu and cannot be rewound; "
                        "use device='cpu' to replay a look-ahead")

    def set_noise_state(self, state: dict) -> None:
        self.get_noise_state()


# --- the prep graph, written without the onnx package (not a runtime dependency) ------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _msg(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + _varint(len(payload)) + payload


def _int(field: int, value: int) -> bytes:
    return _key(field, 0) + _varint(value)


def _str(field: int, text: str) -> bytes:
    return _msg(field, text.encode())


def _tensor_info(name: str, shape: tuple[int, ...]) -> bytes:
    """ValueInfoProto: name, TypeProto.tensor_type {elem_type FLOAT=1, shape}."""
    dims = b"".join(_msg(1, _int(1, d)) for d in shape)
    return _str(1, name) + _msg(2, _msg(1, _int(1, 1) + _msg(2, dims)))


def _node(op: str, inputs: list[str], outputs: list[str], attributes: bytes = b"") -> bytes:
    body = b"".join(_str(1, i) for i in inputs) + b"".join(_str(2, o) for o in outputs)
    return _msg(1, body + _str(3, outputs[0]) + _str(4, op) + attributes)


def prep_graph(batch: int, model: StepModel, seed: int | None) -> bytes:
    """ModelProto (opset 17): u_state -> u_prev (a copy), for a version 2 model v_state ->
    v_prev too, and noise (RandomUniform [0, 1))."""
    shape = (batch, *model.noise_shape)
    attributes = _msg(5, _str(1, "shape") + b"".join(_int(8, d) for d in shape) + _int(20, 7))  # INTS
    if seed is not None:  # a float attribute: keep it exact in float32
        seed_f = float(np.random.default_rng(seed).integers(1 << 24))
        attributes += _msg(5, _str(1, "seed") + _key(2, 5) + struct.pack("<f", seed_f) + _int(20, 1))  # FLOAT
    nodes = _node("Identity", ["u_state"], ["u_prev"]) + _node("RandomUniform", [], ["noise"], attributes)
    u_shape, v_shape = (batch, model.n_recurrent), (batch, model.n_visible)
    graph = (nodes + _str(2, "rnnrbm_prep") + _msg(11, _tensor_info("u_state", u_shape))
             + _msg(12, _tensor_info("u_prev", u_shape)) + _msg(12, _tensor_info("noise", shape)))
    if model.takes_previous:
        graph = (_node("Identity", ["v_state"], ["v_prev"]) + graph + _msg(11, _tensor_info("v_state", v_shape))
                 + _msg(12, _tensor_info("v_prev", v_shape)))
    return _int(1, 8) + _str(2, "rnnrbm-live") + _msg(7, graph) + _msg(8, _str(1, "") + _int(2, 17))
