"""The live command's own lines on a real JACK server: the waiting line names the real
input port, --stats-json under --clock midi records the daw's tempo (not --bpm), and a
client name at the limit opens."""

from __future__ import annotations

import json
import os
import time

import pytest

from conftest import storm_so_far
from test_live_jack import _clock_run, _engine, _wait

pytestmark = [pytest.mark.jack, pytest.mark.slow]


def test_continue_says_where_it_listens_and_how_to_hear_it_alone(
        jack_server, engine_process, live_model):
    p = _engine(engine_process, live_model, "--mode", "continue")
    p.wait_for("play a phrase")
    line = next(line for line in p.lines if "play a phrase" in line)
    port = line.split("listening on ", 1)[1].split(": play", 1)[0]
    assert port.endswith(":in") and "--mode generate" in line
    assert p.stop() == 0
    assert "answers" in p.lines[-1] and "frames with note changes sent" in p.lines[-1]


def test_stats_json_under_a_midi_clock_records_the_daws_tempo(
        jack_server, jack_sender, engine_process, live_model, tmp_path):
    stats = tmp_path / "stats.json"
    p = _engine(engine_process, live_model, "--mode", "generate", "--clock", "midi",
                "--bpm", "60", "--in-port", jack_sender.name, "--stats-json", str(stats))
    p.wait_for("waiting for the daw")
    rate = jack_sender.rate
    t = jack_sender.frame_time() + int(0.3 * rate)
    jack_sender.at(t, bytes([0xFA]))
    _clock_run(jack_sender, t + int(0.01 * rate), 150, 96)
    _wait(lambda: jack_sender.pending() == 0, 10, "the clock to be sent")
    time.sleep(0.2)
    assert p.stop() == 0
    recorded = json.loads(stats.read_text())
    assert recorded["clock"] == "midi"
    # The engine times the ticks by the monotonic clock as they come (RtMidi's path), over
    # the last beat. The dummy backend's frames run slow against that clock while the host
    # takes the CPUs away, so the daw's tempo is the one its last beat of ticks went at:
    # 150 bpm by the frames, a little slower by that clock on a busy machine (more in a
    # storm: conftest.py).
    went = [at for (_, data), at in zip(jack_sender.sent, jack_sender.sent_times)
            if data == b"\xf8"][-25:]
    delivered = 60 / (went[-1] - went[0])
    assert abs(delivered - 60) > 20, f"the clock went at {delivered:.1f} bpm, too near --bpm"
    rel = 0.01 if storm_so_far() is None else 0.05
    assert recorded["bpm"] == pytest.approx(delivered, rel=rel)
    assert recorded["frame_seconds"] == pytest.approx(30 / recorded["bpm"])  # eighths


def test_a_client_name_at_the_limit_opens(jack_server, engine_process, live_model):
    name = f"r{os.getpid() % 100000}".ljust(60, "x")
    p = engine_process("--model", str(live_model), "--backend", "jack", "--client-name",
                       name, "--mode", "generate", "--stop-after", "1")
    p.wait_for("ctrl+c stops")
    assert p.proc.wait(30) == 0, "\n".join(p.lines)
    longer = engine_process("--model", str(live_model), "--client-name", name + "x")
    assert longer.proc.wait(30) == 2
    longer._reader.join(5)
    assert "give at most 60" in "\n".join(longer.lines)
