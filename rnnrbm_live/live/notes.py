"""Frames to MIDI note messages, and scales for the scale lock.

A frame is a [88] bool array in the player's pitch space (unit i = MIDI note 21 + i). A
unit that stays on from one frame to the next is one held note, as in the RNN-RBM
tutorial's MIDI writer: between two frames only the units that change send a message,
note-offs first, then note-ons, so a unit that turns off and another that turns on at the
same time never overlap.

`NoteMessages` builds every message the sending side will need ahead of time (one table
per channel and velocity), so the sending loop sends objects that already exist.
"""

from __future__ import annotations

import mido
import numpy as np

from rnnrbm_live.midi.roll import LOWEST_PITCH, N_KEYS

RELEASE_VELOCITY = 64  # the note-off velocity MIDI recommends when there is none
ALL_NOTES_OFF = 123

SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    # natural minor with the raised seventh of the harmonic minor: minor-key music uses both
    "minor": (0, 2, 3, 5, 7, 8, 10, 11),
}

_PITCH_CLASS = (np.arange(N_KEYS) + LOWEST_PITCH) % 12


def scale_units(tonic: int, mode: str) -> np.ndarray:
    """[88] bool: the keys that belong to the scale of `tonic` (0 = C) and `mode`."""
    allowed = np.zeros(12, dtype=bool)
    allowed[[(tonic + step) % 12 for step in SCALES[mode]]] = True
    return allowed[_PITCH_CLASS]


def frame_notes(frame: np.ndarray) -> list[int]:
    """The MIDI notes of a frame, lowest first."""
    return (np.flatnonzero(frame) + LOWEST_PITCH).tolist()


class NoteMessages:
    """Note messages for one output channel, built once."""

    def __init__(self, channel: int, velocity: int):
        if not 0 <= channel <= 15:
            raise ValueError(f"channel must be 0..15 (0-based), got {channel}")
        if not 1 <= velocity <= 127:
            raise ValueError(f"velocity must be 1..127, got {velocity}")
        self.channel = channel
        self.velocity = velocity
        self._on = [mido.Message("note_on", channel=channel, note=n, velocity=velocity)
                    for n in range(128)]
        self._off = [mido.Message("note_off", channel=channel, note=n,
                                  velocity=RELEASE_VELOCITY) for n in range(128)]
        self.all_notes_off = mido.Message("control_change", channel=channel,
                                          control=ALL_NOTES_OFF, value=0)

    def on(self, note: int, velocity: int | None = None) -> mido.Message:
        if velocity is None or velocity == self.velocity:
            return self._on[note]
        return mido.Message("note_on", channel=self.channel, note=note,
                            velocity=max(1, min(127, int(velocity))))

    def off(self, note: int) -> mido.Message:
        return self._off[note]

    def cc(self, control: int, value: int) -> mido.Message:
        return mido.Message("control_change", channel=self.channel, control=control,
                            value=value)

    def diff(self, prev: np.ndarray, cur: np.ndarray, velocity: int | None = None
             ) -> tuple[tuple[mido.Message, ...], tuple[mido.Message, ...]]:
        """(note-offs, note-ons) that take the output from frame `prev` to frame `cur`."""
        offs = tuple(self._off[int(u) + LOWEST_PITCH] for u in np.flatnonzero(prev & ~cur))
        ons = tuple(self.on(int(u) + LOWEST_PITCH, velocity)
                    for u in np.flatnonzero(cur & ~prev))
        return offs, ons
