"""The torch side's commands after a plain install (no `train` extra): each says in one
line which extra to install, exit status 2, instead of a ModuleNotFoundError. Checked in
a fresh virtual environment that has no torch, with the commands pip installed there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rnnrbm_export import launch

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("rnnrbm-train", "rnnrbm-eval", "rnnrbm-temper", "rnnrbm-export")


def test_the_launcher_needs_only_the_standard_library():
    source = (ROOT / "export" / "launch.py").read_text()
    imports = {line.split()[1].split(".")[0] for line in source.splitlines()
               if line.startswith(("import ", "from "))}
    assert imports <= {"__future__", "importlib", "sys"}


def test_a_missing_module_is_named_with_the_extra(capsys, monkeypatch):
    monkeypatch.setitem(launch.NEEDS, "rnnrbm-train",
                        ("train", ("torch", "no_such_module_rnnrbm")))
    assert launch.train() == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rnnrbm-train: error: needs no_such_module")
    assert 'pip install "rnnrbm-live[train]"' in err[0] and "torch," not in err[0]


@pytest.mark.slow
def test_without_torch_each_command_says_which_extra(tmp_path):
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                            str(wheels), str(ROOT)], capture_output=True, text=True,
                           timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", "-q", str(next(wheels.glob("rnnrbm_live-*.whl")))],
        capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-2000:]
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    probe = subprocess.run([str(python), "-c", "import torch"], capture_output=True,
                           env=env, timeout=60)
    assert probe.returncode != 0  # this venv really has no torch
    for command in COMMANDS:
        for argv in ([], ["--help"]):
            run = subprocess.run([str(venv / "bin" / command), *argv], capture_output=True,
                                 text=True, env=env, cwd=tmp_path, timeout=60)
            lines = run.stderr.strip().splitlines()
            assert run.returncode == 2 and run.stdout == "", (command, run.stderr)
            assert len(lines) == 1 and lines[0].startswith(f"{command}: error: needs torch")
            assert 'pip install "rnnrbm-live[train]"' in lines[0]
    # the torch side installs under the project's own name, never as a top-level `export`
    site = next((venv / "lib").glob("python*/site-packages"))
    assert (site / "rnnrbm_export" / "launch.py").is_file() and not (site / "export").exists()
