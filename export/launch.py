"""The entry points of the torch side (`rnnrbm-train`, `rnnrbm-eval`, `rnnrbm-temper`,
`rnnrbm-export`). A plain `pip install rnnrbm-live` installs these commands but not
torch: each first checks that the `train` extra's modules can be imported and, if not,
says in one line what to install (exit status 2) instead of ending in a
ModuleNotFoundError. Only the standard library is imported here, so the check itself
always runs."""

from __future__ import annotations

import importlib
import importlib.util
import sys

INSTALL = 'pip install "rnnrbm-live[train]"'
# The extra's modules each verb imports (pyproject.toml, [project.optional-dependencies]).
NEEDS = {
    "rnnrbm-train": ("train", ("torch", "safetensors")),
    "rnnrbm-eval": ("evaluate", ("torch", "safetensors")),
    "rnnrbm-temper": ("temper", ("torch", "safetensors")),
    "rnnrbm-export": ("onnx_export", ("torch", "safetensors", "onnx")),
}


def missing_modules(modules) -> list[str]:
    """Those of `modules` that cannot be imported here (found without importing them)."""
    return [name for name in modules if importlib.util.find_spec(name) is None]


def launch(command: str) -> int:
    module, modules = NEEDS[command]
    missing = missing_modules(modules)
    if missing:
        print(f"{command}: error: needs {', '.join(missing)} (the train extra), which "
              f"this python ({sys.executable}) lacks; install it with {INSTALL}",
              file=sys.stderr, flush=True)
        return 2
    try:
        verb = importlib.import_module(f"{__package__}.{module}")
    except ImportError as e:  # installed but broken, e.g. a torch built for another python
        print(f"{command}: error: cannot import {e.name or 'the train extra'} "
              f"({str(e).strip().lower()}); reinstall it with {INSTALL}",
              file=sys.stderr, flush=True)
        return 2
    return int(verb.main() or 0)


def train() -> int:
    return launch("rnnrbm-train")


def evaluate() -> int:
    return launch("rnnrbm-eval")


def temper() -> int:
    return launch("rnnrbm-temper")


def export() -> int:
    return launch("rnnrbm-export")
