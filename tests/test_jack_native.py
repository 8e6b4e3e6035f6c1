"""The JACK-native path (--backend jack-native) end to end on a real JACK server.

As in test_live_jack.py, the engine runs in its own process and the test's clients are
independent JACK-Client clients that stamp (receiver) or place (sender) events at exact
frames. On this path the engine's times are JACK frames, so the checks are exact: a note
lands on round(t0 + k * dt) to the sample unless the engine itself counted it late (it
handed the event over after JACK had processed its period), a recorded onset is the
sender's frame, a frame falls on its MIDI clock tick's frame.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import mido
import pytest

from conftest import JackReceiver, JackSender, _unavailable, jack_ports
from test_live_jack import _wait

from rnnrbm_live.live.jack_helper import TickTracker
from rnnrbm_live.live.jack_shm import SharedBlock, SlotRing, pack


def _e2e(test):
    """An end-to-end test on the real JACK server (the marks CI and -m select on)."""
    return pytest.mark.jack(pytest.mark.slow(test))


def _client_name() -> str:
    return f"rnnrbm-n{os.getpid() % 100000}"


def _hanging(events) -> set[int]:
    """Notes still sounding after (frame, kind, note) events, in arrival order."""
    sounding: set[int] = set()
    for _, kind, note in events:
        (sounding.add if kind == "on" else sounding.discard)(note)
    return sounding


def _first_offs(events) -> list[tuple[int, str]]:
    """(frame, kind) of the note events, less each note-off for a note already off."""
    sounding: set[int] = set()
    kept = []
    for f, kind, note in events:
        if kind == "on" or note in sounding:
            kept.append((f, kind))
        (sounding.add if kind == "on" else sounding.discard)(note)
    return kept


def _native(engine_process, model, *args):
    return engine_process("--model", str(model), "--backend", "jack-native",
                          "--client-name", _client_name(), *args)


def _grid_frames(stats: dict) -> tuple[float, float]:
    rate = stats["jack_rate"]
    return (stats["t0"] + stats["latency_s"]) * rate, stats["frame_seconds"] * rate


@_e2e
def test_native_notes_land_on_the_grid_to_the_sample(
        jack_server, receiver, engine_process, live_model, tmp_path):
    stats_path = tmp_path / "stats.json"
    p = _native(engine_process, live_model, "--mode", "generate", "--bpm", "240",
                "--frames-per-beat", "4", "--seed", "3", "--latency-ms", "1.01",
                "--out-port", receiver.name, "--stats-json", str(stats_path))
    p.wait_for("ctrl+c stops")
    assert any("output latency:" in line and "samples" in line for line in p.lines)
    _wait(lambda: len(receiver.note_events()) >= 60, 20, "sixty note events")
    stopping = time.monotonic()
    assert p.stop() == 0
    stats = json.loads(stats_path.read_text())
    t0, dt = _grid_frames(stats)
    assert stats["latency_s"] * stats["jack_rate"] == 48  # 1.01 ms: whole samples
    events = receiver.note_events()
    # The final note-offs and CC 123 are not on the grid: what arrived before the stop is
    # (a slow machine spreads that burst over more periods than a quick one). After an
    # xrun the helper writes recent note-offs again at once (jack_helper.py): a note-off
    # for a note already off is that repeat, not a grid event.
    before = set(receiver.frames_before(stopping))
    on_grid = [f for f, _ in _first_offs(events) if f in before]
    off = [f for f in on_grid if f != round(t0 + round((f - t0) / dt) * dt)]
    assert len(on_grid) >= 50
    assert len(off) <= stats["jack_late_events"], f"events off their sample: {off[:5]}"
    # An event is late only when JACK skipped the period it was queued for (the dummy
    # backend does, at an xrun, on a loaded machine); never otherwise.
    assert stats["jack_late_events"] == 0 or stats["jack_xruns"] > 0
    assert not _hanging(events), "a note still sounds after SIGTERM"
    # the all-notes-off ends it; only an xrun's repeated note-offs may come after it
    after_all_off = _after_all_notes_off(receiver.snapshot())
    assert after_all_off is not None, "no all-notes-off at the end"
    assert all(d[0] & 0xF0 == 0x80 for d in after_all_off), after_all_off


def _after_all_notes_off(snapshot) -> list[bytes] | None:
    """The messages after the last CC 123 (None: there is none)."""
    at = [i for i, (_, d) in enumerate(snapshot) if d[0] & 0xF0 == 0xB0 and d[1] == 123]
    return [d for _, d in snapshot[at[-1] + 1:]] if at else None


@_e2e
def test_native_records_the_players_onsets_to_the_sample(
        jack_server, jack_sender, engine_process, live_model, tmp_path):
    record, stats_path = tmp_path / "take.mid", tmp_path / "stats.json"
    rate = jack_sender.rate
    p = _native(engine_process, live_model, "--mode", "continue", "--bpm", "100",
                "--in-port", jack_sender.name, "--record", str(record),
                "--stats-json", str(stats_path))
    p.wait_for("ctrl+c stops")
    start = jack_sender.frame_time() + int(0.5 * rate)    # after frame 0 (0.25 s in)
    for i, note in enumerate([60, 64, 67, 72, 67, 64, 61]):
        on = start + i * 7919 + (i * 37) % 64   # odd frames, anywhere in a period
        jack_sender.at(on, bytes([0x90, note, 90]))
        jack_sender.at(on + 5000 + i, bytes([0x80, note, 0]))
    _wait(lambda: jack_sender.pending() == 0, 10, "the phrase to be played")
    time.sleep(0.3)
    assert p.stop() == 0
    stats = json.loads(stats_path.read_text())
    midi = mido.MidiFile(record)
    tempo = next(m.tempo for m in midi.tracks[0] if m.type == "set_tempo")
    seconds_per_tick = tempo / 1e6 / midi.ticks_per_beat
    assert seconds_per_tick * rate <= 1.0, "the file cannot hold a sample's resolution"
    recorded, tick = [], 0
    for msg in midi.tracks[1]:
        tick += msg.time
        if msg.type in ("note_on", "note_off"):
            kind = "on" if msg.type == "note_on" and msg.velocity else "off"
            recorded.append((round((stats["t0"] + tick * seconds_per_tick) * rate), kind,
                             msg.note))
    played = [(f, "on" if d[0] & 0xF0 == 0x90 else "off", d[1]) for f, d in jack_sender.sent]
    assert sorted(recorded) == sorted(played), \
        [(r[0] - q[0], r[1], q[1]) for r, q in zip(sorted(recorded), sorted(played))]


@pytest.fixture
def midi_clock_master(jack_server):
    """jack_midi_clock (24 ppqn from JACK transport) and jack_transport to drive it."""
    if not (shutil.which("jack_midi_clock") and shutil.which("jack_transport")):
        _unavailable("jack_midi_clock is not installed (apt-get install jack-midi-clock)")
    clock = subprocess.Popen(["jack_midi_clock"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    transport = subprocess.Popen(["jack_transport"], stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 text=True)

    def say(command: str) -> None:
        transport.stdin.write(command + "\n")
        transport.stdin.flush()

    try:
        _wait(lambda: "jack_midi_clock:mclk_out" in jack_ports(), 10, "jack_midi_clock")
        say("master")
        say("stop")
        say("locate 0")
        yield say
    finally:
        for proc in (transport, clock):
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


@_e2e
def test_native_frames_fall_on_jack_midi_clock_ticks_through_tempo_and_transport(
        jack_server, receiver, midi_clock_master, engine_process, live_model, tmp_path):
    ticks = JackReceiver(f"ticks{os.getpid() % 10000}")
    try:
        subprocess.run(["jack_connect", "jack_midi_clock:mclk_out", ticks.name], check=True,
                       timeout=10)
        p = _native(engine_process, live_model, "--mode", "generate", "--clock", "midi",
                    "--seed", "6", "--in-port", "jack_midi_clock:mclk_out",
                    "--out-port", receiver.name, "--stats-json", str(tmp_path / "stats.json"))
        p.wait_for("waiting for the daw")
        say = midi_clock_master
        say("tempo 120")
        say("play")
        _ticks_go_by(ticks, 120)             # 2.5 s at 120 bpm
        changed = ticks.frame_time()
        say("tempo 200")
        _ticks_go_by(ticks, 200)             # 2.5 s at 200 bpm
        say("stop")
        time.sleep(1.0)
        stopped = ticks.frame_time()
        say("locate 0")
        time.sleep(0.3)
        restarted = ticks.frame_time()
        say("play")
        _ticks_go_by(ticks, 96)              # 2 s at 120 bpm
        say("stop")
        time.sleep(0.5)
        assert p.stop() == 0
        clock = ticks.snapshot()
    finally:
        ticks.close()
    tick_frames = _frame_ticks(clock, ticks_per_frame=12)
    ons = sorted({f for f, kind, _ in receiver.note_events() if kind == "on"})
    stats = json.loads((tmp_path / "stats.json").read_text())
    # a frame the model fell behind on (the host took the CPUs away) is skipped, and says so
    assert len(ons) + stats["skipped_frames"] >= 20, f"too few frames played: {len(ons)}"
    # Every frame on its tick's sample (JACK's thread writes each frame where its tick
    # comes in), through the tempo change too: 200 bpm brings the first tick after it 0.4
    # of a frame early, and a slot handed over on the old tempo's prediction came one
    # period late (jack_sender.TICK_LEAD_FRAMES). The first frame after each Start too:
    # it was handed over while stopped (pre-armed), two periods being too short for
    # Start to reach the engine and its frame to come back on a busy machine. As on the
    # grid above, only a frame the helper wrote late, and counted, may miss its tick.
    off = [f for f in ons if min(abs(f - t) for t in tick_frames) > 0]
    assert len(off) <= stats["jack_late_events"], \
        f"notes off their tick: {_misses(off, tick_frames, clock)}"
    assert stats["jack_late_events"] == 0 or stats["jack_xruns"] > 0
    first_run = [f for f in ons if f < stopped]
    gaps = {round((b - a) / ticks.rate, 3) for a, b in zip(first_run, first_run[1:])}
    if stats["skipped_frames"] == 0:
        assert 0.25 in gaps and 0.15 in gaps, f"no tempo change followed: {sorted(gaps)}"
    else:  # frames the model fell behind on may leave no two in a row at one tempo
        assert min(first_run) < changed < max(first_run), "frames at one tempo only"
    while_stopped = [f for f in ons if stopped < f < restarted]
    assert not while_stopped, f"notes while stopped: {_misses(while_stopped, tick_frames, clock)}"
    assert [f for f in ons if f > restarted], "nothing after the transport started again"
    hanging = _hanging(receiver.note_events())
    assert not hanging, _hanging_story(hanging, receiver, clock, tmp_path / "stats.json")


def _ticks_go_by(ticks: JackReceiver, n: int) -> None:
    """Wait while the clock master sends n more ticks: by its ticks, not by the wall clock,
    which runs on while the host takes the CPUs away and the server's cycles wait."""
    def count() -> int:
        return sum(1 for _, data in ticks.snapshot() if data[0] == 0xF8)
    start = count()
    _wait(lambda: count() - start >= n, 10 + n / 24, f"{n} ticks of the midi clock")


def _misses(off, tick_frames, clock):
    """For the message: each note off its tick, against the nearest frame tick."""
    out = []
    for f in off:
        near = min(tick_frames, key=lambda t: abs(f - t))
        out.append((f, f - near, tick_frames.index(near),
                    [(c, d.hex()) for c, d in clock if abs(c - f) < 3000 and d[0] != 0xF8]))
    return out


@_e2e
def test_native_the_first_frame_after_start_is_on_tick_zero_with_no_time_to_react(
        jack_server, receiver, jack_sender, engine_process, live_model):
    # A clock master that sends Start and tick 0 in the same sample leaves the engine no
    # time to react: only a frame handed to JACK while stopped (pre-armed) can land on
    # tick 0. Twice: the first run, and a Start after a Stop.
    rate = receiver.rate
    p = _native(engine_process, live_model, "--mode", "generate", "--clock", "midi",
                "--frames-per-beat", "2", "--seed", "4", "--in-port", jack_sender.name,
                "--out-port", receiver.name)
    p.wait_for("waiting for the daw")
    time.sleep(0.5)
    tick = rate // 48                      # 120 bpm: 24 ticks a beat
    runs = []
    start = jack_sender.frame_time() + int(0.3 * rate)
    for _ in range(2):
        runs.append(start)
        jack_sender.at(start, b"\xfa")
        for i in range(48):                # two beats: four frames of 12 ticks
            jack_sender.at(start + i * tick, b"\xf8")
        jack_sender.at(start + 48 * tick - tick // 2, b"\xfc")
        start += 48 * tick + int(0.6 * rate)
    time.sleep((start - jack_sender.frame_time()) / rate)
    _wait(lambda: jack_sender.pending() == 0, 10, "the clock to be sent")
    assert p.stop() == 0
    # a tick counts where it went (this process's sender can be late, the engine is not)
    frames = {jack_sender.went(run + k * 12 * tick) for run in runs for k in range(4)}
    runs = [jack_sender.went(run) for run in runs]
    ons = sorted({f for f, kind, _ in receiver.note_events() if kind == "on"})
    assert runs[0] in ons and runs[1] in ons, \
        f"the first frames came at {[min(f for f in ons if f >= r) - r for r in runs]} samples"
    assert set(ons) <= frames, f"notes off their tick: {sorted(set(ons) - frames)[:5]}"
    assert not _hanging(receiver.note_events())


def _hanging_story(hanging, receiver, clock, stats_path) -> str:
    """For the message: where each hanging note last went on, what came near it, the
    receiver's xruns and the engine's counters."""
    events = receiver.snapshot()
    lines = [f"notes left sounding: {sorted(hanging)}"]
    for note in sorted(hanging):
        on = max(f for f, d in events if d[0] & 0xF0 == 0x90 and d[1] == note and d[2])
        near = [(f - on, d.hex()) for f, d in events if abs(f - on) < 2000]
        ticks = [(f - on, d.hex()) for f, d in clock if abs(f - on) < 4000 and d[0] != 0xF8]
        lines.append(f"note {note} on at {on}: near {near}; transport near {ticks}")
    last = [(f, d.hex()) for f, d in events[-12:]]
    lines.append(f"receiver xruns at {receiver.xruns}; last events {last}")
    if stats_path.exists():
        stats = json.loads(stats_path.read_text())
        jack = {k: v for k, v in stats.items() if k.startswith("jack")}
        lines.append(f"engine: {jack}")
    return "\n".join(lines)


def _frame_ticks(clock, ticks_per_frame: int) -> list[int]:
    """The frames of every ticks_per_frame-th tick after each Start (jack_midi_clock sends
    ticks only while rolling, and Start after a locate to 0)."""
    runs: list[list[int]] = []
    for frame, data in clock:
        if data[0] == 0xFA:
            runs.append([])
        elif data[0] == 0xF8 and runs:
            runs[-1].append(frame)
    return [f for run in runs for f in run[::ticks_per_frame]]


@_e2e
def test_native_an_input_port_that_goes_ends_with_one_line_and_silence(
        jack_server, receiver, engine_process, live_model):
    keyboard = JackSender(f"keys{os.getpid() % 10000}")
    p = _native(engine_process, live_model, "--mode", "generate", "--bpm", "200",
                "--in-port", keyboard.name, "--out-port", receiver.name)
    try:
        p.wait_for("ctrl+c stops")
        _wait(receiver.note_events, 10, "notes")
    finally:
        keyboard.close()    # the keyboard's program quits
    assert p.proc.wait(15) == 2
    p._reader.join(2)
    errors = [line for line in p.lines if "error" in line]
    assert len(errors) == 1 and "the input port is gone" in errors[0], p.lines[-3:]
    assert not [line for line in p.lines if "Traceback" in line]
    assert not _hanging(receiver.note_events())


@_e2e
def test_native_answer_yields_at_once_and_drops_what_it_queued_ahead(
        jack_server, receiver, jack_sender, engine_process, live_model):
    # The answer's next notes wait in the JACK queue ahead of time: when the player comes
    # back they must be dropped, and every note that sounds (or was queued) turned off.
    rate = receiver.rate
    p = _native(engine_process, live_model, "--mode", "continue", "--bpm", "200",
                "--seed", "5", "--answer-bars", "4", "--in-port", jack_sender.name,
                "--out-port", receiver.name)
    p.wait_for("ctrl+c stops")
    start = jack_sender.frame_time() + int(0.3 * rate)
    for i, note in enumerate([64, 68, 71, 73, 71, 68]):
        on = start + int(i * 0.15 * rate)
        jack_sender.at(on, bytes([0x90, note, 90]))
        jack_sender.at(on + int(0.12 * rate), bytes([0x80, note, 0]))
    first_on = _wait(lambda: min((f for f, k, _ in receiver.note_events() if k == "on"),
                                 default=None), 10, "the answer")
    interrupt = max(first_on + int(0.5 * rate), jack_sender.frame_time() + int(0.05 * rate))
    jack_sender.at(interrupt, bytes([0x90, 76, 90]))
    jack_sender.at(interrupt + int(0.3 * rate), bytes([0x80, 76, 0]))
    time.sleep((interrupt - jack_sender.frame_time()) / rate + 0.8)
    interrupt = jack_sender.went(interrupt)
    events = receiver.note_events()
    react = 2 * receiver.period + int(0.012 * rate)   # input -> compute -> queue -> JACK
    assert not [f for f, k, _ in events if k == "on" and f > interrupt + react], \
        "the answer went on after the player came back"
    after = [(round((f - interrupt) * 1000 / rate), k, n) for f, k, n in events
             if f > interrupt]
    assert not _hanging([e for e in events if e[0] <= interrupt + react]), \
        f"a note of the answer still sounds after the player came back (ms, kind, note): " \
        f"{after[:12]}"
    assert p.stop() == 0
    assert not _hanging(receiver.note_events())


# ----------------------------------------------------------------------------- the parts
# What the process callback relies on, without a server: the queue and the tick count
# (tests/test_jack_helper.py: the shared rings at length, and the helper process).


def test_the_queue_is_fixed_size_and_refuses_rather_than_grows():
    ring = SharedBlock(ring_size=4).timed
    assert all(ring.push(f, 0, -1, pack(bytes([0x90, 60, 1]))) for f in range(4))
    assert not ring.push(4, 0, -1, pack(b"\x80<\x00")) and len(ring) == 4
    assert ring.pop() == (0, 0, -1, pack(bytes([0x90, 60, 1])))  # the callback took one
    assert ring.push(4, 1, 48, pack(b"\x80<\x00"))
    assert [ring.pop() for _ in range(4)][-1] == (4, 1, 48, pack(b"\x80<\x00"))
    with pytest.raises(ValueError):
        SlotRing(ring.words, 0, 6, 1)


def test_the_tick_count_follows_start_song_position_continue_and_stop():
    clock = TickTracker()
    clock.read(0, 0xF8, b"\xf8")         # stopped: the tick moves nothing
    assert clock.next == 0 and clock.count == 0
    clock.read(3, 0xFA, b"\xfa")         # Start: the next tick is position 0
    clock.read(5, 0xF8, b"\xf8")
    clock.read(40, 0xF8, b"\xf8")
    assert clock.offset_of(0) == 5 and clock.offset_of(1) == 40
    assert clock.offset_of(2) == -2      # not come yet: wait for it
    clock.count = 0                      # the next period
    assert clock.offset_of(1) == -1      # came in an earlier period: late
    clock.read(0, 0xFC, b"\xfc")         # Stop, then a song position of 4 sixteenths
    clock.read(1, 0xF2, b"\xf2\x04\x00")
    clock.read(2, 0xF8, b"\xf8")
    assert clock.next == 24 and clock.count == 0
    clock.read(9, 0xFB, b"\xfb")         # Continue from there
    clock.read(11, 0xF8, b"\xf8")
    assert clock.offset_of(24) == 11 and clock.next == 25


def test_a_frame_armed_for_the_next_start_goes_on_the_runs_first_frame_tick():
    clock = TickTracker()
    clock.read(0, 0xFA, b"\xfa")
    assert clock.first_frame_tick(12) == 0      # Start: tick 0
    clock.read(0, 0xFC, b"\xfc")
    clock.read(1, 0xF2, b"\xf2\x07\x00")        # 7 sixteenths: position 42
    clock.read(2, 0xFB, b"\xfb")
    assert clock.first_frame_tick(12) == 48     # Continue: the next frame tick after 42
    assert clock.first_frame_tick(6) == 42      # ... or 42 itself on a finer grid
    clock.read(3, 0xFA, b"\xfa")
    assert clock.first_frame_tick(12) == 0
