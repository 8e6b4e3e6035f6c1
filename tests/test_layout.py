"""The house rules of the source tree, checked on the code itself: imports run one way
between the parts (README's Layout), no module imports itself round a circle, modules
and classes stay readable in size, and every subpackage says what lives in it."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ROOT / "rnnrbm_live"
TORCH_SIDE = ROOT / "export"
MAX_MODULE_LINES = 420   # "about 400"
MAX_CLASS_LINES = 220    # "about 200"

# Which parts of the runtime each part may import (besides itself, errors and __init__).
ALLOWED = {
    "bundled": set(),
    "midi": {"bundled"},
    "model": {"bundled", "midi"},
    "live": {"midi", "model"},
    "offline": {"midi", "model"},
    "cli": {"bundled", "midi", "model", "live", "offline"},
}


def _modules(folder: Path, package: str) -> dict[str, Path]:
    out = {}
    for path in sorted(folder.rglob("*.py")):
        parts = list(path.relative_to(folder).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([package, *parts])] = path
    return out


def _imports(path: Path, module: str) -> set[str]:
    """Every module `module` imports, absolute names, at any depth of the file."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


RUNTIME_MODULES = _modules(RUNTIME, "rnnrbm_live")
ALL_MODULES = {**RUNTIME_MODULES, **_modules(TORCH_SIDE, "rnnrbm_export")}


def _internal_graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in ALL_MODULES.items():
        graph[name] = {m for m in _imports(path, name) if m in ALL_MODULES and m != name}
    return graph


def test_runtime_parts_import_one_way():
    wrong = []
    for name, path in RUNTIME_MODULES.items():
        parts = name.split(".")
        if len(parts) < 3 or parts[1] not in ALLOWED:
            continue
        part = parts[1]
        for imported in _imports(path, name):
            if not imported.startswith("rnnrbm_live."):
                continue
            other = imported.split(".")[1]
            if other in (part, "errors", "__version__") or other not in ALLOWED:
                continue
            if other not in ALLOWED[part]:
                wrong.append(f"{name} imports {imported}")
    assert not wrong, "\n".join(wrong)


def test_the_runtime_never_imports_the_torch_side():
    wrong = [f"{name} imports {m}" for name, path in RUNTIME_MODULES.items()
             for m in _imports(path, name) if m.split(".")[0] in ("rnnrbm_export", "torch")]
    assert not wrong, "\n".join(wrong)


def test_no_import_circles():
    graph = _internal_graph()
    # A package's __init__ may import its own modules (re-exports); they must not import
    # it back, which is the circle that breaks at import time.
    state: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not circles, "\n".join(circles)


@pytest.mark.parametrize("name", sorted(RUNTIME_MODULES))
def test_every_runtime_module_imports_first_in_a_fresh_interpreter(name):
    """The order a user's import happens in must not matter (a circle shows up here)."""
    if name.endswith("__main__"):
        return
    run = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-1500:]


def test_modules_and_classes_stay_readable():
    too_long = []
    for name, path in ALL_MODULES.items():
        lines = path.read_text().count("\n")
        if lines > MAX_MODULE_LINES:
            too_long.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                size = node.end_lineno - node.lineno + 1
                if size > MAX_CLASS_LINES:
                    too_long.append(f"{name}.{node.name}: {size} lines")
    assert not too_long, "\n".join(too_long)


def test_every_subpackage_says_what_lives_there():
    for init in list(RUNTIME.rglob("__init__.py")) + [TORCH_SIDE / "__init__.py"]:
        module = ".".join(init.relative_to(ROOT).parent.parts)
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 40, f"{module}/__init__.py has no docstring saying what lives there"


def test_each_live_mode_has_its_own_module():
    modes = importlib.import_module("rnnrbm_live.live.modes")
    files = {cls.__module__ for cls in (modes.ContinueMode, modes.GenerateMode,
                                        modes.AccompanyMode)}
    assert len(files) == len(modes.MODES) == 3
