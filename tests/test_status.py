"""The live command line's own lines: the status line (what it shows, only on a terminal,
and that a stuck terminal never delays a frame), the waiting line, the stop line, and
--stats-json under a midi clock. The engine runs on the fake clock (test_engine.py's
helpers); test_cli_jack.py runs the command on a real JACK server."""

from __future__ import annotations

import io
import os
import threading
from types import SimpleNamespace

import mido
import pytest

from rnnrbm_live.cli import live as live_cli
from rnnrbm_live.cli.options import PROG
from rnnrbm_live.cli.status import CLEAR, Say, StatusLine, describe, wanted
from rnnrbm_live.live.clock import FakeClock
from rnnrbm_live.live.engine import Engine, LiveConfig
from test_engine import DT, T0, T_START, ScriptedModel, Sink, make, play


def e_major_phrase():
    # E major arpeggio, then silence: the continue mode hears E major, then answers
    return play([(k, 1, [n]) for k, n in enumerate([64, 68, 71, 76, 71, 68, 64, 66])])


def test_the_status_line_shows_mode_state_key_temperature_and_bar_beat():
    engine, sink, _ = make("continue", frames_per_beat=2, beats_per_bar=4)
    assert describe(engine, engine.clock.now()).startswith("continue: waiting for a phrase")
    end = T0 + 20.2 * DT   # frame 20: beat 10 (0-based), so bar 3, beat 3
    engine.run_fake(until=end, events=e_major_phrase())
    line = describe(engine, end)
    assert line == "continue: answering | heard E major | temperature 1.00 | bar 3:3", line
    engine.controls.temperature = 0.5
    assert "temperature 0.50" in describe(engine, end)


def test_generate_says_playing_and_a_midi_clock_not_yet_running_says_so():
    engine, _, _ = make("generate")
    engine.run_fake(until=T0 + 2 * DT)
    assert describe(engine, T0 + 2 * DT).startswith("generate: playing | no key heard yet")
    clocked, _, _ = make("generate", clock="midi")
    assert describe(clocked, T_START).endswith("| waiting for the clock")


def test_only_on_a_terminal_and_not_with_q():
    assert not wanted(False, io.StringIO())
    main, other = os.openpty()
    try:
        with os.fdopen(other, "w") as tty:
            assert wanted(False, tty) and not wanted(True, tty)
    finally:
        os.close(main)


class StuckTerminal(io.StringIO):
    """A terminal stopped with ctrl+s: the first write blocks until released."""

    def __init__(self):
        super().__init__()
        self.blocked = threading.Event()
        self.release = threading.Event()

    def write(self, text):
        self.blocked.set()
        self.release.wait(30)
        return super().write(text)


def run_continue(log=None):
    clock = FakeClock(T_START)
    sink = Sink(clock)
    engine = Engine(ScriptedModel(), sink, LiveConfig(mode="continue", start_delay_s=0.25),
                    clock=clock, log=log)
    return engine, sink


def test_a_stuck_terminal_never_delays_a_frame():
    """The status thread is blocked inside a write for the whole run; the engine, whose
    lines go to the same status line, still sends every frame at the same times."""
    plain, plain_sink = run_continue()
    plain.run_fake(until=T0 + 40 * DT, events=e_major_phrase())

    terminal = StuckTerminal()
    say = Say(PROG, terminal, quiet=False)
    engine, sink = run_continue(log=say)
    say.status = StatusLine(engine, terminal, interval=0.01)
    say.status.start()
    assert terminal.blocked.wait(5)
    engine.run_fake(until=T0 + 40 * DT, events=e_major_phrase())
    assert not terminal.release.is_set() and terminal.getvalue() == ""  # still stuck
    assert len(sink.sent) > 10
    assert [(t, m.bytes()) for t, m in sink.sent] == \
        [(t, m.bytes()) for t, m in plain_sink.sent]
    assert say.status.lines  # the engine's lines waited in the queue, not in a write
    terminal.release.set()
    say.hide_status()
    shown = terminal.getvalue()
    assert shown.endswith(CLEAR) and f"{PROG}: " in shown


def test_lines_print_above_the_status_and_stop_erases_it():
    engine, _, _ = make("generate")
    stream = io.StringIO()
    say = Say(PROG, stream, quiet=False)
    say.status = StatusLine(engine, stream, prefix="p: ", interval=0.01)
    say.status.start()
    say("a line")
    say.hide_status()
    text = stream.getvalue()
    assert f"{CLEAR}{PROG}: a line\n" in text and "p: generate: " in text
    assert text.endswith(CLEAR)
    say("after")  # no status line: printed at once
    assert stream.getvalue().endswith(f"{PROG}: after\n")


def test_the_waiting_line_names_the_input_and_how_to_hear_it_alone():
    opened = SimpleNamespace(in_name="rnnrbm-live:in")
    args = SimpleNamespace(clock="internal", mode="continue", silence_bars=1.0)
    line = live_cli._ready_line(args, opened)
    assert "rnnrbm-live:in" in line and "play a phrase and pause for 1 bar" in line
    assert "--mode generate" in line
    args.silence_bars = 2.0
    assert "pause for 2 bars" in live_cli._ready_line(args, opened)


def test_the_stop_line_says_what_each_count_counts():
    engine, _, _ = make("continue")
    engine.run_fake(until=T0 + 30 * DT, events=e_major_phrase())
    stats = engine.stats()
    line = live_cli._stop_line(engine, stats)
    assert f"{stats['answers']} answers" in line and stats["answers"] == 1
    assert f"{stats['frames_sent']} frames with note changes sent" in line
    assert "late" in line and "frames skipped" in line


def test_the_tempo_used_under_a_midi_clock_is_the_daws():
    engine, _, _ = make("generate", clock="midi", bpm=100.0)
    assert live_cli.tempo_used(engine) is None  # no clock came: no tempo to claim
    tick = 60 / 150 / 24
    events = [(T_START + 0.1, mido.Message("start"))]
    events += [(T_START + 0.1 + i * tick, mido.Message("clock")) for i in range(96)]
    engine.run_fake(until=T_START + 0.2 + 96 * tick, events=events)
    assert live_cli.tempo_used(engine) == pytest.approx(150, rel=1e-3)
    internal, _, _ = make("generate", bpm=90.0)
    assert live_cli.tempo_used(internal) == 90.0


def test_the_status_line_fits_the_terminal_and_never_raises(monkeypatch):
    engine, _, _ = make("continue")
    monkeypatch.setenv("COLUMNS", "40")
    line = StatusLine(engine, io.StringIO(), prefix=f"{PROG}: ")
    assert len(line._status_text()) == 39
    engine.composer.player_key = ("not", "a key")  # unreadable state: an empty line
    assert line._status_text() == ""
