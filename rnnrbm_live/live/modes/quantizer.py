"""The player's timestamped notes -> grid frames, for the continue mode's listening."""

from __future__ import annotations

import numpy as np

from rnnrbm_live.midi.roll import N_KEYS


class Quantizer:
    """Rounds onsets and offsets to the nearest frame boundary (ties upward) and keeps
    every note at least one frame. A frame is final once `finalize` has returned it."""

    def __init__(self, first_frame: int = 0):
        self.reset(first_frame)

    def reset(self, first_frame: int) -> None:
        self.next_final = first_frame
        self.held: dict[int, int] = {}                 # unit -> onset frame
        self.done: list[tuple[int, int, int]] = []     # (start, end, unit)

    def note_on(self, frame: int, unit: int) -> None:
        if unit not in self.held:
            self.held[unit] = max(frame, self.next_final)

    def note_off(self, frame: int, unit: int) -> None:
        start = self.held.pop(unit, None)
        if start is not None:
            self.done.append((start, max(frame, start + 1, self.next_final), unit))

    def finalize(self) -> tuple[int, np.ndarray]:
        m = self.next_final
        frame = np.zeros(N_KEYS, dtype=bool)
        for start, end, unit in self.done:
            if start <= m < end:
                frame[unit] = True
        for unit, start in self.held.items():
            if start <= m:
                frame[unit] = True
        self.done = [d for d in self.done if d[1] > m + 1]
        self.next_final = m + 1
        return m, frame
