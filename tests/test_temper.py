"""Sampling temperature folded into a checkpoint: the tempered model against the contract's
temperature input, and rnnrbm-temper end to end on the repository's trained JSB checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnnrbm_export.checkpoint import load_checkpoint
from rnnrbm_export.evaluate import main as eval_main
from rnnrbm_export.measures import evaluate
from rnnrbm_export.model import RNNRBM, RNNRBMConfig
from rnnrbm_export.onnx_export import export_model
from rnnrbm_export.temper import main
from rnnrbm_live.midi.datasets import load_split

ROOT = Path(__file__).resolve().parents[1]
JSB = ROOT / "checkpoints" / "jsb_chorales" / "best.safetensors"
QUICK = ["--max-seqs", "4", "--runs", "10", "--temperatures", "40", "--device", "cpu", "--threads", "1"]


def small_model() -> RNNRBM:
    torch.manual_seed(3)
    model = RNNRBM(RNNRBMConfig(n_visible=12, n_hidden=9, n_recurrent=5, init_std=0.8, init_recurrent_std=0.5))
    with torch.no_grad():
        model.bv.normal_()
        model.bh.normal_()
        model.bu.normal_()
    return model


def test_the_tempered_model_plays_at_one_what_the_model_plays_at_that_temperature():
    model = small_model()
    u = torch.randn(64, 5).tanh()
    noise = torch.rand(64, 30, 9 + 12)
    zeros = torch.zeros(64, 12)
    for t in (0.5, 2.0):  # powers of two scale without rounding: the same samples bit for bit
        v_ref, u_ref = model.step(u, noise, zeros, zeros, torch.full((64, 1), t))
        v, u_next = model.tempered(t).step(u, noise, zeros, zeros, torch.ones(64, 1))
        assert torch.equal(v, v_ref) and torch.equal(u_next, u_ref)
        assert 0 < v.mean() < 1
    # Any temperature: every conditional probability the sampler uses is the same.
    t, tempered = 0.8, model.tempered(0.8)
    v = (torch.rand(64, 12) < 0.4).float()
    h = (torch.rand(64, 9) < 0.5).float()
    bv, bh = model.bv + u @ model.Wuv, model.bh + u @ model.Wuh
    tbv, tbh = tempered.bv + u @ tempered.Wuv, tempered.bh + u @ tempered.Wuh
    torch.testing.assert_close(torch.sigmoid(v @ tempered.W + tbh), torch.sigmoid((v @ model.W + bh) / t))
    torch.testing.assert_close(torch.sigmoid(h @ tempered.W.T + tbv), torch.sigmoid((h @ model.W.T + bv) / t))
    for name in ("Wvu", "Wuu", "bu", "u0"):  # the RNN reads the same history
        assert torch.equal(getattr(tempered, name), getattr(model, name))
    assert torch.equal(model.tempered(1.0).W, model.W)
    with pytest.raises(ValueError, match="temperature 0"):
        model.tempered(0)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """rnnrbm-temper on the repository's JSB checkpoint with no LL floor: the sharpest wins."""
    out = tmp_path_factory.mktemp("temper") / "sharp.safetensors"
    args = [str(JSB), "--data", "jsb_chorales", "--out", str(out), "--min-ll", "-100", "--candidates", "0.7", *QUICK]
    with pytest.MonkeyPatch.context() as mp:
        lines = []
        mp.setattr("builtins.print", lambda *a, **k: lines.append(" ".join(map(str, a))))
        assert main(args) == 0
    return out, args, lines


def test_temper_measures_the_trade_and_folds_in_the_choice(sweep, capsys):
    out, args, printed = sweep
    rows = json.loads(printed[-1])["valid"]
    assert [r["temperature"] for r in rows] == [1.0, 0.7]  # 1 is always measured
    at_one, sharp = rows
    # On a trained model a lower temperature trades LL for ACC.
    assert sharp["acc"] > at_one["acc"] + 1 and sharp["ll"] < at_one["ll"]
    table = printed[0].splitlines()
    assert "<- chosen" in table[2] and table[2].split()[0] == "0.7" and str(out) in printed[-2]

    source, source_card = load_checkpoint(JSB)
    model, card = load_checkpoint(out)
    for name in ("W", "bv", "bh", "Wuv", "Wuh"):
        torch.testing.assert_close(getattr(model, name), getattr(source, name) / 0.7)
    for name in ("Wvu", "Wuu", "bu", "u0"):
        assert torch.equal(getattr(model, name), getattr(source, name))
    assert card["config"] == source_card["config"] and card["command"] == source_card["command"]
    assert "metrics" not in card  # the source's describe another distribution
    record = card["tempered"]
    assert record["temperature"] == 0.7 and record["valid"] == rows and record["from"] == str(JSB)
    assert record["command"].startswith("rnnrbm-temper ") and "--min-ll -100" in record["command"]

    # rnnrbm-eval on the written checkpoint, and on the source at that temperature, measure
    # the same distribution: the numbers the choice was made on.
    measured = []
    for checkpoint, extra in ((out, []), (JSB, ["--sampling-temperature", "0.7"])):
        assert eval_main([str(checkpoint), "--data", "jsb_chorales", "--split", "valid", *QUICK,
                          "--acc-samples", "0", "--json-only", *extra]) == 0
        measured.append(json.loads(capsys.readouterr().out))
    for r in measured:
        assert r["ll"] == pytest.approx(sharp["ll"], abs=1e-9) and r["acc"] == pytest.approx(sharp["acc"], abs=1e-9)
    assert measured[1]["sampling_temperature"] == 0.7

    card = json.loads(export_model(model, card, out.parent / "exported")["card"].read_text())
    assert card["tempered"] == {"temperature": 0.7, "rule": "highest valid ACC with valid LL >= -100"}


def test_the_floor_keeps_the_model_when_tempering_costs_too_much(sweep, capsys):
    out, args, printed = sweep
    rows = json.loads(printed[-1])["valid"]
    floor = (rows[0]["ll"] + rows[1]["ll"]) / 2  # between the two: only temperature 1 passes
    kept = out.with_name("kept.safetensors")
    assert main([*args[:3], "--out", str(kept), "--min-ll", f"{floor:.9f}", *args[7:]]) == 0
    assert "1  " in capsys.readouterr().out.splitlines()[1]
    model, card = load_checkpoint(kept)
    assert card["tempered"]["temperature"] == 1.0 and card["tempered"]["valid"] == rows
    assert torch.equal(model.W, load_checkpoint(JSB)[0].W)


def test_importance_sampling_measures_the_same_trade(sweep, tmp_path):
    """--method is: the same frames and temperatures by importance sampling from the guided
    proposal. On JSB (not sharp) it agrees with AIS given enough temperatures (the sweep's
    quick AIS, 40 temperatures, flatters LL by half a nat), and the record says how it
    measured."""
    out, args, printed = sweep
    quick = json.loads(printed[-1])["valid"]
    lines = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("builtins.print", lambda *a, **k: lines.append(" ".join(map(str, a))))
        assert main([str(JSB), "--data", "jsb_chorales", "--out", str(tmp_path / "is.safetensors"), "--min-ll", "-100",
                     "--candidates", "0.7", "--method", "is", "--draws", "4096", "--max-seqs", "4",
                     "--threads", "1"]) == 0
    rows = json.loads(lines[-1])["valid"]
    assert [r["temperature"] for r in rows] == [1.0, 0.7] and [r["frames"] for r in rows] == [r["frames"] for r in quick]
    assert min(r["ess_median"] for r in rows) > 5  # small here: 4,096 candidates on 750 hidden units
    assert rows[1]["acc"] > rows[0]["acc"] + 1 and rows[1]["ll"] < rows[0]["ll"]
    model = load_checkpoint(JSB)[0]
    settled = evaluate(model, load_split("jsb_chorales", "valid")[:4], n_runs=20, n_temps=500, acc_samples=0,
                       progress=False)
    assert rows[0]["ll"] == pytest.approx(settled["ll"], abs=0.1) and rows[0]["acc"] == pytest.approx(settled["acc"], abs=1.5)
    assert quick[0]["ll"] > settled["ll"] + 0.3
    record = load_checkpoint(tmp_path / "is.safetensors")[1]["tempered"]
    assert record["importance_sampling"].startswith("4,096 candidates") and "ais" not in record


@pytest.mark.parametrize("change, says", [
    ({"--min-ll": "50"}, "--min-ll 50: no candidate reaches it on valid"),
    ({"--candidates": "1,warm"}, "--candidates '1,warm'"),
    ({"--candidates": "0.9,-1"}, "temperature -1.0 is not positive"),
    ({"--out": str(JSB)}, "that is the source checkpoint"),
    ({"--out": "tempered.onnx"}, "--out tempered.onnx: name a .safetensors file"),
    ({"--method": "is", "--every": "0"}, "--every 0: give each as a positive number"),
])
def test_errors_are_one_line_and_write_nothing(tmp_path, capsys, change, says):
    opts = {"--data": "jsb_chorales", "--out": str(tmp_path / "t.safetensors"), "--min-ll": "-100",
            "--candidates": "0.9", "--max-seqs": "1", "--runs": "2", "--temperatures": "5", "--threads": "1"}
    opts.update(change)
    assert main([str(JSB), *(x for kv in opts.items() for x in kv)]) == 2
    out, err = capsys.readouterr()
    err = err.strip().split("\r")[-1]  # after the progress bar cleared itself
    assert err.startswith("rnnrbm-temper: ") and says in err and "\n" not in err
    if "--min-ll" in change:  # the measurements still show, to choose a floor from
        assert out.splitlines()[0].split() == ["temperature", "valid", "LL", "valid", "ACC"]
        assert [line.split()[0] for line in out.splitlines()[1:]] == ["1", "0.9"]
    assert not (tmp_path / "t.safetensors").exists()


def test_eval_refuses_bad_temperatures_and_tempered_metrics(capsys):
    base = [str(JSB), "--data", "jsb_chorales", "--max-seqs", "1", "--runs", "2", "--temperatures", "5"]
    assert eval_main([*base, "--sampling-temperature", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rnnrbm-eval: --sampling-temperature 0.0: give a positive number") and "\n" not in err
    assert eval_main([*base, "--sampling-temperature", "0.8", "--save-metrics"]) == 2
    err = capsys.readouterr().err.strip()
    assert "fold the temperature into a checkpoint with rnnrbm-temper" in err and "\n" not in err


def test_the_command_exits_cleanly_on_a_missing_checkpoint(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rnnrbm_export.temper", str(tmp_path / "nope"), "--data", "jsb_chorales",
                           "--out", str(tmp_path / "t.safetensors"), "--min-ll", "-7"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("rnnrbm-temper: ") and "nope" in proc.stderr and "Traceback" not in proc.stderr
