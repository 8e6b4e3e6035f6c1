"""The live engine's invariant over long random streams, every mode, both clocks.

Each stream (tests/live_streams.py) drives the engine on the fake clock; after every step
of the sending side the output must sound exactly what the model side believes sounds,
accompany must never sound a note the player holds, and at the end every note-on has its
note-off. Seeds that once failed are kept as regression cases (REGRESSIONS).
"""

from __future__ import annotations

import numpy as np
import pytest

from live_streams import Invariant, clock_stream, player_stream, random_policy
from test_engine import ScriptedModel, assert_no_hanging, make, note, off

MODES = ("continue", "generate", "accompany")
STREAMS = 12           # per mode and clock in the suite; scripts/soak_invariants.py runs more
FRAMES = 320


def _config(rng: np.random.Generator, mode: str, clock: str) -> dict:
    config = {"bpm": float(rng.choice([60, 100, 140, 240])),
              "frames_per_beat": int(rng.choice([2, 4])),
              "compute_s": float(rng.choice([0.005, 0.02, 0.1])),
              "latency_s": float(rng.choice([0.0, 0.0, -0.01, 0.03])),
              "silence_bars": float(rng.choice([0.5, 1.0])),
              "lookahead_frames": float(rng.choice([1.0, 1.0, 2.0])),
              "velocity": None if rng.random() < 0.3 else 80,
              "clock": clock}
    if mode == "continue" and rng.random() < 0.5:
        config["answer_bars"] = float(rng.choice([0.5, 2.0]))
    return config


def run_stream(mode: str, clock: str, seed: int, frames: int = FRAMES):
    """One random stream through the engine; returns (invariant, sink, engine)."""
    rng = np.random.default_rng([seed, MODES.index(mode), clock == "midi"])
    config = _config(rng, mode, clock)
    model = ScriptedModel(random_policy(seed), seed=seed)
    engine, sink, _ = make(mode, model=model, **config)
    check = Invariant(engine)
    t_start = engine.clock.now()
    if clock == "internal":
        dt = engine.config.frame_seconds
        t0 = t_start + engine.config.start_delay_s
        events = player_stream(seed, t0, dt, frames)
        until = t0 + frames * dt
    else:
        ticks_per_frame = 24 // engine.config.frames_per_beat
        events, until = clock_stream(seed, t_start + 0.1, frames, ticks_per_frame)
    engine.run_fake(until=until, events=events, observe=check.observe)
    return check, sink, engine


def _assert_holds(check, sink, engine):
    assert engine.failure is None, repr(engine.failure)
    assert not check.failures, "\n".join(check.failures[:10])
    assert check.checks > 0
    assert_no_hanging(sink)


@pytest.mark.parametrize("clock", ["internal", "midi"])
@pytest.mark.parametrize("mode", MODES)
def test_output_is_what_the_model_believes_over_random_streams(mode, clock):
    for seed in range(STREAMS):
        check, sink, engine = run_stream(mode, clock, seed)
        _assert_holds(check, sink, engine)


# Seeds that failed before the fix they name: kept as they were found. Accompany, before
# a pressed note was taken back from the frames already computed: a note sounding that
# the model believed off (stuck), or a model note sounding over the player's held key.
REGRESSIONS = [
    ("accompany", "internal", 1, FRAMES),   # doubled the player's held note 89
    ("accompany", "internal", 4, FRAMES),   # 54, 76, 91 sounding, believed off
    ("accompany", "midi", 0, FRAMES),       # 40, 87 sounding, believed off
    ("accompany", "midi", 1, FRAMES),       # doubled the player's held note 70
    # scripts/soak_invariants.py: a key held while the DAW was stopped, or across a
    # Start, was forgotten: the model believed 91 sounding, the sender kept it silent
    ("accompany", "midi", 1013, 1000),
    ("accompany", "midi", 1030, 1000),
]


@pytest.mark.parametrize("mode,clock,seed,frames", REGRESSIONS)
def test_seeds_that_once_failed(mode, clock, seed, frames):
    _assert_holds(*run_stream(mode, clock, seed, frames))


# ----------------------------------------------------------------------------- the cases


def _accompany(events, until_frames, policy=None, **config):
    model = ScriptedModel(policy or (lambda i, rng: [n for n in range(48, 84)
                                                     if n % 12 in (0, 4, 7)]))
    engine, sink, _ = make("accompany", model=model, **config)
    check = Invariant(engine)
    t0 = engine.clock.now() + engine.config.start_delay_s
    dt = engine.config.frame_seconds
    engine.run_fake(until=t0 + until_frames * dt, events=events(t0, dt),
                    observe=check.observe)
    return check, sink, engine, t0 + until_frames * dt


def _sounding_before(sink, t_end) -> set[int]:
    sounding: set[int] = set()
    for t, m in sink.sent:
        if t >= t_end:
            break
        if m.type == "note_on" and m.velocity:
            sounding.add(m.note)
        elif m.type in ("note_on", "note_off"):
            sounding.discard(m.note)
    return sounding


@pytest.mark.parametrize("before_ms", [10, 12, 15])
def test_accompany_a_note_pressed_and_released_just_before_a_grid_line_does_not_stick(
        before_ms):
    # The model sounds every C, E and G; the player taps them 5 ms long, just before every
    # other grid line, after the frame was computed (20 ms ahead), then rests.
    def events(t0, dt):
        out = []
        for k in range(2, 40, 2):
            for n in (60, 64, 67, 72):
                t = t0 + k * dt - before_ms / 1000
                out += [note(t, n), off(t + 0.005, n)]
        return out
    check, sink, engine, end = _accompany(events, 80)
    assert not check.failures, "\n".join(check.failures[:5])
    assert not _sounding_before(sink, end), "notes left sounding through the rest"


def test_accompany_staccato_under_a_long_compute_margin_does_not_stick():
    # --compute-ms 100, 60 ms staccato notes between the computation and the grid line
    def events(t0, dt):
        out = []
        for k in range(2, 30, 2):
            t = t0 + k * dt - 0.08
            out += [note(t, 60 + k % 3 * 4), off(t + 0.06, 60 + k % 3 * 4)]
        return out
    check, sink, engine, end = _accompany(events, 60, compute_s=0.1)
    assert not check.failures, "\n".join(check.failures[:5])
    assert not _sounding_before(sink, end)


def test_accompany_a_flood_of_short_notes_leaves_nothing_stuck():
    # bursts at 10,000 notes a second, 1-5 ms each, every pitch, over a busy model
    rng = np.random.default_rng(7)

    def events(t0, dt):
        out = []
        for k in range(1, 30):
            start = t0 + k * dt - float(rng.uniform(0, 0.03))
            for i in range(int(rng.integers(20, 200))):
                t, n = start + i * 1e-4, int(rng.integers(21, 109))
                out += [note(t, n), off(t + float(rng.uniform(0.001, 0.005)), n)]
        return out
    check, sink, engine, end = _accompany(events, 60, policy=random_policy(7))
    assert not check.failures, "\n".join(check.failures[:5])
    assert not _sounding_before(sink, end)
