"""The rnnrbm-live command line: help text, one-line errors with exit status 2, port
name matching, backend choice, and the offline commands it hosts. No MIDI server needed
(test_live_jack.py runs the engine against a real JACK server)."""

from __future__ import annotations

import os
import sys

import pytest

from rnnrbm_live.cli import main as cli
from rnnrbm_live.live import ports
from rnnrbm_live.errors import UserError


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_says_it_sends_midi_and_documents_the_cc_mapping(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "sends MIDI only" in text
    for line in ("cc 1 ", "temperature", "cc 20", "scale lock", "cc 21", "cc 22", "panic"):
        assert line in text
    for option in ("--bpm", "--model", "--mode", "--temperature", "--channel", "--velocity",
                   "--clock", "--out-port", "--in-port", "--backend", "--device", "--seed",
                   "--record", "--latency-ms", "--silence-bars", "--answer-bars"):
        assert option in text


@pytest.mark.parametrize("argv, names", [
    (["--channel", "0"], "--channel 0"),
    (["--channel", "17"], "--channel 17"),
    (["--bpm", "5"], "--bpm 5"),
    (["--temperature", "0"], "--temperature 0"),
    (["--silence-bars", "0"], "--silence-bars 0"),
    (["--latency-ms", "5000"], "--latency-ms 5000"),
    (["--cc-lock", "1"], "cc 1"),
    (["--record", "/no/such/folder/take.mid"], "/no/such/folder"),
])
def test_bad_values_are_one_line_and_exit_2(capsys, argv, names):
    code, out, err = run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnrbm-live: error: ")
    assert names in lines[0] and "traceback" not in err.lower()
    assert lines[0] == lines[0].lower() or names in lines[0]


@pytest.mark.parametrize("argv", [["--velocity", "200"], ["--velocity", "loud"],
                                  ["--mode", "jam"], ["--backend", "portmidi"]])
def test_argparse_errors_are_one_line_too(capsys, argv):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rnnrbm-live: error: ")


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.path.exists("/dev/snd/seq"),
                    reason="needs a linux machine without an alsa sequencer")
def test_alsa_without_a_sequencer_says_to_use_jack(capsys):
    code, out, err = run(capsys, "ports", "--backend", "alsa")
    assert code == 2
    assert "jack" in err and "/dev/snd/seq" in err and len(err.strip().splitlines()) == 1


def test_jack_without_a_server_is_one_line(capsys, monkeypatch):
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "rnnrbm-no-such-server")
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    code, out, err = run(capsys, "ports", "--backend", "jack")
    assert code == 2
    lines = err.strip().splitlines()
    assert lines == [lines[0]] and "no jack server is running" in lines[0]


def test_windows_asks_for_loopmidi_instead_of_a_virtual_port():
    windows = ports.Backend(key="windows", api="WINDOWS_MM", mido=None)
    with pytest.raises(UserError, match="loopmidi") as e:
        ports.open_ports(windows, None, None, lambda m: None)
    assert "--out-port" in str(e.value)
    with pytest.raises(UserError, match="--in-port"):
        ports.open_ports(windows, "loopMIDI Port", None, lambda m: None)


def test_port_names_match_exactly_or_by_unique_substring():
    available = ["loopMIDI Port 1", "loopMIDI Port 2", "fluidsynth:midi_00", "Microsoft GS"]
    assert ports.match_port("--out-port", "fluidsynth:midi_00", available, "x") == \
        "fluidsynth:midi_00"
    assert ports.match_port("--out-port", "FLUID", available, "x") == "fluidsynth:midi_00"
    assert ports.match_port("--out-port", "port 2", available, "x") == "loopMIDI Port 2"
    with pytest.raises(UserError, match="matches 2 ports"):
        ports.match_port("--out-port", "loopmidi", available, "x")
    with pytest.raises(UserError) as e:
        ports.match_port("--out-port", "synthh", available, "you can play into")
    message = str(e.value)
    assert "no such midi port" in message and "fluidsynth:midi_00" in message
    assert "rnnrbm-live ports" in message


def test_a_vanished_port_is_noticed_by_name():
    from rnnrbm_live.live.port_watch import _still_there
    assert _still_there("loopMIDI Port 1", ["loopMIDI Port 3"])  # renumbered
    assert not _still_there("fluidsynth:midi_00", ["system:midi_capture_1"])


def test_offline_commands_are_hosted_when_present(capsys):
    pytest.importorskip("rnnrbm_live.offline")
    parser = cli.build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert {"ports", "continue", "generate"} <= set(choices)
