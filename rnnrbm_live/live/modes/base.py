"""What every live mode shares: the inbox of the player's events, the model step with the
scale lock, pitch spaces, publishing frames to the sender, and the reported state.

`Composer.poll(now)` does all the work whose inputs are known at `now` and returns when
it next has work to do; the engine calls it from its compute thread (or, in tests, from
the fake-clock driver). It reads the player's notes from `inbox` (timestamped by the input
thread), and the mode (`_advance`) steps the model and publishes each frame's messages to
the sender ahead of the frame's time. Nothing here is on the timing path: the sender
sends what is due.

Pitch spaces. The bundled models learned music transposed to C. The player's music is
estimated to be in some key; `shift` semitones move it to C ("model space"), the model
listens and answers there, and its frames are moved back by -shift before they sound.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections import deque
from typing import Callable

import numpy as np

from rnnrbm_live.live.controls import STATE_IDLE, Controls
from rnnrbm_live.live.notes import NoteMessages, scale_units
from rnnrbm_live.live.sender import Sender, Slot
from rnnrbm_live.midi import keys
from rnnrbm_live.midi.roll import LOWEST_PITCH, N_KEYS

DEFAULT_VELOCITY = 80


@functools.lru_cache(maxsize=None)
def _outside_scale(tonic: int, mode: str) -> np.ndarray:
    """[88] bool: the keys the scale lock forbids (shared: never change it in place)."""
    return ~scale_units(tonic, mode)


def _clock_lost(composer: "Composer", now: float) -> bool:
    """Whether a rolling MIDI clock stopped coming (MidiClockGrid.lost_at): the first time,
    silence everything and say so; when ticks return, say that once too."""
    lost_at = composer.grid.lost_at()
    lost = lost_at is not None and now >= lost_at
    if lost and not composer.clock_lost:
        composer.log("the daw's midi clock stopped coming while rolling: notes silenced; "
                     "waiting for it")
        composer._silence_all("the clock stopped")
    elif composer.clock_lost and not lost:
        composer.log("the midi clock is back: playing on")
    composer.clock_lost = lost
    return lost


class Composer(ABC):
    """The shared part of a live mode; subclasses say what a frame is (`_advance`) and
    what the player's notes do (`_player_on`, `_player_off`)."""

    mode = ""

    def __init__(self, session, grid, sender: Sender, notes: NoteMessages,
                 controls: Controls, *, frames_per_bar: int, silence_frames: int,
                 lookahead_frames: float = 1.0, key_window_frames: int | None = None,
                 learned_in_c: bool = True, velocity: int | None = DEFAULT_VELOCITY,
                 state_cc: int | None = None, log: Callable[[str], None] | None = None):
        if silence_frames < 1:
            raise ValueError("silence_frames must be at least 1")
        self.session = session
        self.grid = grid
        self.sender = sender
        self.notes = notes
        self.controls = controls
        self.frames_per_bar = max(1, int(frames_per_bar))
        self.silence_frames = int(silence_frames)
        self.lookahead = float(lookahead_frames)
        self.learned_in_c = learned_in_c
        self.velocity = velocity              # None: follow the player's velocity
        self.state_cc = state_cc
        self.log = log or (lambda line: None)
        self.inbox: deque[tuple] = deque()    # (t, kind, a, b) from the input thread

        self.epoch = 0
        self.out_prev = np.zeros(N_KEYS, dtype=bool)   # what the output sounds (belief)
        self.shift = 0
        self.player_key: tuple[int, str] | None = None
        window = key_window_frames or 8 * self.frames_per_bar
        self.context: deque[np.ndarray] = deque(maxlen=window)     # player frames
        self.next_frame = 0
        self.state = STATE_IDLE
        self.skipped_frames = 0
        self.clock_lost = False               # a MIDI clock master vanished while rolling
        self.answers = 0
        self.interruptions = 0
        self.velocities: deque[int] = deque(maxlen=32)

    # ------------------------------------------------------------------ driving

    def start(self, first_frame: int) -> None:
        """Begin at grid frame `first_frame` (called once the grid is known)."""
        self.next_frame = first_frame

    def poll(self, now: float) -> float | None:
        """Do the work that is due at `now`; return when to be called next (None: when an
        input event or clock tick arrives)."""
        self._drain(now)
        if not self.grid.running:
            self._while_stopped()
            return None
        if _clock_lost(self, now):
            return None  # silenced; the next tick wakes us
        wake = self._advance(now)
        lost_at = self.grid.lost_at()
        return lost_at if wake is None or (lost_at is not None and lost_at < wake) else wake

    @abstractmethod
    def _advance(self, now: float) -> float | None:
        """Compute and publish the frames due by `now`; when to be called next."""

    def _while_stopped(self) -> None:
        """Work that can be done before the DAW starts (generate: its first frame)."""

    # ------------------------------------------------------------------ input events

    def _drain(self, now: float) -> None:
        inbox = self.inbox
        while inbox:
            event = inbox[0]
            if event[0] > now:
                break
            inbox.popleft()
            t, kind, a, b = event
            if kind == "on":
                self._note_on(t, a, b)
            elif kind == "off":
                self._note_off(t, a)
            elif kind == "panic":
                self._silence_all("panic")
            elif kind == "transport":
                self._transport(a, b)

    def _frame_at(self, t: float) -> int:
        return math.floor(self.grid.position(t) + 0.5)

    def _note_on(self, t: float, note: int, velocity: int) -> None:
        unit = note - LOWEST_PITCH
        if not 0 <= unit < N_KEYS or not self.grid.running:
            return
        self.velocities.append(velocity)
        self._player_on(t, note, unit)

    def _note_off(self, t: float, note: int) -> None:
        unit = note - LOWEST_PITCH
        if 0 <= unit < N_KEYS:
            self._player_off(t, note, unit)

    def _player_on(self, t: float, note: int, unit: int) -> None:
        """The player pressed `note` (unit `unit`) at `t`; the generate mode ignores it."""

    def _player_off(self, t: float, note: int, unit: int) -> None:
        """The player released `note` at `t`."""

    def _transport(self, event: str, position: int | None = None) -> None:
        self.clock_lost = False
        self._silence_all(event)
        self._forget_player()
        if event != "stop":
            self.start(self.grid.first_frame_at_or_after_position(position))

    def _forget_player(self) -> None:
        """A transport change: what the player held or was playing no longer counts."""

    def _silence_all(self, why: str) -> None:
        """Everything off now; throw the look-ahead away (an answer ends)."""
        self.epoch += 1
        self.sender.silence(self.epoch)
        self.out_prev[:] = False
        self._drop_lookahead(why)
        self._set_state(STATE_IDLE, now=True)

    def _drop_lookahead(self, why: str) -> None:
        """Forget frames computed ahead of time; the mode's own bookkeeping."""

    # ------------------------------------------------------------------ model

    def _step(self, clamp_mask: np.ndarray | None = None,
              clamp_value: np.ndarray | None = None) -> np.ndarray:
        """One generated frame in model space ([88] bool), honouring the scale lock."""
        forbidden = self._forbidden()
        if forbidden is not None:
            clamp_mask = forbidden if clamp_mask is None else (forbidden | clamp_mask)
            if clamp_value is None:
                clamp_value = np.zeros(N_KEYS, dtype=bool)
        if clamp_mask is None:
            v = self.session.step(temperature=self.controls.temperature)
        else:
            v = self.session.step(clamp_mask=clamp_mask[None].astype(np.float32),
                                  clamp_value=clamp_value[None].astype(np.float32),
                                  temperature=self.controls.temperature)
        return np.asarray(v)[0] != 0

    def _listen(self, frame: np.ndarray) -> None:
        self.session.listen(frame[None].astype(np.float32))

    def _scale_key(self) -> tuple[int, str]:
        """The key (tonic, mode) in model space that the scale lock keeps to."""
        tonic, mode = self.player_key or (0, "major")
        return (tonic + self.shift) % 12, mode

    def _forbidden(self) -> np.ndarray | None:
        controls = self.controls
        if not controls.lock:
            return None
        if controls.lock_key is not None:
            tonic, mode = controls.lock_key
            tonic = (tonic + self.shift) % 12
        else:
            tonic, mode = self._scale_key()
        return _outside_scale(tonic, mode)

    def _key_shift(self, roll: np.ndarray) -> int:
        """Estimate the player's key from `roll`; return the shift that moves it to C."""
        if not roll.any():
            return self.shift
        tonic, mode, _ = keys.estimate_key(roll)
        self.player_key = (tonic, mode)
        return keys.shift_to_c(roll) if self.learned_in_c else 0

    def _to_model(self, frame: np.ndarray, shift: int) -> np.ndarray:
        return keys.transpose(frame, shift) if shift else frame

    def _to_player(self, frame: np.ndarray, shift: int) -> np.ndarray:
        return keys.transpose(frame, -shift) if shift else frame

    def _follow_velocity(self) -> int | None:
        if self.velocity is not None:
            return None  # the fixed velocity: NoteMessages' own table
        if not self.velocities:
            return DEFAULT_VELOCITY
        return int(round(sum(self.velocities) / len(self.velocities)))

    # ------------------------------------------------------------------ output

    def _publish(self, frame: int, out: np.ndarray, velocity: int | None = None,
                 extra: tuple = ()) -> None:
        offs, ons = self.notes.diff(self.out_prev, out, velocity)
        self.out_prev = out
        if offs or ons or extra:
            self.sender.publish(Slot(frame, self.epoch, offs, ons, extra))

    def _set_state(self, state: int, now: bool = False) -> tuple:
        """Change the reported state; its CC to send with the next slot (now=True: at once)."""
        if state == self.state:
            return ()
        self.state = state
        if self.state_cc is None:
            return ()
        msg = self.notes.cc(self.state_cc, state)
        if now:
            self.sender.send_now(msg)
            return ()
        return (msg,)

    def _catch_up(self, position: float) -> bool:
        """If frame next_frame is already more than half a frame late, skip ahead to the
        next frame that can still be on time (a stall must not cause a burst)."""
        if self.next_frame < position - 0.5:
            target = math.floor(position) + 1
            self.skipped_frames += target - self.next_frame
            self.next_frame = target
            return True
        return False

    def _wake_at(self, frame_position: float) -> float | None:
        return self.grid.time_of(frame_position)
