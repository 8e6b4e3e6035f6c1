"""The compute side: what the model plays, frame by frame, in each mode.

`Composer.poll(now)` does all the work whose inputs are known at `now` and returns when
it next has work to do; the engine calls it from its compute thread (or, in tests, from
the fake-clock driver). It reads the player's notes from `inbox` (timestamped by the input
thread), steps the model, and publishes each frame's messages to the sender ahead of the
frame's time. Nothing here is on the timing path: the sender sends what is due.

Pitch spaces. The bundled models learned music transposed to C. The player's music is
estimated to be in some key; `shift` semitones move it to C ("model space"), the model
listens and answers there, and its frames are moved back by -shift before they sound.

Modes
- generate: free-running; frame k is computed one frame ahead of its time.
- continue: each grid frame the player played (note-on rounded to the nearest grid
  line, note-off likewise, at least one frame) is fed to the model as a listened frame.
  Once the player has been silent for `silence_frames`, the model answers from that state
  for `answer_frames` (default: as long as the phrase) and yields at the first note the
  player plays. The answer's first frame is computed (and kept non-empty) as soon as the
  silence begins, and published when the silence span is complete; if the player plays
  first, the speculative work is rolled back.
- accompany: `compute_s` before each grid line, the notes the player holds (and any
  pressed since the last grid line) are clamped, the model samples the rest, and the
  output leaves the player's notes out; a note the player presses while the model sounds
  it is turned off at once. It starts with the player and rests after the player has
  been silent for `silence_frames`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from rnnrbm_live import keys
from rnnrbm_live.controls import (STATE_ANSWERING, STATE_IDLE, STATE_LISTENING,
                                  STATE_PLAYING, Controls)
from rnnrbm_live.notes import NoteMessages, scale_units
from rnnrbm_live.pianoroll import LOWEST_PITCH, N_KEYS
from rnnrbm_live.sender import Sender, Slot

MODES = ("continue", "generate", "accompany")
FINAL_EPS_S = 0.003      # a frame of the player is final this long after its last onset
FIRST_FRAME_TRIES = 8    # resamples for a non-empty first answer frame
DEFAULT_VELOCITY = 80


@dataclass
class _Answer:
    start: int                       # first frame of the answer
    end: int                         # one past its last frame
    base_state: object               # the model state after the phrase it answers
    shift: int
    velocity: int | None
    first: np.ndarray                # frame `start`, player space
    states: dict = field(default_factory=dict)   # frame -> model state after it
    next_k: int = 0                  # next frame to compute
    committed: bool = False          # published: it sounds (or is about to)
    closed: bool = False             # the closing slot (all notes off) is published


class _Quantizer:
    """The player's timestamped notes -> grid frames, rounding onsets and offsets to the
    nearest frame boundary (ties upward) and keeping every note at least one frame."""

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


class Composer:
    def __init__(self, session, mode: str, grid, sender: Sender, notes: NoteMessages,
                 controls: Controls, *, frames_per_bar: int, silence_frames: int,
                 answer_frames: int | None = None, max_answer_frames: int = 128,
                 lookahead_frames: float = 1.0, compute_s: float = 0.02,
                 key_window_frames: int | None = None, learned_in_c: bool = True,
                 velocity: int | None = DEFAULT_VELOCITY, state_cc: int | None = None,
                 log: Callable[[str], None] | None = None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if silence_frames < 1:
            raise ValueError("silence_frames must be at least 1")
        self.session = session
        self.mode = mode
        self.grid = grid
        self.sender = sender
        self.notes = notes
        self.controls = controls
        self.frames_per_bar = max(1, int(frames_per_bar))
        self.silence_frames = int(silence_frames)
        self.answer_frames = answer_frames
        self.max_answer_frames = int(max_answer_frames)
        self.lookahead = float(lookahead_frames)
        self.compute_s = float(compute_s)
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
        self.own: deque[np.ndarray] = deque(maxlen=window)         # model frames (generate)
        self.own_key: tuple[int, str] = (0, "major")
        self.next_frame = 0
        self.state = STATE_IDLE
        self.skipped_frames = 0
        self.answers = 0
        self.interruptions = 0

        # continue mode
        self.quant = _Quantizer(0)
        self.phrase: list[np.ndarray] = []
        self.phrase_start_state = None
        self.shift_used = 0
        self.rests = 0
        self.last_active = -1
        self.answer: _Answer | None = None
        self.velocities: deque[int] = deque(maxlen=32)
        # accompany mode
        self.held = np.zeros(N_KEYS, dtype=bool)
        self.pressed = np.zeros(N_KEYS, dtype=bool)
        self.last_player_frame: int | None = None
        self._forbidden_cache: dict[tuple[int, str], np.ndarray] = {}

    # ================================================================== driving

    def start(self, first_frame: int) -> None:
        """Begin at grid frame `first_frame` (called once the grid is known)."""
        self.next_frame = first_frame
        self.quant.reset(first_frame)

    def poll(self, now: float) -> float | None:
        """Do the work that is due at `now`; return when to be called next (None: when an
        input event or clock tick arrives)."""
        self._drain(now)
        if not self.grid.running:
            return None
        if self.mode == "generate":
            return self._generate(now)
        if self.mode == "accompany":
            return self._accompany(now)
        return self._continue(now)

    # ================================================================== input events

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
                self._transport(a)

    def _frame_at(self, t: float) -> int:
        return math.floor(self.grid.position(t) + 0.5)

    def _note_on(self, t: float, note: int, velocity: int) -> None:
        unit = note - LOWEST_PITCH
        if not 0 <= unit < N_KEYS or not self.grid.running:
            return
        self.velocities.append(velocity)
        if self.mode == "continue":
            frame = self._frame_at(t)
            if self.answer is not None:
                self._interrupt(frame)
            self.quant.note_on(frame, unit)
        elif self.mode == "accompany":
            self.held[unit] = True
            self.pressed[unit] = True
            if self.out_prev[unit]:
                # The model sounds the note the player just pressed: never double it.
                self.out_prev[unit] = False
                self.sender.note_off_now(note)

    def _note_off(self, t: float, note: int) -> None:
        unit = note - LOWEST_PITCH
        if not 0 <= unit < N_KEYS:
            return
        if self.mode == "continue":
            self.quant.note_off(self._frame_at(t), unit)
        elif self.mode == "accompany":
            self.held[unit] = False

    def _transport(self, event: str) -> None:
        self._silence_all(event)
        self.quant.reset(self.next_frame)
        self.held[:] = False
        self.pressed[:] = False
        self.last_player_frame = None
        if event != "stop":
            self.start(self.grid.first_frame_at_or_after_position())

    def _silence_all(self, why: str) -> None:
        """Everything off now; throw the look-ahead away (an answer ends)."""
        self.epoch += 1
        self.sender.silence(self.epoch)
        self.out_prev[:] = False
        if self.answer is not None:
            position = self.grid.position(self.sender.clock.now())
            self._roll_back_answer(math.floor(position))
            self.log(f"{why}: the answer stops")
        self.phrase = []
        self.rests = 0
        self._set_state(STATE_IDLE, now=True)

    # ================================================================== model

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

    def _forbidden(self) -> np.ndarray | None:
        controls = self.controls
        if not controls.lock:
            return None
        if controls.lock_key is not None:
            tonic, mode = controls.lock_key
            tonic = (tonic + self.shift) % 12
        elif self.mode == "generate":
            tonic, mode = self.own_key
        else:
            tonic, mode = self.player_key or (0, "major")
            tonic = (tonic + self.shift) % 12
        cached = self._forbidden_cache.get((tonic, mode))
        if cached is None:
            cached = self._forbidden_cache[(tonic, mode)] = ~scale_units(tonic, mode)
        return cached

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

    def _publish(self, frame: int, out: np.ndarray, velocity: int | None = None,
                 extra: tuple = ()) -> None:
        offs, ons = self.notes.diff(self.out_prev, out, velocity)
        self.out_prev = out
        if offs or ons or extra:
            self.sender.publish(Slot(frame, self.epoch, offs, ons, extra))

    def _set_state(self, state: int, now: bool = False) -> tuple:
        """Change the reported state; returns the CC message to send with the next slot
        (or sends it at once with now=True)."""
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

    # ================================================================== generate

    def _generate(self, now: float) -> float | None:
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

    # ================================================================== accompany

    def _accompany(self, now: float) -> float | None:
        position = self.grid.position(now)
        margin = self.compute_s / self.grid.frame_seconds
        while True:
            k = self.next_frame
            if position < k - margin:
                return self._wake_at(k - margin)
            if self._catch_up(position):
                continue
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
            self.next_frame = k + 1

    # ================================================================== continue

    def _continue(self, now: float) -> float | None:
        grid = self.grid
        position = grid.position(now)
        eps = FINAL_EPS_S / grid.frame_seconds
        while self.quant.next_final + 0.5 + eps <= position:
            m, frame = self.quant.finalize()
            self._heard(m, frame)
        wake = self._wake_at(self.quant.next_final + 0.5 + eps)
        answer = self.answer
        if answer is not None and answer.committed:
            while not answer.closed and answer.next_k <= position + self.lookahead:
                self._answer_frame(answer)
            if position >= answer.end:
                self.answer = None
            elif not answer.closed:
                nxt = self._wake_at(answer.next_k - self.lookahead)
                if nxt is not None and (wake is None or nxt < wake):
                    wake = nxt
        return wake

    def _heard(self, m: int, frame: np.ndarray) -> None:
        if frame.any():
            if self.answer is not None:
                self._interrupt(m)
            if not self.phrase:
                self.phrase_start_state = self.session.state
                self.shift_used = self.shift
                self.rests = 0
                self.log("listening")
                self._set_state(STATE_LISTENING, now=True)
            for _ in range(self.rests):
                silent = np.zeros(N_KEYS, dtype=bool)
                self._listen(silent)
                self.phrase.append(silent)
            self.rests = 0
            self._listen(self._to_model(frame, self.shift_used))
            self.phrase.append(frame)
            self.context.append(frame)
            self.last_active = m
            return
        if not self.phrase:
            return
        self.rests += 1
        if self.rests == 1:
            self._prepare_answer()
        if self.rests >= self.silence_frames and self.answer is not None:
            self._commit_answer()

    def _prepare_answer(self) -> None:
        """The player just went silent: get the answer's first frame ready."""
        shift = self._key_shift(np.array(self.context))
        if shift != self.shift_used:
            # The phrase was heard in the key guessed at its start; hear it again in the
            # key the whole phrase shows.
            self.session.state = self.phrase_start_state
            for frame in self.phrase:
                self._listen(self._to_model(frame, shift))
            self.shift_used = shift
        self.shift = shift
        base = self.session.state
        n = self.answer_frames or len(self.phrase)
        n = max(1, min(n, self.max_answer_frames))
        start = self.last_active + 1 + self.silence_frames
        v = None
        for _ in range(FIRST_FRAME_TRIES):
            self.session.state = base
            v = self._step()
            if v.any():
                break
        answer = _Answer(start=start, end=start + n, base_state=base, shift=shift,
                         velocity=self._follow_velocity(),
                         first=self._to_player(v, shift), next_k=start + 1)
        answer.states[start] = self.session.state
        self.answer = answer

    def _commit_answer(self) -> None:
        answer = self.answer
        answer.committed = True
        key = keys.key_name(*self.player_key) if self.player_key else "no clear key"
        self.log(f"heard {len(self.phrase)} frames ({key}); answering "
                 f"{answer.end - answer.start} frames")
        self.phrase = []
        self.rests = 0
        self.answers += 1
        extra = self._set_state(STATE_ANSWERING)
        self._publish(answer.start, answer.first, answer.velocity, extra)

    def _answer_frame(self, answer: _Answer) -> None:
        k = answer.next_k
        if k >= answer.end:
            extra = self._set_state(STATE_IDLE)
            self._publish(k, np.zeros(N_KEYS, dtype=bool), extra=extra)
            answer.closed = True
            return
        v = self._step()
        answer.states[k] = self.session.state
        self._publish(k, self._to_player(v, answer.shift), answer.velocity)
        answer.next_k = k + 1

    def _interrupt(self, frame: int) -> None:
        """The player plays (their note falls in `frame`): the answer yields at once."""
        answer = self.answer
        if answer.committed:
            self.interruptions += 1
            self.epoch += 1
            self.sender.silence(self.epoch)
            self.out_prev[:] = False
            self.log("the player plays: the answer yields")
        self._roll_back_answer(frame - 1)
        self._set_state(STATE_LISTENING, now=True)

    def _roll_back_answer(self, last_sounded: int) -> None:
        """Model state := after the last answer frame that sounded (<= last_sounded), or
        after the phrase if none did; the answer is gone."""
        answer = self.answer
        self.answer = None
        if answer is None:
            return
        state = answer.base_state
        if answer.committed:
            done = [k for k in answer.states if k <= last_sounded]
            if done:
                state = answer.states[max(done)]
        self.session.state = state
