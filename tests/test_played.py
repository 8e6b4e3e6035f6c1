"""'ACC, played' (export/played.py): the batched torch draws are exactly what the exported
graph plays given the true history, and rnnrbm-eval reports them."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from rnnrbm_export.checkpoint import save_checkpoint
from rnnrbm_export.evaluate import main
from rnnrbm_export.frames import frame_inputs
from rnnrbm_export.proposal import fit_proposal
from rnnrbm_export.model import RNNRBM, RNNRBMConfig
from rnnrbm_export.onnx_export import export_model
from rnnrbm_export.played import played_accuracies, previous_frames
from rnnrbm_export.sampler import DEFAULT_SAMPLER, Sampler, draw, noise_shape
from rnnrbm_live.midi.datasets import load_split
from rnnrbm_live.model.runners import session_options


def _model() -> RNNRBM:
    torch.manual_seed(3)
    model = RNNRBM(RNNRBMConfig(n_hidden=40, n_recurrent=16, init_std=0.4, init_recurrent_std=0.05,
                                frames_per_beat=1, dataset="random"))
    with torch.no_grad():
        model.bv.normal_(-2, 1)
        model.bh.normal_(0, 1)
    return model


@pytest.mark.parametrize("sampler", [Sampler("sir", 4, chains=3, previous=2, lean=2.0),
                                     Sampler("chain", 5, start="previous"),
                                     Sampler("guided", 2, chains=16, lean=0.5)], ids=["sir", "chain", "guided"])
def test_batched_draws_are_what_the_graph_plays_given_the_true_history(tmp_path, sampler):
    """Every frame of real chorales, batched in torch over frames (as the benchmark measures
    candidates) against onnxruntime fed the true history one frame at a time."""
    model = _model()
    sequences = load_split("jsb_chorales", "valid")[:2]
    if sampler.kind == "guided":
        model.proposal = fit_proposal(model, load_split("jsb_chorales", "train")[:20], data="jsb", steps=200)
    paths = export_model(model, {}, tmp_path / "m", sampler=sampler)
    session = ort.InferenceSession(str(paths["onnx"]), session_options(1), providers=["CPUExecutionProvider"])
    v, u_prev, bv, bh = frame_inputs(model, sequences)
    prev = previous_frames(sequences)
    a = model.proposal.logits(u_prev, prev) if model.proposal else None
    rng = np.random.default_rng(0)
    noise = rng.random((len(v), *noise_shape(sampler, 40, 88)), dtype=np.float32)
    zeros = torch.zeros(len(v), 88)
    batched = draw(sampler, model.W.detach(), bv, bh, prev, torch.from_numpy(noise), zeros, zeros,
                   torch.ones(len(v), 1), proposal=a).numpy()
    row, z = 0, np.zeros((1, 88), np.float32)
    for seq in sequences:
        u = model.u0.detach().numpy()[None]
        v_prev = z
        for t, frame in enumerate(seq.astype(np.float32)):
            feeds = {"u_prev": u, "v_prev": v_prev, "noise": noise[row:row + 1], "clamp_mask": z, "clamp_value": z,
                     "temperature": np.ones((1, 1), np.float32)}
            played, _ = session.run(None, feeds)
            assert np.array_equal(played[0], batched[row]), f"frame {t}"
            listened = {**feeds, "clamp_mask": np.ones_like(z), "clamp_value": frame[None]}
            _, u = session.run(None, listened)  # the true frame carries the history on
            v_prev, row = frame[None], row + 1
    assert row == len(v) and batched.sum() > 0


def test_a_better_sampler_plays_closer_to_the_data_than_v1s_chain():
    """On Nottingham's first bundled model (checkpoints/runs/nott_a), v1's chain from silence
    plays far below the annealed chains (issue 13: 44 against the model's own 60 on test)."""
    from rnnrbm_export.checkpoint import load_checkpoint

    model, _ = load_checkpoint("checkpoints/runs/nott_a/best.safetensors")
    sequences = load_split("nottingham", "valid")[:3]
    silence = played_accuracies(model, sequences, Sampler("chain", 25), samples=2)
    chosen = played_accuracies(model, sequences, DEFAULT_SAMPLER, samples=2)
    assert float(chosen.mean()) > float(silence.mean()) + 0.1


def test_rnnrbm_eval_reports_acc_played(tmp_path, capsys):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, _model(), {"epoch": 1})
    common = [str(path), "--data", "jsb_chorales", "--max-seqs", "2", "--runs", "3", "--temperatures", "5",
              "--acc-samples", "0", "--device", "cpu"]
    assert main([*common, "--played-samples", "2"]) == 0
    out = capsys.readouterr().out
    assert "ACC, played" in out and DEFAULT_SAMPLER.label() in out
    line = json.loads(out.strip().splitlines()[-1])
    assert 0 <= line["acc_played"] <= 100 and line["played_samples"] == 2
    v1 = export_model(_model(), {}, tmp_path / "v1")
    assert main([*common, "--json-only", "--played-card", str(v1["card"])]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["played_sampler"] == "chain from silence, K=25"
    assert main([*common, "--json-only", "--played-samples", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["acc_played"] is None
    assert main([*common, "--played-samples", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnrbm-eval: --played-samples -1") and err.count("\n") == 1


def test_rnnrbm_eval_plays_a_guided_card_with_the_proposal_beside_it(tmp_path, capsys):
    """'ACC, played' of a guided model uses the proposal its .safetensors holds; a weights
    file without one is refused in one line."""
    path = tmp_path / "m.safetensors"
    model = _model()
    save_checkpoint(path, model, {"epoch": 1})
    model.proposal = fit_proposal(model, load_split("jsb_chorales", "train")[:10], data="jsb", steps=100)
    sampler = Sampler("guided", 1, chains=8)
    guided = export_model(model, {}, tmp_path / "g", sampler=sampler)
    common = [str(path), "--data", "jsb_chorales", "--max-seqs", "2", "--runs", "3", "--temperatures", "5",
              "--acc-samples", "0", "--device", "cpu", "--json-only", "--played-card", str(guided["card"])]
    assert main(common) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["played_sampler"] == sampler.label() and 0 < line["acc_played"] <= 100
    plain = export_model(_model(), {}, tmp_path / "plain", sampler=DEFAULT_SAMPLER)
    guided["weights"].write_bytes(plain["weights"].read_bytes())
    assert main(common) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rnnrbm-eval: {guided['weights']}: no guided proposal in it") and err.count("\n") == 1
