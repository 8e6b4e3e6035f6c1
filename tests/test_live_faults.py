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


def test_record_holds_a_flood_compactly_and_writes_all_of_it(tmp_path):
    import tracemalloc
    from test_engine import DT, T0, note, off
    from rnnrbm_live.live.recording import write_recording
    engine, sink, _ = make("generate", record=True)
    # 10,000 notes a second for 3 s: 60,000 messages from the player
    flood = []
    for i in range(30000):
        t = T0 + i * 1e-4
        flood += [note(t, 21 + i % 88), off(t + 5e-5, 21 + i % 88)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    engine.run_fake(until=T0 + 3.2, events=flood)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(engine.player_log) == 60000
    # mido message objects took over 170 bytes each (100 MiB in 30 s of such a flood)
    assert grown / 60000 < 40, f"{grown / 60000:.0f} bytes a recorded message"
    path = tmp_path / "take.mid"
    write_recording(path, engine, bpm=100)
    player = mido.MidiFile(path).tracks[1]
    assert sum(m.type in ("note_on", "note_off") for m in player) == 60000
    ours = [m for m in mido.MidiFile(path).tracks[2] if m.type == "note_on"]
    assert len(ours) == len(sink.notes("note_on")) and DT


def test_record_stops_at_its_bound_and_counts_what_it_left_out():
    from rnnrbm_live.live.recording import MessageLog
    log = MessageLog(limit=10)
    for i in range(25):
        log.append(float(i), mido.Message("note_on", note=60))
    log.append(30.0, mido.Message("clock"))       # not recorded, not counted
    assert len(log) == 10 and log.dropped == 15
    assert [m.note for _, m in log.messages()] == [60] * 10


def test_a_resync_turns_off_every_silent_note_a_few_at_a_time():
    from test_engine import DT, T0
    from rnnrbm_live.live.sender import RESYNC_BATCH, RESYNC_GAP_S
    engine, sink, _ = make("generate", model=ScriptedModel(lambda i, rng: [60, 64]))
    asked: list[float] = []

    def observe():
        if not asked and engine.clock.now() > T0 + 2.1 * DT:
            asked.append(engine.clock.now())
            engine.sender.resync()        # a receiver was connected from outside
    engine.run_fake(until=T0 + 5 * DT, events=[], observe=observe)
    resync = [(t, m) for t, m in sink.notes("note_off") if asked[0] <= t < T0 + 4 * DT
              and m.note not in (60, 64)]
    assert sorted(m.note for _, m in resync) == [n for n in range(128) if n not in (60, 64)]
    assert not [m for t, m in sink.notes("note_off") if m.note in (60, 64) and t < T0 + 4 * DT]
    times = sorted({t for t, _ in resync})
    assert all(b - a >= RESYNC_GAP_S - 1e-9 for a, b in zip(times, times[1:]))
    assert max(sum(1 for t, _ in resync if t == x) for x in times) <= RESYNC_BATCH
    assert_no_hanging(sink)


def test_generate_has_its_first_frame_ready_before_the_daw_starts():
    # Start and tick 0 come together: the first frame must not wait for a model step
    engine, sink, model = make("generate", clock="midi", frames_per_beat=2,
                               model=ScriptedModel(lambda i, rng: [60 + i % 5]))
    t = T_START + 0.5
    steps_at_start: list[int] = []

    def observe():
        if engine.clock.now() < t:
            steps_at_start[:] = [model.steps]
    events = [(t, mido.Message("start"))] + clock_events(t, 120, 48)
    engine.run_fake(until=t + 1.0, events=events, observe=observe)
    assert steps_at_start == [1], "the first frame was not computed while stopped"
    # and Start with tick 0 at the same moment plays frame 0 on tick 0 (it was skipped)
    first = min(tt for tt, _ in sink.notes("note_on"))
    assert first == pytest.approx(t)
    assert [m.note for tt, m in sink.notes("note_on") if tt == first] == [60]
    assert_no_hanging(sink)
