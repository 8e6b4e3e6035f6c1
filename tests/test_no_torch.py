"""The runtime package never imports torch: every module of rnnrbm_live is imported, and an
exported model loaded and stepped, in a process where torch cannot be imported at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from rnnrbm_export.model import RNNRBM, RNNRBMConfig
from rnnrbm_export.onnx_export import export_model

ROOT = Path(__file__).resolve().parents[1]

# Installed before anything else is imported: any "torch*" import raises ImportError.
CHILD = r'''
import importlib.abc
import sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0].startswith("torch"):
            raise ImportError(f"torch is blocked here: the runtime imported {name}")
        return None

sys.meta_path.insert(0, NoTorch())
try:
    import torch
    sys.exit("the blocker failed: torch imported")
except ImportError:
    pass

import importlib
import pkgutil

import numpy as np
import rnnrbm_live

modules = [m.name for m in pkgutil.walk_packages(rnnrbm_live.__path__, "rnnrbm_live.")]
for name in modules:
    importlib.import_module(name)

from rnnrbm_live.model.session import StepSession, scale_lock

session = StepSession(sys.argv[1], batch=2, device="auto", seed=0)
session.allowed = scale_lock([0, 4, 7])
frames = np.array([session.step() for _ in range(20)])
assert frames.shape == (20, 2, 88) and frames[:, :, ~session.allowed].sum() == 0
assert np.array_equal(session.listen(frames[-1]), frames[-1])
assert not [m for m in sys.modules if m.split(".")[0].startswith("torch")]
print("imported", " ".join(modules))
print("ok", session.describe())
'''


def test_runtime_runs_without_torch(tmp_path):
    torch.manual_seed(0)
    model = RNNRBM(RNNRBMConfig(n_hidden=32, n_recurrent=12, gibbs_steps=5, init_std=0.5))
    paths = export_model(model, {}, tmp_path / "m")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    run = subprocess.run([sys.executable, "-c", CHILD, str(paths["onnx"])], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "ok " in run.stdout
    imported = run.stdout.split("imported ", 1)[1].splitlines()[0].split()
    assert {"rnnrbm_live.model.session", "rnnrbm_live.model.card", "rnnrbm_live.bundled"} <= set(imported)


# Run from an installed wheel (not the source tree), with torch blocked as above.
BUNDLED_CHILD = CHILD.split("import importlib\nimport pkgutil", 1)[0] + r'''
import json
import numpy as np
import rnnrbm_live
from rnnrbm_live.bundled import bundled_names
from rnnrbm_live.model.session import StepSession
from rnnrbm_live.midi.datasets import load_split

assert "site" in rnnrbm_live.__file__ or "target" in rnnrbm_live.__file__, rnnrbm_live.__file__
out = {"names": bundled_names()}
for name in out["names"]:
    session = StepSession(name, batch=1, device="auto", seed=1)
    frames = np.array([session.step()[0] for _ in range(256)])
    out[name] = {"notes": int(frames.sum()), "card": session.model.card}
out["jsb_valid"] = len(load_split("jsb_chorales", "valid"))
print(json.dumps(out))
'''


def test_bundled_models_play_from_an_installed_wheel_without_torch(tmp_path):
    wheel_dir, target = tmp_path / "wheel", tmp_path / "target"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheel_dir), str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel = next(wheel_dir.glob("rnnrbm_live-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run([sys.executable, "-c", BUNDLED_CHILD], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["names"] == ["jsb_chorales", "musedata", "nottingham", "piano_midi"]
    assert out["jsb_valid"] == 76  # the bundled datasets ship in the wheel too
    for name, grid in (("nottingham", 2), ("jsb_chorales", 1), ("musedata", 2), ("piano_midi", 2)):
        card = out[name]["card"]
        assert card["format"] == "rnnrbm-step/2" and card["frames_per_beat"] == grid
        assert card["dataset"] == name and card["metrics"]["split"] == "test"
        # It plays: more than one note every four frames over 32 bars. (Free-running from
        # silence, nottingham's v2 step can start sparse: README, "Sampling".)
        assert out[name]["notes"] > 64
