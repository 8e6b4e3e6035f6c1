"""Binary piano roll -> MIDI file, written with mido (an independent codec from the reader)."""

from __future__ import annotations

import os

import mido
import numpy as np

from rnnrbm_live.errors import UserError
from rnnrbm_live.midi.roll import DEFAULT_BPM, LOWEST_PITCH, N_KEYS


def write_midi(path: str | os.PathLike, roll: np.ndarray, *, frames_per_beat: int = 2,
               bpm: float | None = None, tempo_map: list[tuple[int, float]] | None = None,
               time_signature: tuple[int, int] = (4, 4), key_signature: str | None = None,
               channel: int = 0, velocity: int | np.ndarray = 80,
               ticks_per_beat: int = 480) -> None:
    """Write a [T, 88] 0/1 roll as a format-0 MIDI file on a beat grid.

    Each run of active frames of a unit becomes one note. Give bpm or tempo_map
    ((frame, bpm) pairs), not both; neither means 120 bpm. For a seconds grid of dt,
    pass bpm = 60 / (dt * frames_per_beat). velocity is a scalar or an array that
    broadcasts to the roll's shape ([88] per unit, [T, 1] per frame, [T, 88] per cell);
    a note takes the value at its first frame. read_midi with the same frames_per_beat
    gives the roll back exactly, less trailing silent frames (the track still ends at
    frame T).
    """
    name = str(path)
    roll = _check_roll(name, roll)
    _check_grid(name, frames_per_beat, ticks_per_beat, channel)
    tempos = _check_tempos(name, bpm, tempo_map)
    velocities = _check_velocity(name, velocity, roll.shape)
    meta = _meta_messages(name, time_signature, key_signature)

    def frame_tick(frames: np.ndarray) -> np.ndarray:
        return tick_of(frames, ticks_per_beat, frames_per_beat)

    edges = np.diff(roll.astype(np.int8), axis=0, prepend=0, append=0)
    on_f, on_u = np.nonzero(edges == 1)
    off_f, off_u = np.nonzero(edges == -1)
    # At one tick: note-offs, then tempos, then note-ons, so nothing ends as it starts.
    events = [(t, 0, int(u), 0) for t, u in zip(frame_tick(off_f).tolist(), off_u)]
    events += [(t, 1, 0, us) for t, us in zip(
        frame_tick(np.array([f for f, _ in tempos])).tolist(), [u for _, u in tempos])]
    events += [(t, 2, int(u), int(v)) for t, u, v in zip(
        frame_tick(on_f).tolist(), on_u, velocities[on_f, on_u].tolist())]
    events.sort()

    track = mido.MidiTrack(meta)
    now = 0
    for tick, kind, unit, value in events:
        if kind == 1:
            msg = mido.MetaMessage("set_tempo", tempo=value, time=tick - now)
        else:
            msg = mido.Message("note_on" if kind == 2 else "note_off", channel=channel,
                               note=unit + LOWEST_PITCH, velocity=value,
                               time=tick - now)
        track.append(msg)
        now = tick
    end = max(int(frame_tick(np.array(len(roll)))), now)
    track.append(mido.MetaMessage("end_of_track", time=end - now))

    midi = mido.MidiFile(type=0, ticks_per_beat=ticks_per_beat)
    midi.tracks.append(track)
    save_midi(path, midi)


def tick_of(frames, ticks_per_beat: int, frames_per_beat: int) -> np.ndarray:
    """The nearest tick of each frame boundary; read_midi's rounding maps it back to the
    same frame."""
    return (2 * np.asarray(frames, dtype=np.int64) * ticks_per_beat
            + frames_per_beat) // (2 * frames_per_beat)


def note_track(roll: np.ndarray, boundaries: np.ndarray, *, name: str, channel: int,
               velocity: int, program: int | None = None,
               end_tick: int | None = None) -> mido.MidiTrack:
    """A [T, 88] roll as one named track of a multi-track file: frame f sounds from tick
    boundaries[f] to boundaries[f + 1] (T + 1 ascending ticks; a run of active frames
    is one note). The program change, if any, comes at the first boundary; the track
    ends at end_tick (default the last boundary), and no note outlasts it."""
    roll = np.asarray(roll, dtype=np.int8)
    end = int(boundaries[-1]) if end_tick is None else int(end_tick)
    ticks = np.minimum(np.asarray(boundaries, dtype=np.int64), end)
    edges = np.diff(roll, axis=0, prepend=0, append=0)
    events = [(int(ticks[f]), 0, int(u)) for f, u in zip(*np.nonzero(edges == -1))]
    events += [(int(ticks[f]), 1, int(u)) for f, u in zip(*np.nonzero(edges == 1))]
    events.sort()  # at one tick note-offs first, so a repeated note is not cut short
    track = mido.MidiTrack([mido.MetaMessage("track_name", name=name)])
    now = 0
    if program is not None:
        now = int(ticks[0])
        track.append(mido.Message("program_change", channel=channel, program=program,
                                  time=now))
    for tick, kind, unit in events:
        track.append(mido.Message("note_on" if kind else "note_off", channel=channel,
                                  note=unit + LOWEST_PITCH, velocity=velocity if kind
                                  else 0, time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=max(end - now, 0)))
    return track


def save_midi(path: str | os.PathLike, midi: mido.MidiFile) -> None:
    """mido's save, its errors as one line naming the file."""
    try:
        midi.save(path)
    except OSError as e:
        reason = (e.strerror or "i/o error").lower()
        raise UserError(f"{path}: cannot write the file ({reason}); "
                        "check the folder exists and is writable") from None


def _check_roll(name: str, roll) -> np.ndarray:
    arr = np.asarray(roll)
    if arr.ndim != 2 or arr.shape[1] != N_KEYS:
        raise UserError(f"{name}: the roll must be [frames, {N_KEYS}], got shape "
                        f"{arr.shape}; pass a piano roll of 88 keys")
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise UserError(f"{name}: the roll must hold only 0 and 1; threshold it first")
    return arr.astype(np.uint8)


def _check_grid(name: str, frames_per_beat: int, ticks_per_beat: int,
                channel: int) -> None:
    if not isinstance(ticks_per_beat, (int, np.integer)) or not 1 <= ticks_per_beat \
            <= 0x7FFF:
        raise UserError(f"{name}: ticks_per_beat must be an integer in 1..32767, "
                        f"got {ticks_per_beat}")
    if not isinstance(frames_per_beat, (int, np.integer)) or not 1 <= frames_per_beat \
            <= ticks_per_beat:
        raise UserError(f"{name}: frames_per_beat must be an integer in "
                        f"1..ticks_per_beat ({ticks_per_beat}), got {frames_per_beat}")
    if not isinstance(channel, (int, np.integer)) or not 0 <= channel <= 15:
        raise UserError(f"{name}: channel must be 0..15 (0-based), got {channel}")


def _check_tempos(name: str, bpm: float | None,
                  tempo_map: list[tuple[int, float]] | None) -> list[tuple[int, int]]:
    """Return (frame, microseconds per beat) pairs, sorted, starting at frame 0."""
    if bpm is not None and tempo_map is not None:
        raise UserError(f"{name}: give either bpm or tempo_map, not both")
    pairs = [(0, DEFAULT_BPM if bpm is None else bpm)] if tempo_map is None \
        else list(tempo_map)
    out: list[tuple[int, int]] = []
    for frame, beats in pairs:
        ok_bpm = isinstance(beats, (int, float, np.number)) and 0 < beats < float("inf")
        us = round(60e6 / beats) if ok_bpm else 0
        if not 1 <= us <= 0xFFFFFF or not isinstance(frame, (int, np.integer)) \
                or frame < 0:
            raise UserError(f"{name}: bad tempo ({frame}, {beats}); give frames >= 0 "
                            "and bpm between 3.6 and 60000000")
        out.append((int(frame), us))
    if [f for f, _ in out] != sorted(f for f, _ in out):
        raise UserError(f"{name}: tempo_map frames must be in increasing order")
    return out


def _check_velocity(name: str, velocity, shape: tuple[int, int]) -> np.ndarray:
    try:
        vel = np.broadcast_to(np.asarray(velocity, dtype=np.float64), shape)
    except (TypeError, ValueError):
        raise UserError(f"{name}: velocity {np.shape(velocity)} does not fit the roll "
                        f"{shape}; give a number, [88], [frames, 1] or [frames, 88]") \
            from None
    if vel.size and not ((vel >= 1) & (vel <= 127) & (vel == np.round(vel))).all():
        raise UserError(f"{name}: velocity must be whole numbers in 1..127")
    return vel.astype(np.int64)


def _meta_messages(name: str, time_signature: tuple[int, int],
                   key_signature: str | None) -> list[mido.MetaMessage]:
    try:
        num, den = (int(v) for v in time_signature)
    except (TypeError, ValueError):
        num, den = 0, 0  # reported just below
    if not (1 <= num <= 255 and den >= 1 and den & (den - 1) == 0 and den <= 2 ** 15):
        raise UserError(f"{name}: bad time signature {time_signature}; give "
                        "(numerator, denominator) with a power-of-two denominator")
    meta = [mido.MetaMessage("time_signature", numerator=num, denominator=den)]
    if key_signature is not None:
        try:
            meta.append(mido.MetaMessage("key_signature", key=key_signature))
        except ValueError:
            raise UserError(f"{name}: unknown key signature {key_signature!r}; give a "
                            "name such as 'C', 'Eb' or 'F#m'") from None
    return meta
