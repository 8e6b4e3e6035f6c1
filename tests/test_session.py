"""StepSession and model loading on a real exported model (onnxruntime CPU provider)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

import rnnrbm_live.bundled as bundled
from rnnrbm_export.model import RNNRBM, RNNRBMConfig
from rnnrbm_export.onnx_export import export_model
from rnnrbm_export.proposal import Proposal
from rnnrbm_export.sampler import Sampler
from rnnrbm_live.errors import UserError
from rnnrbm_live.model.card import load_model
from rnnrbm_live.model.runners import DeviceRunner, cuda_unavailable_reason, initial_state, session_options
from rnnrbm_live.model.session import StepSession, pitch_range, scale_lock

N_HIDDEN, N_RECURRENT, K = 40, 16, 10
SAMPLER = Sampler("sir", 5, chains=4, previous=2, lean=2.0)  # uses every v2 input
GUIDED = Sampler("guided", 2, chains=8)
C_MAJOR = (0, 2, 4, 5, 7, 9, 11)
V1_FIXTURE = Path(__file__).parent / "fixtures" / "v1_tiny"  # exported by the code before v2


def _tiny_model() -> RNNRBM:
    torch.manual_seed(0)
    model = RNNRBM(RNNRBMConfig(n_hidden=N_HIDDEN, n_recurrent=N_RECURRENT, gibbs_steps=K, init_std=0.5,
                                init_recurrent_std=0.3, learn_u0=True, dataset="random"))
    with torch.no_grad():
        model.bv.normal_(-1, 1)
        model.bh.normal_(0, 1)
        model.u0.normal_(0, 0.5).tanh_()
    return model


@pytest.fixture(scope="module")
def stem(tmp_path_factory) -> Path:
    """A small exported (version 2) model with weights large enough for lively, varied frames."""
    out = tmp_path_factory.mktemp("model") / "tiny"
    export_model(_tiny_model(), {}, out, sampler=SAMPLER)
    return out


@pytest.fixture(scope="module")
def stem_guided(tmp_path_factory) -> Path:
    """The same model with the guided sampler (flat noise) and a proposal that reads u and v_prev."""
    out = tmp_path_factory.mktemp("model_guided") / "tinyg"
    model = _tiny_model()
    g = torch.Generator().manual_seed(3)
    model.proposal = Proposal(torch.randn(N_RECURRENT + 88, 88, generator=g), torch.randn(88, generator=g) - 2, {})
    export_model(model, {}, out, sampler=GUIDED)
    return out


@pytest.fixture(scope="module")
def stem_v1(tmp_path_factory) -> Path:
    """The same model exported by this code as a version 1 step (no sampler)."""
    out = tmp_path_factory.mktemp("model_v1") / "tiny1"
    export_model(_tiny_model(), {}, out)
    return out


def _start(stem, batch: int) -> np.ndarray:
    return initial_state(load_model(stem), batch)


@pytest.fixture
def copy_of(stem, tmp_path):
    """A fresh copy of the exported model's .onnx and card, to damage."""
    target = tmp_path / "m"
    for suffix in (".onnx", ".onnx.json"):
        shutil.copy(f"{stem}{suffix}", f"{target}{suffix}")
    return target


def _session(stem, **kw) -> StepSession:
    return StepSession(str(stem), device="cpu", **kw)


def test_frames_are_uint8_keys_and_the_provider_is_named(stem):
    s = _session(stem, batch=3, seed=1)
    v = s.step()
    assert v.shape == (3, 88) and v.dtype == np.uint8 and set(np.unique(v)) <= {0, 1}
    assert s.provider == "CPUExecutionProvider" and "CPUExecutionProvider" in s.describe()


@pytest.mark.parametrize("version", [2, 1, "2, guided"])
def test_session_runs_the_graph_with_its_own_noise_stream(stem, stem_v1, stem_guided, version):
    """The bound buffers and the alternating state buffers feed the graph what a plain run
    would: for version 2 the frame it played becomes its v_prev."""
    model = load_model({2: stem, 1: stem_v1}.get(version, stem_guided))
    version = 2 if version != 1 else 1
    s = _session(model.onnx_path, batch=2, seed=11, temperature=0.8)
    raw = ort.InferenceSession(str(model.onnx_path), session_options(1), providers=["CPUExecutionProvider"])
    rng, u, v = np.random.default_rng(11), np.tile(model.u0, (2, 1)), np.zeros((2, 88), np.float32)
    zeros, temp = np.zeros((2, 88), np.float32), np.full((2, 1), 0.8, np.float32)
    for t in range(40):
        noise = rng.random((2, *model.noise_shape), dtype=np.float32)
        feeds = {"u_prev": u, "noise": noise, "clamp_mask": zeros, "clamp_value": zeros, "temperature": temp}
        v, u = raw.run(None, {**feeds, "v_prev": v} if version == 2 else feeds)
        assert np.array_equal(s.step(), v.astype(np.uint8)), f"frame {t}"
        assert np.array_equal(s.state, np.concatenate([u, v], 1) if version == 2 else u)


def test_a_seed_reproduces_and_another_differs(stem):
    sessions = [_session(stem, batch=2, seed=seed) for seed in (5, 5, 6)]
    a, b, c = ([s.step() for _ in range(30)] for s in sessions)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_listening_returns_the_frames_and_the_state_follows_them(stem):
    s1, s2 = _session(stem, batch=2, seed=1), _session(stem, batch=2, seed=2)
    rng = np.random.default_rng(0)
    for _ in range(20):
        frames = (rng.random((2, 88)) < 0.1).astype(np.uint8)
        assert np.array_equal(s1.listen(frames), frames) and np.array_equal(s2.listen(frames), frames)
        assert np.array_equal(s1.state, s2.state)  # the noise plays no part when every unit is held


@pytest.mark.parametrize("which", ["sir", "guided"])
def test_clamped_units_never_differ_from_their_clamp(stem, stem_guided, which):
    s, rng = _session(stem if which == "sir" else stem_guided, batch=4, seed=3), np.random.default_rng(1)
    for _ in range(60):
        mask = rng.random((4, 88)) < 0.3
        value = rng.random((4, 88)) < 0.5
        v = s.step(clamp_mask=mask, clamp_value=value)
        assert np.array_equal(v[mask], value[mask])
    held = np.zeros(88, bool)
    held[[39, 43, 46]] = True  # one chord held on every stream
    for _ in range(20):
        assert np.all(s.step(clamp_mask=held, clamp_value=held)[:, held] == 1)
    assert np.all(s.step(clamp_mask=held)[:, held] == 0)  # a mask alone holds keys at 0


def test_a_scale_and_range_lock_keeps_keys_silent_but_the_players(stem):
    s = _session(stem, batch=4, seed=4)
    s.allowed = scale_lock(C_MAJOR) & pitch_range(48, 84)
    player = np.zeros(88, bool)
    player[66 - 21] = True  # F#4, outside the lock, held down by the player
    frames = np.array([s.step(clamp_mask=player, clamp_value=player) for _ in range(80)])
    outside = ~s.allowed & ~player
    assert frames[:, :, outside].sum() == 0
    assert np.all(frames[:, :, player] == 1)
    assert frames[:, :, s.allowed].sum() > 50  # the lock is not silence


def test_rolling_back_the_state_and_noise_replays_the_continuation(stem):
    s = _session(stem, batch=3, seed=8)
    for _ in range(5):
        s.step()
    state, noise = s.state, s.noise_state
    ahead = [s.step(clamp_mask=np.arange(88) % 7 == 0) for _ in range(15)]
    after = s.state
    s.state, s.noise_state = state, noise
    again = [s.step(clamp_mask=np.arange(88) % 7 == 0) for _ in range(15)]
    assert np.array_equal(ahead, again) and np.array_equal(s.state, after)
    state[0] = 0.5
    s.state = state
    assert np.array_equal(s.state, state)  # a copy goes in and a copy comes out
    with pytest.raises(ValueError, match="state must have shape"):
        s.state = np.zeros((2, N_RECURRENT))


def test_batch_rows_are_independent(stem):
    """Changing one stream's clamps or state leaves the other streams' frames unchanged."""
    s1, s2 = _session(stem, batch=3, seed=9), _session(stem, batch=3, seed=9)
    mask = np.zeros((3, 88), bool)
    mask[0] = True
    for _ in range(25):
        a, b = s1.step(), s2.step(clamp_mask=mask, clamp_value=mask)
        assert np.array_equal(a[1:], b[1:]) and np.all(b[0] == 1)
    s2.reset(rows=[0])
    assert np.array_equal(s2.state[0], _start(stem, 1)[0]) and np.array_equal(s1.state[1:], s2.state[1:])
    for _ in range(10):
        assert np.array_equal(s1.step()[1:], s2.step()[1:])


def test_reset_returns_every_stream_to_u0_after_silence(stem):
    s = _session(stem, batch=2, seed=0)
    for _ in range(5):
        s.step()
    s.reset()
    assert np.array_equal(s.state, _start(stem, 2))
    assert np.array_equal(s.state[:, :N_RECURRENT], np.tile(load_model(stem).u0, (2, 1)))
    assert not s.state[:, N_RECURRENT:].any()


def test_temperatures(stem):
    s = _session(stem, batch=2, seed=0, temperature=1.5)
    assert np.allclose(s.temperature, 1.5)
    s.step(temperature=[0.5, 2.0])
    for bad in (0, -1, float("nan")):
        with pytest.raises(UserError, match="temperature must be a positive number"):
            s.step(temperature=bad)
    with pytest.raises(UserError, match="temperature"):
        _session(stem, temperature=0)


def test_a_model_loads_from_any_of_its_paths(stem):
    names = {load_model(p).onnx_path for p in (str(stem), f"{stem}.onnx", f"{stem}.onnx.json", Path(f"{stem}.onnx"))}
    assert names == {Path(f"{stem}.onnx")}


def _edit_card(stem: Path, **changes) -> None:
    path = Path(f"{stem}.onnx.json")
    card = json.loads(path.read_text())
    card.update(changes)
    path.write_text(json.dumps(card))


@pytest.mark.parametrize("damage, message", [
    (lambda m: _edit_card(m, format="rnnrbm-step/3"), "m.onnx.json: format is 'rnnrbm-step/3'"),
    (lambda m: _edit_card(m, format="rnnrbm-step/1"),
     "m.onnx: the graph's inputs are u_prev, v_prev, noise, clamp_mask, clamp_value, temperature, not u_prev, noise"),
    (lambda m: _edit_card(m, sampler={**SAMPLER.to_dict(), "kind": "gibbs"}), "m.onnx.json: sampler kind is 'gibbs'"),
    (lambda m: _edit_card(m, sampler=None), "m.onnx.json: sampler kind is None"),
    (lambda m: _edit_card(m, sampler={**SAMPLER.to_dict(), "chains": 3}),
     "m.onnx.json: sampler chains is 3 but the graph's noise has 4 chains"),
    (lambda m: _edit_card(m, sampler={**SAMPLER.to_dict(), "steps": 9}), "m.onnx.json: sampler steps is 9 but gibbs_steps is 5"),
    (lambda m: _edit_card(m, n_hidden=150), "m.onnx.json: n_hidden is 150 but the graph's noise input has 128-88=40"),
    (lambda m: _edit_card(m, n_visible=87), "m.onnx.json: n_visible is 87 but the graph's clamp_mask has 88"),
    (lambda m: _edit_card(m, gibbs_steps=9, sampler={**SAMPLER.to_dict(), "steps": 9}),
     "m.onnx.json: gibbs_steps is 9 but the graph's noise has 5 steps (slots - 1)"),
    (lambda m: _edit_card(m, n_recurrent="16"), "m.onnx.json: n_recurrent is '16', not a positive integer"),
    (lambda m: _edit_card(m, u0=[0.0] * 3), "m.onnx.json: u0 should be 16 numbers (n_recurrent) but is 3 values"),
    (lambda m: Path(f"{m}.onnx.json").unlink(), "m.onnx.json: the model card is missing beside m.onnx"),
    (lambda m: Path(f"{m}.onnx.json").write_text("{not json"), "m.onnx.json: not a model card"),
    (lambda m: Path(f"{m}.onnx").write_bytes(b"this is not onnx"), "m.onnx: not a loadable onnx model"),
    (lambda m: Path(f"{m}.onnx").unlink(), "m.onnx: no such model file"),
])
def test_bad_model_files_are_refused_in_one_line(copy_of, damage, message):
    damage(copy_of)
    with pytest.raises(UserError) as error:
        StepSession(str(copy_of), device="cpu")
    text = str(error.value)
    assert message in text and "\n" not in text and str(copy_of.parent) in text


@pytest.mark.parametrize("damage, message", [
    (lambda m: _edit_card(m, sampler={**GUIDED.to_dict(), "chains": 3}),
     "m.onnx.json: sampler chains 3, gibbs_steps 2 and n_hidden 40 make 523 uniforms per frame but the graph's "
     "noise has 968"),
    (lambda m: _edit_card(m, sampler={**SAMPLER.to_dict(), "steps": 2}),
     "m.onnx.json: the graph's noise has shape ['B', 968], not 4-d"),
    (lambda m: _edit_card(m, n_hidden=41),
     "m.onnx.json: sampler chains 8, gibbs_steps 2 and n_hidden 41 make 970 uniforms per frame but the graph's "
     "noise has 968"),
])
def test_bad_guided_model_files_are_refused_in_one_line(stem_guided, tmp_path, damage, message):
    target = tmp_path / "m"
    for suffix in (".onnx", ".onnx.json"):
        shutil.copy(f"{stem_guided}{suffix}", f"{target}{suffix}")
    damage(target)
    with pytest.raises(UserError) as error:
        StepSession(str(target), device="cpu")
    text = str(error.value)
    assert message in text and "\n" not in text and str(tmp_path) in text


def test_an_unknown_name_lists_the_bundled_models(stem, tmp_path, monkeypatch):
    monkeypatch.setattr(bundled, "MODELS_DIR", tmp_path)
    with pytest.raises(UserError, match="bundled models are none in this install; or give the path"):
        load_model("nottingham")
    for suffix in (".onnx", ".onnx.json"):
        shutil.copy(f"{stem}{suffix}", tmp_path / f"tiny{suffix}")
    assert bundled.bundled_names() == ["tiny"] and load_model("tiny").name == "tiny"
    with pytest.raises(UserError, match="unknown model 'nottingham': bundled models are tiny"):
        load_model("nottingham")


def test_devices(stem):
    with pytest.raises(UserError, match="device must be one of auto, cpu, cuda"):
        StepSession(str(stem), device="tpu")
    reason = cuda_unavailable_reason()
    if reason is None:
        pytest.skip("a cuda provider loads here: the fallback cannot be seen")
    with pytest.raises(UserError, match=r"^cuda was asked for but onnxruntime's CUDAExecutionProvider is not "
                                        r"available \(.+\); use --device cpu or install onnxruntime-gpu"):
        StepSession(str(stem), device="cuda")
    s = StepSession(str(stem), device="auto")
    assert s.provider == "CPUExecutionProvider" and "no cuda" in s.describe() and "running on the cpu" in s.describe()


def test_the_device_path_on_the_cpu_provider(stem):
    """The GPU path's own logic (noise drawn in a prep graph, state carried by it, clamps
    uploaded when they change), run on the CPU provider since there may be no GPU."""
    model = load_model(stem)
    a, b = DeviceRunner(model, 3, 7, 1, "cpu"), DeviceRunner(model, 3, 7, 1, "cpu")
    runs = []
    for runner in (a, b):
        frames = []
        for t in range(20):
            runner.clamp_mask[:] = t % 2
            runner.clamp_value[:, :] = np.arange(88) % 5 == 0
            frames.append(runner.step().copy())
        runs.append(np.array(frames))
    assert np.array_equal(runs[0], runs[1])
    assert np.array_equal(runs[0][1::2], np.broadcast_to(np.arange(88) % 5 == 0, (10, 3, 88)))
    assert runs[0][0::2].std(axis=0).mean() > 0.1  # free frames vary
    assert not np.array_equal(a.get_state(), initial_state(model, 3))
    a.set_state(initial_state(model, 3))
    assert np.array_equal(a.get_state(), initial_state(model, 3))
    with pytest.raises(UserError, match="cannot be rewound"):
        a.get_noise_state()


def test_bundled_models_say_they_learned_music_in_c():
    from rnnrbm_live.model.card import load_model
    for name in ("nottingham", "jsb_chorales"):
        model = load_model(name)
        assert model.learned_in_c and model.card["transposed_to"] == "C major/minor"


@pytest.mark.parametrize("which", ["exported now", "fixture"])
def test_a_version_1_model_still_loads_and_plays(stem_v1, which):
    """Version 1 models (one chain from silence, no v_prev) keep working: loaded, checked,
    stepped, listened to, rolled back; their state is u alone."""
    path = stem_v1 if which == "exported now" else V1_FIXTURE
    model = load_model(str(path))
    assert model.version == 1 and model.card["format"] == "rnnrbm-step/1" and not model.takes_previous
    assert model.state_size == model.n_recurrent and "Gibbs steps" in model.summary()
    s = _session(path, batch=2, seed=3)
    frames = np.array([s.step() for _ in range(30)])
    assert frames.shape == (30, 2, 88) and frames.std(axis=0).mean() > 0.05
    heard = (np.random.default_rng(0).random((2, 88)) < 0.1).astype(np.uint8)
    assert np.array_equal(s.listen(heard), heard)
    state = s.state
    assert state.shape == (2, model.n_recurrent)
    again = [s.step() for _ in range(5)]
    s.state = state
    s.noise_state = s.noise_state
    assert len(again) == 5 and np.array_equal(s.state, state)
    device = DeviceRunner(model, 2, 7, 1, "cpu")
    assert device.step().shape == (2, 88) and device.get_state().shape == (2, model.n_recurrent)


def test_a_version_2_card_is_refused_in_front_of_a_version_1_graph(stem, stem_v1, tmp_path):
    shutil.copy(f"{stem_v1}.onnx", tmp_path / "x.onnx")
    card = json.loads(Path(f"{stem}.onnx.json").read_text())
    (tmp_path / "x.onnx.json").write_text(json.dumps(card))
    with pytest.raises(UserError, match=r"x.onnx: the graph's inputs are u_prev, noise, clamp_mask, clamp_value, "
                                        r"temperature, not u_prev, v_prev, .*not an rnnrbm-step/2 model"):
        load_model(tmp_path / "x")
