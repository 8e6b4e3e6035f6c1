"""Fuzzing every reader of user files: the seed corpus, a byte-mutation strategy, and one
target per reader. Used by tests/test_fuzz_readers.py (a short run in the suite) and
scripts/fuzz_readers.py (the long campaign).

A target takes bytes, puts them where the reader expects a user's file and calls the
reader. The project's one-line UserError is the only exception allowed out: anything else
is a defect, and hypothesis shrinks it to a small input.

Seeds: MIDI files under tests/fixtures/midi/ and tests/fuzz_corpus/midi/ (globbed, so
fixtures added later join in), MIDI files the tests' writer makes, and a real exported
model's card, .onnx and checkpoint.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path

import mido
from hypothesis import strategies as st

from rnnrbm_live.errors import UserError

TESTS = Path(__file__).resolve().parent
MIDI_SEED_FOLDERS = (TESTS / "fixtures" / "midi", TESTS / "fuzz_corpus" / "midi")
INTERESTING = (b"\x00", b"\xff", b"\x7f", b"\x80", b"\xff\xff\xff\x7f", b"\x00\x00\x00\x00",
               b"\xff\xff\xff\xff", b"MTrk", b"MThd", b"\xff\x51\x03", b"\xf0", b"\xf7",
               b"\x90\x3c\x40", b"\x80\x3c\x00", b'"', b"{", b"}", b"[", b"]", b"-1", b"1e308",
               b"NaN", b"null", b"true")


# ----------------------------------------------------------------------------- seeds


def written_midi() -> list[bytes]:
    """MIDI files made here with mido: tempo and meter changes, running status, drums,
    sysex, overlapping and unterminated notes, two tracks."""
    files = []
    for variant in range(3):
        mid = mido.MidiFile(type=1 if variant else 0, ticks_per_beat=(96, 480, 7)[variant])
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("set_tempo", tempo=500000 + 100000 * variant, time=0))
        track.append(mido.MetaMessage("time_signature", numerator=3, denominator=4, time=0))
        track.append(mido.MetaMessage("key_signature", key="E", time=0))
        track.append(mido.Message("sysex", data=[1, 2, 3], time=0))
        for i, note in enumerate((60, 64, 67, 72, 36, 108, 21)):
            track.append(mido.Message("note_on", note=note, velocity=90, channel=i % 3,
                                      time=10 * i))
            track.append(mido.Message("note_on", note=note, velocity=0, channel=i % 3,
                                      time=40 + variant))
        track.append(mido.Message("note_on", note=38, velocity=100, channel=9, time=5))
        track.append(mido.Message("note_on", note=50, velocity=70, time=3))  # never ends
        track.append(mido.MetaMessage("set_tempo", tempo=300000, time=7))
        mid.tracks.append(track)
        if variant:
            mid.tracks.append(mido.MidiTrack([mido.Message("note_on", note=62, time=100),
                                              mido.Message("note_off", note=62, time=200)]))
        with tempfile.TemporaryFile() as f:
            mid.save(file=f)
            f.seek(0)
            files.append(f.read())
    return files


def midi_seeds() -> list[bytes]:
    found = [p.read_bytes() for folder in MIDI_SEED_FOLDERS if folder.is_dir()
             for p in sorted(folder.rglob("*")) if p.suffix.lower() in (".mid", ".midi")]
    return found or written_midi()


def saved_crashes(kind: str) -> list[Path]:
    """Inputs that once broke a reader, kept under tests/fuzz_corpus/<kind>/."""
    folder = TESTS / "fuzz_corpus" / kind
    return sorted(folder.glob("*.bin")) if folder.is_dir() else []


# ----------------------------------------------------------------------------- mutations


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """A seed with a few byte-level mutations: flips, overwrites, inserts, deletes,
    truncation, interesting values, and splices of another seed."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate",
                                   "interesting", "splice"]))
        pos = draw(st.integers(0, max(0, len(data))))
        if op == "flip" and data:
            pos = min(pos, len(data) - 1)
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            pos = min(pos, len(data) - 1)
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[pos:]
        elif op == "interesting":
            value = draw(st.sampled_from(INTERESTING))
            data[pos:pos + len(value)] = value
        elif op == "splice":
            other = draw(st.sampled_from(seeds))
            start = draw(st.integers(0, max(0, len(other) - 1)))
            data[pos:] = other[start:start + draw(st.integers(1, 256))]
    return bytes(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12)


@st.composite
def card_edits(draw, card: dict) -> bytes:
    """A real card with some fields removed or replaced by any JSON value."""
    edited = dict(card)
    for key in draw(st.lists(st.sampled_from(sorted(card)), max_size=4)):
        if draw(st.booleans()):
            edited.pop(key, None)
        else:
            edited[key] = draw(json_values)
    return json.dumps(edited).encode()


# ----------------------------------------------------------------------------- targets


def _only_user_errors(call) -> None:
    """Only the one-line UserError may come out, and nothing may be printed (a third
    party's noise in the user's terminal)."""
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            call()
    except UserError as e:
        assert "\n" not in str(e), f"a user error of more than one line: {e!r}"
    assert not printed.getvalue(), f"printed: {printed.getvalue()[:200]!r}"


def read_midi_bytes(data: bytes, folder: Path) -> None:
    from rnnrbm_live.midi.reader import read_midi
    path = folder / "fuzz.mid"
    path.write_bytes(data)
    _only_user_errors(lambda: read_midi(path))
    _only_user_errors(lambda: read_midi(path, dt=0.05, include_drums=True, max_frames=5000))


def read_midi_folder(files: list[bytes], folder: Path) -> None:
    """A folder dataset of these files (every split), with a cache of its own."""
    from rnnrbm_live.midi.datasets import load_split
    data = folder / "data"
    data.mkdir(exist_ok=True)
    for old in data.iterdir():
        old.unlink()
    for i, content in enumerate(files):
        (data / f"f{i}.mid").write_bytes(content)
    for split in ("train", "valid", "test"):
        with contextlib.redirect_stderr(io.StringIO()):
            _only_user_errors(lambda: load_split(data, split, cache_dir=folder / "cache"))


def damage_roll_cache(data: bytes, folder: Path) -> None:
    """Every entry of a folder dataset's roll cache replaced by `data`, then read again."""
    from rnnrbm_live.midi.datasets import load_split
    for entry in (folder / "cache" / "rolls").glob("*.npz"):
        entry.write_bytes(data)
    for split in ("train", "valid", "test"):
        with contextlib.redirect_stderr(io.StringIO()):
            _only_user_errors(lambda: load_split(folder / "data", split,
                                                 cache_dir=folder / "cache"))


def load_model_files(onnx: bytes, card: bytes, folder: Path) -> None:
    from rnnrbm_live.model.card import load_model
    (folder / "m.onnx").write_bytes(onnx)
    (folder / "m.onnx.json").write_bytes(card)
    _only_user_errors(lambda: load_model(str(folder / "m")))


def load_checkpoint_files(weights: bytes, card: bytes, state: bytes, folder: Path) -> None:
    """What rnnrbm-train --resume reads: last.safetensors, last.json, last.state.*."""
    from rnnrbm_export.checkpoint import load_checkpoint, load_state
    path = folder / "last.safetensors"
    path.write_bytes(weights)
    (folder / "last.json").write_bytes(card)
    (folder / "last.state.safetensors").write_bytes(state)
    _only_user_errors(lambda: load_checkpoint(path))
    _only_user_errors(lambda: load_state(path))
