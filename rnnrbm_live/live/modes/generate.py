"""generate: the model plays on its own; frame k is computed one frame ahead of its time.

Under a MIDI clock, the first frame after Start would otherwise be computed only when
Start arrives, with tick 0 right behind it: a model step late (4-8 ms seen). While the
transport is stopped, the next frame is computed ahead (`ready`) and played as soon as
Start comes. Where the sender can place it on the next Start by itself (`can_prearm`,
the JACK-native path), it is handed over while stopped too (frame PREARMED), so that
Start need not travel through the engine's threads before tick 0 (two periods after it
from jack_midi_clock): when Start comes, that frame is already playing, and the mode
goes on from the one after it."""

from __future__ import annotations

from collections import deque

import numpy as np

from rnnrbm_live.live.controls import STATE_PLAYING
from rnnrbm_live.live.modes.base import Composer
from rnnrbm_live.live.sender import PREARMED
from rnnrbm_live.midi import keys

START_PENDING_S = 0.0005


class GenerateMode(Composer):
    mode = "generate"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.own: deque[np.ndarray] = deque(maxlen=self.context.maxlen)  # model frames
        self.own_key: tuple[int, str] = (0, "major")
        self.ready: np.ndarray | None = None   # the next frame, computed while stopped
        self.prearmed_epoch: int | None = None  # the epoch `ready` was handed over in

    def _scale_key(self) -> tuple[int, str]:
        # Nobody plays along: the lock keeps to the key the model itself is in.
        return self.own_key

    def _advance(self, now: float) -> float | None:
        if self.prearmed_epoch == self.epoch:
            # The clock runs but its Start is not read yet (stamped a little ahead of
            # now): the pre-armed frame is the first; look again in a moment.
            return now + START_PENDING_S
        position = self.grid.position(now)
        while True:
            k = self.next_frame
            if k > position + self.lookahead:
                return self._wake_at(k - self.lookahead)
            if self._catch_up(position):
                continue
            v = self.ready if self.ready is not None else self._next_step()
            self.ready = None
            self._played(k, v)
            extra = self._set_state(STATE_PLAYING)
            self._publish(k, self._to_player(v, self.shift), extra=extra)
            self.next_frame = k + 1

    def _played(self, k: int, v: np.ndarray) -> None:
        """Frame k is `v`: keep it, and the key the model is in at each bar."""
        self.own.append(v)
        if k % self.frames_per_bar == 0 and len(self.own) >= self.frames_per_bar:
            roll = np.array(self.own)
            if roll.any():
                tonic, mode, _ = keys.estimate_key(roll)
                self.own_key = (tonic, mode)

    def _next_step(self) -> np.ndarray:
        if self.controls.lock and self.controls.lock_key is not None:
            self.shift = keys.semitones_to_c(self.controls.lock_key[0])
        else:
            self.shift = 0
        return self._step()

    def _while_stopped(self) -> None:
        if self.ready is None:
            self.ready = self._next_step()
        if self.sender.can_prearm and self.prearmed_epoch != self.epoch:
            # Handed over again after anything that threw the look-ahead away.
            self._publish(PREARMED, self._to_player(self.ready, self.shift))
            self.prearmed_epoch = self.epoch

    def _transport(self, event: str, position: int | None = None) -> None:
        prearmed = self.prearmed_epoch == self.epoch and self.ready is not None
        self.prearmed_epoch = None
        if not prearmed or event not in ("start", "continue"):
            super()._transport(event, position)
            return
        # Stopped and silenced since the frame was handed over: it is playing now, on the
        # run's first frame; nothing else sounds, so nothing is silenced.
        self.clock_lost = False
        first = self.grid.first_frame_at_or_after_position(position)
        self.start(first)
        self._played(first, self.ready)
        self.ready = None
        self.next_frame = first + 1
