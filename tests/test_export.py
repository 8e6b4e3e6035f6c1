"""rnnrbm-export: the ONNX step graph against the float32 torch reference, on real models.

The random models use large RBM weights and random biases so that units really flip; the
recurrent weights stay small enough for the RNN not to be chaotic. A chaotic one (say
std 0.3 at 100 recurrent units) amplifies the 1-ulp differences between MKL's tanh, which
torch uses, and any tanh onnxruntime has, until v differs: no graph can follow torch's u
through hundreds of fed-back frames then, so those rollouts would test the RNN, not the
export. The self-check (and test_chaotic_model_still_exports) covers them frame by frame.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from safetensors.numpy import load_file

from rnnrbm_export.checkpoint import save_checkpoint
from rnnrbm_export.model import CONTRACT_PARAMETERS, RNNRBM, RNNRBMConfig
from rnnrbm_export.onnx_export import export_model, main
from rnnrbm_export.proposal import Proposal
from rnnrbm_export.sampler import Sampler, noise_shape
from rnnrbm_export.step_check import ExportCheckError, reference_step, verify_step_graph
from rnnrbm_export.step_graph import build_step_graph
from rnnrbm_live.model.runners import session_options

ROOT = Path(__file__).resolve().parents[1]
METRICS = {"split": "test", "LL": -3.12, "ACC": 0.71, "estimated_by": "AIS, 100 chains"}


def random_model(n_hidden: int, n_recurrent: int, k: int, w_std: float, rec_std: float, seed: int) -> RNNRBM:
    torch.manual_seed(seed)
    model = RNNRBM(RNNRBMConfig(n_hidden=n_hidden, n_recurrent=n_recurrent, gibbs_steps=k, init_std=w_std,
                                init_recurrent_std=rec_std, dataset="random", learn_u0=True))
    with torch.no_grad():
        model.bv.normal_(0, 1)
        model.bh.normal_(0, 1)
        model.bu.normal_(0, 0.5)
        model.u0.normal_(0, 0.5).tanh_()
    return model


SMALL = dict(n_hidden=40, n_recurrent=16, k=10, w_std=0.5, rec_std=0.3, seed=1)
DEFAULT = dict(n_hidden=150, n_recurrent=100, k=25, w_std=0.5, rec_std=0.05, seed=2)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    """(model, paths) for each (size, graph design) used below, exported once."""
    out = tmp_path_factory.mktemp("export")
    made = {}
    for size, spec in (("small", SMALL), ("default", DEFAULT)):
        model = random_model(**spec)
        for graph in ("threshold", "sigmoid"):
            paths = export_model(model, {"metrics": METRICS}, out / f"{size}_{graph}", graph=graph)
            made[size, graph] = (model, paths)
    return made


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), session_options(1), providers=["CPUExecutionProvider"])


def _feeds(u: np.ndarray, noise, mask, value, temp) -> dict[str, np.ndarray]:
    return {"u_prev": u, "noise": noise, "clamp_mask": mask, "clamp_value": value, "temperature": temp}


def _agreeing(t: int, v, v_ref, u, u_ref, mask, value) -> np.ndarray:
    """v: onnxruntime's frame, asserted equal to the reference's, u within 1e-5, clamps held."""
    assert np.array_equal(v, v_ref), f"v differs at frame {t}"
    assert np.abs(u - u_ref).max() <= 1e-5, f"u differs at frame {t}"
    assert np.all(v[mask > 0] == value[mask > 0])
    return v


@pytest.mark.parametrize("size", ["small", "default"])
@pytest.mark.parametrize("graph", ["threshold", "sigmoid"])
def test_long_feedback_rollout_matches_torch(exported, size, graph):
    """500 frames at batch 8, each side fed its own u: v identical at every frame, u within 1e-5."""
    model, paths = exported[size, graph]
    c, session, rng = model.config, _session(paths["onnx"]), np.random.default_rng(7)
    batch, frames = 8, 500
    u_ref = u_onnx = np.tile(model.u0.detach().numpy(), (batch, 1))
    played = []
    for t in range(frames):
        noise = rng.random((batch, c.gibbs_steps, c.n_hidden + c.n_visible), dtype=np.float32)
        mask = (rng.random((batch, c.n_visible)) < (0.2 if t % 3 else 0.0)).astype(np.float32)
        value = (rng.random((batch, c.n_visible)) < 0.5).astype(np.float32)
        temp = rng.uniform(0.5, 2.0, (batch, 1)).astype(np.float32)
        v_ref, u_ref = reference_step(model, _feeds(u_ref, noise, mask, value, temp))
        v, u_onnx = session.run(None, _feeds(u_onnx, noise, mask, value, temp))
        played.append(_agreeing(t, v, v_ref, u_onnx, u_ref, mask, value))
    played = np.array(played)
    assert 0.1 < played.mean() < 0.9 and played.std(axis=0).mean() > 0.2  # units really flip


V2_SAMPLERS = {"chain from previous": Sampler("chain", 8, start="previous"),
               "chain from silence": Sampler("chain", 8),
               "sir, mixed bases": Sampler("sir", 6, chains=4, previous=2, lean=2.0),
               "sir, all leaning": Sampler("sir", 4, chains=3, previous=3, lean=4.0),
               "guided": Sampler("guided", 2, chains=16, lean=1.0)}


def random_proposal(model: RNNRBM, seed: int = 4) -> Proposal:
    """A proposal that reads both of its inputs: what a fit gives, in kind, without the data."""
    g = torch.Generator().manual_seed(seed)
    c = model.config
    P = torch.randn(c.n_recurrent + c.n_visible, c.n_visible, generator=g) * 0.5
    return Proposal(P, torch.randn(c.n_visible, generator=g) - 2, {"data": "random"})


def _noise(rng, batch: int, sampler: Sampler, c) -> np.ndarray:
    return rng.random((batch, *noise_shape(sampler, c.n_hidden, c.n_visible)), dtype=np.float32)


@pytest.fixture(scope="module")
def exported_v2(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("export_v2")
    model = random_model(**DEFAULT)
    model.proposal = random_proposal(model)
    return {name: (model, export_model(model, {"metrics": METRICS}, out / name.replace(" ", "_"), sampler=s), s)
            for name, s in V2_SAMPLERS.items()}


@pytest.mark.parametrize("name", list(V2_SAMPLERS))
def test_v2_long_feedback_rollout_matches_torch(exported_v2, name):
    """300 frames at batch 8, each side fed its own u and its own last frame as v_prev, with
    random clamps (every fifth frame listens) and temperatures 0.5..2: v identical at every
    frame, u within 1e-5."""
    model, paths, sampler = exported_v2[name]
    c, session, rng = model.config, _session(paths["onnx"]), np.random.default_rng(11)
    batch, frames = 8, 300
    u_ref = u_onnx = np.tile(model.u0.detach().numpy(), (batch, 1))
    v_ref = v_onnx = np.zeros((batch, c.n_visible), np.float32)
    played = []
    for t in range(frames):
        noise = _noise(rng, batch, sampler, c)
        mask = (rng.random((batch, c.n_visible)) < (0.2 if t % 3 else 0.0)).astype(np.float32)
        if t % 5 == 4:
            mask[:] = 1
        value = (rng.random((batch, c.n_visible)) < 0.3).astype(np.float32)
        temp = rng.uniform(0.5, 2.0, (batch, 1)).astype(np.float32)
        feeds = {"noise": noise, "clamp_mask": mask, "clamp_value": value, "temperature": temp}
        v_ref, u_ref = reference_step(model, {**feeds, "u_prev": u_ref, "v_prev": v_ref}, sampler)
        v_onnx, u_onnx = session.run(None, {**feeds, "u_prev": u_onnx, "v_prev": v_onnx})
        played.append(_agreeing(t, v_onnx, v_ref, u_onnx, u_ref, mask, value))
    played = np.array(played)
    assert 0.05 < played.mean() < 0.9 and played.std(axis=0).mean() > 0.2  # units really flip


@pytest.mark.parametrize("name", ["sir, mixed bases", "guided"])
def test_v2_single_rows_match_the_batched_reference(exported_v2, name):
    """B=1 (the live case) gives what the same row gives inside a batch."""
    model, paths, sampler = exported_v2[name]
    c, session, rng = model.config, _session(paths["onnx"]), np.random.default_rng(5)
    feeds = {"u_prev": np.tanh(rng.standard_normal((3, c.n_recurrent))).astype(np.float32),
             "v_prev": (rng.random((3, c.n_visible)) < 0.2).astype(np.float32),
             "noise": _noise(rng, 3, sampler, c),
             "clamp_mask": np.zeros((3, c.n_visible), np.float32), "clamp_value": np.zeros((3, c.n_visible), np.float32),
             "temperature": np.ones((3, 1), np.float32)}
    v_all, _ = session.run(None, feeds)
    for i in range(3):
        v_one, _ = session.run(None, {k: a[i:i + 1] for k, a in feeds.items()})
        assert np.array_equal(v_one[0], v_all[i])


def test_v2_the_previous_frame_matters_only_to_samplers_that_read_it(exported_v2):
    model, _, _ = exported_v2["chain from silence"]
    c, rng = model.config, np.random.default_rng(2)
    for name, (_, paths, sampler) in exported_v2.items():
        session = _session(paths["onnx"])
        noise = _noise(rng, 16, sampler, c)
        zeros = np.zeros((16, c.n_visible), np.float32)
        feeds = {"u_prev": np.tile(model.u0.detach().numpy(), (16, 1)), "noise": noise, "clamp_mask": zeros,
                 "clamp_value": zeros, "temperature": np.ones((16, 1), np.float32)}
        silent, _ = session.run(None, {**feeds, "v_prev": zeros})
        loud, _ = session.run(None, {**feeds, "v_prev": np.ones_like(zeros)})
        assert np.array_equal(silent, loud) == (not sampler.uses_previous), name


def test_v2_card_records_the_sampler(exported_v2):
    _, paths, sampler = exported_v2["sir, mixed bases"]
    card = json.loads(paths["card"].read_text())
    assert card["format"] == "rnnrbm-step/2" and card["gibbs_steps"] == sampler.steps
    assert {k: card["sampler"][k] for k in sampler.to_dict()} == sampler.to_dict()
    assert card["sampler"]["label"] == sampler.label() and card["metrics"] == METRICS
    assert [(i["name"], i["shape"]) for i in card["inputs"]] == [
        ("u_prev", ["B", 100]), ("v_prev", ["B", 88]), ("noise", ["B", 4, 7, 238]), ("clamp_mask", ["B", 88]),
        ("clamp_value", ["B", 88]), ("temperature", ["B", 1])]
    assert card["self_check"]["rows"] == 144


def test_v2_guided_card_and_weights_carry_the_proposal(exported_v2):
    """The flat noise of the guided step, its proposal's fit in the card, P and pb beside the
    contract tensors in the weights file (with the lean folded in, exactly)."""
    model, paths, sampler = exported_v2["guided"]
    card = json.loads(paths["card"].read_text())
    assert card["sampler"]["kind"] == "guided" and card["sampler"]["proposal"] == {"data": "random"}
    noise = next(i["shape"] for i in card["inputs"] if i["name"] == "noise")
    assert noise == ["B", 16 * (88 + 1) + 2 * (150 + 88)]
    tensors = load_file(str(paths["weights"]))
    assert set(tensors) == {*CONTRACT_PARAMETERS, "P", "pb"}
    assert np.array_equal(tensors["P"], model.proposal.P.numpy())


def test_lean_and_spread_fold_into_the_proposal_exactly():
    model = random_model(**SMALL)
    p, g = random_proposal(model), torch.Generator().manual_seed(0)
    u = torch.tanh(torch.randn(32, 16, generator=g))
    prev = (torch.rand(32, 88, generator=g) < 0.2).float()
    shaped = p.shaped(lean=1.5, spread=2.0)
    assert torch.allclose(shaped.logits(u, prev), p.logits(u, prev) / 2 + 1.5 * (2 * prev - 1), atol=1e-5)
    assert (shaped.fit["lean"], shaped.fit["spread"]) == (1.5, 2.0) and "lean" not in p.fit


def test_v2_self_check_rejects_a_guided_graph_of_another_proposal():
    model = random_model(**SMALL)
    model.proposal = random_proposal(model, seed=1)
    weights = {n: getattr(model, n).detach().numpy() for n in CONTRACT_PARAMETERS}
    weights.update({k: t.numpy() for k, t in random_proposal(model, seed=2).tensors().items()})
    sampler = Sampler("guided", 1, chains=8)
    with pytest.raises(ExportCheckError, match="disagree on v"):
        verify_step_graph(model, build_step_graph(weights, 1, sampler=sampler).SerializeToString(), 1, sampler=sampler)


def test_v2_self_check_rejects_a_graph_of_another_sampler():
    model = random_model(**SMALL)
    weights = {n: getattr(model, n).detach().numpy() for n in CONTRACT_PARAMETERS}
    mixed, leaning = Sampler("sir", 5, chains=4, previous=2, lean=2.0), Sampler("sir", 5, chains=4, previous=4, lean=2.0)
    with pytest.raises(ExportCheckError, match="disagree on v"):
        verify_step_graph(model, build_step_graph(weights, 5, sampler=leaning).SerializeToString(), 5, sampler=mixed)


def test_listening_reproduces_the_played_frames(exported):
    model, paths = exported["default", "threshold"]
    c, session, rng = model.config, _session(paths["onnx"]), np.random.default_rng(3)
    batch = 4
    u_ref = u_onnx = np.tile(model.u0.detach().numpy(), (batch, 1))
    ones = np.ones((batch, c.n_visible), np.float32)
    for t in range(200):
        frame = (rng.random((batch, c.n_visible)) < 0.1).astype(np.float32)
        noise = rng.random((batch, c.gibbs_steps, c.n_hidden + c.n_visible), dtype=np.float32)
        temp = rng.uniform(0.5, 2.0, (batch, 1)).astype(np.float32)
        v_ref, u_ref = reference_step(model, _feeds(u_ref, noise, ones, frame, temp))
        v, u_onnx = session.run(None, _feeds(u_onnx, noise, ones, frame, temp))
        assert np.array_equal(v, frame) and np.array_equal(v_ref, frame), f"frame {t}"
        assert np.abs(u_onnx - u_ref).max() <= 1e-5, f"u differs at frame {t}"


def test_chaotic_model_still_exports(tmp_path):
    """Recurrent std 0.3 at 100 units: fed-back rollouts diverge (see the module docstring),
    but every single step agrees, which is what the export checks."""
    model = random_model(150, 100, 25, 0.5, 0.3, seed=4)
    paths = export_model(model, {}, tmp_path / "chaotic")
    card = json.loads(paths["card"].read_text())
    assert card["self_check"]["max_abs_u_diff"] <= 1e-5


def test_card_fields_and_sha256(exported):
    model, paths = exported["default", "sigmoid"]
    card = json.loads(paths["card"].read_text())
    c = model.config
    assert card["format"] == "rnnrbm-step/1"
    assert (card["n_visible"], card["lowest_pitch"], card["n_hidden"], card["n_recurrent"]) == (88, 21, 150, 100)
    assert card["gibbs_steps"] == 25 and card["frames_per_beat"] == c.frames_per_beat
    assert np.array_equal(np.float32(card["u0"]), model.u0.detach().numpy())
    assert card["dataset"] == "random" and card["transposed_to"] == "C major/minor"
    assert card["metrics"] == METRICS and card["opset"] == 17
    assert [(i["name"], i["shape"]) for i in card["inputs"]] == [
        ("u_prev", ["B", 100]), ("noise", ["B", 25, 238]), ("clamp_mask", ["B", 88]),
        ("clamp_value", ["B", 88]), ("temperature", ["B", 1])]
    assert [(o["name"], o["shape"]) for o in card["outputs"]] == [("v", ["B", 88]), ("u", ["B", 100])]
    assert card["created"].endswith("+00:00")
    assert card["safetensors_sha256"] == hashlib.sha256(paths["weights"].read_bytes()).hexdigest()
    assert card["exporter"]["tool"] == "rnnrbm-export" and card["exporter"]["version"]
    assert card["graph"] == {"design": "sigmoid", "nodes": 14 * 25 + 20}
    assert json.loads(exported["default", "threshold"][1]["card"].read_text())["graph"]["nodes"] == 4 * 25 + 25


def test_weights_file_holds_exactly_the_contract_tensors(exported):
    model, paths = exported["small", "threshold"]
    tensors = load_file(str(paths["weights"]))
    assert sorted(tensors) == sorted(CONTRACT_PARAMETERS)
    for name, array in tensors.items():
        assert array.dtype == np.float32
        assert np.array_equal(array, getattr(model, name).detach().numpy())


def test_onnx_is_one_clean_self_contained_file(exported, tmp_path):
    _, paths = exported["small", "threshold"]
    proto = onnx.load(str(paths["onnx"]), load_external_data=False)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL and not t.external_data for t in proto.graph.initializer)
    assert proto.graph.name == "rnnrbm_step" and not proto.doc_string and not proto.graph.doc_string
    assert not proto.metadata_props and not any(n.doc_string for n in proto.graph.node)
    lone = tmp_path / "alone" / "model.onnx"
    lone.parent.mkdir()
    shutil.copy(paths["onnx"], lone)  # without its card and weights
    session = _session(lone)
    b = 2
    v, u = session.run(None, _feeds(np.zeros((b, 16), np.float32), np.random.rand(b, 10, 128).astype(np.float32),
                                    np.zeros((b, 88), np.float32), np.zeros((b, 88), np.float32),
                                    np.ones((b, 1), np.float32)))
    assert v.shape == (b, 88) and u.shape == (b, 16) and set(np.unique(v)) <= {0.0, 1.0}


def test_self_check_rejects_a_graph_of_other_weights():
    model, other = random_model(**SMALL), random_model(**{**SMALL, "seed": 9})
    weights = {n: getattr(other, n).detach().numpy() for n in CONTRACT_PARAMETERS}
    graph = build_step_graph(weights, 10).SerializeToString()
    with pytest.raises(ExportCheckError, match="disagree on v"):
        verify_step_graph(model, graph, 10)


def test_self_check_rejects_a_graph_with_the_wrong_k():
    model = random_model(**SMALL)
    weights = {n: getattr(model, n).detach().numpy() for n in CONTRACT_PARAMETERS}
    with pytest.raises(ExportCheckError, match="does not take this model's inputs"):
        verify_step_graph(model, build_step_graph(weights, 9).SerializeToString(), 10)


def _checkpoint(tmp_path: Path, model: RNNRBM, name: str = "ck") -> Path:
    path = tmp_path / f"{name}.safetensors"
    save_checkpoint(path, model, {"metrics": METRICS})
    return path


def test_failed_export_writes_nothing_and_keeps_an_earlier_export(tmp_path, capsys):
    good = _checkpoint(tmp_path, random_model(**SMALL), "good")
    assert main([str(good), "-o", str(tmp_path / "out" / "m")]) == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    diverged = random_model(**SMALL)
    with torch.no_grad():
        diverged.W[3, 5] = float("nan")
    bad = _checkpoint(tmp_path, diverged, "bad")
    capsys.readouterr()
    assert main([str(bad), "-o", str(tmp_path / "out" / "m")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("rnnrbm-export: self-check failed") and "non-finite values in W" in err
    assert "\n" not in err
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before
    assert main([str(bad), "-o", str(tmp_path / "fresh" / "m")]) == 1
    assert not (tmp_path / "fresh").exists() or not any((tmp_path / "fresh").iterdir())


def test_cli_exports_with_options(tmp_path, capsys):
    ck = _checkpoint(tmp_path, random_model(**SMALL))
    assert main([str(ck), "-o", str(tmp_path / "m13"), "--gibbs-steps", "5", "--opset", "13", "--sampler", "v1"]) == 0
    assert "self-check" in capsys.readouterr().out
    card = json.loads((tmp_path / "m13.onnx.json").read_text())
    assert card["gibbs_steps"] == 5 and card["opset"] == 13
    proto = onnx.load(str(tmp_path / "m13.onnx"))
    assert proto.opset_import[0].version == 13
    assert [d.dim_value for d in proto.graph.input[1].type.tensor_type.shape.dim[1:]] == [5, 128]


def test_cli_exports_version_2_by_default_with_sampler_metrics(tmp_path, capsys):
    ck = _checkpoint(tmp_path, random_model(**SMALL))
    measured = tmp_path / "measured.json"
    measured.write_text(json.dumps({"acc": {"played_acc": 61.0}}))
    assert main([str(ck), "-o", str(tmp_path / "m"), "--chains", "3", "--previous", "1", "--gibbs-steps", "4",
                 "--sampler-metrics", str(measured)]) == 0
    assert "sir R=3 K=4, 1 leaning" in capsys.readouterr().out
    card = json.loads((tmp_path / "m.onnx.json").read_text())
    assert card["format"] == "rnnrbm-step/2" and card["sampler_metrics"] == {"acc": {"played_acc": 61.0}}
    assert (card["sampler"]["chains"], card["sampler"]["steps"], card["sampler"]["previous"]) == (3, 4, 1)
    assert main([str(ck), "-o", str(tmp_path / "c"), "--sampler", "chain", "--gibbs-steps", "6"]) == 0
    card = json.loads((tmp_path / "c.onnx.json").read_text())
    assert card["sampler"]["kind"] == "chain" and card["sampler"]["start"] == "previous" and card["gibbs_steps"] == 6


def test_cli_exports_a_guided_step_fitting_its_proposal_on_the_training_data(tmp_path, capsys):
    """The proposal is fitted on the training split the checkpoint's card names, or on --data."""
    model = random_model(**SMALL)
    model.config.frames_per_beat = 1  # the chorales' grid
    ck = tmp_path / "ck.safetensors"
    save_checkpoint(ck, model, {"epoch": 1, "train_settings": {"data": "jsb_chorales"}})
    assert main([str(ck), "-o", str(tmp_path / "g"), "--sampler", "guided", "--chains", "8"]) == 0
    assert "guided R=8, lean 0, then K=1 sweeps" in capsys.readouterr().out
    card = json.loads((tmp_path / "g.onnx.json").read_text())
    fit = card["sampler"]["proposal"]
    assert card["sampler"]["kind"] == "guided" and fit["data"] == "jsb_chorales" and fit["frames"] == 13807
    assert main([str(ck), "-o", str(tmp_path / "h"), "--sampler", "guided", "--chains", "4", "--lean", "1",
                 "--data", "nottingham"]) == 2
    err = capsys.readouterr().err  # nottingham's grid is eighth notes, the model's quarter notes
    assert err.startswith("rnnrbm-export: --data nottingham: its grid is 2 frames per beat, the model's is 1")
    assert err.count("\n") == 1 and not list(tmp_path.glob("h.*"))


@pytest.mark.parametrize("args, message", [
    (["missing.safetensors"], "no such checkpoint"),
    (["CK", "--sampler", "guided"], "--data: the checkpoint does not say what it was trained on"),
    (["CK", "--sampler", "guided", "--spread", "0"], "--sampler guided: spread must be a positive number"),
    (["CK", "--spread", "2"], "--sampler sir: spread must be a positive number (1 but for guided)"),
    (["CK", "--chains", "0"], "--sampler sir: chains must be a positive integer"),
    (["CK", "--chains", "2", "--previous", "3"], "--sampler sir: previous must be 0..chains"),
    (["CK", "--sampler-metrics", "nope.json"], "--sampler-metrics nope.json: cannot read it as json"),
    (["CK", "--graph", "threshold"], "--graph threshold builds version 1 steps only"),
    (["CK", "--gibbs-steps", "0"], "--gibbs-steps must be a positive integer"),
    (["CK", "--opset", "5"], "--opset 5 is not supported"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, args, message):
    ck = _checkpoint(tmp_path, random_model(**SMALL))
    argv = [str(ck) if a == "CK" else str(tmp_path / a) if a.endswith(".safetensors") else a for a in args]
    assert main([*argv, "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnrbm-export: ") and message in err and err.count("\n") == 1
    assert not list(tmp_path.glob("out*"))


def test_cli_error_has_no_traceback_in_a_real_process(tmp_path):
    argv = [sys.executable, "-m", "rnnrbm_export.onnx_export", str(tmp_path / "nope"), "-o", str(tmp_path / "x")]
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.startswith("rnnrbm-export: ") and "Traceback" not in run.stderr
