"""Self-describing checkpoints: `<name>.safetensors` holds exactly the contract's tensors,
`<name>.json` beside it holds the config, the training settings and history. Optimizer
and RNG state for --resume go to `<name>.state.safetensors`. Nothing here unpickles.

A save never damages the last good checkpoint: every file is written in full beside its
target (`.tmp`, flushed to disk) before any target is replaced, so a full disk or a
write error leaves the old set as it was (and a one-line error); Ctrl+C and SIGTERM
arriving during a save take effect once it is done, so the set is never half replaced.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from rnnrbm_live.errors import UserError

from .model import CONTRACT_PARAMETERS, RNNRBM, RNNRBMConfig


@contextlib.contextmanager
def _signals_deferred():
    """Hold SIGINT and SIGTERM until the block is done, then act on the first one as its
    handler would have. (Handlers can only be swapped on the main thread.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, object]] = []
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in old:
        signal.signal(sig, lambda signum, frame: caught.append((signum, frame)))
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if caught:
            signum, frame = caught[0]
            handler = old[signum]
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)


def _write_all(writes: list[tuple[Path, object]]) -> None:
    """Write each (target, writer) to target.tmp, then replace the targets."""
    tmps = []
    try:
        for target, write in writes:
            tmp = target.with_name(target.name + ".tmp")
            tmps.append(tmp)
            write(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        for tmp, (target, _) in zip(tmps, writes):
            os.replace(tmp, target)
    finally:
        for tmp in tmps:
            with contextlib.suppress(OSError):
                tmp.unlink()


def weights(model: RNNRBM) -> dict[str, torch.Tensor]:
    return {name: getattr(model, name).detach().float().cpu().contiguous() for name in CONTRACT_PARAMETERS}


def save_checkpoint(path: Path, model: RNNRBM, meta: dict, state: dict[str, torch.Tensor] | None = None) -> None:
    """Write `path` (.safetensors) and its .json card; `state` (optimizer, RNG) if given."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    card = {"config": model.config.to_dict(), **meta}
    writes = [(path, lambda p: save_file(weights(model), str(p),
                                         metadata={"format": "rnnrbm-checkpoint/1"})),
              (json_path(path), lambda p: p.write_text(json.dumps(card, indent=1) + "\n"))]
    if state is not None:
        writes.insert(0, (state_path(path), lambda p: save_file(state, str(p))))
    try:
        with _signals_deferred():
            _write_all(writes)
    except (OSError, SafetensorError) as e:
        reason = (getattr(e, "strerror", None) or str(e)).strip().lower()
        raise UserError(f"{path}: cannot write the checkpoint ({reason}); the last one "
                        "was kept; free some space and go on with --resume") from None


def json_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def state_path(path: Path) -> Path:
    return Path(path).with_suffix(".state.safetensors")


def resolve(path: str | Path) -> Path:
    """A checkpoint file, or a training folder (then its best checkpoint)."""
    path = Path(path)
    if path.is_dir():
        path = path / "best.safetensors"
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint; give a .safetensors file or a training folder")
    if not json_path(path).is_file():
        raise UserError(f"{path}: its config {json_path(path).name} is missing beside it")
    return path


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[RNNRBM, dict]:
    """The model and its card (config, training meta) from a checkpoint or folder."""
    path = resolve(path)
    try:
        card = json.loads(json_path(path).read_text(encoding="utf-8"))
        config = RNNRBMConfig.from_dict(card["config"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{json_path(path)}: not a checkpoint config ({_first_line(e)}); "
                        "re-save it with rnnrbm-train") from None
    try:
        tensors = load_file(str(path), device=device)
    except (SafetensorError, OSError) as e:
        raise UserError(f"{path}: not a safetensors file ({_first_line(e)})") from None
    missing = [n for n in CONTRACT_PARAMETERS if n not in tensors]
    if missing:
        raise UserError(f"{path}: missing tensors {', '.join(missing)}; is it an rnnrbm checkpoint?")
    shapes = _shapes(config, json_path(path))
    for name in CONTRACT_PARAMETERS:
        if tuple(tensors[name].shape) != shapes[name]:
            raise UserError(f"{path}: tensor {name} has shape {tuple(tensors[name].shape)}, "
                            f"config says {shapes[name]}")
    model = RNNRBM(config).to(device)
    with torch.no_grad():
        for name in CONTRACT_PARAMETERS:
            getattr(model, name).copy_(tensors[name])
    return model, card


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def _shapes(config: RNNRBMConfig, card_path: Path) -> dict[str, tuple]:
    """The contract tensors' shapes the config implies, found on torch's meta device (no
    memory): a config edited by hand must not allocate, or crash, before it is checked."""
    try:
        with torch.device("meta"):
            model = RNNRBM(config)
        return {name: tuple(getattr(model, name).shape) for name in CONTRACT_PARAMETERS}
    except (TypeError, ValueError, RuntimeError, OverflowError) as e:
        raise UserError(f"{card_path}: its config does not describe a model "
                        f"({_first_line(e)}); re-save it with rnnrbm-train") from None


def pick_device(name: str) -> torch.device:
    """--device auto|cpu|cuda as a torch device where the checkpoint's model will run."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: torch sees no cuda device; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise UserError(f"--device {name}: unknown device; use auto, cpu or cuda")
    return torch.device(name)


def load_state(path: Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    sp = state_path(path)
    if not sp.is_file():
        raise UserError(f"{sp}: no training state to resume from; start without --resume")
    try:
        return load_file(str(sp), device=device)
    except (SafetensorError, OSError) as e:
        raise UserError(f"{sp}: not a training state ({_first_line(e)}); start without --resume "
                        "or from an older checkpoint") from None
