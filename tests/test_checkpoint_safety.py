"""Checkpoints survive what happens while one is written: a write error half-way, a full
disk (a small tmpfs, where this machine lets us mount one), Ctrl+C or SIGTERM arriving
mid-save. The last good checkpoint (weights, card, training state) stays whole."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
import torch

from conftest import needs
from rnnrbm_export import checkpoint
from rnnrbm_export.checkpoint import load_checkpoint, load_state, save_checkpoint
from rnnrbm_export.model import RNNRBM, RNNRBMConfig
from rnnrbm_live.errors import UserError


def _model(seed: int, hidden: int = 40) -> RNNRBM:
    torch.manual_seed(seed)
    return RNNRBM(RNNRBMConfig(n_hidden=hidden, n_recurrent=20))


def _state(seed: int, size: int = 1000) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {"opt.m": torch.randn(size), "rng.uniforms": torch.arange(4)}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _save_good(folder: Path) -> dict[str, bytes]:
    save_checkpoint(folder / "last.safetensors", _model(1), {"epoch": 1}, _state(1))
    return _files(folder)


def _assert_intact(folder: Path, before: dict[str, bytes]) -> None:
    assert _files(folder) == before, "the last good checkpoint was changed"
    model, card = load_checkpoint(folder / "last.safetensors")
    assert card["epoch"] == 1
    assert torch.equal(load_state(folder / "last.safetensors")["opt.m"], _state(1)["opt.m"])


def test_a_write_error_half_way_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    before = _save_good(tmp_path)
    real = checkpoint.save_file

    def fails_half_way(tensors, filename, metadata=None):
        real(tensors, filename, metadata=metadata)
        with open(filename, "r+b") as f:   # the disk filled up half-way through
            f.truncate(os.path.getsize(filename) // 2)
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(checkpoint, "save_file", fails_half_way)
    with pytest.raises(UserError) as e:
        save_checkpoint(tmp_path / "last.safetensors", _model(2), {"epoch": 2}, _state(2))
    assert "no space left on device" in str(e.value) and "\n" not in str(e.value)
    _assert_intact(tmp_path, before)


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs, if this machine lets us mount one (root in a container does)."""
    where = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    where.mkdir()
    if not shutil.which("mount") or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)],
            capture_output=True).returncode != 0:
        needs("a 256 KiB tmpfs (mount needs root); the injected error covers the rest")
    yield where
    subprocess.run(["umount", str(where)], capture_output=True)


def test_a_full_disk_keeps_the_last_checkpoint(small_disk):
    before = _save_good(small_disk)            # about 40 KiB
    with pytest.raises(UserError) as e:       # the state alone needs 400 KiB
        save_checkpoint(small_disk / "last.safetensors", _model(2, hidden=80), {"epoch": 2},
                        _state(2, size=100_000))
    assert "cannot write the checkpoint" in str(e.value) and "\n" not in str(e.value)
    _assert_intact(small_disk, before)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_a_save_acts_once_the_save_is_whole(tmp_path, monkeypatch, sig):
    _save_good(tmp_path)
    real = checkpoint.save_file
    calls = []

    def signalled(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 1:
            os.kill(os.getpid(), sig)     # Ctrl+C / a scheduler's SIGTERM, mid-save
        real(tensors, filename, metadata=metadata)

    def interrupt(signum, frame):
        raise KeyboardInterrupt           # what rnnrbm-train's handler does

    monkeypatch.setattr(checkpoint, "save_file", signalled)
    old = signal.signal(sig, interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            save_checkpoint(tmp_path / "last.safetensors", _model(2), {"epoch": 2}, _state(2))
    finally:
        signal.signal(sig, old)
    assert len(calls) == 2                # both files written before the interrupt
    model, card = load_checkpoint(tmp_path / "last.safetensors")
    assert card["epoch"] == 2
    assert torch.equal(model.W, _model(2).W)
    assert torch.equal(load_state(tmp_path / "last.safetensors")["opt.m"], _state(2)["opt.m"])
    assert not list(tmp_path.glob("*.tmp"))


def test_ctrl_c_on_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(tmp_path, monkeypatch,
                                                                        capsys):
    """rnnrbm-train's save on Ctrl+C meets a full disk: one line, exit 130, no traceback,
    and the checkpoint of the last finished epoch stays whole."""
    from rnnrbm_export import train

    out = tmp_path / "run"
    args = ["--data", "jsb_chorales", "--train-max-seqs", "8", "--valid-max-seqs", "1",
            "--valid-runs", "2", "--valid-temps", "5", "--hidden", "12", "--recurrent", "6",
            "--cd-k", "1", "--threads", "1", "--epochs", "1", "--out", str(out)]
    assert train.main(args) == 0
    capsys.readouterr()
    before = _files(out)

    def interrupted(self):
        def no_space(*a, **k):
            raise OSError(28, "No space left on device")
        monkeypatch.setattr(checkpoint, "save_file", no_space)
        raise KeyboardInterrupt
    monkeypatch.setattr(train.Trainer, "run", interrupted)
    assert train.main(args + ["--resume", "--epochs", "2"]) == 130
    err = capsys.readouterr().err.strip()
    assert "no space left on device" in err and "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert _files(out) == before
