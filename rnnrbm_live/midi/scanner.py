"""The MIDI byte scanner: a file's bytes -> note intervals in ticks, tempos, metre, key.

A small scanner of our own rather than mido's parser: mido builds a checked Message
object per event, which alone costs ~70 ms on a dense 5-minute file, and owning the
scanner lets every malformed byte become one clear UserError.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from rnnrbm_live.errors import UserError

# Bytes after the status byte for system messages that are not meta/sysex; they have no
# place in a file, but skipping them is kinder than refusing it.
_SYSTEM_DATA_LEN = {0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0, 0xF8: 0, 0xFA: 0, 0xFB: 0,
                    0xFC: 0, 0xFE: 0}
_MAJOR_KEYS = ("Cb", "Gb", "Db", "Ab", "Eb", "Bb", "F", "C", "G", "D", "A", "E", "B",
               "F#", "C#")
_MINOR_KEYS = ("Abm", "Ebm", "Bbm", "Fm", "Cm", "Gm", "Dm", "Am", "Em", "Bm", "F#m",
               "C#m", "G#m", "D#m", "A#m")


@dataclass
class Scan:
    """What the byte scanner keeps of a file: note intervals in ticks, plus metadata."""

    notes: np.ndarray                     # [n, 4] int64: on tick, off tick, channel, pitch
    tempos: list[tuple[int, int]]         # (tick, us per beat), merged play order
    time_signature: tuple[int, int] | None
    key_signature: str | None


class _Corrupt(Exception):
    """Internal: the scanner met bytes that are not valid MIDI; read_midi words it."""


# ---------------------------------------------------------------------------- reading

def read_bytes(name: str, path: str | os.PathLike) -> bytes:
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


def parse_layout(name: str, data: bytes) -> tuple[int, list[tuple[int, int]]]:
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


def scan_file(name: str, data: bytes, spans: list[tuple[int, int]]) -> Scan:
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
    return Scan(notes=notes, tempos=_tempos(metas),
                 time_signature=_first_time_signature(metas),
                 key_signature=_first_key_signature(metas))


def _scan_track(trk: bytes, index: int, rows: list, metas: list) -> None:
    """Walk one MTrk chunk, appending sounding intervals to rows and metas to metas.

    One tight loop: this is the hot path of reading. Note pairing, per (channel,
    pitch) of the track, reads the events of one tick as a whole, so their order inside
    the tick does not matter: the tick's first note-off ends the note begun at an
    earlier tick (every one of them, as a synthesizer does), and each further note-off
    cancels one of the tick's note-ons, a zero-length note, which does not sound.
    Notation programs write grace notes as such pairs, some with the note-off first.
    Per key the state is [start of the note open before `tick` or -1, tick, ended
    at this tick, this tick's note-ons less its spare note-offs]; _settle moves it on.
    """
    state: dict[int, list] = {}
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
            st = state.get(key)
            if st is None:
                st = state[key] = [-1, tick, False, 0]
            elif st[1] != tick:
                _settle(st, tick)
            if kind == 0x90 and vel:
                st[3] += 1
            elif st[0] >= 0 and not st[2]:
                rows.append((st[0], tick, status & 0x0F, note))
                st[2] = True
            else:
                st[3] -= 1  # a spare note-off: it cancels one of this tick's note-ons
        elif kind == 0xC0 or kind == 0xD0:
            i += 1
        else:
            i += 2
    if i > n:
        raise _Corrupt("last event runs past the end of the track")
    # Notes still held when the track ends stop there rather than vanish.
    for key, st in state.items():
        _settle(st, tick)
        if 0 <= st[0] < tick:
            rows.append((st[0], tick, key >> 7, key & 0x7F))


def _settle(st: list, tick: int) -> None:
    """Close the books on a key's last tick, st[1], before its next event at tick."""
    if st[0] < 0 or st[2]:
        st[0] = st[1] if st[3] > 0 else -1
    st[1], st[2], st[3] = tick, False, 0


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
