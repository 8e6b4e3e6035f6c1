"""evaluate() against exact answers on models small enough to enumerate, and rnnrbm-eval
end to end on a saved checkpoint (real computation, no mocks)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnrbm_export.ais import free_energy, log_partition_exact
from rnnrbm_export.checkpoint import load_checkpoint, save_checkpoint
from rnnrbm_export.evaluate import main
from rnnrbm_export.measures import evaluate, frame_accuracy, frame_biases
from rnnrbm_export.model import RNNRBM, RNNRBMConfig
from rnnrbm_export.uniforms import Uniforms
from rnnrbm_live.midi.datasets import load_split

ROOT = Path(__file__).resolve().parents[1]
N_V = 10  # 2^10 visible states: every conditional RBM can be summed exactly


def tiny_model(seed: int = 0) -> RNNRBM:
    torch.manual_seed(seed)
    model = RNNRBM(RNNRBMConfig(n_visible=N_V, n_hidden=8, n_recurrent=6, init_std=0.6,
                                init_recurrent_std=0.5, gibbs_steps=25))
    with torch.no_grad():
        model.bv.copy_(torch.randn(N_V) - 1)
        model.bh.copy_(torch.randn(8) * 0.5)
        model.bu.copy_(torch.randn(6) * 0.5)
    return model


def random_rolls(lengths: list[int], seed: int = 1, density: float = 0.3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.random((T, N_V)) < density).astype(np.uint8) for T in lengths]


def all_frames() -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=N_V)))


def exact_ll(model: RNNRBM, rolls: list[np.ndarray]) -> float:
    """Mean log P(v_t | v_<t) with every log Z_t summed exactly, one unpadded sequence at a time."""
    lls = []
    with torch.no_grad():
        for roll in rolls:
            v = torch.from_numpy(roll).float()[None]
            bv, bh = model.conditional_biases(v)
            log_z = log_partition_exact(model.W, bv[0], bh[0])
            lls.append(-free_energy(model.W.double(), v[0].double(), bv[0].double(), bh[0].double()) - log_z)
    return float(torch.cat(lls).mean())


def test_ll_matches_exact_enumeration():
    model, rolls = tiny_model(), random_rolls([6, 9, 4])
    r = evaluate(model, rolls, n_runs=100, n_temps=300, acc_samples=2, progress=False)
    exact = exact_ll(model, rolls)
    assert r["frames"] == 19 and r["sequences"] == 3
    assert abs(r["ll"] - exact) < 0.02, (r["ll"], exact)
    assert abs(r["ll"] - exact) < 4 * r["logz_sem_mean"] / np.sqrt(r["frames"]) + 0.005
    assert 0 < r["ll_sem"] < 1 and 0 < r["logz_sem_mean"] < 0.05


def test_deterministic_model_scores_100_percent_even_on_silent_frames():
    # W = 0 and no history effect: each frame's RBM is its visible bias alone, +-120 so
    # that float32 sigmoids are exactly 1 and 0 and the only possible sample is the data
    # (including a silent frame sampled silent: 0/0 counts as right).
    model = tiny_model()
    pattern = np.array([1, 0, 0, 1, 1, 0, 0, 0, 1, 0], dtype=np.uint8)
    with torch.no_grad():
        model.W.zero_()
        model.Wuv.zero_()
        model.bv.copy_(torch.from_numpy(pattern * 240.0 - 120.0))
    r = evaluate(model, [np.tile(pattern, (5, 1))], n_runs=5, n_temps=10, acc_samples=4, progress=False)
    assert r["acc"] == 100.0 and r["acc_chain"] == 100.0 and r["acc_sem"] == 0.0
    assert abs(r["ll"]) < 1e-9  # log P = log 1

    with torch.no_grad():
        model.bv.fill_(-120.0)
    silent = evaluate(model, [np.zeros((3, N_V), np.uint8)], n_runs=5, n_temps=10, acc_samples=4, progress=False)
    assert silent["acc"] == 100.0 and silent["acc_chain"] == 100.0


def test_independent_bernoulli_model_against_closed_form():
    # W = 0: frames are independent Bernoullis with p = sigmoid(bv_t); the expected
    # accuracy is a sum over the 2^10 possible samples, and log P is exact.
    model = tiny_model(seed=2)
    with torch.no_grad():
        model.W.zero_()
    rolls = random_rolls([4, 3], seed=3, density=0.4)
    r = evaluate(model, rolls, n_runs=3000, n_temps=5, acc_samples=3000, acc_gibbs=1, seed=1, progress=False)

    with torch.no_grad():
        v = torch.from_numpy(np.concatenate(rolls)).float()
        bv = torch.cat([model.conditional_biases(torch.from_numpy(x).float()[None])[0][0] for x in rolls])
    p = torch.sigmoid(bv.double())  # [N, n_v]
    states = all_frames().double()  # [1024, n_v]
    prob = torch.exp(states @ torch.log(p).T + (1 - states) @ torch.log1p(-p).T)  # [1024, N]
    acc_each = torch.stack([frame_accuracy(states, v[i].double().expand_as(states))[0] for i in range(len(v))], 1)
    expected_acc = 100 * float((prob * acc_each).sum(0).mean())
    expected_ll = float((v * torch.log(p) + (1 - v) * torch.log1p(-p)).sum(1).mean())

    assert abs(r["ll"] - expected_ll) < 1e-5, (r["ll"], expected_ll)
    mc_se = 50 / np.sqrt(3000 * r["frames"])  # per-draw accuracy spread is at most 0.5
    assert abs(r["acc"] - expected_acc) < 4 * mc_se, (r["acc"], expected_acc)
    assert abs(r["acc_chain"] - expected_acc) < 4 * mc_se, (r["acc_chain"], expected_acc)
    assert r["acc_gibbs"] == 1 and r["acc_ess_min"] > 3000 - 1e-6  # W = 0: every weight is equal


def test_acc_on_a_trained_model_is_what_long_chains_from_the_previous_frame_find():
    # Nottingham's first bundled checkpoint (150 hidden units, 235 epochs; checkpoints/runs/
    # nott_a, the bundled model until session 8) on a real valid tune: a 25-step chain from silence
    # stays near silence (the step graph's sampler, kept as acc_chain), while the weighted
    # AIS samples agree with 400-step chains started at the true previous frame, which
    # begin next to the mode the tune is in. Both chain kinds target the same distribution.
    model, _ = load_checkpoint(ROOT / "checkpoints" / "runs" / "nott_a" / "best.safetensors")
    tune = load_split("nottingham", "valid")[:1]
    r = evaluate(model, tune, n_runs=100, n_temps=200, acc_samples=10, acc_gibbs=25, progress=False)

    v, bv, bh = frame_biases(model, tune)
    previous = torch.cat([torch.zeros(1, v.shape[1]), v[:-1]])
    with torch.no_grad():
        drawn = model.gibbs_chain(previous.repeat_interleave(10, 0), bv.repeat_interleave(10, 0),
                                  bh.repeat_interleave(10, 0), 400, Uniforms("cpu", 3))
    from_previous = 100 * float(frame_accuracy(drawn, v.repeat_interleave(10, 0))[0].mean())
    assert r["acc_chain"] < r["acc"] - 15, (r["acc_chain"], r["acc"])
    assert abs(r["acc"] - from_previous) < 5, (r["acc"], from_previous)
    assert r["acc"] > 50 and r["acc_ess_median"] > 10


def test_same_seed_same_result_and_the_model_is_untouched():
    model, rolls = tiny_model(), random_rolls([5, 5])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = evaluate(model, rolls, n_runs=10, n_temps=20, acc_samples=5, seed=3, progress=False)
    b = evaluate(model, rolls, n_runs=10, n_temps=20, acc_samples=5, seed=3, progress=False)
    c = evaluate(model, rolls, n_runs=10, n_temps=20, acc_samples=5, seed=4, progress=False)
    drop = ("seconds",)
    assert {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}
    assert a["ll"] != c["ll"] and a["acc_gibbs"] == 25  # the model's own gibbs_steps
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_frame_accuracy_counts():
    samples = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 1, 0]], dtype=torch.float32)
    target = torch.tensor([[1, 0, 0, 1], [0, 0, 0, 0], [1, 0, 0, 0], [1, 0, 1, 0]], dtype=torch.float32)
    acc, tp, union = frame_accuracy(samples, target)
    assert acc.tolist() == pytest.approx([1 / 3, 1.0, 0.0, 1.0])
    assert tp.tolist() == [1, 0, 0, 2] and union.tolist() == [3, 0, 1, 2]


# --- rnnrbm-eval ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "m.safetensors"
    save_checkpoint(path, RNNRBM(RNNRBMConfig(init_std=0.1, frames_per_beat=1)), {})
    return path


def test_cli_prints_a_table_and_one_json_line(checkpoint, capsys):
    args = [str(checkpoint), "--data", "jsb_chorales", "--split", "valid", "--max-seqs", "2",
            "--runs", "5", "--temperatures", "20", "--acc-samples", "3", "--device", "cpu"]
    assert main(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    first_two = load_split("jsb_chorales", "valid")[:2]
    assert result["frames"] == sum(len(s) for s in first_two) and result["sequences"] == 2
    assert result["checkpoint"] == str(checkpoint) and result["split"] == "valid"
    assert result["n_runs"] == 5 and result["n_temps"] == 20 and result["max_seqs"] == 2
    assert result["paper_rnn_rbm"] == {"ll": -6.27, "acc": 33.12}
    assert np.isfinite(result["ll"]) and result["ll"] < 0 and 0 <= result["acc"] <= 100
    table = "\n".join(out[:-1])
    assert "first 2 sequences only" in table and "-6.27" in table and "33.12" in table
    assert "ACC, chains" in table and 0 <= result["acc_chain"] <= 100 and 1 <= result["acc_ess_min"] <= 5

    assert main(args[:-4] + ["--acc-samples", "0", "--device", "cpu"]) == 0  # the chain measure skipped
    out = capsys.readouterr().out.strip().splitlines()
    assert json.loads(out[-1])["acc_chain"] is None and "ACC, chains" not in "\n".join(out[:-1])

    assert main(args + ["--json-only"]) == 0
    only = capsys.readouterr().out.strip().splitlines()
    assert len(only) == 1 and json.loads(only[0])["ll"] == result["ll"]


def test_cli_errors_are_one_line(checkpoint, tmp_path, capsys):
    assert main([str(tmp_path / "missing.safetensors"), "--data", "jsb_chorales"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rnnrbm-eval: ") and "missing.safetensors" in err and "\n" not in err

    assert main([str(checkpoint), "--data", "no_such_dataset", "--runs", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rnnrbm-eval: ") and "no_such_dataset" in err and "\n" not in err


def test_cli_exit_status_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rnnrbm_export.evaluate", str(tmp_path / "nope"), "--data", "jsb_chorales"],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("rnnrbm-eval: ")
    assert proc.stdout == ""


def test_saved_metrics_reach_the_exported_model_card(tmp_path, capsys):
    from rnnrbm_export.checkpoint import load_checkpoint
    from rnnrbm_export.onnx_export import export_model

    torch.manual_seed(0)
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, RNNRBM(RNNRBMConfig(init_std=0.1, frames_per_beat=1, gibbs_steps=3)), {"epoch": 1})
    assert main([str(path), "--data", "jsb_chorales", "--split", "test", "--max-seqs", "1", "--runs", "3",
                 "--temperatures", "10", "--acc-samples", "2", "--device", "cpu", "--json-only",
                 "--save-metrics"]) == 0
    printed = json.loads(capsys.readouterr().out.strip())
    model, card = load_checkpoint(path)
    assert card["epoch"] == 1  # the rest of the card is kept
    metrics = card["metrics"]
    assert metrics["split"] == "test" and metrics["LL"] == printed["ll"] and metrics["ACC"] == printed["acc"]
    assert "3 runs x 10 temperatures" in metrics["estimated_by"]
    paths = export_model(model, card, tmp_path / "exported")
    model_card = json.loads(paths["card"].read_text())
    assert model_card["metrics"]["LL"] == printed["ll"]
