"""Random player streams for the live engine's invariant test, and the invariant's checker.

`player_stream` makes a long random stream of what a player (and a DAW) sends: onsets and
releases at random offsets around grid lines (many just before one), chords, repeated
pitches, floods, silences long enough to end a phrase, CC panic, temperature and scale
lock changes, and, under a MIDI clock, start/stop/continue, song position, tempo changes
and a clock that stops coming.

`Invariant` watches an engine on the fake clock (Engine.run_fake's `observe`) and checks
after every step of the sending side that the output sounds exactly what the model side
believes sounds. The belief is the composer's own frames: the full frame it published
for each grid frame (as the composer later changed it in place), from the frame's due
time on, minus the notes it took back (`note_off_now`, for the frames it names) and
nothing after a silence.
"""

from __future__ import annotations

import mido
import numpy as np

from rnnrbm_live.midi.roll import LOWEST_PITCH, N_KEYS

PANIC_CCS = (22, 120, 123)


# ----------------------------------------------------------------------------- the model


def random_policy(rng_seed: int):
    """A stand-in model's frames: notes that sustain for a while, chords, some rests."""
    state: set[int] = set()

    def policy(i, rng):
        for n in list(state):
            if rng.random() < 0.35:
                state.discard(n)
        for _ in range(int(rng.integers(0, 4))):
            state.add(int(rng.integers(36, 97)))
        if rng.random() < 0.08:
            state.clear()
        return sorted(state)
    return policy


# ----------------------------------------------------------------------------- streams


def _msg(kind: str, **kw) -> mido.Message:
    return mido.Message(kind, **kw)


class _Player:
    """Appends (t, message) for a player's gestures."""

    def __init__(self, rng: np.random.Generator, dt: float):
        self.rng = rng
        self.dt = dt
        self.events: list[tuple[float, mido.Message]] = []

    def _duration(self) -> float:
        r, dt = self.rng, self.dt
        return float(r.choice([0.005, 0.06, r.uniform(0.001, 0.02), r.uniform(0.01, 2 * dt),
                               r.uniform(dt, 4 * dt)]))

    def _off(self, t: float, note: int) -> None:
        if self.rng.random() < 0.3:
            self.events.append((t, _msg("note_on", note=note, velocity=0)))
        else:
            self.events.append((t, _msg("note_off", note=note)))

    def note(self, t: float, note: int, length: float | None = None) -> None:
        vel = int(self.rng.integers(1, 128))
        self.events.append((t, _msg("note_on", note=note, velocity=vel)))
        self._off(t + (self._duration() if length is None else length), note)

    def gesture(self, t_line: float) -> None:
        """One random gesture near the grid line at `t_line`."""
        r = self.rng
        offset = float(r.choice([r.uniform(-0.02, 0.02), -r.uniform(0.005, 0.015),
                                 r.uniform(0, self.dt), -r.uniform(0, 0.15)]))
        t = t_line + offset
        kind = r.choice(["note", "chord", "repeat", "flood", "cc"],
                        p=[0.45, 0.2, 0.15, 0.05, 0.15])
        if kind == "note":
            self.note(t, int(r.integers(36, 97)))
        elif kind == "chord":
            length = self._duration()
            for n in r.choice(np.arange(36, 97), size=int(r.integers(2, 6)), replace=False):
                self.note(t + float(r.uniform(0, 0.003)), int(n), length)
        elif kind == "repeat":
            n = int(r.integers(36, 97))
            self.note(t, n, self._duration())
            if r.random() < 0.5:  # pressed again before the release
                self.events.append((t + 0.002, _msg("note_on", note=n, velocity=70)))
            else:                 # released and pressed at the same instant
                self.note(t + self._duration(), n)
        elif kind == "flood":
            for _ in range(int(r.integers(100, 400))):
                self.note(t + float(r.uniform(0, 0.04)), int(r.integers(0, 128)),
                          float(r.uniform(0, 0.005)))
        else:
            self.cc(t)

    def cc(self, t: float) -> None:
        r = self.rng
        control = int(r.choice([1, 1, 20, 21, *PANIC_CCS]))
        self.events.append((t, _msg("control_change", control=control,
                                    value=int(r.integers(0, 128)))))


def player_stream(seed: int, t0: float, dt: float, n_frames: int
                  ) -> list[tuple[float, mido.Message]]:
    """A player on the internal grid t0 + k * dt: phrases of gestures and silences."""
    rng = np.random.default_rng(seed)
    player = _Player(rng, dt)
    k = -2
    while k < n_frames:
        phrase = int(rng.integers(2, 24))
        density = float(rng.uniform(0.2, 1.0))
        for j in range(phrase):
            if rng.random() < density:
                player.gesture(t0 + (k + j) * dt)
        k += phrase + int(rng.choice([0, 1, 4, 12, 20]))  # silences: phrases end
    return player.events


def clock_stream(seed: int, t_start: float, n_frames: int, ticks_per_frame: int
                 ) -> tuple[list[tuple[float, mido.Message]], float]:
    """A DAW's clock and transport with a player on its frame ticks; returns the events
    and their end time. Sections: rolling (tempo changes), stopped with or without clock,
    song position moves, continue/start, and a clock that stops coming while rolling."""
    rng = np.random.default_rng(seed)
    events: list[tuple[float, mido.Message]] = []
    t = t_start
    bpm = float(rng.uniform(60, 200))
    player = _Player(rng, 60 / bpm / 24 * ticks_per_frame)
    events.append((t, _msg("start")))
    t += float(rng.uniform(0.001, 0.03))
    frames = 0
    playing = 0  # frames left in the player's phrase (negative: in a silence)
    while frames < n_frames:
        period = 60 / bpm / 24
        ticks = int(rng.integers(12, 24 * 12))
        for i in range(ticks):
            events.append((t, _msg("clock")))
            if i % ticks_per_frame == 0:
                playing -= 1
                if playing < -int(rng.choice([1, 6, 20])):
                    playing = int(rng.integers(2, 24))
                if playing > 0 and rng.random() < 0.6:
                    player.dt = period * ticks_per_frame
                    player.gesture(t)
            t += period * float(rng.uniform(0.97, 1.03))
        frames += ticks // ticks_per_frame
        what = rng.choice(["tempo", "stop", "vanish", "restart"], p=[0.4, 0.25, 0.2, 0.15])
        if what == "tempo":
            bpm = float(np.clip(bpm * rng.uniform(0.7, 1.4), 40, 300))
        elif what == "stop":
            events.append((t, _msg("stop")))
            gap = float(rng.uniform(0.05, 2.0))
            if rng.random() < 0.5:  # many DAWs keep sending clock while stopped
                for j in range(int(gap / period)):
                    events.append((t + j * period, _msg("clock")))
            if rng.random() < 0.5:
                events.append((t + gap / 2, _msg("songpos", pos=int(rng.integers(0, 64)))))
            t += gap
            events.append((t, _msg("continue" if rng.random() < 0.6 else "start")))
            t += float(rng.uniform(0.001, 0.03))
        elif what == "vanish":  # the master goes away without a Stop, and comes back
            t += float(rng.uniform(0.05, 3.0))
        else:
            events.append((t, _msg("start")))
            t += float(rng.uniform(0.001, 0.03))
    events += player.events
    return events, t


# ----------------------------------------------------------------------------- checking


class Invariant:
    """After every step of the sending side: the output sounds exactly what the model
    side believes; accompany never sounds a note the player holds. Counts what it saw."""

    def __init__(self, engine):
        self.engine = engine
        self.composer = engine.composer
        self.sender = engine.sender
        self.plans: dict[tuple[int, int], np.ndarray] = {}   # (epoch, frame) -> frame
        self.current = np.zeros(N_KEYS, dtype=bool)
        self.checks = 0
        self.failures: list[str] = []
        self._wrap()

    def _wrap(self) -> None:
        composer, sender = self.composer, self.sender
        publish, off_now, silence = composer._publish, sender.note_off_now, sender.silence

        def _publish(frame, out, *args, **kwargs):
            publish(frame, out, *args, **kwargs)
            self.plans[(composer.epoch, frame)] = composer.out_prev

        def _off_now(note, through_frame=None):
            unit = note - LOWEST_PITCH
            self.current[unit] = False
            if through_frame is not None:
                for (_, frame), plan in self.plans.items():
                    if frame <= through_frame:
                        plan[unit] = False
            off_now(note, through_frame) if through_frame is not None else off_now(note)

        def _silence(epoch):
            self.current = np.zeros(N_KEYS, dtype=bool)
            self.plans = {key: plan for key, plan in self.plans.items() if key[0] >= epoch}
            silence(epoch)

        composer._publish = _publish
        sender.note_off_now = _off_now
        sender.silence = _silence

    def observe(self) -> None:
        now = self.sender.clock.now()
        epoch = self.composer.epoch
        for key in sorted(self.plans, key=lambda e: e[1]):
            if key[0] < epoch:
                del self.plans[key]
                continue
            due = self.sender.due(key[1])
            if due is None or due > now:
                break
            self.current = self.plans.pop(key)
        self.checks += 1
        sounding = np.frombuffer(bytes(self.sender.sounding), dtype=np.uint8) != 0
        believed = np.zeros(128, dtype=bool)
        believed[LOWEST_PITCH:LOWEST_PITCH + N_KEYS] = self.current
        t = now - (self.engine.t0 or 0.0)
        if (sounding != believed).any():
            extra = np.flatnonzero(sounding & ~believed).tolist()
            missing = np.flatnonzero(believed & ~sounding).tolist()
            self.failures.append(f"t={t:.4f}: sounding but believed off {extra}, "
                                 f"believed on but silent {missing}")
        if self.sender.held is not None:
            held = np.frombuffer(bytes(self.sender.held), dtype=np.uint8) != 0
            doubled = np.flatnonzero(sounding & held).tolist()
            if doubled:
                self.failures.append(f"t={t:.4f}: doubles the player's held {doubled}")
