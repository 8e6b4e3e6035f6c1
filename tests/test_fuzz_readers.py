"""A short fuzz run over every reader of user files (tests/fuzz_targets.py): mutated MIDI
files, folder datasets and their roll cache, model cards and .onnx files, checkpoints
for --resume. Only the project's one-line UserError may come out. The long campaign is
scripts/fuzz_readers.py; inputs that once broke a reader are kept in REGRESSIONS."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzz_targets as ft

SHORT = settings(max_examples=60, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MIDI_SEEDS = ft.midi_seeds()


@pytest.fixture(scope="module")
def model_seeds(live_model):
    onnx = Path(live_model)
    return onnx.read_bytes(), Path(str(onnx) + ".json").read_bytes()


@pytest.fixture(scope="module")
def checkpoint_seeds(tmp_path_factory):
    import torch
    from rnnrbm_export.checkpoint import save_checkpoint
    from rnnrbm_export.model import RNNRBM, RNNRBMConfig
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    model = RNNRBM(RNNRBMConfig(n_hidden=8, n_recurrent=6))
    save_checkpoint(folder / "last.safetensors", model, {"epoch": 2, "history": []},
                    {"opt.step": torch.zeros(1), "rng.uniforms": torch.arange(3)})
    return tuple((folder / name).read_bytes() for name in
                 ("last.safetensors", "last.json", "last.state.safetensors"))


def test_the_midi_corpus_is_there():
    assert len(MIDI_SEEDS) >= 3


@SHORT
@given(st.data())
def test_fuzz_read_midi(data):
    with tempfile.TemporaryDirectory() as folder:
        ft.read_midi_bytes(data.draw(ft.mutated(MIDI_SEEDS)), Path(folder))


@settings(SHORT, max_examples=15)
@given(st.data())
def test_fuzz_folder_dataset_and_its_cache(data):
    files = data.draw(st.lists(ft.mutated(MIDI_SEEDS), min_size=1, max_size=12))
    with tempfile.TemporaryDirectory() as folder:
        ft.read_midi_folder(files, Path(folder))
        ft.damage_roll_cache(data.draw(ft.mutated(MIDI_SEEDS + [b"PK\x03\x04"])),
                             Path(folder))


@settings(SHORT, max_examples=40)
@given(st.data())
def test_fuzz_model_card_and_onnx(model_seeds, data):
    onnx, card = model_seeds
    if data.draw(st.booleans()):
        card = data.draw(ft.card_edits(json.loads(card)))
    else:
        onnx = data.draw(ft.mutated([onnx]))
    with tempfile.TemporaryDirectory() as folder:
        ft.load_model_files(onnx, card, Path(folder))


@settings(SHORT, max_examples=40)
@given(st.data())
def test_fuzz_checkpoint_for_resume(checkpoint_seeds, data):
    weights, card, state = checkpoint_seeds
    which = data.draw(st.sampled_from(["weights", "card", "edit card", "state"]))
    if which == "weights":
        weights = data.draw(ft.mutated([weights]))
    elif which == "card":
        card = data.draw(ft.mutated([card]))
    elif which == "edit card":
        card = data.draw(ft.card_edits(json.loads(card)))
    else:
        state = data.draw(ft.mutated([state]))
    with tempfile.TemporaryDirectory() as folder:
        ft.load_checkpoint_files(weights, card, state, Path(folder))


@pytest.mark.parametrize("path", ft.saved_crashes("state"), ids=lambda p: p.stem)
def test_saved_crash_training_state(path, checkpoint_seeds, tmp_path):
    weights, card, _ = checkpoint_seeds
    ft.load_checkpoint_files(weights, card, path.read_bytes(), tmp_path)


@pytest.mark.parametrize("path", ft.saved_crashes("checkpoint_card"), ids=lambda p: p.stem)
def test_saved_crash_checkpoint_card(path, checkpoint_seeds, tmp_path):
    weights, _, state = checkpoint_seeds
    ft.load_checkpoint_files(weights, path.read_bytes(), state, tmp_path)


@pytest.mark.parametrize("kind", ["midi", "model_card", "onnx"])
def test_saved_crashes_of_the_other_readers(kind, model_seeds, tmp_path):
    for path in ft.saved_crashes(kind):
        if kind == "midi":
            ft.read_midi_bytes(path.read_bytes(), tmp_path)
        elif kind == "model_card":
            ft.load_model_files(model_seeds[0], path.read_bytes(), tmp_path)
        else:
            ft.load_model_files(path.read_bytes(), model_seeds[1], tmp_path)
