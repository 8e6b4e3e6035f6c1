"""Piano rolls: [frames, 88] arrays of 0/1, unit i = MIDI note 21 + i, and the file facts
a roll read from MIDI carries (grid, tempo map, metre, key, channel)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

N_KEYS = 88
LOWEST_PITCH = 21
HIGHEST_PITCH = LOWEST_PITCH + N_KEYS - 1
DRUM_CHANNEL = 9
DEFAULT_BPM = 120.0


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
    last_tick: int = 0                    # where the file's last note ends, any channel


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
    return fill_roll(on, off, arr[:, 0] - LOWEST_PITCH, total)


# ---------------------------------------------------------------------------- writing


def fill_roll(on: np.ndarray, off: np.ndarray, units: np.ndarray,
               n_frames: int) -> np.ndarray:
    # +1 at each onset, -1 at each offset, summed down time: a cell is on while any
    # note covering it sounds, which is the union of overlapping notes.
    edges = np.zeros((n_frames + 1, N_KEYS), dtype=np.int32)
    np.add.at(edges, (on, units), 1)
    np.add.at(edges, (off, units), -1)
    np.cumsum(edges, axis=0, out=edges)  # in place: rolls can be long
    return (edges[:-1] > 0).astype(np.uint8)
