"""rnnrbm-eval --shard I/N and --combine: the parts of a split, put back together, give
exactly the numbers of one unsharded run (same seed); parts that do not belong together
are refused in one line. Real checkpoints, real data, real AIS."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnnrbm_export.checkpoint import json_path, save_checkpoint
from rnnrbm_export.evaluate import main
from rnnrbm_export.measures import shard_frames
from rnnrbm_export.model import RNNRBM, RNNRBMConfig

ROOT = Path(__file__).resolve().parents[1]
# JSB test, first 5 chorales: a few hundred frames, so AIS chunks (20 frames at 100 runs)
# fall inside sequences and across their ends.
SMALL = ["--data", "jsb_chorales", "--split", "test", "--max-seqs", "5", "--runs", "100",
         "--temperatures", "20", "--acc-samples", "3", "--acc-gibbs", "5", "--played-samples", "2", "--seed", "7",
         "--device", "cpu", "--threads", "1", "--json-only"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("ckpt") / "m.safetensors"
    model = RNNRBM(RNNRBMConfig(n_hidden=24, n_recurrent=16, init_std=0.3, frames_per_beat=1))
    save_checkpoint(path, model, {"epoch": 1})
    return path


def run_json(argv: list[str], capsys) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _numbers(r: dict) -> dict:
    """What must agree between a whole run and a combined one: every number AIS, the
    chains and the step's sampler ("ACC, played") measured."""
    skip = {"seconds", "checkpoint", "part"}
    return {k: v for k, v in r.items() if k not in skip}


@pytest.mark.parametrize("n_shards", [2, 3, 7])
def test_combined_shards_equal_one_unsharded_run(checkpoint, tmp_path, capsys, n_shards):
    whole = run_json([str(checkpoint), *SMALL], capsys)
    parts_dir = tmp_path / "parts"
    for i in range(1, n_shards + 1):
        part = run_json([str(checkpoint), *SMALL, "--shard", f"{i}/{n_shards}", "--parts-dir",
                         str(parts_dir)], capsys)
        assert part["shard"] == [i, n_shards] and part["frames"] < whole["frames"]
    parts = sorted(str(p) for p in parts_dir.glob("*.safetensors"))
    assert len(parts) == n_shards
    combined = run_json(["--combine", *parts], capsys)
    assert _numbers(combined) == _numbers(whole)  # exactly: same floats, not merely close
    assert combined["frames"] == whole["frames"] > 100
    assert whole["acc_played"] is not None and whole["played_samples"] == 2


def test_acc_played_of_any_range_of_frames_is_that_range_of_a_whole_run(checkpoint):
    # The step's draws are keyed by chunk of the split, not by where a shard starts.
    from rnnrbm_export.checkpoint import load_checkpoint
    from rnnrbm_export.played import played_accuracies
    from rnnrbm_export.sampler import DEFAULT_SAMPLER
    from rnnrbm_live.midi.datasets import load_split

    model = load_checkpoint(checkpoint)[0]
    sequences = load_split("jsb_chorales", "test")[:5]
    whole = played_accuracies(model, sequences, DEFAULT_SAMPLER, samples=3, seed=4)
    for first, end in ((0, 1), (5, 170), (170, 171), (169, len(whole)), (100, 341)):
        part = played_accuracies(model, sequences, DEFAULT_SAMPLER, samples=3, seed=4,
                                 frames=slice(first, end))
        assert torch.equal(part, whole[first:end])


def test_shards_are_whole_chunks_covering_every_frame_once():
    for n_frames in (1, 19, 20, 21, 4725, 44463):
        for n in (1, 2, 5, 16):
            ranges = [shard_frames(n_frames, 20, (i, n)) for i in range(1, n + 1)]
            assert ranges[0][0] == 0 and ranges[-1][1] == n_frames
            for (a, b, c), (a2, _, _) in zip(ranges, ranges[1:]):
                assert b == a2 and a % 20 == 0 and c == a // 20


def test_combine_refuses_missing_doubled_and_foreign_parts(checkpoint, tmp_path, capsys):
    parts = tmp_path / "p"
    for i in (1, 2, 3):
        run_json([str(checkpoint), *SMALL, "--shard", f"{i}/3", "--parts-dir", str(parts)], capsys)
    other = tmp_path / "other"
    seed_8 = [("8" if prev == "--seed" else a) for prev, a in zip([None, *SMALL], SMALL)]
    run_json([str(checkpoint), *seed_8, "--shard", "3/3", "--parts-dir", str(other)], capsys)
    p = [str(parts / f"part-{i}-of-3.safetensors") for i in (1, 2, 3)]
    cases = [
        ([p[0], p[2]], "shard 2/3 missing"),
        ([p[0], p[1], p[1], p[2]], "given twice"),
        ([p[0], p[1], str(other / "part-3-of-3.safetensors")], "differs in"),
        ([p[0], str(tmp_path / "nope.safetensors")], "no such part file"),
        ([str(checkpoint)], "not a part written by rnnrbm-eval"),
    ]
    for files, words in cases:
        assert main(["--combine", *files]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and "\n" not in err and err.startswith("rnnrbm-eval: "), err


def test_a_shard_refuses_save_metrics_and_bad_shards_are_one_line(checkpoint, tmp_path):
    base = [sys.executable, "-m", "rnnrbm_export.evaluate", str(checkpoint), *SMALL]
    for extra, words in ((["--shard", "1/2", "--save-metrics"], "save the metrics when you --combine"),
                         (["--shard", "3/2"], "1 <= i <= n"), (["--shard", "x"], "give i/n"),
                         (["--shard", "90/90"], "use at most that many shards")):
        proc = subprocess.run(base + extra + ["--parts-dir", str(tmp_path)], capture_output=True,
                              text=True, timeout=120, cwd=ROOT)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert words in proc.stderr.lower(), proc.stderr


def test_combined_metrics_go_to_the_checkpoint_that_was_measured_even_moved(checkpoint, tmp_path, capsys):
    """--combine --save-metrics writes the card of the checkpoint the parts measured: where
    the parts say, or where it is now if named; a missing checkpoint or other weights are
    refused in one line, and nothing is written."""
    measured = tmp_path / "a" / "m.safetensors"
    measured.parent.mkdir()
    for src in (checkpoint, json_path(checkpoint)):
        shutil.copy(src, measured.parent / src.name)
    parts_dir = tmp_path / "parts"
    for i in (1, 2):
        run_json([str(measured), *SMALL, "--shard", f"{i}/2", "--parts-dir", str(parts_dir)], capsys)
    parts = sorted(str(p) for p in parts_dir.glob("*.safetensors"))
    moved = tmp_path / "b" / "m.safetensors"
    shutil.move(str(measured.parent), str(moved.parent))
    other = tmp_path / "other.safetensors"
    torch.manual_seed(4)
    save_checkpoint(other, RNNRBM(RNNRBMConfig(n_hidden=24, n_recurrent=16, frames_per_beat=1)), {"epoch": 1})
    for argv, words in ((["--combine", *parts], "no checkpoint at"),
                        ([str(other), "--combine", *parts], "holds other weights")):
        assert main([*argv, "--save-metrics"]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and "\n" not in err, err
    assert "metrics" not in json.loads(json_path(other).read_text())
    combined = run_json([str(moved), "--combine", *parts, "--save-metrics"], capsys)
    saved = json.loads(json_path(moved).read_text())["metrics"]
    assert saved["ll"] == combined["ll"] and saved["checkpoint"] == str(moved)
