"""MIDI file -> binary piano roll (see read_midi for the semantics).

Semantics: per (track, channel, pitch) a note sounds from its note-on to the next
note-off, which ends every note of that pitch begun earlier, as a synthesizer plays it;
the events of one tick count as a whole whatever their order, so a note-on and a
note-off at one tick with no note open are a zero-length note (a grace note as notation
programs write it), which does not sound (scanner.py). Onsets and offsets round to the
nearest frame boundary, ties upward; a note of any length never vanishes (it keeps at
least one frame). Format 2 files are refused: their
tracks are independent sequences with no common timeline. The bytes are read by
scanner.py; the writer (writer.py) uses mido, so the tests' write->read round trips check
two independent codecs against each other (and pretty_midi checks the reader).
"""

from __future__ import annotations

import os

import numpy as np

from rnnrbm_live.errors import UserError
from rnnrbm_live.midi.roll import (DEFAULT_BPM, DRUM_CHANNEL, HIGHEST_PITCH, LOWEST_PITCH,
                                   MidiRoll, fill_roll)
from rnnrbm_live.midi.scanner import parse_layout, read_bytes, scan_file

READER_VERSION = 2  # bump when a file reads into a different roll: datasets keys its cache on it
_DEFAULT_TEMPO_US = 500_000
# Without max_frames a corrupt delta time could ask for a multi-gigabyte roll.
_HARD_MAX_FRAMES = 1_000_000


def read_midi(path: str | os.PathLike, *, frames_per_beat: int | None = 2,
              dt: float | None = None, include_drums: bool = False,
              max_frames: int | None = None) -> MidiRoll:
    """Read a format 0 or 1 MIDI file into a piano roll.

    Give dt (seconds per frame) for a seconds grid instead of the default beat grid
    (frames_per_beat other than the default 2 together with dt is an error). On the
    beat grid frame k covers ticks [k*tpf, (k+1)*tpf), tpf = ticks_per_beat /
    frames_per_beat, so tempo changes do not bend it; on the seconds grid frame k
    covers [k*dt, (k+1)*dt). A note occupies frames [round(on), round(off)), rounding
    halves up, and at least one frame. Channel 10 (drums) is left out unless
    include_drums, notes outside MIDI 21..108 are dropped, sustain pedal is ignored, a
    note still held at the end of its track ends there, and trailing silence after the
    last note is not kept. Raises UserError for any bad file or argument.
    """
    name = str(path)
    _check_grid(name, frames_per_beat, dt)
    return roll_from_bytes(name, read_bytes(name, path), frames_per_beat=frames_per_beat,
                           dt=dt, include_drums=include_drums, max_frames=max_frames)


def roll_from_bytes(name: str, data: bytes, *, frames_per_beat: int | None = 2,
                    dt: float | None = None, include_drums: bool = False,
                    max_frames: int | None = None) -> MidiRoll:
    """read_midi on a file's bytes already read; name is the file named in errors."""
    _check_grid(name, frames_per_beat, dt)
    if dt is not None:
        frames_per_beat = None
    ticks_per_beat, track_spans = parse_layout(name, data)
    scan = scan_file(name, data, track_spans)
    notes = _keep_notes(name, scan.notes, include_drums)

    def to_frames(ticks: np.ndarray) -> np.ndarray:
        if frames_per_beat is not None:
            return _ticks_to_beat_frames(ticks, ticks_per_beat, int(frames_per_beat))
        return _seconds_to_frames(_ticks_to_seconds(ticks, scan.tempos, ticks_per_beat),
                                  dt)
    on, off = to_frames(notes[:, 0]), to_frames(notes[:, 1])
    off = np.maximum(off, on + 1)  # a note shorter than half a frame keeps one frame

    n_frames = int(off.max())
    limit = max_frames if max_frames is not None else _HARD_MAX_FRAMES
    if n_frames > limit:
        hint = "use a shorter file or raise max_frames" if max_frames is not None \
            else "the file is probably corrupt; pass max_frames to allow it"
        raise UserError(f"{name}: the roll would be {n_frames} frames long, over the "
                        f"limit of {limit}; {hint}")

    return MidiRoll(
        roll=fill_roll(on, off, notes[:, 3] - LOWEST_PITCH, n_frames),
        frames_per_beat=None if frames_per_beat is None else int(frames_per_beat),
        dt=None if dt is None else float(dt),
        tempo_map=_tempo_map(scan.tempos, to_frames),
        time_signature=scan.time_signature or (4, 4),
        key_signature=scan.key_signature,
        channel=_busiest_channel(notes[:, 2]),
        ticks_per_beat=ticks_per_beat,
        source=name,
        last_tick=int(scan.notes[:, 1].max()),
    )


def _check_grid(name: str, frames_per_beat, dt) -> None:
    if dt is not None:
        if frames_per_beat not in (None, 2):
            raise UserError(f"{name}: give either frames_per_beat or dt, not both")
        if not isinstance(dt, (int, float, np.number)) or not 0 < dt < float("inf"):
            raise UserError(f"{name}: dt must be a positive number of seconds, got {dt}")
    elif not isinstance(frames_per_beat, (int, np.integer)) or frames_per_beat < 1:
        shown = str(frames_per_beat).lower()
        raise UserError(f"{name}: frames_per_beat must be a positive integer, got "
                        f"{shown}; or give dt for a seconds grid")


def _keep_notes(name: str, notes: np.ndarray, include_drums: bool) -> np.ndarray:
    in_range = (notes[:, 3] >= LOWEST_PITCH) & (notes[:, 3] <= HIGHEST_PITCH)
    not_drums = notes[:, 2] != DRUM_CHANNEL
    keep = in_range if include_drums else in_range & not_drums
    if not keep.any():
        if not include_drums and (in_range & ~not_drums).any():
            raise UserError(f"{name}: no notes but drum notes (channel 10), which are not "
                            "read; give a file with a melodic part")
        raise UserError(f"{name}: no notes in the piano range a0..c8 (midi 21..108); "
                        "give a file with piano notes")
    return notes[keep]


def _ticks_to_beat_frames(ticks: np.ndarray, ticks_per_beat: int,
                          frames_per_beat: int) -> np.ndarray:
    # Integer round-half-up of ticks * fpb / tpb: exact, so no float ties flip.
    return (2 * ticks * frames_per_beat + ticks_per_beat) // (2 * ticks_per_beat)


def _ticks_to_seconds(ticks: np.ndarray, tempos: list[tuple[int, int]],
                      ticks_per_beat: int) -> np.ndarray:
    change_ticks = np.array([0] + [t for t, _ in tempos], dtype=np.int64)
    tempo_us = np.array([_DEFAULT_TEMPO_US] + [v for _, v in tempos], dtype=np.float64)
    # Seconds at each change: the earlier segments' lengths at their own tempos.
    seg_seconds = np.diff(change_ticks) * tempo_us[:-1] / (1e6 * ticks_per_beat)
    change_seconds = np.concatenate(([0.0], np.cumsum(seg_seconds)))
    seg = np.searchsorted(change_ticks, ticks, side="right") - 1
    ticks = np.asarray(ticks)
    return change_seconds[seg] + (ticks - change_ticks[seg]) * tempo_us[seg] / (
        1e6 * ticks_per_beat)


def _seconds_to_frames(seconds: np.ndarray, dt: float) -> np.ndarray:
    return np.floor(np.asarray(seconds) / dt + 0.5).astype(np.int64)

def _tempo_map(tempos: list[tuple[int, int]], to_frames) -> list[tuple[int, float]]:
    out: list[tuple[int, float]] = [(0, DEFAULT_BPM)]
    if not tempos:
        return out
    frames = to_frames(np.array([t for t, _ in tempos], dtype=np.int64))
    for frame, (_, tempo) in zip(frames.tolist(), tempos):
        bpm = 60e6 / tempo
        if out[-1][0] == frame:
            out.pop()  # the later tempo at the same frame is the one in force
        if not out or out[-1][1] != bpm:
            out.append((int(frame), bpm))
    return out


def _busiest_channel(channels: np.ndarray) -> int:
    return int(np.argmax(np.bincount(channels, minlength=16)))  # ties: lowest
