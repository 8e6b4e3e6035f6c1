"""MIDI file <-> binary piano roll ([frames, 88] of 0/1, unit i = MIDI note 21 + i).

Reading uses a small byte scanner of our own rather than mido's parser: mido builds a
checked Message object per event, which alone costs ~70 ms on a dense 5-minute file, and
owning the scanner lets every malformed byte become one clear UserError. Writing uses
mido, so the tests' write->read round trips check two independent codecs against each
other (and pretty_midi, which parses with mido, checks the reader).

Semantics (see read_midi): a pitch sounds while at least one of its notes sounds, counted
per (track, channel, pitch); onsets and offsets round to the nearest frame boundary,
ties upward; a note never vanishes (it keeps at least one frame). Format 2 files are
refused: their tracks are independent sequences with no common timeline.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import mido
import numpy as np

from rnnrbm_live.errors import UserError

READER_VERSION = 1  # bump when a file reads into a different roll: datasets keys its cache on it
N_KEYS = 88
LOWEST_PITCH = 21
HIGHEST_PITCH = LOWEST_PITCH + N_KEYS - 1
DRUM_CHANNEL = 9
DEFAULT_BPM = 120.0
_DEFAULT_TEMPO_US = 500_000
# Without max_frames a corrupt delta time could ask for a multi-gigabyte roll.
_HARD_MAX_FRAMES = 1_000_000
# Bytes after the status byte for system messages that are not meta/sysex; they have no
# place in a file, but skipping them is kinder than refusing it.
_SYSTEM_DATA_LEN = {0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0, 0xF8: 0, 0xFA: 0, 0xFB: 0,
                    0xFC: 0, 0xFE: 0}
_MAJOR_KEYS = ("Cb", "Gb", "Db", "Ab", "Eb", "Bb", "F", "C", "G", "D", "A", "E", "B",
               "F#", "C#")
_MINOR_KEYS = ("Abm", "Ebm", "Bbm", "Fm", "Cm", "Gm", "Dm", "Am", "Em", "Bm", "F#m",
               "C#m", "G#m", "D#m", "A#m")


@dataclass
class MidiRoll:
    """A piano roll read from a MIDI file, with the file facts needed to write it back."""

    roll: np.ndarray                      # [T, 88] uint8 0/1
    frames_per_beat: int | None           # beat grid, or None on a seconds grid
    dt: float | None                      # seconds per frame on a seconds grid, else None
    tempo_map: list[tuple[int, float]]    # (frame, bpm), first at frame 0
    time_signature: tuple[int, int]
    key_signature: str | None
    channel: int                          # 0-based channel with the most kept notes
    ticks_per_beat: int
    source: str


@dataclass
class _Scan:
    """What the byte scanner keeps of a file: note intervals in ticks, plus metadata."""

    notes: np.ndarray                     # [n, 4] int64: on tick, off tick, channel, pitch
    tempos: list[tuple[int, int]]         # (tick, us per beat), merged play order
    time_signature: tuple[int, int] | None
    key_signature: str | None


class _Corrupt(Exception):
    """Internal: the scanner met bytes that are not valid MIDI; read_midi words it."""


# ---------------------------------------------------------------------------- reading


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
    if dt is not None:
        if frames_per_beat not in (None, 2):
            raise UserError(f"{name}: give either frames_per_beat or dt, not both")
        frames_per_beat = None
        if not isinstance(dt, (int, float, np.number)) or not 0 < dt < float("inf"):
            raise UserError(f"{name}: dt must be a positive number of seconds, got {dt}")
    elif not isinstance(frames_per_beat, (int, np.integer)) or frames_per_beat < 1:
        shown = str(frames_per_beat).lower()
        raise UserError(f"{name}: frames_per_beat must be a positive integer, got "
                        f"{shown}; or give dt for a seconds grid")

    data = _read_bytes(name, path)
    ticks_per_beat, track_spans = _parse_layout(name, data)
    scan = _scan_file(name, data, track_spans)
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
        roll=_fill_roll(on, off, notes[:, 3] - LOWEST_PITCH, n_frames),
        frames_per_beat=None if frames_per_beat is None else int(frames_per_beat),
        dt=None if dt is None else float(dt),
        tempo_map=_tempo_map(scan.tempos, to_frames),
        time_signature=scan.time_signature or (4, 4),
        key_signature=scan.key_signature,
        channel=_busiest_channel(notes[:, 2]),
        ticks_per_beat=ticks_per_beat,
        source=name,
    )


def _read_bytes(name: str, path: str | os.PathLike) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise UserError(f"{name}: file not found; check the path") from None
    except IsADirectoryError:
        raise UserError(f"{name}: is a directory, not a midi file; give a .mid file") \
            from None
    except PermissionError:
        raise UserError(f"{name}: permission denied; make the file readable") from None
    except OSError as e:
        reason = (e.strerror or "i/o error").lower()
        raise UserError(f"{name}: cannot read the file ({reason}); check the path") \
            from None


def _parse_layout(name: str, data: bytes) -> tuple[int, list[tuple[int, int]]]:
    """Check the MThd header and find each MTrk chunk; return (ticks per beat, spans)."""
    if not data:
        raise UserError(f"{name}: empty file, not a midi file; "
                        "give a standard midi file (.mid)")
    if data[:4] != b"MThd":
        raise UserError(f"{name}: not a midi file (no mthd header); "
                        "give a standard midi file (.mid)")
    if len(data) < 14:
        raise UserError(f"{name}: truncated midi file (header cut short); "
                        "re-export or re-download it")
    header_len = int.from_bytes(data[4:8], "big")
    fmt = int.from_bytes(data[8:10], "big")
    n_tracks = int.from_bytes(data[10:12], "big")
    division = int.from_bytes(data[12:14], "big")
    if header_len < 6:
        raise UserError(f"{name}: corrupt midi header (length {header_len}); "
                        "re-export or re-download it")
    if fmt == 2:
        raise UserError(f"{name}: midi format 2 (independent sequences) is not "
                        "supported; re-save it as format 0 or 1")
    if fmt > 2:
        raise UserError(f"{name}: unknown midi format {fmt}; "
                        "give a standard midi file (format 0 or 1)")
    if division & 0x8000:
        raise UserError(f"{name}: uses smpte time division, which is not supported; "
                        "re-save it with ticks-per-beat (ppq) timing")
    if division == 0:
        raise UserError(f"{name}: corrupt midi header (0 ticks per beat); "
                        "re-export or re-download it")

    spans: list[tuple[int, int]] = []
    pos = 8 + header_len
    while len(spans) < n_tracks:
        if pos + 8 > len(data):
            raise UserError(f"{name}: truncated midi file (found {len(spans)} of "
                            f"{n_tracks} tracks); re-export or re-download it")
        size = int.from_bytes(data[pos + 4:pos + 8], "big")
        start, pos = pos + 8, pos + 8 + size
        if pos > len(data):
            raise UserError(f"{name}: truncated midi file (track {len(spans) + 1} is "
                            "cut short); re-export or re-download it")
        if data[start - 8:start - 4] == b"MTrk":  # other chunk types are to be skipped
            spans.append((start, pos))
    return division, spans


def _scan_file(name: str, data: bytes, spans: list[tuple[int, int]]) -> _Scan:
    rows: list[tuple[int, int, int, int]] = []
    metas: list[tuple[int, int, int, int, bytes]] = []  # tick, track, seq, type, data
    for index, (start, end) in enumerate(spans):
        try:
            _scan_track(data[start:end], index, rows, metas)
        except (_Corrupt, IndexError):
            # IndexError: an event runs past the end of its chunk.
            raise UserError(f"{name}: corrupt midi data in track {index + 1}; "
                            "re-export or re-download it") from None
    metas.sort(key=lambda m: m[:3])  # merged order, as a player would meet them
    notes = np.array(rows, dtype=np.int64).reshape(-1, 4)
    return _Scan(notes=notes, tempos=_tempos(metas),
                 time_signature=_first_time_signature(metas),
                 key_signature=_first_key_signature(metas))


def _scan_track(trk: bytes, index: int, rows: list, metas: list) -> None:
    """Walk one MTrk chunk, appending sounding intervals to rows and metas to metas.

    One tight loop: this is the hot path of reading. A pitch sounds from the note-on
    that lifts its count above zero to the note-off that brings it back to zero.
    """
    counts: dict[int, int] = {}
    starts: dict[int, int] = {}
    tick = 0
    status = 0
    i = 0
    n = len(trk)
    while i < n:
        b = trk[i]
        i += 1
        delta = b & 0x7F
        length = 1
        while b & 0x80:
            b = trk[i]
            i += 1
            delta = (delta << 7) | (b & 0x7F)
            length += 1
        if length > 4:
            raise _Corrupt("delta time longer than 4 bytes")
        tick += delta

        b = trk[i]
        if b & 0x80:
            i += 1
            if b < 0xF0:
                status = b
            elif b == 0xFF:
                kind = trk[i]
                size, i = _varint(trk, i + 1)
                if i + size > n:
                    raise _Corrupt("meta event past end of track")
                if kind == 0x2F:
                    break  # end_of_track: anything after it is not part of the track
                if kind in (0x51, 0x58, 0x59):
                    metas.append((tick, index, i, kind, trk[i:i + size]))
                i += size
                continue
            elif b == 0xF0 or b == 0xF7:
                size, i = _varint(trk, i)
                i += size  # past the end is caught after the loop
                continue
            elif b in _SYSTEM_DATA_LEN:
                i += _SYSTEM_DATA_LEN[b]
                continue
            else:
                raise _Corrupt(f"undefined status byte {b:#x}")
        elif status == 0:
            raise _Corrupt("running status without a status byte")

        kind = status & 0xF0
        if kind == 0x90 or kind == 0x80:
            note, vel = trk[i], trk[i + 1]
            i += 2
            if (note | vel) & 0x80:
                raise _Corrupt("data byte above 127")
            key = ((status & 0x0F) << 7) | note
            count = counts.get(key, 0)
            if kind == 0x90 and vel:
                if count == 0:
                    starts[key] = tick
                counts[key] = count + 1
            elif count == 1:
                counts[key] = 0
                rows.append((starts[key], tick, status & 0x0F, note))
            elif count > 1:
                counts[key] = count - 1
            # count == 0: a stray note-off; nothing sounds, so nothing to end
        elif kind == 0xC0 or kind == 0xD0:
            i += 1
        else:
            i += 2
    if i > n:
        raise _Corrupt("last event runs past the end of the track")
    # Notes still held when the track ends stop there rather than vanish.
    for key, count in counts.items():
        if count:
            rows.append((starts[key], tick, key >> 7, key & 0x7F))


def _varint(trk: bytes, i: int) -> tuple[int, int]:
    value = 0
    for _ in range(4):
        b = trk[i]
        i += 1
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            return value, i
    raise _Corrupt("variable-length number longer than 4 bytes")


def _tempos(metas: list) -> list[tuple[int, int]]:
    out = []
    for tick, _, _, kind, data in metas:
        if kind == 0x51 and len(data) >= 3:
            tempo = int.from_bytes(data[:3], "big")
            if tempo > 0:  # a zero tempo would stop time; ignore it as corrupt
                out.append((tick, tempo))
    return out


def _first_time_signature(metas: list) -> tuple[int, int] | None:
    for _, _, _, kind, data in metas:
        if kind == 0x58 and len(data) >= 2 and data[0] > 0 and data[1] < 16:
            return int(data[0]), 2 ** int(data[1])
    return None


def _first_key_signature(metas: list) -> str | None:
    for _, _, _, kind, data in metas:
        if kind == 0x59 and len(data) >= 2:
            sharps = data[0] - 256 if data[0] > 127 else data[0]
            if -7 <= sharps <= 7 and data[1] in (0, 1):
                return (_MINOR_KEYS if data[1] else _MAJOR_KEYS)[sharps + 7]
    return None


def _keep_notes(name: str, notes: np.ndarray, include_drums: bool) -> np.ndarray:
    in_range = (notes[:, 3] >= LOWEST_PITCH) & (notes[:, 3] <= HIGHEST_PITCH)
    not_drums = notes[:, 2] != DRUM_CHANNEL
    keep = in_range if include_drums else in_range & not_drums
    if not keep.any():
        drums_only = not include_drums and (in_range & ~not_drums).any()
        hint = "pass include_drums to keep channel-10 drum notes" if drums_only \
            else "give a file with piano notes"
        what = "outside drums on channel 10 " if drums_only else ""
        raise UserError(f"{name}: no notes {what}in the piano range a0..c8 "
                        f"(midi 21..108); {hint}")
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


def _fill_roll(on: np.ndarray, off: np.ndarray, units: np.ndarray,
               n_frames: int) -> np.ndarray:
    # +1 at each onset, -1 at each offset, summed down time: a cell is on while any
    # note covering it sounds, which is the union of overlapping notes.
    edges = np.zeros((n_frames + 1, N_KEYS), dtype=np.int32)
    np.add.at(edges, (on, units), 1)
    np.add.at(edges, (off, units), -1)
    np.cumsum(edges, axis=0, out=edges)  # in place: rolls can be long
    return (edges[:-1] > 0).astype(np.uint8)


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


# ---------------------------------------------------------------------------- helpers


def roll_from_notes(notes: Iterable[tuple[int, int, int]],
                    n_frames: int | None = None) -> np.ndarray:
    """Build a [T, 88] uint8 roll from (midi pitch, start frame, end frame) triples.

    Frames are half-open [start, end); an empty or reversed note keeps one frame at
    start, as in read_midi. Pitches outside 21..108 are dropped. T is n_frames if given
    (notes past it are cut off), else the end of the last note.
    """
    arr = np.array(list(notes), dtype=np.int64).reshape(-1, 3)
    arr = arr[(arr[:, 0] >= LOWEST_PITCH) & (arr[:, 0] <= HIGHEST_PITCH)]
    on = arr[:, 1]
    off = np.maximum(arr[:, 2], on + 1)
    total = int(off.max(initial=0)) if n_frames is None else int(n_frames)
    on, off = np.minimum(on, total), np.minimum(off, total)
    return _fill_roll(on, off, arr[:, 0] - LOWEST_PITCH, total)


# ---------------------------------------------------------------------------- writing


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
        # Nearest tick; read_midi's rounding maps it back to the same frame.
        return (2 * np.asarray(frames, dtype=np.int64) * ticks_per_beat
                + frames_per_beat) // (2 * frames_per_beat)

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
    try:
        midi.save(path)
    except OSError as e:
        reason = (e.strerror or "i/o error").lower()
        raise UserError(f"{name}: cannot write the file ({reason}); "
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
