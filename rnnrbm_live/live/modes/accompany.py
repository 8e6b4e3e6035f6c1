"""accompany: live harmonisation around the notes the player holds.

`compute_s` before each grid line, the notes the player holds (and any pressed since the
last grid line) are clamped, the model samples the rest, and the output leaves the
player's notes out; a note the player presses while the model sounds it is turned off at
once. It starts with the player and rests after the player has been silent for
`silence_frames`.
"""

from __future__ import annotations

import numpy as np

from rnnrbm_live.live.controls import STATE_IDLE, STATE_PLAYING
from rnnrbm_live.live.modes.base import Composer
from rnnrbm_live.midi.roll import LOWEST_PITCH, N_KEYS


class AccompanyMode(Composer):
    mode = "accompany"

    def __init__(self, *args, compute_s: float = 0.02, **kwargs):
        super().__init__(*args, **kwargs)
        self.compute_s = float(compute_s)
        self.held = np.zeros(N_KEYS, dtype=bool)
        self.pressed = np.zeros(N_KEYS, dtype=bool)
        self.last_player_frame: int | None = None

    def _player_on(self, t: float, note: int, unit: int) -> None:
        self.held[unit] = True
        self.pressed[unit] = True
        # Never double the player: the model's note goes off now, and from every frame
        # already computed (they may fall due after the player has let the key go again:
        # sounding then would leave a note the model believes is off).
        self.out_prev[unit] = False
        self.sender.note_off_now(note, self.next_frame - 1)

    def _player_off(self, t: float, note: int, unit: int) -> None:
        self.held[unit] = False

    def _note_on(self, t: float, note: int, velocity: int) -> None:
        unit = note - LOWEST_PITCH
        if 0 <= unit < N_KEYS and not self.grid.running:
            self.held[unit] = True  # the DAW is stopped, but the key stays down after Start
        super()._note_on(t, note, velocity)

    def _forget_player(self) -> None:
        # Keys still down stay held (the sender will not sound them): forgetting them
        # would have the model believe notes sound that the sender keeps silent.
        self.pressed[:] = False
        self.last_player_frame = None

    def _advance(self, now: float) -> float | None:
        position = self.grid.position(now)
        margin = self.compute_s / self.grid.frame_seconds
        while True:
            k = self.next_frame
            if position < k - margin:
                return self._wake_at(k - margin)
            if self._catch_up(position):
                continue
            self._frame(k)
            self.next_frame = k + 1

    def _frame(self, k: int) -> None:
        player = self.held | self.pressed
        self.pressed[:] = False
        if player.any():
            if self.last_player_frame is None:
                self.log("the player plays: accompanying")
            self.last_player_frame = k
            self.context.append(player.copy())
        if k % self.frames_per_bar == 0 and self.context:
            self.shift = self._key_shift(np.array(self.context))
        active = (self.last_player_frame is not None
                  and k - self.last_player_frame < self.silence_frames)
        if active:
            clamp = self._to_model(player, self.shift)
            v = self._step(clamp, clamp)
            out = self._to_player(v & ~clamp, self.shift) & ~player
            extra = self._set_state(STATE_PLAYING)
        else:
            if self.last_player_frame is not None:
                self.log("the player is silent: resting")
                self.last_player_frame = None
            out = np.zeros(N_KEYS, dtype=bool)
            extra = self._set_state(STATE_IDLE)
        self._publish(k, out, self._follow_velocity(), extra)
