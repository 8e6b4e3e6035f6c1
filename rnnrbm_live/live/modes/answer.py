"""continue: the player plays a phrase, the model listens, and answers when they pause.

Each grid frame the player played (note-on rounded to the nearest grid line, note-off
likewise, at least one frame) is fed to the model as a listened frame. Once the player has
been silent for `silence_frames`, the model answers from that state for `answer_frames`
(default: as long as the phrase) and yields at the first note the player plays. The
answer's first frame is computed (and kept non-empty) as soon as the silence begins, and
published when the silence span is complete; if the player plays first, the speculative
work is rolled back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from rnnrbm_live.live.controls import STATE_ANSWERING, STATE_IDLE, STATE_LISTENING
from rnnrbm_live.live.modes.base import Composer
from rnnrbm_live.live.modes.quantizer import Quantizer
from rnnrbm_live.midi import keys
from rnnrbm_live.midi.roll import N_KEYS

FINAL_EPS_S = 0.003      # a frame of the player is final this long after its last onset
FIRST_FRAME_TRIES = 8    # resamples for a non-empty first answer frame


@dataclass
class Answer:
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


class ContinueMode(Composer):
    mode = "continue"

    def __init__(self, *args, answer_frames: int | None = None,
                 max_answer_frames: int = 128, **kwargs):
        super().__init__(*args, **kwargs)
        self.answer_frames = answer_frames
        self.max_answer_frames = int(max_answer_frames)
        self.quant = Quantizer(0)
        self.phrase: list[np.ndarray] = []
        self.phrase_start_state = None
        self.shift_used = 0
        self.rests = 0
        self.last_active = -1
        self.answer: Answer | None = None

    def start(self, first_frame: int) -> None:
        super().start(first_frame)
        self.quant.reset(first_frame)

    # ------------------------------------------------------------------ the player

    def _player_on(self, t: float, note: int, unit: int) -> None:
        frame = self._frame_at(t)
        if self.answer is not None:
            self._interrupt(frame)
        self.quant.note_on(frame, unit)

    def _player_off(self, t: float, note: int, unit: int) -> None:
        self.quant.note_off(self._frame_at(t), unit)

    def _forget_player(self) -> None:
        self.quant.reset(self.next_frame)

    def _drop_lookahead(self, why: str) -> None:
        if self.answer is not None:
            position = self.grid.position(self.sender.clock.now())
            self._roll_back_answer(math.floor(position))
            self.log(f"{why}: the answer stops")
        self.phrase = []
        self.rests = 0

    # ------------------------------------------------------------------ frames

    def _advance(self, now: float) -> float | None:
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
            self._heard_notes(m, frame)
            return
        if not self.phrase:
            return
        self.rests += 1
        if self.rests == 1:
            self._prepare_answer()
        if self.rests >= self.silence_frames and self.answer is not None:
            self._commit_answer()

    def _heard_notes(self, m: int, frame: np.ndarray) -> None:
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

    # ------------------------------------------------------------------ the answer

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
        answer = Answer(start=start, end=start + n, base_state=base, shift=shift,
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

    def _answer_frame(self, answer: Answer) -> None:
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
