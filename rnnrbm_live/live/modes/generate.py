"""generate: the model plays on its own; frame k is computed one frame ahead of its time.

Under a MIDI clock, the first frame after Start would otherwise be computed only when
Start arrives, with tick 0 right behind it: a model step late (4-8 ms seen). While the
transport is stopped, the next frame is computed ahead (`ready`) and played as soon as
Start comes."""

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
        self.ready: np.ndarray | None = None   # the next frame, computed while stopped

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
            v = self.ready if self.ready is not None else self._next_step()
            self.ready = None
            self.own.append(v)
            if k % self.frames_per_bar == 0 and len(self.own) >= self.frames_per_bar:
                roll = np.array(self.own)
                if roll.any():
                    tonic, mode, _ = keys.estimate_key(roll)
                    self.own_key = (tonic, mode)
            extra = self._set_state(STATE_PLAYING)
            self._publish(k, self._to_player(v, self.shift), extra=extra)
            self.next_frame = k + 1

    def _next_step(self) -> np.ndarray:
        if self.controls.lock and self.controls.lock_key is not None:
            self.shift = keys.semitones_to_c(self.controls.lock_key[0])
        else:
            self.shift = 0
        return self._step()

    def _while_stopped(self) -> None:
        if self.ready is None:
            self.ready = self._next_step()
