"""The live engine under faults, on the fake clock: a MIDI clock master that vanishes
while rolling (no Stop) and comes back."""

from __future__ import annotations

import mido
import pytest

from test_engine import T_START, ScriptedModel, assert_no_hanging, clock_events, make


def test_a_vanished_clock_master_is_silenced_once_and_followed_again():
    lines: list[str] = []
    engine, sink, _ = make("generate", clock="midi", frames_per_beat=2,
                           model=ScriptedModel(lambda i, rng: [60, 64 + i % 2]))
    engine.composer.log = lines.append
    t = T_START + 0.5
    period = 60 / 120 / 24
    first = clock_events(t, 120, 96)                       # 2 beats, then nothing
    last_tick = first[-1][0]
    back = last_tick + 3.0                                 # the master returns, 3 s later
    second = clock_events(back, 120, 96)
    events = [(t - 0.05, mido.Message("start"))] + first + second
    engine.run_fake(until=second[-1][0] + 0.1, events=events)

    gap = [(tt, m) for tt, m in sink.notes() if last_tick < tt < back]
    assert gap, "the notes sounding when the clock vanished were never silenced"
    assert all(m.type == "note_off" for _, m in gap)
    # silenced a few ticks' worth after the last tick: not at once, not seconds later
    assert gap[0][0] - last_tick == pytest.approx(max(6 * period, 0.05), abs=0.002)
    said = [line for line in lines if "stopped coming" in line]
    assert len(said) == 1
    # ticks return: frames play again on the ticks
    after = [tt for tt, m in sink.notes("note_on") if tt >= back]
    assert after and all(any(abs(tt - s) < 1e-9 for s, _ in second) for tt in after)
    assert any("clock is back" in line for line in lines)
    assert_no_hanging(sink)
