"""Tests for rnnrbm_live.pianoroll: MIDI files made here with mido (or raw bytes), read
back and checked against pretty_midi, an independent parser, and against hand-worked
rolls (note pairing against pretty_midi: tests/test_midi_pairing.py)."""

from __future__ import annotations

import math
import random
import re
import time
from fractions import Fraction
from pathlib import Path

import mido
import numpy as np
import pretty_midi
import pytest

from rnnrbm_live.errors import UserError
from rnnrbm_live.midi.reader import read_midi
from rnnrbm_live.midi.roll import LOWEST_PITCH, MidiRoll, N_KEYS, roll_from_notes
from rnnrbm_live.midi.writer import write_midi

# ----------------------------------------------------------------------------- helpers


def track(events: list[tuple[int, mido.Message | mido.MetaMessage]]) -> mido.MidiTrack:
    """A track from (absolute tick, message) pairs, kept in the order given per tick."""
    out, now = mido.MidiTrack(), 0
    for tick, msg in sorted(events, key=lambda e: e[0]):
        out.append(msg.copy(time=tick - now))
        now = tick
    return out


def notes_events(notes, channel=0, vel0_off=False):
    """(pitch, on tick, off tick) triples -> (tick, message) pairs, offs first per tick."""
    out = []
    for pitch, on, off in notes:
        out.append((on, 1, mido.Message("note_on", note=pitch, velocity=90,
                                        channel=channel)))
        off_msg = mido.Message("note_on", note=pitch, velocity=0, channel=channel) \
            if vel0_off else mido.Message("note_off", note=pitch, channel=channel)
        out.append((off, 0, off_msg))
    out.sort(key=lambda e: (e[0], e[1]))
    return [(t, m) for t, _, m in out]


def save(path: Path, tracks, *, type=1, tpb=480) -> Path:
    mf = mido.MidiFile(type=type, ticks_per_beat=tpb)
    mf.tracks.extend(track(t) for t in tracks)
    mf.save(path)
    return path


def tempo(tick, bpm):
    return (tick, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)))


def round_half_up(x: Fraction | float) -> int:
    return math.floor(x + Fraction(1, 2)) if isinstance(x, Fraction) else \
        math.floor(x + 0.5)


def union_roll(intervals, n_frames=None) -> np.ndarray:
    """Roll from (pitch, on frame, off frame) by plain Python: the independent check."""
    intervals = [(p, on, max(off, on + 1)) for p, on, off in intervals
                 if LOWEST_PITCH <= p < LOWEST_PITCH + N_KEYS]
    if n_frames is None:
        n_frames = max(off for _, _, off in intervals)
    roll = np.zeros((n_frames, N_KEYS), dtype=np.uint8)
    for p, on, off in intervals:
        roll[on:off, p - LOWEST_PITCH] = 1
    return roll


def pm_expected(path: Path, *, fpb=None, dt=None, include_drums=False) -> np.ndarray:
    """The roll our rules give, built from pretty_midi's notes instead of our parser."""
    pm = pretty_midi.PrettyMIDI(str(path))
    tpb = pm.resolution
    intervals = []
    for inst in pm.instruments:
        if inst.is_drum and not include_drums:
            continue
        for n in inst.notes:
            if fpb is not None:
                on, off = (round_half_up(Fraction(pm.time_to_tick(t) * fpb, tpb))
                           for t in (n.start, n.end))
            else:
                on, off = round_half_up(n.start / dt), round_half_up(n.end / dt)
            intervals.append((n.pitch, on, off))
    return union_roll(intervals)


def assert_user_error(exc: pytest.ExceptionInfo | UserError, path) -> str:
    """One line, naming the file, lowercase apart from the name; returns the rest."""
    msg = str(exc.value if isinstance(exc, pytest.ExceptionInfo) else exc)
    assert str(path) in msg
    rest = msg.replace(str(path), "")
    unquoted = re.sub(r"'[^']*'", "", rest)  # quoted user values keep their case
    assert "\n" not in msg and unquoted == unquoted.lower() and rest.strip(), msg
    return rest


def smf(tracks: list[bytes], *, fmt=1, division=480) -> bytes:
    """Raw standard MIDI file bytes from raw track payloads."""
    head = b"MThd" + (6).to_bytes(4, "big") + fmt.to_bytes(2, "big") + \
        len(tracks).to_bytes(2, "big") + division.to_bytes(2, "big")
    return head + b"".join(b"MTrk" + len(t).to_bytes(4, "big") + t for t in tracks)


def random_file(path: Path, seed: int, *, tpb=480, n_tracks=3, zero_len=False) -> Path:
    """A format-1 file: tempo changes in track 0, random notes on other tracks, with
    same-pitch notes that abut (off and next on on one tick) but do not overlap within
    a (track, channel), which is where pretty_midi pairs note-offs as we do."""
    rng = random.Random(seed)
    tempo_track = [tempo(0, rng.uniform(60, 180))]
    tempo_track += [tempo(rng.randrange(1, 40 * tpb), rng.uniform(40, 200))
                    for _ in range(rng.randrange(0, 5))]
    tempo_track.append((rng.randrange(0, 8 * tpb),
                        mido.MetaMessage("time_signature", numerator=3, denominator=4)))
    tracks = [tempo_track]
    for _ in range(n_tracks):
        events = []
        for channel in rng.sample([0, 1, 2, 9, 15], 2):
            for pitch in rng.sample(range(15, 115), 12):
                tick = rng.randrange(0, 4 * tpb)
                for _ in range(rng.randrange(1, 6)):
                    length = rng.randrange(0 if zero_len else 1, 3 * tpb)
                    events += notes_events([(pitch, tick, tick + length)], channel,
                                           vel0_off=rng.random() < 0.5)
                    tick += length + rng.choice([0, 0, 1, rng.randrange(1, 2 * tpb)])
        tracks.append(events)
    return save(path, tracks, tpb=tpb)


# ------------------------------------------------------------------- reading vs pretty_midi


def test_format0_matches_pretty_midi(tmp_path):
    notes = [(60, 0, 480), (64, 240, 720), (67, 600, 1000), (72, 1000, 1919),
             (21, 0, 100), (108, 1800, 2400)]
    path = save(tmp_path / "f0.mid", [[tempo(0, 96)] + notes_events(notes)], type=0)
    got = read_midi(path)
    assert got.roll.dtype == np.uint8 and got.roll.shape[1] == N_KEYS
    np.testing.assert_array_equal(got.roll, pm_expected(path, fpb=2))
    np.testing.assert_array_equal(got.roll, union_roll(
        [(p, round_half_up(Fraction(a, 240)), round_half_up(Fraction(b, 240)))
         for p, a, b in notes]))
    assert got.tempo_map == [(0, 96.0)] and got.ticks_per_beat == 480
    assert got.source == str(path) and got.frames_per_beat == 2 and got.dt is None


@pytest.mark.parametrize("seed", range(8))
def test_random_format1_matches_pretty_midi(tmp_path, seed):
    tpb = [480, 96, 384, 960, 120, 100, 1000, 24][seed]
    path = random_file(tmp_path / f"r{seed}.mid", seed, tpb=tpb)
    for fpb in (1, 2, 4, 3):
        np.testing.assert_array_equal(read_midi(path, frames_per_beat=fpb).roll,
                                      pm_expected(path, fpb=fpb))
    for dt in (0.3, 0.05):
        np.testing.assert_array_equal(read_midi(path, dt=dt).roll,
                                      pm_expected(path, dt=dt))
    np.testing.assert_array_equal(read_midi(path, include_drums=True).roll,
                                  pm_expected(path, fpb=2, include_drums=True))


def test_seconds_grid_matches_pretty_midi_piano_roll(tmp_path):
    # Constant 120 bpm, dt = 0.25 s = 240 ticks; notes on frame boundaries only, so
    # get_piano_roll's own sampling (int(t * fs)) must agree with our rounding.
    rng = random.Random(7)
    notes = [(rng.randrange(21, 109), s * 240, (s + rng.randrange(1, 6)) * 240)
             for s in (rng.randrange(0, 40) for _ in range(60))]
    notes = [(p, a, b) for i, (p, a, b) in enumerate(notes)
             if all(q != p for q, _, _ in notes[:i])]  # one note per pitch
    path = save(tmp_path / "fs.mid", [[tempo(0, 120)] + notes_events(notes)])
    got = read_midi(path, dt=0.25).roll
    pm_roll = (pretty_midi.PrettyMIDI(str(path)).get_piano_roll(fs=4) > 0)
    pm_roll = pm_roll[LOWEST_PITCH:LOWEST_PITCH + N_KEYS].T.astype(np.uint8)
    assert not pm_roll[len(got):].any()
    np.testing.assert_array_equal(got, pm_roll[:len(got)])


def test_tempo_changes_do_not_bend_the_beat_grid(tmp_path):
    notes = [(60, 0, 480), (62, 960, 1440), (64, 1920, 3840)]
    changes = [tempo(0, 60), tempo(900, 180), tempo(1920, 75)]
    path = save(tmp_path / "tempo.mid", [changes, notes_events(notes)])
    flat = save(tmp_path / "flat.mid", [[], notes_events(notes)])
    np.testing.assert_array_equal(read_midi(path).roll, read_midi(flat).roll)
    np.testing.assert_array_equal(read_midi(path).roll, pm_expected(path, fpb=2))
    # The seconds grid does bend: 1 s per beat, then 1/3 s, then 0.8 s, so 64 starts
    # at 1.875 + 2.125 / 3 = 2.58 s (frame 5) and ends 3.2 s later (11.6: frame 12).
    secs = read_midi(path, dt=0.5)
    np.testing.assert_array_equal(secs.roll, pm_expected(path, dt=0.5))
    np.testing.assert_array_equal(secs.roll, union_roll(
        [(60, 0, 2), (62, 4, 4), (64, 5, 12)]))


# ------------------------------------------------------------------------------ semantics


def test_rounding_to_nearest_boundary(tmp_path):
    # tpb 480, 2 frames per beat: boundaries every 240 ticks; ties (120) round up.
    cases = {60: (119, 481), 62: (120, 600), 64: (100, 130), 65: (130, 200),
             67: (500, 2000)}
    path = save(tmp_path / "round.mid", [notes_events(
        [(p, a, b) for p, (a, b) in cases.items()])])
    roll = read_midi(path).roll
    frames = {p: np.flatnonzero(roll[:, p - 21]).tolist() for p in cases}
    assert frames == {60: [0, 1], 62: [1, 2], 64: [0], 65: [1], 67: [2, 3, 4, 5, 6, 7]}


def test_zero_length_note_does_not_sound(tmp_path):
    # A note-on and note-off of one pitch at one tick: a grace note as notation
    # programs write it; it has no length, so it does not sound (as in pretty_midi).
    events = [(480, mido.Message("note_on", note=60, velocity=64)),
              (480, mido.Message("note_off", note=60)),
              (480, mido.Message("note_on", note=62, velocity=64)),
              (720, mido.Message("note_off", note=62))]
    roll = read_midi(save(tmp_path / "zero.mid", [events])).roll
    assert roll.shape == (3, 88) and not roll[:, 39].any()
    assert roll[:, 41].tolist() == [0, 0, 1]


def test_overlap_same_pitch_ends_at_the_first_note_off(tmp_path):
    # on 0, on 480, off 960, off 1440: the first note-off ends the pitch, as a
    # synthesizer plays it and pretty_midi reads it; the second has nothing to end.
    events = [(0, mido.Message("note_on", note=60, velocity=90)),
              (480, mido.Message("note_on", note=60, velocity=90)),
              (960, mido.Message("note_off", note=60)),
              (1440, mido.Message("note_on", note=60, velocity=0)),
              (1440, mido.Message("note_off", note=60)),  # stray: nothing left to end
              (1920, mido.Message("note_on", note=62, velocity=90)),
              (2400, mido.Message("note_off", note=62))]
    path = save(tmp_path / "ov.mid", [events])
    roll = read_midi(path).roll
    assert np.flatnonzero(roll[:, 39]).tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(roll, pm_expected(path, fpb=2))


def test_overlap_unions_match_pretty_midi(tmp_path):
    # Overlaps where pretty_midi's notes, unioned per pitch, mean the same sounding
    # intervals as ours: both offs on one tick, notes on one pitch in two tracks or two
    # channels, and a re-strike whose note-on comes before the old note-off.
    t1 = [(0, mido.Message("note_on", note=60, velocity=90)),
          (480, mido.Message("note_on", note=60, velocity=90)),
          (1440, mido.Message("note_off", note=60)),
          (1440, mido.Message("note_off", note=60)),
          (0, mido.Message("note_on", note=70, velocity=90)),
          (960, mido.Message("note_on", note=70, velocity=90)),
          (960, mido.Message("note_off", note=70)),
          (1920, mido.Message("note_off", note=70))]
    t2 = notes_events([(60, 1200, 2880), (64, 0, 960)]) + \
        notes_events([(64, 480, 1920)], channel=3)
    path = save(tmp_path / "ovu.mid", [[], t1, t2])
    got = read_midi(path).roll
    np.testing.assert_array_equal(got, pm_expected(path, fpb=2))
    assert np.flatnonzero(got[:, 60 - 21]).tolist() == list(range(12))
    assert np.flatnonzero(got[:, 70 - 21]).tolist() == list(range(8))


def test_running_status_hand_written_bytes(tmp_path):
    # Status 0x91 once, then data only; velocity 0 ends notes; 0x81 starts a new run.
    payload = bytes([
        0x00, 0x91, 60, 100,   # on 60
        0x00, 64, 100,          # running: on 64
        0x83, 0x60, 60, 0,      # delta 480, running: on 60 vel 0 (off)
        0x00, 67, 90,           # running: on 67
        0x83, 0x60, 0x81, 64, 0,  # delta 480, note_off 64 with a new status
        0x00, 67, 0,            # running 0x81: off 67
        0x00, 0xFF, 0x2F, 0x00])
    path = tmp_path / "running.mid"
    path.write_bytes(smf([payload], fmt=0))
    got = read_midi(path)
    expected = union_roll([(60, 0, 2), (64, 0, 4), (67, 2, 4)])
    np.testing.assert_array_equal(got.roll, expected)
    np.testing.assert_array_equal(got.roll, pm_expected(path, fpb=2))
    assert got.channel == 1


def test_mido_writer_uses_running_status(tmp_path):
    events = notes_events([(60, 0, 480), (64, 0, 480)], vel0_off=True)
    path = save(tmp_path / "mido_rs.mid", [events], type=0)
    data = path.read_bytes()
    # Second note-on carries no 0x90: delta 0, then data bytes 64 (0x40), 90 (0x5a).
    assert bytes([0x00, 0x90, 60, 90, 0x00, 64, 90]) in data
    np.testing.assert_array_equal(read_midi(path).roll, union_roll([(60, 0, 2),
                                                                   (64, 0, 2)]))


def test_velocity_zero_note_on_is_note_off(tmp_path):
    notes = [(60, 0, 480), (60, 960, 1440), (72, 240, 1200)]
    a = read_midi(save(tmp_path / "v0.mid", [notes_events(notes, vel0_off=True)])).roll
    b = read_midi(save(tmp_path / "off.mid", [notes_events(notes)])).roll
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, union_roll([(60, 0, 2), (60, 4, 6), (72, 1, 5)]))


def test_drums_left_out_unless_asked(tmp_path):
    events = notes_events([(60, 0, 480)]) + notes_events([(36, 480, 1920)], channel=9)
    path = save(tmp_path / "drums.mid", [events])
    assert read_midi(path).roll.shape == (2, 88)
    with_drums = read_midi(path, include_drums=True)
    assert with_drums.roll[:, 36 - 21].tolist() == [0, 0, 1, 1, 1, 1, 1, 1]
    np.testing.assert_array_equal(with_drums.roll,
                                  pm_expected(path, fpb=2, include_drums=True))
    only = save(tmp_path / "only_drums.mid", [notes_events([(36, 0, 480)], channel=9)])
    with pytest.raises(UserError) as exc:
        read_midi(only)
    rest = assert_user_error(exc, only)
    # No option of any command line is called include_drums: the line says what to do.
    assert "include_drums" not in rest and "drum notes" in rest and "give a file" in rest
    assert read_midi(only, include_drums=True).channel == 9


def test_out_of_range_notes_dropped(tmp_path):
    notes = [(0, 0, 480), (20, 0, 480), (21, 0, 240), (108, 240, 480), (109, 0, 960),
             (127, 0, 1920)]
    roll = read_midi(save(tmp_path / "range.mid", [notes_events(notes)])).roll
    assert roll.shape == (2, 88)
    assert roll[:, 0].tolist() == [1, 0] and roll[:, 87].tolist() == [0, 1]
    assert roll.sum() == 2


def test_unfinished_note_ends_with_its_track(tmp_path):
    events = [(0, mido.Message("note_on", note=60, velocity=90)),
              (480, mido.Message("note_on", note=64, velocity=90)),
              (960, mido.Message("note_off", note=64)),
              (1920, mido.MetaMessage("marker", text="end"))]
    roll = read_midi(save(tmp_path / "held.mid", [events])).roll
    assert roll[:, 39].tolist() == [1] * 8 and roll[:, 43].tolist() == [0, 0, 1, 1, 0,
                                                                         0, 0, 0]


def test_metadata_first_signatures_channel_and_tempo_map(tmp_path):
    meta = [tempo(0, 100), tempo(240, 100),  # equal tempo: deduplicated
            tempo(960, 150), tempo(1000, 80),  # 1000 rounds to frame 4 too: 80 wins
            tempo(1920, 60),
            (0, mido.MetaMessage("time_signature", numerator=3, denominator=4)),
            (1440, mido.MetaMessage("time_signature", numerator=6, denominator=8)),
            (0, mido.MetaMessage("key_signature", key="Eb")),
            (960, mido.MetaMessage("key_signature", key="F#m"))]
    notes = notes_events([(60, 0, 480)], channel=2) + \
        notes_events([(62, 0, 480), (64, 480, 2400)], channel=5)
    path = save(tmp_path / "meta.mid", [meta, notes])
    got = read_midi(path)
    assert got.tempo_map == [(0, 100.0), (4, 80.0), (8, 60.0)]
    assert got.time_signature == (3, 4) and got.key_signature == "Eb"
    assert got.channel == 5
    # Seconds grid: 0.6 s/beat to tick 960 (1.2 s), 150 bpm to 1000 (1.233 s), then
    # 0.75 s/beat to tick 1920 (2.671 s, frame 8.9).
    secs = read_midi(path, dt=0.3)
    assert [f for f, _ in secs.tempo_map] == [0, 4, 9]


def test_defaults_without_meta(tmp_path):
    got = read_midi(save(tmp_path / "bare.mid", [notes_events([(60, 0, 480)])]))
    assert got.tempo_map == [(0, 120.0)] and got.time_signature == (4, 4)
    assert got.key_signature is None and got.channel == 0


def test_every_key_signature_name(tmp_path):
    for key in ["Cb", "Gb", "Db", "Ab", "Eb", "Bb", "F", "C", "G", "D", "A", "E", "B",
                "F#", "C#", "Abm", "Ebm", "Bbm", "Fm", "Cm", "Gm", "Dm", "Am", "Em",
                "Bm", "F#m", "C#m", "G#m", "D#m", "A#m"]:
        path = save(tmp_path / "k.mid", [[(0, mido.MetaMessage("key_signature",
                                                               key=key))]
                                         + notes_events([(60, 0, 480)])])
        assert read_midi(path).key_signature == key


def test_alien_chunks_are_skipped(tmp_path):
    path = save(tmp_path / "plain.mid", [notes_events([(60, 0, 480)])], type=0)
    data = path.read_bytes()
    alien = b"XFIH" + (3).to_bytes(4, "big") + b"abc"
    (tmp_path / "alien.mid").write_bytes(data[:14] + alien + data[14:])
    np.testing.assert_array_equal(read_midi(tmp_path / "alien.mid").roll,
                                  read_midi(path).roll)


def test_reading_five_minutes_is_fast(tmp_path):
    rng = random.Random(1)
    notes = [(rng.randrange(30, 100), b * 40, b * 40 + rng.randrange(40, 960))
             for b in range(7200)]  # 5 minutes at 120 bpm, 24 notes a second
    path = save(tmp_path / "long.mid", [notes_events(notes)])
    best = min(_timed(read_midi, path) for _ in range(3))
    assert best < 0.1, f"read took {best:.3f} s"
    assert read_midi(path).roll.shape[0] >= 1200


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def test_roll_from_notes():
    roll = roll_from_notes([(21, 0, 2), (108, 3, 3), (60, 1, 4), (60, 2, 5), (10, 0, 9)])
    assert roll.shape == (5, 88) and roll.dtype == np.uint8
    assert roll[:, 0].tolist() == [1, 1, 0, 0, 0] and roll[:, 87].tolist() == [0, 0, 0,
                                                                               1, 0]
    assert roll[:, 39].tolist() == [0, 1, 1, 1, 1]
    assert roll_from_notes([(60, 0, 9)], n_frames=3).shape == (3, 88)


# ----------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("seed", range(6))
def test_round_trip_random_rolls(tmp_path, seed):
    rng = np.random.default_rng(seed)
    fpb, tpb = [(2, 480), (1, 96), (4, 480), (3, 100), (7, 480), (24, 24)][seed]
    roll = (rng.random((int(rng.integers(2, 120)), N_KEYS)) < 0.15).astype(np.uint8)
    roll[0, 0] = roll[-1, 87] = roll[-1, 0] = roll[0, 87] = 1
    path = tmp_path / f"rt{seed}.mid"
    write_midi(path, roll, frames_per_beat=fpb, ticks_per_beat=tpb,
               bpm=float(rng.uniform(40, 200)))
    got = read_midi(path, frames_per_beat=fpb)
    np.testing.assert_array_equal(got.roll, roll)
    np.testing.assert_array_equal(got.roll, pm_expected(path, fpb=fpb))


def test_round_trip_metadata(tmp_path):
    roll = roll_from_notes([(60, 0, 4), (64, 2, 10), (108, 9, 12)])
    tempo_map = [(0, 100.0), (3, 150.0), (8, 75.0)]
    path = tmp_path / "meta_rt.mid"
    write_midi(path, roll, tempo_map=tempo_map, time_signature=(6, 8),
               key_signature="Bbm", channel=11, velocity=100, frames_per_beat=4)
    got = read_midi(path, frames_per_beat=4)
    np.testing.assert_array_equal(got.roll, roll)
    assert got.tempo_map == tempo_map and got.time_signature == (6, 8)
    assert got.key_signature == "Bbm" and got.channel == 11
    assert mido.MidiFile(path).type == 0
    # Writing back what was read keeps the tempo bits exactly, odd bpm or not.
    write_midi(path, got.roll, tempo_map=[(0, 133.7)], frames_per_beat=4)
    again = read_midi(path, frames_per_beat=4)
    write_midi(path, again.roll, tempo_map=again.tempo_map, frames_per_beat=4)
    assert read_midi(path, frames_per_beat=4).tempo_map == again.tempo_map
    assert again.tempo_map[0][1] == pytest.approx(133.7, abs=1e-3)


def test_written_notes_and_velocities(tmp_path):
    roll = roll_from_notes([(60, 0, 2), (60, 3, 4), (64, 1, 4)])
    path = tmp_path / "vel.mid"
    per_cell = np.arange(1, 4 * 88 + 1).reshape(4, 88) % 127 + 1
    write_midi(path, roll, velocity=per_cell, channel=4)
    ons = [m for m in mido.MidiFile(path).tracks[0] if m.type == "note_on"]
    offs = [m for m in mido.MidiFile(path).tracks[0] if m.type == "note_off"]
    assert sorted((m.note, m.velocity) for m in ons) == sorted(
        [(60, per_cell[0, 39]), (60, per_cell[3, 39]), (64, per_cell[1, 43])])
    assert len(offs) == 3 and {m.channel for m in ons + offs} == {4}
    write_midi(path, roll, velocity=np.arange(1, 89))  # per unit
    assert {m.velocity for m in mido.MidiFile(path).tracks[0] if m.type == "note_on"} \
        == {40, 44}
    write_midi(path, roll, velocity=np.array([[10], [20], [30], [40]]))  # per frame
    assert sorted(m.velocity for m in mido.MidiFile(path).tracks[0]
                  if m.type == "note_on") == [10, 20, 40]


def test_trailing_silence_is_not_read_back(tmp_path):
    roll = np.zeros((10, 88), dtype=np.uint8)
    roll[2:4, 5] = 1
    path = tmp_path / "tail.mid"
    write_midi(path, roll)
    assert read_midi(path).roll.shape == (4, 88)
    assert mido.MidiFile(path).tracks[0][-1].type == "end_of_track"
    assert sum(m.time for m in mido.MidiFile(path).tracks[0]) == 10 * 240


# ----------------------------------------------------------------------------- bad input


def _bad(path, **kw) -> str:
    with pytest.raises(UserError) as exc:
        read_midi(path, **kw)
    return assert_user_error(exc, path)


def test_missing_file(tmp_path):
    assert "not found" in _bad(tmp_path / "nope.mid")


def test_directory_and_empty_file(tmp_path):
    assert "directory" in _bad(tmp_path)
    (tmp_path / "empty.mid").write_bytes(b"")
    assert "empty" in _bad(tmp_path / "empty.mid")


def test_not_midi(tmp_path):
    (tmp_path / "Song.mid").write_text("hello, this is not a midi file at all")
    assert "no mthd header" in _bad(tmp_path / "Song.mid")


def test_truncated_files(tmp_path):
    good = save(tmp_path / "good.mid", [[tempo(0, 100)], notes_events([(60, 0, 480)])])
    data = good.read_bytes()
    for cut in (10, 14, 20, len(data) - 30, len(data) - 1):
        path = tmp_path / f"cut{cut}.mid"
        path.write_bytes(data[:cut])
        assert "truncated" in _bad(path)


def test_smpte_division(tmp_path):
    payload = bytes([0, 0x90, 60, 90, 0x60, 0x80, 60, 0, 0, 0xFF, 0x2F, 0])
    path = tmp_path / "smpte.mid"
    path.write_bytes(smf([payload], fmt=0, division=0xE728))  # -25 fps, 40 per frame
    assert "smpte" in _bad(path)


def test_format2_refused(tmp_path):
    payload = bytes([0, 0x90, 60, 90, 0x60, 0x80, 60, 0, 0, 0xFF, 0x2F, 0])
    path = tmp_path / "f2.mid"
    path.write_bytes(smf([payload, payload], fmt=2))
    assert "format 2" in _bad(path)


def test_no_notes_in_range(tmp_path):
    path = save(tmp_path / "low.mid", [notes_events([(10, 0, 480), (120, 0, 480)])])
    assert "no notes" in _bad(path)
    empty = save(tmp_path / "silent.mid", [[tempo(0, 90)]])
    assert "no notes" in _bad(empty)


def test_corrupt_event_bytes(tmp_path):
    cases = {"undefined": bytes([0, 0xF4, 0, 0xFF, 0x2F, 0]),
             "no_status": bytes([0, 60, 90, 0, 0xFF, 0x2F, 0]),
             "high_data": bytes([0, 0x90, 0xC0, 90, 0, 0xFF, 0x2F, 0]),
             "long_delta": bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x7F, 0x90, 60, 90]),
             "short": bytes([0, 0x90, 60])}
    for label, payload in cases.items():
        path = tmp_path / f"{label}.mid"
        path.write_bytes(smf([payload]))
        assert "corrupt" in _bad(path), label


def test_max_frames(tmp_path):
    path = save(tmp_path / "long.mid", [notes_events([(60, 0, 480 * 10)])])
    assert read_midi(path, max_frames=20).roll.shape[0] == 20
    rest = _bad(path, max_frames=19)
    assert "20 frames" in rest and "19" in rest


def test_bad_grid_arguments(tmp_path):
    path = save(tmp_path / "ok.mid", [notes_events([(60, 0, 480)])])
    assert "not both" in _bad(path, frames_per_beat=4, dt=0.3)
    assert "positive" in _bad(path, frames_per_beat=0)
    assert "positive" in _bad(path, frames_per_beat=None)
    assert "dt" in _bad(path, dt=-1.0)
    assert "dt" in _bad(path, dt="0.3")


def test_fuzzed_files_raise_only_user_error(tmp_path):
    good = random_file(tmp_path / "seed.mid", 3, n_tracks=2)
    data = good.read_bytes()
    rng = random.Random(11)
    outcomes = {"ok": 0, "error": 0}
    for i in range(200):
        blob = bytearray(data)
        kind = i % 4
        if kind == 0:
            blob = blob[:rng.randrange(0, len(blob))]
        elif kind == 1:
            for _ in range(rng.randrange(1, 6)):
                blob[rng.randrange(0, len(blob))] = rng.randrange(256)
        elif kind == 2:
            at = rng.randrange(0, len(blob))
            blob[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        else:
            at = rng.randrange(14, len(blob))
            del blob[at:at + rng.randrange(1, 8)]
        path = tmp_path / "fuzz.mid"
        path.write_bytes(bytes(blob))
        try:
            got = read_midi(path, max_frames=100_000)
        except UserError as e:
            assert_user_error(e, path)
            outcomes["error"] += 1
        else:
            assert isinstance(got, MidiRoll) and got.roll.shape[1] == N_KEYS
            assert set(np.unique(got.roll).tolist()) <= {0, 1}
            outcomes["ok"] += 1
    assert outcomes["ok"] and outcomes["error"]


def test_write_errors(tmp_path):
    roll = roll_from_notes([(60, 0, 2)])
    out = tmp_path / "out.mid"
    bad = [dict(roll=np.zeros((4, 87))), dict(roll=roll * 2),
           dict(key_signature="H"), dict(channel=16), dict(bpm=100.0, tempo_map=[(0, 90)]),
           dict(time_signature=(3, 5)), dict(velocity=0), dict(velocity=np.ones(7)),
           dict(frames_per_beat=0), dict(tempo_map=[(4, 90.0), (2, 100.0)]),
           dict(bpm=0.0), dict(ticks_per_beat=0), dict(velocity=None),
           dict(time_signature=(4,)), dict(frames_per_beat=960, ticks_per_beat=480)]
    for kw in bad:
        kw.setdefault("roll", roll)
        with pytest.raises(UserError) as exc:
            write_midi(out, **kw)
        assert_user_error(exc, out)
    missing = tmp_path / "no_such_dir" / "out.mid"
    with pytest.raises(UserError) as exc:
        write_midi(missing, roll)
    assert "cannot write" in assert_user_error(exc, missing)
