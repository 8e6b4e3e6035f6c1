"""rnnrbm-train under a real torchrun (2 processes, gloo on the CPU): one step of 2 ranks x
4 sequences is the step of one process on the same 8, and the same run twice gives the same
bytes; --resume goes on with another world size; SIGTERM to one rank stops both, and rank 0
alone saves, once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import needs
from rnnrbm_export.model import CONTRACT_PARAMETERS
from rnnrbm_export.train import main as train_main

# SGD: its step is the gradient times lr, so the comparison measures the gradients.
# (Adam's first step is lr * sign(g), which float rounding could flip where g is ~0.)
ARGS = ["--data", "jsb_chorales", "--train-max-seqs", "8", "--batch-size", "8", "--valid-max-seqs", "3",
        "--valid-runs", "2", "--valid-temps", "10", "--hidden", "20", "--recurrent", "10", "--cd-k", "3",
        "--threads", "1", "--optimizer", "sgd", "--lr", "0.5", "--init-recurrent-std", "0.1", "--seed", "7"]


def torchrun(out: Path, *extra: str, nproc: int = 2, **popen) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # torchrun warns when it has to set this itself
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "rnnrbm_export.train", *ARGS, "--out", str(out), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **popen)


def finished(proc: subprocess.Popen, timeout: float = 300) -> tuple[str, str]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out, err


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "last.safetensors"))


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    for name in CONTRACT_PARAMETERS:
        torch.testing.assert_close(wa[name], wb[name], atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.slow
def test_two_ranks_of_four_equal_one_process_of_eight_and_resume_with_another_world(tmp_path):
    one, two, init, again = tmp_path / "one", tmp_path / "two", tmp_path / "init", tmp_path / "again"
    run, rerun = torchrun(two, "--epochs", "1"), torchrun(again, "--epochs", "1")
    assert train_main([*ARGS, "--out", str(one), "--epochs", "1"]) == 0
    assert train_main([*ARGS, "--out", str(init), "--epochs", "1", "--lr", "0"]) == 0
    out, err = finished(run)
    finished(rerun)
    # same seed, same world size: the same bytes
    assert (two / "last.safetensors").read_bytes() == (again / "last.safetensors").read_bytes()

    moved = max(float((weights(one)[n] - weights(init)[n]).abs().max()) for n in CONTRACT_PARAMETERS)
    assert moved > 1e-3  # the step did something, so the comparison below means something
    assert_same_weights(one, two)

    card = json.loads((two / "last.json").read_text())
    assert card["world_size"] == 2 and card["epoch"] == 1 and [h["epoch"] for h in card["history"]] == [1]
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    assert out.count('"epoch": 1') == 1 and out.count("best on valid") == 1  # rank 0 alone logs
    assert "Traceback" not in err and "Warning" not in err

    # A second epoch: on one process from the 2-rank checkpoint, on 2 ranks from the 1-process one.
    assert train_main([*ARGS, "--out", str(two), "--epochs", "2", "--resume"]) == 0
    finished(torchrun(one, "--epochs", "2", "--resume"))
    assert json.loads((one / "last.json").read_text())["epoch"] == 2
    assert_same_weights(one, two)


def _rank_pids(parent: int) -> dict[int, int]:
    """torchrun's workers (the processes this test started through it), by RANK."""
    found = {}
    for child in Path("/proc").iterdir():
        if not child.name.isdigit():
            continue
        try:
            stat = (child / "stat").read_text()
            env = (child / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) != parent:
            continue
        ranks = [e[5:] for e in env if e.startswith(b"RANK=")]
        if ranks:
            found[int(ranks[0])] = int(child.name)
    return found


@pytest.mark.slow
def test_sigterm_to_one_rank_stops_both_and_rank_0_saves_once(tmp_path):
    if not Path("/proc/self/environ").exists():
        needs("/proc, where the test finds torchrun's workers (Linux)")
    proc = torchrun(tmp_path, "--train-max-seqs", "200", "--epochs", "1000", "--valid-every", "1000")
    deadline = time.monotonic() + 240
    while not (tmp_path / "last.json").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert (tmp_path / "last.json").exists(), proc.communicate()[1][-3000:]
    ranks = _rank_pids(proc.pid)
    assert sorted(ranks) == [0, 1]
    os.kill(ranks[1], signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert err.count("interrupted: saved") == 1, err[-3000:]
    # The ranks stop with 130, which torchrun reports in its own words (a rank still on its
    # way out when the other has left may be ended by torchrun's SIGTERM); no rank's traceback.
    assert "exitcode  : 130" in err and "train.py" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    card = json.loads((tmp_path / "last.json").read_text())
    assert card["epoch"] >= 1 and card["world_size"] == 2


def test_a_world_set_by_hand_without_torchrun_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    assert train_main([*ARGS, "--out", str(tmp_path), "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rnnrbm-train: rank 0 of 2: cannot join") and err.endswith("start with torchrun")
    assert "\n" not in err
    monkeypatch.setenv("RANK", "2")
    assert train_main([*ARGS, "--out", str(tmp_path), "--epochs", "1"]) == 2
    assert "RANK 2 of WORLD_SIZE 2" in capsys.readouterr().err
