"""Tests for rnnrbm_live.offline (the `continue` and `generate` commands and their Python
API), plot and render. Every written file is parsed back twice: read_midi on the model's
grid for the notes, mido for the meta events and the exact length in ticks.

Two models are exported here with torch: a random one (large init, so it plays notes) and
a "triad" one that plays only C4-E4-G4 whatever it heard, on a quarter-note grid. The
triad model stands in for a model that learned music in C: its continuations must come
out in the primer's key, which a random model cannot show."""

from __future__ import annotations

import argparse
import os
import re
import struct
import sys
from fractions import Fraction
from pathlib import Path

import mido
import numpy as np
import pytest

from conftest import needs
from rnnrbm_live.midi import keys
from rnnrbm_live.cli import offline as offline_cli
from rnnrbm_live.offline import continuation as offline, output, render
from rnnrbm_live.errors import UserError
from rnnrbm_live.offline.continuation import (bar_frames, continue_midi, generate,
                                              parse_time_signature)
from rnnrbm_live.offline.primer import frame_of
from rnnrbm_live.midi.reader import read_midi
from rnnrbm_live.midi.roll import LOWEST_PITCH
from rnnrbm_live.model.session import StepSession

TPB = 96  # the primers' ticks per beat: not the writer's default, so copying it is tested

# ----------------------------------------------------------------------------- models


def _export(folder: Path, name: str, config_kw: dict, tweak=None) -> str:
    torch = pytest.importorskip("torch")
    from rnnrbm_export.model import RNNRBM, RNNRBMConfig
    from rnnrbm_export.onnx_export import export_model

    torch.manual_seed(0)
    model = RNNRBM(RNNRBMConfig(dataset=name, **config_kw))
    if tweak is not None:
        with torch.no_grad():
            tweak(model)
    export_model(model, {}, folder / name)
    return str(folder / name)


@pytest.fixture(scope="session")
def random_model(tmp_path_factory) -> str:
    """88/150/100, eighth-note grid, large weights so it plays; bv < 0 keeps it sparse."""
    def sparser(model):
        model.bv.fill_(-2.0)
    return _export(tmp_path_factory.mktemp("models"), "random",
                   dict(init_std=0.5, init_recurrent_std=0.3, gibbs_steps=10), sparser)


@pytest.fixture(scope="session")
def triad_model(tmp_path_factory) -> str:
    """Plays C4, E4 and G4 in every frame and nothing else (W = 0, bv = +-12), on a
    quarter-note grid: a model that 'learned' C major, whatever it listens to."""
    def c_major_triad(model):
        model.bv.fill_(-12.0)
        model.bv[[60 - LOWEST_PITCH, 64 - LOWEST_PITCH, 67 - LOWEST_PITCH]] = 12.0
    return _export(tmp_path_factory.mktemp("models"), "triad",
                   dict(init_std=0.0, init_recurrent_std=0.0, gibbs_steps=2,
                        frames_per_beat=1), c_major_triad)


# ----------------------------------------------------------------------------- primers


def write_primer(path: Path, notes, *, time_signature=(4, 4), key=None,
                 tempos=((0.0, 100.0),), channel=0) -> Path:
    """A format-1 file written with mido alone: notes are (pitch, start beat, beats)."""
    events = [(0, 0, mido.MetaMessage("time_signature", numerator=time_signature[0],
                                      denominator=time_signature[1]))]
    if key:
        events.append((0, 0, mido.MetaMessage("key_signature", key=key)))
    events += [(round(beat * TPB), 1, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)))
               for beat, bpm in tempos]
    for pitch, start, length in notes:
        events.append((round(start * TPB), 3, mido.Message(
            "note_on", note=pitch, velocity=90, channel=channel)))
        events.append((round((start + length) * TPB), 2, mido.Message(
            "note_off", note=pitch, channel=channel)))
    track, now = mido.MidiTrack(), 0
    for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(msg.copy(time=tick - now))
        now = tick
    midi = mido.MidiFile(type=1, ticks_per_beat=TPB)
    midi.tracks.append(track)
    midi.save(path)
    return path


def e_major_notes(beats: float = 10.0):
    """An E major scale in eighths over tonic and dominant chords: `beats` beats long."""
    scale = [64, 66, 68, 69, 71, 73, 75, 76, 75, 73, 71, 69, 68, 66, 64, 66, 68, 71, 68, 64]
    melody = [(p, i / 2, 0.5) for i, p in enumerate(scale) if i / 2 < beats]
    chords = [(p, b, 2) for b, chord in ((0, (52, 56, 59)), (2, (59, 63, 66)),
                                         (4, (52, 56, 59)), (6, (57, 61, 64)),
                                         (8, (52, 56, 59))) if b < beats for p in chord]
    return melody + [(p, b, min(2, beats - b)) for p, b, _ in chords]


def b_flat_minor_notes():
    """Bb minor (natural and harmonic) over i - iv - V - i, 6 beats (two bars of 6/8)."""
    melody = [70, 72, 73, 75, 77, 78, 77, 75, 73, 72, 70, 69]
    chords = [((58, 61, 65), 0), ((63, 66, 70), 1.5), ((65, 69, 72), 3), ((58, 61, 65), 4.5)]
    return [(p, i / 2, 0.5) for i, p in enumerate(melody)] + \
        [(p, b, 1.5) for chord, b in chords for p in chord]


@pytest.fixture
def e_major(tmp_path) -> Path:
    """2.5 bars of 4/4 in E major, tempo 100 then 90 from beat 4, channel 4 (0-based 3)."""
    return write_primer(tmp_path / "e-major.mid", e_major_notes(10), key="E", channel=3,
                        tempos=((0, 100.0), (4, 90.0)))


@pytest.fixture
def b_flat_minor(tmp_path) -> Path:
    return write_primer(tmp_path / "bb-minor.mid", b_flat_minor_notes(), key="Bbm",
                        time_signature=(6, 8), tempos=((0, 72.0),), channel=1)


def test_primers_are_in_the_keys_they_claim(e_major, b_flat_minor):
    # The key tests below lean on these estimates, so pin them first.
    assert keys.estimate_key(read_midi(e_major).roll)[:2] == (4, "major")
    assert keys.estimate_key(read_midi(b_flat_minor).roll)[:2] == (10, "minor")


# ----------------------------------------------------------------------------- helpers


def file_facts(path: Path) -> dict:
    """What mido sees in a written file: length in ticks, tempos, meta (first of each,
    any track), the last track's name and the channels and program of its notes."""
    midi = mido.MidiFile(path)
    tempos, channels, meta, ends = [], set(), {}, []
    for track in midi.tracks:
        now = 0
        for msg in track:
            now += msg.time
            if msg.type == "set_tempo":
                tempos.append((now, msg.tempo))  # microseconds per beat: exact
            elif msg.type in ("time_signature", "key_signature"):
                meta.setdefault(msg.type, msg)
        ends.append(now)
    last = midi.tracks[-1]
    channels = {m.channel for m in last if m.type in ("note_on", "note_off")}
    programs = [m.program for m in last if m.type == "program_change"]
    ts = meta.get("time_signature")
    key = meta.get("key_signature")
    return dict(type=midi.type, tracks=len(midi.tracks), tpb=midi.ticks_per_beat,
                ticks=max(ends), last=last[-1].type, tempos=sorted(tempos),
                channels=channels, name=last.name, programs=programs,
                time_signature=(ts.numerator, ts.denominator) if ts else None,
                key=key.key if key else None)


def us(bpm: float) -> int:
    return mido.bpm2tempo(bpm)


def trim(roll: np.ndarray) -> np.ndarray:
    """A roll without its trailing silent frames, as read_midi gives it back."""
    sounding = np.nonzero(roll.any(axis=1))[0]
    return roll[: sounding[-1] + 1] if sounding.size else roll[:0]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rnnrbm-live")
    offline_cli.add_commands(p.add_subparsers(dest="command"))
    return p


def run_cli(argv: list[str]) -> int:
    args = parser().parse_args([str(a) for a in argv])
    return args.func(args)


def listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ----------------------------------------------------------------------------- the grid


def test_bar_length_comes_from_the_time_signature_and_the_models_grid():
    assert bar_frames((4, 4), 2) == 8
    assert bar_frames((3, 4), 2) == 6
    assert bar_frames((6, 8), 2) == 6
    assert bar_frames((2, 2), 1) == 4
    assert bar_frames((7, 8), 1) == Fraction(7, 2)
    # Bar lines off the grid round up to the next frame (7/8, 96 ticks a quarter).
    assert [frame_of(b * 336, 96, 1) for b in range(5)] == [0, 4, 7, 11, 14]
    assert parse_time_signature("6/8") == (6, 8) == parse_time_signature((6, 8))
    for bad in ("4", "4/3", "0/4", "x/4", "3/4/4"):
        with pytest.raises(UserError, match="numerator/denominator"):
            parse_time_signature(bad)


# ----------------------------------------------------------------------------- continue


def test_continue_writes_primer_then_exactly_the_asked_bars(random_model, e_major,
                                                             tmp_path):
    out = tmp_path / "out"
    result = continue_midi(e_major, bars=2, variations=3, seed=5, model=random_model,
                           device="cpu", out_dir=out)
    primer = read_midi(e_major, frames_per_beat=2)
    # 10 beats = 20 frames -> padded to 3 bars of 8 frames; then 2 bars = 16 frames.
    assert result.primer_frames == 24 and result.primer_bars == 3
    assert result.rolls.shape == (3, 16, 88) and result.bars == 2
    assert np.array_equal(result.primer[:20], primer.roll) and not result.primer[20:].any()
    assert [p.name for p in result.paths] == [f"e-major-cont-{i}.mid" for i in (1, 2, 3)]
    assert sorted(os.listdir(out)) == [p.name for p in result.paths]
    for i, path in enumerate(result.paths):
        facts = file_facts(path)
        assert facts["tpb"] == TPB and facts["tracks"] == 2 and facts["type"] == 1
        assert facts["name"] == f"continuation {i + 1} (random, seed 5)"
        assert facts["ticks"] == 40 * TPB // 2 and facts["last"] == "end_of_track"
        assert facts["tempos"] == [(0, us(100)), (4 * TPB, us(90))]
        assert facts["time_signature"] == (4, 4) and facts["key"] == "E"
        assert facts["channels"] == {3}
        back = read_midi(path, frames_per_beat=2)
        assert np.array_equal(back.roll, trim(result.full(i)))
        assert np.array_equal(back.roll[:20], primer.roll)
        assert back.tempo_map == primer.tempo_map == result.tempo_map
        assert back.channel == 3


def test_only_continuation_is_exactly_the_bars_at_the_primers_last_tempo(
        random_model, e_major, tmp_path):
    full = continue_midi(e_major, bars=2, variations=2, seed=9, model=random_model,
                         device="cpu")
    only = continue_midi(e_major, bars=2, variations=2, seed=9, model=random_model,
                         device="cpu", out_dir=tmp_path, only_continuation=True)
    assert np.array_equal(full.rolls, only.rolls)  # the seed, not the output mode, decides
    for i, path in enumerate(only.paths):
        facts = file_facts(path)
        assert facts["ticks"] == 16 * TPB // 2 and facts["tracks"] == 2
        assert facts["tempos"] == [(0, us(90))]
        assert facts["time_signature"] == (4, 4) and facts["key"] == "E"
        assert np.array_equal(read_midi(path).roll, trim(only.rolls[i]))


class SilentSession(StepSession):
    """Listens as usual but generates silence, to test the length of a silent ending."""

    def step(self, clamp_mask=None, clamp_value=None, temperature=None):
        v = super().step(clamp_mask, clamp_value, temperature)
        return v if clamp_mask is not None else np.zeros_like(v)


def test_a_silent_continuation_still_lasts_its_bars(random_model, e_major, tmp_path,
                                                    monkeypatch):
    monkeypatch.setattr(offline, "StepSession", SilentSession)
    result = continue_midi(e_major, bars=3, variations=1, seed=1, model=random_model,
                           device="cpu", out_dir=tmp_path)
    assert not result.rolls.any()
    assert file_facts(result.paths[0])["ticks"] == (24 + 24) * TPB // 2
    assert np.array_equal(read_midi(result.paths[0]).roll, read_midi(e_major).roll)


def test_same_seed_same_bytes_and_variations_differ(random_model, e_major, tmp_path):
    def run(seed, folder):
        return continue_midi(e_major, bars=2, variations=3, seed=seed,
                             model=random_model, device="cpu", out_dir=tmp_path / folder)
    first, again, other = run(21, "a"), run(21, "b"), run(22, "c")
    a, b, c = (listing(tmp_path / f) for f in "abc")
    assert a == b
    assert list(a) == list(c) and a != c
    blobs = list(a.values())
    assert len(set(blobs)) == len(blobs)  # every variation differs from every other
    assert first.seed == 21 and not np.array_equal(first.rolls, other.rolls)
    assert np.array_equal(first.rolls, again.rolls)


class RecordingSession(StepSession):
    """Keeps what the model listened to and what it generated, before any shift back."""

    instances: list["RecordingSession"] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.heard, self.played = [], []
        RecordingSession.instances.append(self)

    def listen(self, frames):
        self.heard.append(np.asarray(frames).copy())
        return super().listen(frames)

    def step(self, clamp_mask=None, clamp_value=None, temperature=None):
        v = super().step(clamp_mask, clamp_value, temperature)
        if clamp_mask is None:
            self.played.append(v.copy())
        return v


def test_the_model_hears_the_primer_in_c_and_its_answer_is_moved_back(
        random_model, b_flat_minor, monkeypatch):
    monkeypatch.setattr(RecordingSession, "instances", [])
    monkeypatch.setattr(offline, "StepSession", RecordingSession)
    result = continue_midi(b_flat_minor, bars=2, variations=2, seed=4, model=random_model,
                           device="cpu")
    session, = RecordingSession.instances  # one stream, rewound for each variation
    assert result.key == "Bb minor" and result.shift == keys.shift_to_c(result.primer) == 2
    heard = np.stack(session.heard)
    assert heard.shape == (result.primer_frames, 88)
    assert np.array_equal(heard, keys.transpose(result.primer, 2))
    assert keys.estimate_key(heard)[:2] == (0, "minor")
    played = np.concatenate(session.played).reshape(result.rolls.shape)  # [V, T, 88]
    assert played.shape == result.rolls.shape
    assert np.array_equal(result.rolls, keys.transpose(played, -2))


@pytest.mark.parametrize("primer, tonic, mode", [("e_major", 4, "major"),
                                                 ("b_flat_minor", 10, None)])
def test_the_continuation_stays_in_the_primers_key(triad_model, primer, tonic, mode,
                                                   request):
    # The triad model plays C major in C; moved back, its chords land on the primer's
    # tonic (a major triad, so only the tonic is asked of the minor primer).
    result = continue_midi(request.getfixturevalue(primer), bars=2, variations=2, seed=0,
                           model=triad_model, device="cpu")
    for roll in result.rolls:
        got_tonic, got_mode, _ = keys.estimate_key(roll)
        assert got_tonic == tonic and (mode is None or got_mode == mode)
        assert roll.any(axis=1).all()


def test_bar_lines_off_the_grid_round_up(triad_model, tmp_path):
    # 7/8 on a quarter-note grid: 3.5 frames a bar. 4.5 beats of primer = 1.3 bars, so
    # the primer takes 2 bars = frames 0..6 (bar line 7); 3 more bars end at 17.5 beats,
    # where the file ends; its frames run to ceil(17.5).
    primer = write_primer(tmp_path / "seven.mid", [(60, 0, 4.5)], time_signature=(7, 8))
    result = continue_midi(primer, bars=3, variations=1, seed=0, model=triad_model,
                           device="cpu", out_dir=tmp_path / "out")
    assert result.bar_frames == Fraction(7, 2)
    assert (result.primer_frames, result.rolls.shape[1]) == (7, 11)
    facts = file_facts(result.paths[0])
    assert facts["ticks"] == 35 * TPB // 2 and facts["time_signature"] == (7, 8)


def test_out_dir_none_writes_nothing(random_model, e_major, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = listing(tmp_path)
    result = continue_midi(e_major, bars=1, variations=2, seed=0, model=random_model,
                           device="cpu", plot=True, wav=True)
    assert listing(tmp_path) == before
    assert result.paths == result.plots == result.wavs == []
    assert result.full(1).shape == (24 + 8, 88)


# ----------------------------------------------------------------------------- generate


def test_generate_writes_named_files_of_the_asked_bars(random_model, tmp_path, capsys):
    rc = run_cli(["generate", "--model", random_model, "--device", "cpu", "--bars", "3",
                  "--variations", "2", "--seed", "8", "--time-signature", "3/4",
                  "--bpm", "96", "-o", tmp_path, "--name", "sketch"])
    assert rc == 0
    out = capsys.readouterr().out.split()
    assert out == [str(tmp_path / f"sketch-{i}.mid") for i in (1, 2)]
    rolls = []
    for path in map(Path, out):
        facts = file_facts(path)
        assert facts["ticks"] == 3 * 6 * 480 // 2  # 3 bars of 3/4 on eighths, 480 tpb
        assert facts["tempos"] == [(0, us(96))] and facts["time_signature"] == (3, 4)
        assert facts["key"] is None and facts["channels"] <= {0}
        rolls.append(read_midi(path).roll)
    assert not np.array_equal(rolls[0], rolls[1])
    result = generate(bars=3, variations=2, seed=8, model=random_model, device="cpu",
                      time_signature=(3, 4))
    assert result.primer_frames == 0 and result.rolls.shape == (2, 18, 88)
    assert np.array_equal(trim(result.rolls[0]), rolls[0])


def test_generate_default_names(random_model, tmp_path):
    result = generate(bars=1, variations=2, seed=1, model=random_model, device="cpu",
                      out_dir=tmp_path)
    assert [p.name for p in result.paths] == ["generated-1.mid", "generated-2.mid"]
    assert file_facts(result.paths[0])["ticks"] == 8 * 240  # a 4/4 bar of eighths


# ----------------------------------------------------------------------------- errors


def _bad_primer(kind: str, folder: Path) -> Path:
    path = folder / f"{kind}.mid"
    if kind == "missing":
        return path
    if kind == "not-midi":
        path.write_text("this is not a midi file\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "no-piano-notes":
        write_primer(path, [(10, 0, 1), (115, 1, 1)])
    elif kind == "drums-only":
        write_primer(path, [(38, 0, 1), (42, 1, 1)], channel=9)
    elif kind == "too-long":
        write_primer(path, [(60, b, 1) for b in range(4 * 5)])  # 5 bars, limit 4
    return path


@pytest.mark.parametrize("kind, words", [
    ("missing", "not found"), ("not-midi", "not a midi file"), ("empty", "empty file"),
    ("no-piano-notes", "no notes"), ("drums-only", "no notes"), ("too-long", "5 bars")])
def test_a_bad_primer_is_one_line_exit_2_and_the_output_folder_untouched(
        random_model, tmp_path, capsys, kind, words):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    primer = _bad_primer(kind, tmp_path)
    before, around = listing(out), sorted(os.listdir(tmp_path))
    rc = run_cli(["continue", primer, "--model", random_model, "--device", "cpu",
                  "--max-primer-bars", "4", "--plot", "--wav", "-o", out])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1, err
    assert str(primer) in err and words in err and "Traceback" not in err
    assert listing(out) == before and sorted(os.listdir(tmp_path)) == around


def test_bad_numbers_are_one_line_exit_2(random_model, e_major, tmp_path, capsys):
    for option, value in (("--bars", "0"), ("--variations", "0"),
                          ("--temperature", "0"), ("--max-primer-bars", "0")):
        rc = run_cli(["continue", e_major, "--model", random_model, option, value,
                      "-o", tmp_path / "out"])
        err = capsys.readouterr().err
        assert rc == 2 and len(err.strip().splitlines()) == 1 and value in err
    assert not (tmp_path / "out").exists()


def test_a_failure_while_writing_leaves_the_output_folder_untouched(
        random_model, e_major, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "e-major-cont-1.mid").write_bytes(b"an older take")
    before, around = listing(out), sorted(os.listdir(tmp_path))
    real_write, calls = output.save_midi, []

    def failing_write(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise UserError(f"{path}: cannot write the file (disk full); free some space")
        real_write(path, *args, **kwargs)

    monkeypatch.setattr(output, "save_midi", failing_write)
    rc = run_cli(["continue", e_major, "--model", random_model, "--device", "cpu",
                  "--variations", "3", "--seed", "1", "-o", out, "--overwrite"])
    assert rc == 2 and "disk full" in capsys.readouterr().err
    assert listing(out) == before and sorted(os.listdir(tmp_path)) == around


def test_cli_continue_prints_the_written_paths(random_model, e_major, tmp_path, capsys):
    rc = run_cli(["continue", e_major, "--model", random_model, "--device", "cpu",
                  "--bars", "1", "--variations", "2", "--seed", "3", "-o", tmp_path / "o"])
    captured = capsys.readouterr()
    assert rc == 0
    assert captured.out.split() == [str(tmp_path / "o" / f"e-major-cont-{i}.mid")
                                    for i in (1, 2)]
    assert "seed 3" in captured.err and "E major" in captured.err


def test_the_rnnrbm_live_entry_point_has_the_commands(random_model, e_major, tmp_path):
    cli = pytest.importorskip("rnnrbm_live.cli.main")
    assert cli.main(["continue", str(e_major), "--model", random_model, "--device", "cpu",
                     "--bars", "1", "--variations", "1", "--seed", "0",
                     "-o", str(tmp_path / "o")]) == 0
    assert cli.main(["continue", str(tmp_path / "nope.mid"), "--model", random_model,
                     "-o", str(tmp_path / "o2")]) == 2
    assert not (tmp_path / "o2").exists()


# ----------------------------------------------------------------------------- plot, wav


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plot_writes_a_png_per_variation(random_model, e_major, tmp_path):
    pytest.importorskip("matplotlib")
    result = continue_midi(e_major, bars=2, variations=2, seed=2, model=random_model,
                           device="cpu", out_dir=tmp_path, plot=True)
    assert [p.name for p in result.plots] == ["e-major-cont-1.png", "e-major-cont-2.png"]
    for path in result.plots:
        width, height = png_size(path)
        assert width >= 500 and height >= 300 and path.stat().st_size > 5000


def test_plot_without_matplotlib_says_how_to_install_it(random_model, e_major, tmp_path,
                                                        capsys, monkeypatch):
    for name in ("matplotlib", "matplotlib.colors", "matplotlib.figure",
                 "matplotlib.patches"):
        monkeypatch.setitem(sys.modules, name, None)  # None makes the import fail
    rc = run_cli(["continue", e_major, "--model", random_model, "--device", "cpu",
                  "--bars", "1", "--variations", "2", "-o", tmp_path, "--plot"])
    err = capsys.readouterr().err
    assert rc == 0
    assert [line for line in err.splitlines() if "matplotlib" in line] == [
        'rnnrbm-live: plots need matplotlib: pip install "rnnrbm-live[plot]"']
    assert sorted(os.listdir(tmp_path)) == ["e-major-cont-1.mid", "e-major-cont-2.mid",
                                            "e-major.mid"]


def test_wav_renders_with_fluidsynth_or_says_what_to_install(random_model, e_major,
                                                             tmp_path, capsys):
    result = continue_midi(e_major, bars=1, variations=2, seed=2, model=random_model,
                           device="cpu", out_dir=tmp_path, wav=True)
    err = capsys.readouterr().err
    assert len(result.paths) == 2
    if isinstance(render.renderer(), str):
        assert result.wavs == [] and "apt install fluidsynth fluid-soundfont-gm" in err
        return
    assert [p.name for p in result.wavs] == ["e-major-cont-1.wav", "e-major-cont-2.wav"]
    for path in result.wavs:
        data = path.read_bytes()
        assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
        # 32 frames = 16 beats, at 100 then 90 bpm: over 9 s of 44.1 kHz 16-bit stereo.
        assert len(data) > 9 * 44100 * 4


def test_wav_without_fluidsynth_prints_the_hint_and_keeps_the_midi(
        random_model, e_major, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(render.shutil, "which", lambda name: None)
    monkeypatch.setattr(render.sys, "platform", "linux")
    rc = run_cli(["continue", e_major, "--model", random_model, "--device", "cpu",
                  "--bars", "1", "--variations", "1", "-o", tmp_path / "o", "--wav"])
    err = capsys.readouterr().err
    assert rc == 0
    assert [line for line in err.splitlines() if "fluidsynth" in line] == [
        "rnnrbm-live: " + render.install_hint()]
    assert "apt install fluidsynth fluid-soundfont-gm" in render.install_hint()
    assert os.listdir(tmp_path / "o") == ["e-major-cont-1.mid"]


def test_soundfont_lookup_honours_the_environment(tmp_path, monkeypatch):
    font = tmp_path / "my.sf2"
    font.write_bytes(b"RIFF")
    monkeypatch.setenv(render.SOUNDFONT_ENV, str(font))
    assert render.find_soundfont() == font
    monkeypatch.setenv(render.SOUNDFONT_ENV, str(tmp_path / "missing.sf2"))
    assert render.find_soundfont() is None
    monkeypatch.setattr(render.shutil, "which", lambda name: "/usr/bin/fluidsynth")
    message = render.renderer()
    assert isinstance(message, str) and "missing.sf2" in message
    monkeypatch.setattr(render.sys, "platform", "darwin")
    assert "brew install fluid-synth" in render.install_hint()


def test_progress_bar_counts_every_frame(random_model, e_major, monkeypatch):
    bars = []

    class Recorder(offline.tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = False  # pytest's stderr is no terminal; draw anyway
            super().__init__(*args, **kwargs)
            bars.append(self)

    monkeypatch.setattr(offline, "tqdm", Recorder)
    continue_midi(e_major, bars=2, variations=2, seed=0, model=random_model, device="cpu",
                  progress=True)
    bar, = bars
    assert bar.total == bar.n == 24 + 2 * 16 and bar.unit == "frame"


# ----------------------------------------------------------------- the clip is the user's


def events_of(track) -> list:
    """A track's messages as (absolute tick, message) pairs, for comparing tracks."""
    out, now = [], 0
    for msg in track:
        now += msg.time
        out.append((now, msg.copy(time=0)))
    return out


def rich_primer(path: Path, fmt: int = 1) -> Path:
    """A clip a DAW might export: two parts on two channels with their own programs,
    velocities, a controller, pitch bend, sysex, text, a triplet and a repeated note."""
    conductor = [(0, mido.MetaMessage("track_name", name="my song")),
                 (0, mido.MetaMessage("time_signature", numerator=3, denominator=4)),
                 (0, mido.MetaMessage("set_tempo", tempo=us(84))),
                 (0, mido.Message("sysex", data=[0x7E, 0x7F, 0x09, 0x01])),
                 (2 * TPB, mido.MetaMessage("marker", text="verse")),
                 (3 * TPB, mido.MetaMessage("set_tempo", tempo=us(92)))]
    lead = [(0, mido.MetaMessage("track_name", name="lead")),
            (0, mido.Message("program_change", channel=2, program=73)),
            (0, mido.Message("control_change", channel=2, control=7, value=100))]
    third = TPB // 3  # a triplet: off the eighth-note grid
    for k, (pitch, vel) in enumerate([(72, 64), (74, 71), (76, 99)]):
        lead += [(k * third, mido.Message("note_on", channel=2, note=pitch, velocity=vel)),
                 ((k + 1) * third, mido.Message("note_off", channel=2, note=pitch))]
    lead += [(TPB, mido.Message("note_on", channel=2, note=77, velocity=50)),
             (2 * TPB, mido.Message("note_off", channel=2, note=77)),
             (2 * TPB, mido.Message("note_on", channel=2, note=77, velocity=55)),  # again
             (2 * TPB + 10, mido.Message("pitchwheel", channel=2, pitch=300)),
             (5 * TPB, mido.Message("note_off", channel=2, note=77, velocity=40))]
    bass = [(0, mido.MetaMessage("track_name", name="bass")),
            (0, mido.Message("program_change", channel=5, program=33)),
            (0, mido.Message("note_on", channel=5, note=48, velocity=110)),
            (3 * TPB, mido.Message("note_on", channel=5, note=48, velocity=0))]
    tracks = [conductor, lead, bass]
    if fmt == 0:
        tracks = [sorted(conductor + lead + bass, key=lambda e: e[0])]
    midi = mido.MidiFile(type=fmt, ticks_per_beat=TPB)
    for events in tracks:
        track, now = mido.MidiTrack(), 0
        for tick, msg in sorted(events, key=lambda e: e[0]):
            track.append(msg.copy(time=tick - now))
            now = tick
        midi.tracks.append(track)
    midi.save(path)
    return path


@pytest.mark.parametrize("fmt", [1, 0])
def test_every_event_of_the_primer_is_kept(random_model, tmp_path, fmt):
    primer = rich_primer(tmp_path / f"clip{fmt}.mid", fmt)
    result = continue_midi(primer, bars=2, variations=2, seed=3, model=random_model,
                           device="cpu", out_dir=tmp_path / "out")
    original = mido.MidiFile(primer)
    for i, path in enumerate(result.paths):
        written = mido.MidiFile(path)
        assert written.type == 1 and written.ticks_per_beat == TPB
        assert len(written.tracks) == len(original.tracks) + 1
        for mine, kept in zip(original.tracks, written.tracks):
            assert events_of(kept) == events_of(mine)
        # The continuation: its own named track on the busiest channel (2, the lead),
        # with the lead's program and median velocity, from the primer's last bar line
        # (5 beats of 3/4 end in bar 2: tick 6 * TPB) to 2 bars later.
        track = written.tracks[-1]
        assert track.name == f"continuation {i + 1} (random, seed 3)"
        timed = events_of(track)
        notes = [(t, m) for t, m in timed if m.type in ("note_on", "note_off")]
        assert notes and all(t >= 6 * TPB for t, _ in notes)
        assert {m.channel for _, m in notes} == {2}
        assert {m.velocity for _, m in notes if m.type == "note_on"} == {64}
        assert [(t, m.program) for t, m in timed if m.type == "program_change"] == \
            [(6 * TPB, 73)]
        assert timed[-1] == (12 * TPB, mido.MetaMessage("end_of_track"))
        np.testing.assert_array_equal(read_midi(path).roll[12:], trim(result.rolls[i]))


def test_a_primer_ending_on_a_bar_line_gets_no_extra_bar(triad_model, tmp_path):
    # 2 bars of 4/4 whose last note is an eighth ending on the bar line (beat 8): on a
    # quarter-note grid its onset rounds up onto frame 8, and a note keeps one frame, so
    # the roll is 9 frames long. The primer is still 2 bars; the continuation starts on
    # the bar line, not a bar late.
    notes = [(60 + k, k, 1) for k in range(7)] + [(72, 7, 0.5), (67, 7.5, 0.5)]
    primer = write_primer(tmp_path / "bar-line.mid", notes)
    assert len(read_midi(primer, frames_per_beat=1).roll) == 9
    result = continue_midi(primer, bars=1, variations=1, seed=0, model=triad_model,
                           device="cpu", out_dir=tmp_path / "out")
    assert (result.primer_bars, result.primer_frames) == (2, 8)
    assert file_facts(result.paths[0])["ticks"] == 12 * TPB
    first = min(t for t, m in events_of(mido.MidiFile(result.paths[0]).tracks[-1])
                if m.type == "note_on")
    assert first == 8 * TPB


def test_bars_follow_the_primers_time_signature_changes(triad_model, tmp_path):
    # 4/4 for one bar, then 3/4: bar lines at beats 0, 4, 7, 10. A last note ending at
    # beat 8 ends the primer at beat 10 (3 bars); 2 bars of 3/4 follow, to beat 16.
    track = mido.MidiTrack([
        mido.MetaMessage("time_signature", numerator=4, denominator=4),
        mido.Message("note_on", note=60, velocity=90),
        mido.MetaMessage("time_signature", numerator=3, denominator=4, time=4 * TPB),
        mido.Message("note_off", note=60, time=4 * TPB)])
    midi = mido.MidiFile(type=0, ticks_per_beat=TPB)
    midi.tracks.append(track)
    midi.save(tmp_path / "changes.mid")
    result = continue_midi(tmp_path / "changes.mid", bars=2, variations=1, seed=0,
                           model=triad_model, device="cpu", out_dir=tmp_path / "out")
    assert result.time_signature == (3, 4) and result.primer_bars == 3
    assert [int(t) // TPB for t in result.bar_ticks] == [0, 4, 7, 10, 13, 16]
    assert (result.primer_frames, result.rolls.shape[1]) == (10, 6)
    assert file_facts(result.paths[0])["ticks"] == 16 * TPB


def test_variation_i_does_not_depend_on_how_many_are_asked_for(random_model, e_major):
    def rolls(variations):
        return continue_midi(e_major, bars=2, variations=variations, seed=11,
                             model=random_model, device="cpu").rolls
    one, three, two = rolls(1), rolls(3), rolls(2)
    np.testing.assert_array_equal(one[0], three[0])
    np.testing.assert_array_equal(two, three[:2])
    assert not np.array_equal(three[1], three[2])


def test_an_existing_file_is_never_overwritten_silently(random_model, e_major, tmp_path,
                                                        capsys):
    out = tmp_path / "out"
    args = ["continue", e_major, "--model", random_model, "--device", "cpu", "--bars",
            "1", "--variations", "2", "--seed", "1", "-o", out]
    assert run_cli(args) == 0
    before = listing(out)
    capsys.readouterr()
    assert run_cli(args[:-4] + ["--seed", "2", "-o", out]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"{out / 'e-major-cont-1.mid'}: already exists" in err and "--overwrite" in err
    assert listing(out) == before
    assert run_cli(args[:-4] + ["--seed", "2", "-o", out, "--overwrite"]) == 0
    assert listing(out) != before and sorted(listing(out)) == sorted(before)


def test_no_stale_png_or_wav_stays_beside_a_new_midi_file(random_model, e_major, tmp_path,
                                                          capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "e-major-cont-1.png").write_bytes(b"an earlier plot")
    (out / "e-major-cont-2.wav").write_bytes(b"an earlier render")
    (out / "other.png").write_bytes(b"not ours")
    args = ["continue", e_major, "--model", random_model, "--device", "cpu", "--bars",
            "1", "--variations", "2", "-o", out]
    assert run_cli(args) == 2  # even a lone .png of that name is not silently left
    assert "e-major-cont-1.png: already exists" in capsys.readouterr().err
    assert run_cli(args + ["--overwrite"]) == 0
    assert sorted(os.listdir(out)) == ["e-major-cont-1.mid", "e-major-cont-2.mid",
                                       "other.png"]


def test_out_dir_that_is_a_file_says_so(random_model, e_major, tmp_path, capsys):
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    for out in (taken, taken / "sub"):
        assert run_cli(["continue", e_major, "--model", random_model, "-o", out]) == 2
        err = capsys.readouterr().err
        assert f"{taken}: is a file, not a folder" in err and "-o" in err
        assert len(err.strip().splitlines()) == 1
    assert taken.read_text() == "mine"


def test_ctrl_c_is_one_line_exit_130_and_writes_nothing(random_model, tmp_path):
    # The primer is a named pipe: once the command has opened it to read, it is inside
    # its run (imports done, model loaded); a long continuation is then interrupted.
    import signal
    import subprocess
    import time

    fifo = tmp_path / "primer.mid"
    os.mkfifo(fifo)
    source = write_primer(tmp_path / "source.mid", e_major_notes(10))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnnrbm_live.cli", "continue", str(fifo), "--model",
         random_model, "--device", "cpu", "--bars", "1024", "--variations", "8",
         "--seed", "1", "-o", str(out), "--plot", "--wav"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with open(fifo, "wb") as pipe:  # blocks until the command opens the primer
            pipe.write(source.read_bytes())
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["rnnrbm-live: stopped (ctrl+c); no file written"]
    assert stdout == "" and not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["primer.mid", "source.mid"]  # no staging left


def test_wav_normalise_peaks_near_full_scale(tmp_path):
    import wave
    path = tmp_path / "quiet.wav"
    quiet = (np.sin(np.linspace(0, 200, 44100)) * 0.07 * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(44100)
        f.writeframes(quiet.tobytes())
    render.normalise(path)
    with wave.open(str(path), "rb") as f:
        loud = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")
    assert abs(np.abs(loud).max() / 32767 - render.PEAK) < 1e-3
    np.testing.assert_allclose(loud / np.abs(loud).max(), quiet / np.abs(quiet).max(),
                               atol=1e-3)  # one gain: the shape is kept


def test_rendered_wavs_peak_near_full_scale(random_model, e_major, tmp_path):
    import wave
    if isinstance(render.renderer(), str):
        needs("fluidsynth and a general midi soundfont (apt-get install fluidsynth)")
    result = continue_midi(e_major, bars=1, variations=1, seed=2, model=random_model,
                           device="cpu", out_dir=tmp_path, wav=True)
    with wave.open(str(result.wavs[0]), "rb") as f:
        samples = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")
    assert 0.85 < np.abs(samples.astype(np.int32)).max() / 32767 < 0.9


def _figure(**kwargs):
    figure = pytest.importorskip("matplotlib.figure")
    from rnnrbm_live.offline.plot import roll_figure
    roll = np.zeros((kwargs.pop("frames"), 88), np.uint8)
    roll[:, 39] = 1
    return roll_figure(figure.Figure, roll, **kwargs)


def test_plot_title_fits_and_generate_plots_say_generated():
    fig = _figure(frames=8, primer_frames=0, bar_frames=[0.0, 8.0], generated=True,
                  title="a-long-file-name-for-a-short-plot-1.mid",
                  subtitle="model jsb_chorales, seed 1234567890, temperature 0.86")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    renderer = FigureCanvasAgg(fig).get_renderer()
    ax = fig.axes[0]
    box = ax.title.get_window_extent(renderer)
    width, height = fig.bbox.width, fig.bbox.height
    assert box.x0 >= 0 and box.x1 <= width and box.y1 <= height
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["generated"]


def test_plot_bar_ticks_sit_on_bar_lines_even_in_7_8():
    # 7/8 on a quarter-note grid: bar lines every 3.5 frames, labelled 1, 2, 3.
    fig = _figure(frames=11, primer_frames=7, bar_frames=[0.0, 3.5, 7.0, 10.5],
                  generated=False, title="seven-cont-1.mid", subtitle="")
    ax = fig.axes[0]
    assert list(ax.get_xticks()) == [0.0, 3.5, 7.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["primer",
                                                                   "continuation"]


def _interrupted_before_our_first_line(stderr: str) -> bool:
    """Python's own report of a Ctrl+C that came while it was still starting: in `site`,
    or a KeyboardInterrupt whose every frame is the interpreter's frozen import code."""
    if stderr.startswith("Fatal Python error: init_import_site"):
        return True
    frames = re.findall(r'File "([^"]+)"', stderr)
    return (stderr.rstrip().endswith("KeyboardInterrupt") and bool(frames)
            and all(f.startswith("<frozen ") for f in frames))


@pytest.mark.parametrize("delay", [0.05, 0.1, 0.2, 0.4])
def test_ctrl_c_while_starting_up_is_one_line_never_a_traceback(random_model, tmp_path, delay):
    # Ctrl+C at any moment of the start (modules importing, options parsed, the model
    # loading, the primer opened): one line and exit 130, whichever part it lands in.
    # Before main's quick exit, a Ctrl+C during the imports printed a traceback (or
    # onnxruntime's "initialization failed").
    import signal
    import subprocess
    import time

    fifo = tmp_path / "primer.mid"
    os.mkfifo(fifo)  # never written: the command waits in its run at the latest
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-m", "rnnrbm_live.cli", "continue", str(fifo), "--model",
             random_model, "--device", "cpu", "-o", str(tmp_path / "out")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(delay)
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            proc.kill()
        # On a loaded machine the signal can land before the interpreter has run a line
        # of ours (still importing `site` and its .pth files, or runpy still finding our
        # package, which Python itself reports with a traceback): no program could answer
        # that; try the same moment again.
        if not _interrupted_before_our_first_line(stderr):
            break
    assert "Traceback" not in stderr, stderr
    assert proc.returncode in (130, -signal.SIGINT), stderr  # -SIGINT: before Python's own handler
    if proc.returncode == 130:
        assert len(stderr.strip().splitlines()) == 1, stderr
        assert stderr.startswith("rnnrbm-live: stopped (ctrl+c)"), stderr
    assert stdout == ""


def test_main_in_process_puts_the_ctrl_c_handler_back(random_model, tmp_path):
    import signal

    from rnnrbm_live.cli.main import main

    def mine(signum, frame):
        raise KeyboardInterrupt
    before = signal.signal(signal.SIGINT, mine)
    try:
        assert main(["generate", "--model", random_model, "--bars", "1", "--variations", "1",
                     "-o", str(tmp_path / "out"), "-q"]) == 0
        assert signal.getsignal(signal.SIGINT) is mine
    finally:
        signal.signal(signal.SIGINT, before)
