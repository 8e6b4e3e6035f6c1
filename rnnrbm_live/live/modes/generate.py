"""generate: the model plays on its own; frame k is computed one frame ahead of its time."""

from __future__ import annotations

from collections import deque

import numpy as np

from rnnrbm_live.live.controls import STATE_PLAYING
from rnnrbm_live.live.modes.base import Composer
from rnnrbm_live.midi import keys


class GenerateMode(Composer):
    mode = "generate"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.own: deque[np.ndarray] = deque(maxlen=self.context.maxlen)  # model frames
        self.own_key: tuple[int, str] = (0, "major")

    def _scale_key(self) -> tuple[int, str]:
        # Nobody plays along: the lock keeps to the key the model itself is in.
        return self.own_key

    def _advance(self, now: float) -> float | None:
        position = self.grid.position(now)
        while True:
            k = self.next_frame
            if k > position + self.lookahead:
                return self._wake_at(k - self.lookahead)
            if self._catch_up(position):
                continue
            if self.controls.lock and self.controls.lock_key is not None:
                self.shift = keys.semitones_to_c(self.controls.lock_key[0])
            else:
                self.shift = 0
            v = self._step()
            self.own.append(v)
            if k % self.frames_per_bar == 0 and len(self.own) >= self.frames_per_bar:
                roll = np.array(self.own)
                if roll.any():
                    tonic, mode, _ = keys.estimate_key(roll)
                    self.own_key = (tonic, mode)
            extra = self._set_state(STATE_PLAYING)
            self._publish(k, self._to_player(v, self.shift), extra=extra)
            self.next_frame = k + 1
