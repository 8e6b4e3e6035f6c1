"""Loading an exported model: its `.onnx` step graph and the `.onnx.json` card beside it.

A model is named either by a bundled name ("nottingham") or by a path (STEM, STEM.onnx or
STEM.onnx.json). The card is checked against the graph itself before anything runs it, so
a card copied next to the wrong graph, or a graph from another contract version, is refused
with one line naming the file and the field rather than failing later inside onnxruntime.
The contract is docs/step-contract.md: version 2 (a sampler with R chains and the previous
frame as an input), and version 1 (one chain from silence), which keeps loading.
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

FORMAT_V1 = "rnnrbm-step/1"
FORMAT = "rnnrbm-step/2"  # what rnnrbm-export writes
FORMATS = (FORMAT, FORMAT_V1)
INPUT_NAMES_V1 = ("u_prev", "noise", "clamp_mask", "clamp_value", "temperature")
INPUT_NAMES = ("u_prev", "v_prev", "noise", "clamp_mask", "clamp_value", "temperature")
OUTPUT_NAMES = ("v", "u")
SAMPLER_KINDS = ("chain", "sir", "guided")
BATCH = "B"  # the name of the dynamic batch dimension in the graph and the card
_SIZE_FIELDS = ("n_visible", "n_hidden", "n_recurrent", "gibbs_steps", "frames_per_beat")


def contract_shapes(n_visible: int, n_hidden: int, n_recurrent: int, gibbs_steps: int,
                    chains: int | None = None, guided: bool = False) -> tuple[dict[str, list], dict[str, list]]:
    """The contract's graph inputs and outputs, name -> shape, with "B" the batch: version 2
    with `chains` (R; noise [B, R, K + 1, n_h + n_v], or for the guided sampler
    [B, R (n_v + 1) + K (n_h + n_v)]), else version 1 (noise [B, K, n_h + n_v])."""
    width = n_hidden + n_visible
    if chains is None:
        noise = [BATCH, gibbs_steps, width]
    elif guided:
        noise = [BATCH, guided_noise_size(n_visible, n_hidden, gibbs_steps, chains)]
    else:
        noise = [BATCH, chains, gibbs_steps + 1, width]
    inputs = {"u_prev": [BATCH, n_recurrent], **({} if chains is None else {"v_prev": [BATCH, n_visible]}),
              "noise": noise,
              "clamp_mask": [BATCH, n_visible], "clamp_value": [BATCH, n_visible], "temperature": [BATCH, 1]}
    outputs = {"v": [BATCH, n_visible], "u": [BATCH, n_recurrent]}
    return inputs, outputs


def sampler_kind(card: dict):
    """A version 2 card's sampler kind ("chain", "sir", "guided"); None for version 1."""
    sampler = card.get("sampler")
    return sampler.get("kind") if isinstance(sampler, dict) else None


def guided_noise_size(n_visible: int, n_hidden: int, steps: int, candidates: int) -> int:
    """A guided step's uniforms per frame: each candidate's visible draws and its Gumbel
    draw, then each sweep's hidden and visible draws."""
    return candidates * (n_visible + 1) + steps * (n_hidden + n_visible)


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
    chains: int | None = None  # R of a version 2 model; None: version 1

    @property
    def version(self) -> int:
        return 1 if self.chains is None else 2

    @property
    def noise_size(self) -> int:
        """Uniform draws per Gibbs step and stream: the hidden units, then the visible ones."""
        return self.n_hidden + self.n_visible

    @property
    def noise_shape(self) -> tuple[int, ...]:
        """The noise input of one stream: [K, n_h + n_v] (v1), [R, K + 1, n_h + n_v] (v2), or
        [R (n_v + 1) + K (n_h + n_v)] (v2, guided)."""
        if self.chains is None:
            return self.gibbs_steps, self.noise_size
        if self.guided:
            return (guided_noise_size(self.n_visible, self.n_hidden, self.gibbs_steps, self.chains),)
        return self.chains, self.gibbs_steps + 1, self.noise_size

    @property
    def guided(self) -> bool:
        """Whether the step draws with the guided sampler (its noise is one flat row)."""
        return sampler_kind(self.card) == "guided"

    @property
    def takes_previous(self) -> bool:
        """Whether the graph reads the previous frame (v_prev): every version 2 model."""
        return self.chains is not None

    @property
    def state_size(self) -> int:
        """Width of a stream's state: u, then (version 2) the previous frame."""
        return self.n_recurrent + (self.n_visible if self.takes_previous else 0)

    @property
    def learned_in_c(self) -> bool:
        """Whether the model learned music moved to C (card `transposed_to`), so what it
        listens to must be moved to C and what it plays moved back."""
        return str(self.card.get("transposed_to") or "").lower().startswith("c")

    def summary(self) -> str:
        sampler = f"{self.gibbs_steps} Gibbs steps" if self.chains is None else self.sampler_label()
        return (f"{self.name} ({self.n_visible} keys from MIDI {self.lowest_pitch}, "
                f"{self.n_hidden} hidden, {self.n_recurrent} recurrent, {sampler})")

    def sampler_label(self) -> str:
        kind = sampler_kind(self.card)
        if kind == "sir":
            return f"{self.chains} annealed chains of {self.gibbs_steps} steps"
        if kind == "guided":
            return f"{self.chains} guided candidates, then {self.gibbs_steps} sweeps"
        return f"a chain of {self.gibbs_steps} steps from {self.card['sampler'].get('start', 'silence')}"


def load_model(spec: str | Path) -> StepModel:
    """A bundled model by name, or an exported one by path; its card checked against its graph."""
    name, onnx_path, card_path = resolve(spec)
    if not onnx_path.is_file():
        raise UserError(_not_a_model(str(spec), onnx_path))
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
    if isinstance(spec, str) and _looks_like_name(text) and not Path(text + ".onnx").exists() \
            and not Path(text).is_file():
        path = bundled_path(text)
        if path is None:
            raise UserError(f"unknown model {text!r}: bundled models are {_bundled_list()}; "
                            f"or give the path of an exported model (STEM, STEM.onnx or STEM.onnx.json)")
        return text, path, path.with_name(path.name + ".json")
    stem = text.removesuffix(".json").removesuffix(".onnx")
    return Path(stem).name, Path(stem + ".onnx"), Path(stem + ".onnx.json")


def _not_a_model(given: str, onnx_path: Path) -> str:
    """The path the user gave, not only the .onnx path it led to."""
    if Path(given).is_file():
        return (f"{given}: not an exported model; give the STEM.onnx that rnnrbm-export "
                f"wrote (its card STEM.onnx.json beside it) or a bundled model ({_bundled_list()})")
    if given in (str(onnx_path), f"{onnx_path}.json") or not Path(given).suffix:  # the 3 forms
        named = f"{onnx_path}: no such model file"
    else:
        named = f"{given}: no such model file (nor {onnx_path})"
    return f"{named}; export one with rnnrbm-export or use a bundled model ({_bundled_list()})"


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
    if fmt not in FORMATS:
        raise UserError(f"{card_path}: format is {fmt!r} but this rnnrbm-live reads {' and '.join(map(repr, FORMATS))}; "
                        f"re-export the model or update rnnrbm-live")
    sizes = {key: _positive_int(card, key, card_path) for key in _SIZE_FIELDS}
    sizes["chains"] = _sampler_chains(card, card_path, sizes["gibbs_steps"]) if fmt == FORMAT else None
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


def _sampler_chains(card: dict, card_path: Path, steps: int) -> int:
    """A version 2 card's sampler: its kind, and its steps agreeing with gibbs_steps; R."""
    sampler = card.get("sampler")
    if not isinstance(sampler, dict) or sampler.get("kind") not in SAMPLER_KINDS:
        got = sampler.get("kind") if isinstance(sampler, dict) else sampler
        raise UserError(f"{card_path}: sampler kind is {got!r}, not one of {', '.join(SAMPLER_KINDS)}; "
                        f"re-export the model")
    chains = sampler.get("chains")
    if not _is_int(chains) or chains < 1:
        raise UserError(f"{card_path}: sampler chains is {chains!r}, not a positive integer; re-export the model")
    if sampler.get("steps") != steps:
        raise UserError(f"{card_path}: sampler steps is {sampler.get('steps')!r} but gibbs_steps is {steps}; "
                        f"re-export the model")
    return chains


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
    fmt = card["format"]
    wanted = INPUT_NAMES if fmt == FORMAT else INPUT_NAMES_V1
    for kind, names, found in (("input", wanted, inputs), ("output", OUTPUT_NAMES, outputs)):
        if sorted(found) != sorted(names):
            raise UserError(f"{onnx_path}: the graph's {kind}s are {', '.join(found)}, not {', '.join(names)}; "
                            f"it is not an {fmt} model as its card says, re-export it with rnnrbm-export")
        for name, (_, dtype) in found.items():
            if dtype != "tensor(float)":
                raise UserError(f"{onnx_path}: the graph's {name} {kind} is {dtype}, not float32; re-export the model")
    _check_sizes(card_path, sizes, {**inputs, **outputs}, guided=sampler_kind(card) == "guided")
    _check_listed_io(card_path, card, inputs, outputs)


def _dim(shapes: dict, name: str, axis: int):
    shape = shapes[name][0]
    return shape[axis] if len(shape) > axis else None


def _check_sizes(card_path: Path, sizes: dict, shapes: dict, guided: bool = False) -> None:
    nv, nu, k, r = sizes["n_visible"], sizes["n_recurrent"], sizes["gibbs_steps"], sizes["chains"]
    noise_rank = 3 if r is None else 2 if guided else 4
    for name, want in (("u_prev", 2), ("noise", noise_rank), ("clamp_mask", 2), ("clamp_value", 2),
                       ("temperature", 2), ("v", 2), ("u", 2), *((("v_prev", 2),) if r is not None else ())):
        if len(shapes[name][0]) != want:
            raise UserError(f"{card_path}: the graph's {name} has shape {shapes[name][0]}, not {want}-d as "
                            f"the contract says; re-export the model")
    checks = [
        ("n_visible", nv, "clamp_mask", _dim(shapes, "clamp_mask", 1), ""),
        ("n_visible", nv, "clamp_value", _dim(shapes, "clamp_value", 1), ""),
        ("n_visible", nv, "v", _dim(shapes, "v", 1), ""),
        ("n_recurrent", nu, "u_prev", _dim(shapes, "u_prev", 1), ""),
        ("n_recurrent", nu, "u", _dim(shapes, "u", 1), ""),
    ]
    if r is None:
        checks.append(("gibbs_steps", k, "noise", _dim(shapes, "noise", 1), " steps"))
    elif not guided:  # a guided step's flat noise is checked whole below
        checks += [("sampler chains", r, "noise", _dim(shapes, "noise", 1), " chains"),
                   ("gibbs_steps", k, "noise", _minus_one(_dim(shapes, "noise", 2)), " steps (slots - 1)")]
    if r is not None:
        checks.append(("n_visible", nv, "v_prev", _dim(shapes, "v_prev", 1), ""))
    for field_name, value, graph_name, got, unit in checks:
        if got != value:
            raise UserError(f"{card_path}: {field_name} is {value} but the graph's {graph_name} has {got}{unit}; "
                            f"re-export the model")
    if guided:
        _check_guided_noise(card_path, sizes, _dim(shapes, "noise", 1))
    else:
        _check_noise_width(card_path, sizes, _dim(shapes, "noise", 2 if r is None else 3))
    if _dim(shapes, "temperature", 1) != 1:
        raise UserError(f"{card_path}: the graph's temperature input has shape {shapes['temperature'][0]}, "
                        f"not [B, 1]; re-export the model")


def _check_guided_noise(card_path: Path, sizes: dict, got) -> None:
    nv, nh, k, r = sizes["n_visible"], sizes["n_hidden"], sizes["gibbs_steps"], sizes["chains"]
    want = guided_noise_size(nv, nh, k, r)
    if got != want:
        raise UserError(f"{card_path}: sampler chains {r}, gibbs_steps {k} and n_hidden {nh} make {want} uniforms "
                        f"per frame but the graph's noise has {got}; re-export the model")


def _check_noise_width(card_path: Path, sizes: dict, width) -> None:
    nv, nh = sizes["n_visible"], sizes["n_hidden"]
    if not isinstance(width, int) or width - nv != nh:
        hidden = f"{width}-{nv}={width - nv}" if isinstance(width, int) else repr(width)
        raise UserError(f"{card_path}: n_hidden is {nh} but the graph's noise input has {hidden}; re-export the model")


def _minus_one(dim):
    return dim - 1 if isinstance(dim, int) else dim


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
