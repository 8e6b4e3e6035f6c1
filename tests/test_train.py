"""The torch side: the CD-k gradient, batching, checkpoints, and rnnrbm-train end to end
on the bundled JSB Chorales (a few sequences, a few epochs)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from rnnrbm_export import batching
from rnnrbm_export.ais import free_energy
from rnnrbm_export.checkpoint import load_checkpoint, save_checkpoint
from rnnrbm_export.frames import frame_biases
from rnnrbm_export.model import CONTRACT_PARAMETERS, RNNRBM, RNNRBMConfig
from rnnrbm_export.train import TrainSettings
from rnnrbm_export.train import main as train_main
from rnnrbm_export.uniforms import Uniforms
from rnnrbm_live.midi.datasets import load_split
from rnnrbm_live.errors import UserError


def small_model(seed: int = 0, **kw) -> RNNRBM:
    torch.manual_seed(seed)
    cfg = RNNRBMConfig(init_std=0.3, init_recurrent_std=0.3, **kw)
    return RNNRBM(cfg)


def jsb(n: int) -> list[np.ndarray]:
    return load_split("jsb_chorales", "train")[:n]


def test_cd_gradient_is_positive_minus_negative_statistics():
    # With the negative samples held constant, d cost / d bv = mean(v_neg - v) over frames,
    # and the RNN weights get a gradient through bv_t and bh_t (BPTT).
    model = small_model()
    v, mask = batching.pad(jsb(3))
    cost, _ = model.cd_loss(v, mask, k=5, uniforms=Uniforms("cpu", 7))
    cost.backward()
    bv_t, bh_t = model.conditional_biases(v)
    v_neg = model.gibbs_chain(v, bv_t.detach(), bh_t.detach(), 5, Uniforms("cpu", 7))
    expected = ((v_neg - v) * mask[..., None]).sum((0, 1)) / mask.sum()
    torch.testing.assert_close(model.bv.grad, expected, atol=1e-5, rtol=1e-4)
    for name in ("Wuv", "Wuh", "Wvu", "Wuu", "bu"):
        assert getattr(model, name).grad.abs().sum() > 0, name
    assert model.u0.grad is None  # not learned by default


def test_padding_does_not_change_the_cost():
    torch.manual_seed(0)
    model = RNNRBM(RNNRBMConfig(init_std=0.1, init_recurrent_std=0.05))  # not chaotic: rounding stays small
    seqs = jsb(2)
    alone, m1 = batching.pad(seqs[:1])
    padded, m2 = batching.pad(seqs)
    bv1, _ = model.conditional_biases(alone)
    bv2, _ = model.conditional_biases(padded)
    torch.testing.assert_close(bv1[0, : len(seqs[0])], bv2[0, : len(seqs[0])], atol=1e-5, rtol=1e-5)


def test_chunks_and_batches_cover_every_frame_once():
    seqs = jsb(10)
    pieces = batching.chunk(seqs, 16)
    assert max(len(p) for p in pieces) <= 16
    total = sum(float(m.sum()) for _, m in batching.batches(pieces, 4, np.random.default_rng(0)))
    assert total == sum(len(s) for s in seqs)


def test_step_follows_the_contract_semantics():
    model = small_model()
    c = model.config
    B = 6
    u = torch.randn(B, c.n_recurrent) * 0.5
    noise = torch.rand(B, 3, c.n_hidden + c.n_visible)
    mask = (torch.rand(B, c.n_visible) < 0.3).float()
    value = (torch.rand(B, c.n_visible) < 0.5).float()
    temp = torch.full((B, 1), 0.7)
    v, u_next = model.step(u, noise, mask, value, temp)
    # written out from the contract, independently of step()
    with torch.no_grad():
        bv_t, bh_t = model.bv + u @ model.Wuv, model.bh + u @ model.Wuh
        x = mask * value
        for k in range(3):
            h = (noise[:, k, : c.n_hidden] < torch.sigmoid((x @ model.W + bh_t) / temp)).float()
            x = (noise[:, k, c.n_hidden:] < torch.sigmoid((h @ model.W.T + bv_t) / temp)).float()
            x = mask * value + (1 - mask) * x
        assert torch.equal(v, x)
        torch.testing.assert_close(u_next, torch.tanh(model.bu + x @ model.Wvu + u @ model.Wuu))
        assert torch.equal(v[mask.bool()], value[mask.bool()])


def test_checkpoint_holds_exactly_the_contract_tensors(tmp_path):
    model = small_model()
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, {"epoch": 3})
    tensors = load_file(str(path))
    assert sorted(tensors) == sorted(CONTRACT_PARAMETERS)
    assert all(t.dtype == torch.float32 for t in tensors.values())
    loaded, card = load_checkpoint(tmp_path / "m.safetensors")
    assert card["epoch"] == 3 and card["config"]["n_hidden"] == 150
    for name in CONTRACT_PARAMETERS:
        assert torch.equal(getattr(loaded, name), getattr(model, name))
    assert not list(tmp_path.glob("*.tmp"))


def test_checkpoint_errors_are_one_line(tmp_path):
    with pytest.raises(UserError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.safetensors")
    model = small_model()
    save_checkpoint(tmp_path / "m.safetensors", model, {})
    card = json.loads((tmp_path / "m.json").read_text())
    card["config"]["n_hidden"] = 99
    (tmp_path / "m.json").write_text(json.dumps(card))
    with pytest.raises(UserError, match=r"tensor W has shape \(88, 150\), config says \(88, 99\)"):
        load_checkpoint(tmp_path / "m.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    (tmp_path / "junk.json").write_text(json.dumps({"config": {}}))
    with pytest.raises(UserError, match="not a safetensors file"):
        load_checkpoint(tmp_path / "junk.safetensors")


QUICK = ["--data", "jsb_chorales", "--train-max-seqs", "12", "--valid-max-seqs", "2", "--valid-runs", "2",
         "--valid-temps", "10", "--hidden", "20", "--recurrent", "10", "--cd-k", "2", "--threads", "1"]


def run_train(out, *extra) -> int:
    return train_main([*QUICK, "--out", str(out), *extra])


def test_training_lowers_the_cost_and_keeps_the_best_on_valid(tmp_path):
    assert run_train(tmp_path, "--epochs", "6", "--valid-every", "2", "--lr", "0.01") == 0
    card = json.loads((tmp_path / "last.json").read_text())
    hist = card["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4, 5, 6]
    assert hist[-1]["train_xent"] < hist[0]["train_xent"]
    checked = [h for h in hist if "valid_ll" in h]
    assert [h["epoch"] for h in checked] == [2, 4, 6]
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["epoch"] == max(checked, key=lambda h: h["valid_ll"])["epoch"]
    assert best["train_settings"]["hidden"] == 20
    assert best["command"].startswith("rnnrbm-train --data jsb_chorales --train-max-seqs 12")


def test_same_seed_same_result_and_resume_is_exact(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert run_train(a, "--epochs", "3", "--valid-every", "99", "--seed", "5") == 0
    assert run_train(b, "--epochs", "3", "--valid-every", "99", "--seed", "5") == 0
    assert (a / "last.safetensors").read_bytes() == (b / "last.safetensors").read_bytes()
    assert run_train(c, "--epochs", "2", "--valid-every", "99", "--seed", "5") == 0
    assert run_train(c, "--epochs", "3", "--valid-every", "99", "--seed", "5", "--resume") == 0
    ta, tc = load_file(str(a / "last.safetensors")), load_file(str(c / "last.safetensors"))
    for name in CONTRACT_PARAMETERS:
        assert torch.equal(ta[name], tc[name]), name


def test_pretraining_runs_before_the_epochs(tmp_path):
    assert run_train(tmp_path, "--epochs", "1", "--pretrain-rbm", "1", "--pretrain-rnn", "1") == 0
    model, _ = load_checkpoint(tmp_path / "last.safetensors")
    assert model.Wuu.abs().max() > 1e-3  # moved from its 1e-4 start by the RNN pretraining


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    assert train_main(["--data", "no_such_set", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rnnrbm-train: ") and "\n" not in err and "no_such_set" in err
    assert run_train(tmp_path, "--optimizer", "rmsprop") == 2
    assert "--optimizer rmsprop" in capsys.readouterr().err


def test_select_acc_keeps_the_best_valid_acc(tmp_path):
    assert run_train(tmp_path, "--epochs", "6", "--valid-every", "2", "--lr", "0.01", "--select", "acc") == 0
    checked = [h for h in json.loads((tmp_path / "last.json").read_text())["history"] if "valid_acc" in h]
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["epoch"] == max(checked, key=lambda h: h["valid_acc"])["epoch"]
    assert best["best"]["valid_acc"] == max(h["valid_acc"] for h in checked)


def test_init_from_starts_at_the_checkpoint_with_its_sizes_and_new_settings(tmp_path, capsys):
    base, tuned = tmp_path / "base", tmp_path / "tuned"
    assert run_train(base, "--epochs", "2", "--valid-every", "99", "--seed", "5") == 0
    start, _ = load_checkpoint(base / "last.safetensors")
    # --hidden is the base's (20), whatever this run says; CD-k is this run's
    assert run_train(tuned, "--epochs", "1", "--valid-every", "99", "--lr", "0", "--cd-k", "4", "--hidden", "99",
                     "--init-from", str(base / "last.safetensors")) == 0
    model, card = load_checkpoint(tuned / "last.safetensors")
    assert model.config.n_hidden == 20 and model.config.cd_k == 4 and card["epoch"] == 1
    for name in CONTRACT_PARAMETERS:  # lr 0: an epoch leaves the weights where they started
        assert torch.equal(getattr(model, name), getattr(start, name)), name

    assert train_main(["--data", "nottingham", "--out", str(tmp_path / "x"), "--init-from", str(base)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--init-from" in err and "1 frames per beat" in err and "\n" not in err
    assert run_train(tmp_path / "y", "--init-from", str(tmp_path / "nothing")) == 2
    assert "nothing" in capsys.readouterr().err


def test_grow_hidden_adds_units_that_learn_and_keeps_each_frames_distribution(tmp_path, capsys):
    base, grown = tmp_path / "base", tmp_path / "grown"
    assert run_train(base, "--epochs", "2", "--valid-every", "99", "--seed", "5", "--lr", "0.01") == 0
    start, _ = load_checkpoint(base / "last.safetensors")
    assert run_train(grown, "--epochs", "1", "--valid-every", "99", "--lr", "0", "--grow-hidden", "30",
                     "--init-from", str(base / "last.safetensors")) == 0
    model, card = load_checkpoint(grown / "last.safetensors")
    assert model.config.n_hidden == 50 and card["train_settings"]["grow_hidden"] == 30
    assert torch.equal(model.W[:, :20], start.W) and torch.equal(model.Wuh[:, :20], start.Wuh)
    assert model.W[:, 20:].std() > 0  # random, so the new units tell themselves apart

    # Each frame's RBM gives the true frames and random ones the same odds as before (what
    # a distribution is), to within a few hundredths of a nat; bv's correction is what
    # keeps the odds: without it they move by tenths.
    def log_odds(m: RNNRBM, bv_shift: torch.Tensor | float = 0.0) -> torch.Tensor:
        v, bv, bh = frame_biases(m, jsb(4))
        x = (torch.rand(v.shape, generator=torch.Generator().manual_seed(0)) < 0.05).float()
        return free_energy(m.W, x, bv + bv_shift, bh) - free_energy(m.W, v, bv + bv_shift, bh)
    with torch.no_grad():
        moved = (log_odds(model) - log_odds(start)).abs()
        uncorrected = (log_odds(model, model.W[:, 20:].sum(1) / 2) - log_odds(start)).abs()
    assert moved.max() < 0.05 and moved.mean() < 0.01
    assert uncorrected.mean() > 5 * moved.mean()

    assert run_train(tmp_path / "learn", "--epochs", "1", "--valid-every", "99", "--lr", "0.01", "--grow-hidden",
                     "30", "--init-from", str(base / "last.safetensors")) == 0
    learnt, _ = load_checkpoint(tmp_path / "learn" / "last.safetensors")
    assert not torch.allclose(learnt.W[:, 20:], model.W[:, 20:])  # the new units learn

    for extra in (["--grow-hidden", "-3", "--init-from", str(base)], ["--grow-hidden", "5"]):
        assert run_train(tmp_path / "bad", *extra) == 2
        err = capsys.readouterr().err.strip()
        assert "--grow-hidden" in err and "\n" not in err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_save_a_checkpoint_to_resume_from(tmp_path, sig):
    proc = subprocess.Popen([sys.executable, "-m", "rnnrbm_export.train", *QUICK, "--train-max-seqs", "200",
                             "--epochs", "1000", "--valid-every", "1000", "--out", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "last.json").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted: saved" in err and "Traceback" not in err
    card = json.loads((tmp_path / "last.json").read_text())
    assert card["epoch"] >= 1
    load_checkpoint(tmp_path / "last.safetensors")


def test_help_describes_every_option(capsys):
    with pytest.raises(SystemExit):
        train_main(["--help"])
    out = capsys.readouterr().out
    assert "the valid measure that picks" in out and "std of the RNN weights at init" in out
    flat = " ".join(out.split())
    assert "bundled: jsb_chorales, nottingham, musedata, piano_midi" in flat  # issue 11: the names
    assert "--optimizer {adam,sgd}" in flat and "--lr-schedule {constant,cosine,plateau}" in flat
    assert "--select {ll,acc}" in flat and "over all processes together (torchrun)" in flat
    for name in TrainSettings.__dataclass_fields__:
        assert f"--{name.replace('_', '-')}" in out


def test_a_folder_trains_from_its_memory_mapped_pack(tmp_path, capsys, monkeypatch):
    import mido

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "songs"
    folder.mkdir()
    for i in range(40):  # one note a beat, each file its own tune
        track = mido.MidiTrack()
        for beat in range(8 + i % 5):
            note = 48 + (i * 7 + beat * 5) % 24
            track += [mido.Message("note_on", note=note, velocity=80), mido.Message("note_off", note=note, time=480)]
        midi = mido.MidiFile(ticks_per_beat=480)
        midi.tracks.append(track)
        midi.save(folder / f"tune{i}.mid")
    out = tmp_path / "run"
    assert train_main([*QUICK[2:], "--data", str(folder), "--out", str(out), "--epochs", "1",
                       "--valid-every", "99"]) == 0
    assert len(list((tmp_path / "cache" / "rnnrbm-live" / "packs").glob("*.rolls"))) == 2  # train and valid
    assert "read " in capsys.readouterr().err
    assert json.loads((out / "last.json").read_text())["epoch"] == 1
