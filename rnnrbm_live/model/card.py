"""Loading an exported model: its `.onnx` step graph and the `.onnx.json` card beside it.

A model is named either by a bundled name ("nottingham") or by a path (STEM, STEM.onnx or
STEM.onnx.json). The card is checked against the graph itself before anything runs it, so
a card copied next to the wrong graph, or a graph from another contract version, is refused
with one line naming the file and the field rather than failing later inside onnxruntime.
The contract is ../shared/docs/step-contract.md (version 1).
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from rnnrbm_live.bundled import bundled_names, bundled_path
from rnnrbm_live.errors import UserError

FORMAT = "rnnrbm-step/1"
INPUT_NAMES = ("u_prev", "noise", "clamp_mask", "clamp_value", "temperature")
OUTPUT_NAMES = ("v", "u")
BATCH = "B"  # the name of the dynamic batch dimension in the graph and the card
_SIZE_FIELDS = ("n_visible", "n_hidden", "n_recurrent", "gibbs_steps", "frames_per_beat")


def contract_shapes(n_visible: int, n_hidden: int, n_recurrent: int,
                    gibbs_steps: int) -> tuple[dict[str, list], dict[str, list]]:
    """The contract's graph inputs and outputs, name -> shape, with "B" the batch."""
    inputs = {"u_prev": [BATCH, n_recurrent], "noise": [BATCH, gibbs_steps, n_hidden + n_visible],
              "clamp_mask": [BATCH, n_visible], "clamp_value": [BATCH, n_visible], "temperature": [BATCH, 1]}
    outputs = {"v": [BATCH, n_visible], "u": [BATCH, n_recurrent]}
    return inputs, outputs


@dataclass(frozen=True)
class StepModel:
    """An exported model whose card agrees with its graph; what a session needs to run it."""

    name: str
    onnx_path: Path
    card_path: Path
    n_visible: int
    n_hidden: int
    n_recurrent: int
    gibbs_steps: int
    lowest_pitch: int
    frames_per_beat: int
    u0: np.ndarray = field(repr=False)  # float32 [n_recurrent]
    card: dict = field(repr=False, compare=False)

    @property
    def noise_size(self) -> int:
        """Uniform draws per Gibbs step and stream: the hidden units, then the visible ones."""
        return self.n_hidden + self.n_visible

    @property
    def learned_in_c(self) -> bool:
        """Whether the model learned music moved to C (card `transposed_to`), so what it
        listens to must be moved to C and what it plays moved back."""
        return str(self.card.get("transposed_to") or "").lower().startswith("c")

    def summary(self) -> str:
        return (f"{self.name} ({self.n_visible} keys from MIDI {self.lowest_pitch}, "
                f"{self.n_hidden} hidden, {self.n_recurrent} recurrent, {self.gibbs_steps} Gibbs steps)")


def load_model(spec: str | Path) -> StepModel:
    """A bundled model by name, or an exported one by path; its card checked against its graph."""
    name, onnx_path, card_path = resolve(spec)
    if not onnx_path.is_file():
        raise UserError(f"{onnx_path}: no such model file; export one with rnnrbm-export "
                        f"or use a bundled model ({_bundled_list()})")
    if not card_path.is_file():
        raise UserError(f"{card_path}: the model card is missing beside {onnx_path.name}; "
                        f"re-export the model with rnnrbm-export")
    card = read_card(card_path)
    sizes = check_card(card, card_path)
    check_graph(onnx_path, card_path, card, sizes)
    return StepModel(name=name, onnx_path=onnx_path, card_path=card_path, **sizes,
                     u0=np.asarray(card["u0"], dtype=np.float32), card=card)


def resolve(spec: str | Path) -> tuple[str, Path, Path]:
    """(name, .onnx path, .onnx.json path) of a bundled name or a path."""
    text = str(spec)
    if isinstance(spec, str) and _looks_like_name(text) and not Path(text + ".onnx").exists():
        path = bundled_path(text)
        if path is None:
            raise UserError(f"unknown model {text!r}: bundled models are {_bundled_list()}; "
                            f"or give the path of an exported model (STEM, STEM.onnx or STEM.onnx.json)")
        return text, path, path.with_name(path.name + ".json")
    stem = text.removesuffix(".json").removesuffix(".onnx")
    return Path(stem).name, Path(stem + ".onnx"), Path(stem + ".onnx.json")


def _looks_like_name(text: str) -> bool:
    return bool(text) and "/" not in text and "\\" not in text and not text.endswith((".onnx", ".json"))


def _bundled_list() -> str:
    names = bundled_names()
    return ", ".join(names) if names else "none in this install"


def read_card(card_path: Path) -> dict:
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{card_path}: not a model card ({e}); re-export the model with rnnrbm-export") from None
    if not isinstance(card, dict):
        raise UserError(f"{card_path}: not a model card (not a json object); re-export the model with rnnrbm-export")
    return card


def check_card(card: dict, card_path: Path) -> dict:
    """The card's sizes, after checking its format and fields; UserError names the field."""
    fmt = card.get("format")
    if fmt != FORMAT:
        raise UserError(f"{card_path}: format is {fmt!r} but this rnnrbm-live reads {FORMAT!r}; "
                        f"re-export the model or update rnnrbm-live")
    sizes = {key: _positive_int(card, key, card_path) for key in _SIZE_FIELDS}
    pitch = card.get("lowest_pitch")
    if not _is_int(pitch) or not 0 <= pitch <= 127 - sizes["n_visible"] + 1:
        raise UserError(f"{card_path}: lowest_pitch is {pitch!r}, not a MIDI note that leaves room for "
                        f"{sizes['n_visible']} keys; re-export the model")
    sizes["lowest_pitch"] = pitch
    u0 = card.get("u0")
    if (not isinstance(u0, list) or len(u0) != sizes["n_recurrent"]
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in u0)):
        got = f"{len(u0)} values" if isinstance(u0, list) else repr(u0)
        raise UserError(f"{card_path}: u0 should be {sizes['n_recurrent']} numbers (n_recurrent) but is {got}; "
                        f"re-export the model")
    return sizes


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(card: dict, key: str, card_path: Path) -> int:
    value = card.get(key)
    if not _is_int(value) or value < 1:
        what = "missing" if key not in card else f"{value!r}"
        raise UserError(f"{card_path}: {key} is {what}, not a positive integer; re-export the model")
    return value


def graph_io(onnx_path: Path) -> tuple[dict[str, tuple[list, str]], dict[str, tuple[list, str]]]:
    """The graph's inputs and outputs, name -> (shape, type), as onnxruntime reads them."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4  # the one-line UserError below says it better
    try:
        # onnxruntime prints "EP Error ... Falling back" on stdout for a damaged file
        with contextlib.redirect_stdout(io.StringIO()):
            session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own pybind types (InvalidProtobuf, Fail, ...)
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise UserError(f"{onnx_path}: not a loadable onnx model ({reason}); re-export it with rnnrbm-export") from None
    return ({a.name: (list(a.shape), a.type) for a in session.get_inputs()},
            {a.name: (list(a.shape), a.type) for a in session.get_outputs()})


def check_graph(onnx_path: Path, card_path: Path, card: dict, sizes: dict) -> None:
    """Refuse a graph whose inputs and outputs disagree with the contract or with the card."""
    inputs, outputs = graph_io(onnx_path)
    for kind, names, found in (("input", INPUT_NAMES, inputs), ("output", OUTPUT_NAMES, outputs)):
        if sorted(found) != sorted(names):
            raise UserError(f"{onnx_path}: the graph's {kind}s are {', '.join(found)}, not {', '.join(names)}; "
                            f"it is not an {FORMAT} model, re-export it with rnnrbm-export")
        for name, (_, dtype) in found.items():
            if dtype != "tensor(float)":
                raise UserError(f"{onnx_path}: the graph's {name} {kind} is {dtype}, not float32; re-export the model")
    _check_sizes(card_path, sizes, {**inputs, **outputs})
    _check_listed_io(card_path, card, inputs, outputs)


def _dim(shapes: dict, name: str, axis: int):
    shape = shapes[name][0]
    return shape[axis] if len(shape) > axis else None


def _check_sizes(card_path: Path, sizes: dict, shapes: dict) -> None:
    nv, nh, nu, k = sizes["n_visible"], sizes["n_hidden"], sizes["n_recurrent"], sizes["gibbs_steps"]
    for name, want in (("u_prev", 2), ("noise", 3), ("clamp_mask", 2), ("clamp_value", 2), ("temperature", 2),
                       ("v", 2), ("u", 2)):
        if len(shapes[name][0]) != want:
            raise UserError(f"{card_path}: the graph's {name} has shape {shapes[name][0]}, not {want}-d as "
                            f"the contract says; re-export the model")
    checks = (
        ("n_visible", nv, "clamp_mask", _dim(shapes, "clamp_mask", 1), ""),
        ("n_visible", nv, "clamp_value", _dim(shapes, "clamp_value", 1), ""),
        ("n_visible", nv, "v", _dim(shapes, "v", 1), ""),
        ("n_recurrent", nu, "u_prev", _dim(shapes, "u_prev", 1), ""),
        ("n_recurrent", nu, "u", _dim(shapes, "u", 1), ""),
        ("gibbs_steps", k, "noise", _dim(shapes, "noise", 1), " steps"),
    )
    for field_name, value, graph_name, got, unit in checks:
        if got != value:
            raise UserError(f"{card_path}: {field_name} is {value} but the graph's {graph_name} has {got}{unit}; "
                            f"re-export the model")
    width = _dim(shapes, "noise", 2)
    if not isinstance(width, int) or width - nv != nh:
        hidden = f"{width}-{nv}={width - nv}" if isinstance(width, int) else repr(width)
        raise UserError(f"{card_path}: n_hidden is {nh} but the graph's noise input has {hidden}; re-export the model")
    if _dim(shapes, "temperature", 1) != 1:
        raise UserError(f"{card_path}: the graph's temperature input has shape {shapes['temperature'][0]}, "
                        f"not [B, 1]; re-export the model")


def _check_listed_io(card_path: Path, card: dict, inputs: dict, outputs: dict) -> None:
    """The card's optional "inputs"/"outputs" lists must describe this graph too."""
    for key, found in (("inputs", inputs), ("outputs", outputs)):
        listed = card.get(key)
        if listed is None:
            continue
        try:
            described = {item["name"]: item["shape"] for item in listed}
        except (TypeError, KeyError):
            raise UserError(f"{card_path}: {key} is not a list of {{name, shape}}; re-export the model") from None
        for name, (shape, _) in found.items():
            want = described.get(name)
            if want is None or len(want) != len(shape) or any(
                    isinstance(w, int) and w != g for w, g in zip(want, shape)):
                raise UserError(f"{card_path}: {key} lists {name} as {want} but the graph has {shape}; "
                                f"re-export the model")
