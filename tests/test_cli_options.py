"""Every option of every `rnnrbm-live` command (live, ports, continue, generate) with bad
values: one line, `rnnrbm-live: error: `, naming the option and the value and saying the
range, exit status 2; in this process and in real subprocesses. And options written
before a command: they apply to it, or are a one-line error; never dropped."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mido
import pytest

from rnnrbm_live.cli import main as cli

LONG_NAME = "x" * 80

# (argv, words the one error line must hold: the option, the value as shown, the range)
LIVE = [
    (["--mode", "jam"], ["--mode", "jam", "continue", "generate", "accompany"]),
    (["--bpm", "5"], ["--bpm 5", "20", "400"]),
    (["--bpm", "1000"], ["--bpm 1000", "20", "400"]),
    (["--bpm", "nan"], ["--bpm nan", "20", "400"]),
    (["--bpm", "fast"], ["--bpm", "fast"]),
    (["--frames-per-beat", "0"], ["--frames-per-beat 0", "1", "24"]),
    (["--frames-per-beat", "25"], ["--frames-per-beat 25", "24"]),
    (["--temperature", "0"], ["--temperature 0", "0.1", "4"]),
    (["--temperature", "1e9"], ["--temperature 1e+09", "0.1", "4"]),
    (["--temperature", "inf"], ["--temperature inf", "0.1", "4"]),
    (["--seed", "-5"], ["--seed -5", "0", "4294967295"]),
    (["--seed", "-1"], ["--seed -1", "0", "4294967295"]),
    (["--seed", str(2**32)], [f"--seed {2**32}", "4294967295"]),
    (["--seed", "1.5"], ["--seed", "1.5"]),
    (["--beats-per-bar", "0"], ["--beats-per-bar 0", "1", "32"]),
    (["--beats-per-bar", "33"], ["--beats-per-bar 33", "32"]),
    (["--silence-bars", "0"], ["--silence-bars 0", "1/16", "256"]),
    (["--silence-bars", "-1"], ["--silence-bars -1", "256"]),
    (["--answer-bars", "300"], ["--answer-bars 300", "256"]),
    (["--answer-bars", "20"], ["--answer-bars 20", "--max-answer-bars 16"]),
    (["--max-answer-bars", "0"], ["--max-answer-bars 0", "256"]),
    (["--channel", "0"], ["--channel 0", "1", "16"]),
    (["--channel", "17"], ["--channel 17", "16"]),
    (["--velocity", "0"], ["--velocity", "0", "1..127"]),
    (["--velocity", "200"], ["--velocity", "200", "1..127"]),
    (["--velocity", "loud"], ["--velocity", "loud", "follow"]),
    (["--latency-ms", "5000"], ["--latency-ms 5000", "-1000", "1000"]),
    (["--latency-ms", "nan"], ["--latency-ms nan", "1000"]),
    (["--clock", "smpte"], ["--clock", "smpte", "internal", "midi"]),
    (["--backend", "portmidi"], ["--backend", "portmidi", "jack", "alsa"]),
    (["--client-name", ""], ["--client-name ''", "give a name"]),
    (["--client-name", "a:b"], ["--client-name 'a:b'", "':'"]),
    (["--client-name", LONG_NAME], ["--client-name", "80 characters", "60"]),
    (["--cc-temperature", "128"], ["--cc-temperature 128", "0", "119"]),
    (["--cc-lock", "-1"], ["--cc-lock -1", "119"]),
    (["--cc-lock", "1"], ["--cc-lock", "--cc-temperature", "cc 1"]),
    (["--cc-key", "120"], ["--cc-key 120", "119"]),
    (["--cc-panic", "200"], ["--cc-panic 200", "119"]),
    (["--state-cc", "120"], ["--state-cc 120", "119"]),
    (["--device", "tpu"], ["--device", "tpu", "cpu", "cuda"]),
    (["--threads", "0"], ["--threads 0", "1", "256"]),
    (["--threads", "1000"], ["--threads 1000", "256"]),
    (["--compute-ms", "0"], ["--compute-ms 0", "1", "1000"]),
    (["--compute-ms", "5000"], ["--compute-ms 5000", "1000"]),
    (["--realtime-priority", "-1"], ["--realtime-priority -1", "0", "99"]),
    (["--realtime-priority", "100"], ["--realtime-priority 100", "99"]),
    (["--record", "/no/such/folder/take.mid"], ["--record", "/no/such/folder"]),
    (["--record", "/"], ["--record /", "is a folder"]),
    (["--stop-after", "0"], ["--stop-after 0", "above 0"]),
    (["--stop-after", "nan"], ["--stop-after nan", "above 0"]),
    (["--stats-json", "/no/such/folder/s.json"], ["--stats-json", "/no/such/folder"]),
    (["--nonsense"], ["--nonsense"]),
]

PORTS = [
    (["ports", "--backend", "portmidi"], ["--backend", "portmidi"]),
    (["--client-name", "a:b", "ports"], ["--client-name 'a:b'"]),
    (["--bpm", "90", "ports"], ["--bpm before ports", "no such option"]),
]

OFFLINE_COMMON = [
    (["--bars", "0"], ["--bars 0", "1", "1024"]),
    (["--bars", "5000"], ["--bars 5000", "1024"]),
    (["--variations", "0"], ["--variations 0", "1", "256"]),
    (["--variations", "1000"], ["--variations 1000", "256"]),
    (["--temperature", "0"], ["--temperature 0", "0.1", "4"]),
    (["--temperature", "1e9"], ["--temperature 1e+09", "4"]),
    (["--seed", "-1"], ["--seed -1", "4294967295"]),
    (["--seed", "-5"], ["--seed -5", "4294967295"]),
    (["--threads", "0"], ["--threads 0", "256"]),
    (["--device", "tpu"], ["--device", "tpu"]),
    (["--model", "no-such-model"], ["no-such-model", "model"]),
    (["--model", "/no/such/random.bin"], ["/no/such/random.bin", "no such model"]),
]
CONTINUE = [(["continue", "tune.mid", *argv], words) for argv, words in OFFLINE_COMMON] + [
    (["continue", "tune.mid", "--max-primer-bars", "0"], ["--max-primer-bars 0", "4096"]),
    (["continue"], ["primer"]),
]
GENERATE = [(["generate", *argv], words) for argv, words in OFFLINE_COMMON] + [
    (["generate", "--bpm", "0"], ["--bpm 0", "20", "400"]),
    (["generate", "--bpm", "1e9"], ["--bpm 1e+09", "400"]),
    (["generate", "--time-signature", "7"], ["--time-signature 7", "4/4"]),
    (["generate", "--time-signature", "4/3"], ["--time-signature 4/3", "16"]),
    (["generate", "--name", "a/b"], ["'a/b'", "name"]),
]
BEFORE = [
    (["--channel", "3", "continue", "tune.mid"], ["--channel before continue"]),
    (["--frames-per-beat", "4", "generate"], ["--frames-per-beat before generate"]),
    (["--seed", "3", "continue", "tune.mid", "--seed", "4"],
     ["--seed given twice", "3 before", "4 after"]),
    (["--seed", "-1", "generate"], ["--seed -1", "4294967295"]),
]
ROWS = LIVE + PORTS + CONTINUE + GENERATE + BEFORE


def check_one_line(code: int, err: str, words: list[str]) -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("rnnrbm-live: error: "), err
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert "traceback" not in err.lower()


@pytest.mark.parametrize("argv, words", ROWS, ids=[" ".join(a)[:50] for a, _ in ROWS])
def test_a_bad_value_is_one_line_naming_it_exit_2(capsys, tmp_path, monkeypatch, argv,
                                                  words):
    monkeypatch.chdir(tmp_path)  # nothing is written, but if it were: here
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse's own refusals (choices, types)
        code = e.code
    out, err = capsys.readouterr()
    check_one_line(code, err, words)
    assert list(tmp_path.iterdir()) == []


def _first_row_per_option(rows):
    seen, kept = set(), []
    for argv, words in rows:
        key = tuple(word for word in argv if word.startswith("-") or word in
                    ("ports", "continue", "generate"))
        if key not in seen:
            seen.add(key)
            kept.append((argv, words))
    return kept


@pytest.mark.slow
def test_every_option_in_a_real_subprocess(tmp_path):
    """The entry point as a user runs it: a bad value of each option (the first row of
    each) is one line on stderr, nothing on stdout, exit status 2."""
    rows = _first_row_per_option(ROWS)

    def run(argv):
        return subprocess.run([sys.executable, "-m", "rnnrbm_live.cli", *argv],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)

    with ThreadPoolExecutor(max_workers=6) as pool:
        done = list(pool.map(run, [argv for argv, _ in rows]))
    for (argv, words), result in zip(rows, done):
        check_one_line(result.returncode, result.stderr, words)
        assert result.stdout == "", argv
    assert list(tmp_path.iterdir()) == []


def test_every_option_of_every_command_is_in_the_table():
    """A new option gets a row here, or this fails."""
    parser = cli.build_parser()
    tried = {word for argv, _ in ROWS for word in argv if word.startswith("--")}
    no_bad_value = {"--help", "--quiet", "--verbose", "--in-port", "--out-port",
                    "--only-continuation", "--plot", "--wav", "--out-dir", "--overwrite"}
    parsers = [parser, *parser.command_parsers.values()]
    options = {o for p in parsers for a in p._actions for o in a.option_strings
               if o.startswith("--")}
    assert options - no_bad_value - tried == set()


# ----------------------------------------------------------------------------- before a command


def write_tune(path: Path) -> Path:
    track = mido.MidiTrack()
    for i, pitch in enumerate([60, 64, 67, 72, 67, 64, 60, 62]):
        track.append(mido.Message("note_on", note=pitch, velocity=80, time=0 if i == 0 else 0))
        track.append(mido.Message("note_off", note=pitch, time=240))
    midi = mido.MidiFile(ticks_per_beat=480)
    midi.tracks.append(track)
    midi.save(path)
    return path


def run_cli(capsys, argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_options_before_continue_apply_and_the_summary_names_the_model(
        live_model, tmp_path, capsys):
    tune = write_tune(tmp_path / "tune.mid")
    common = ["--bars", "1", "--variations", "1", "--device", "cpu"]
    code, out, err = run_cli(capsys, ["--model", live_model, "--seed", "5", "--temperature",
                                      "0.8", "continue", tune, "-o", tmp_path / "a", *common])
    assert code == 0, err
    assert "model random2" in err and "seed 5" in err
    code, _, err_after = run_cli(capsys, ["continue", tune, "--model", live_model, "--seed",
                                          "5", "--temperature", "0.8", "-o", tmp_path / "b",
                                          *common])
    assert code == 0, err_after
    a, b = sorted((tmp_path / "a").iterdir()), sorted((tmp_path / "b").iterdir())
    assert [p.name for p in a] == [p.name for p in b] == ["tune-cont-1.mid"]
    assert a[0].read_bytes() == b[0].read_bytes()


def test_options_before_generate_apply_bpm_and_quiet(live_model, tmp_path, capsys):
    code, out, err = run_cli(capsys, ["-q", "--bpm", "90", "--model", live_model, "generate",
                                      "--bars", "1", "--variations", "1", "--seed", "1",
                                      "--device", "cpu", "-o", tmp_path])
    assert code == 0 and err == ""  # quiet: no summary line
    tempos = [m.tempo for m in mido.MidiFile(tmp_path / "generated-1.mid").tracks[0]
              if m.type == "set_tempo"]
    assert tempos == [mido.bpm2tempo(90)]


# ----------------------------------------------------------------------------- help and hints


def test_every_option_has_help_and_continue_lists_the_bundled_models(capsys):
    from rnnrbm_live.bundled import bundled_names
    parser = cli.build_parser()
    for p in [parser, *parser.command_parsers.values()]:
        for action in p._actions:
            if action.option_strings:
                assert action.help, f"{p.prog} {action.option_strings[0]} has no help"
    with pytest.raises(SystemExit):
        cli.main(["continue", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert bundled_names() and all(name in text for name in bundled_names())


def test_the_jack_hint_names_commands_that_start_a_server(capsys, monkeypatch):
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "rnnrbm-no-such-server")
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    code = cli.main(["ports", "--backend", "jack"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    for command in ("jackd -d alsa", "pw-jack rnnrbm-live", "qjackctl", "jackd -d dummy"):
        assert command in err


def test_a_model_path_that_is_not_a_model_is_named_as_given(tmp_path, monkeypatch):
    from rnnrbm_live.errors import UserError
    from rnnrbm_live.model.card import load_model
    monkeypatch.chdir(tmp_path)
    (tmp_path / "random.bin").write_bytes(b"\0" * 16)
    with pytest.raises(UserError) as e:
        load_model("random.bin")
    assert str(e.value).startswith("random.bin: not an exported model")
    with pytest.raises(UserError) as e:
        load_model(str(tmp_path / "gone.bin"))
    assert str(e.value).startswith(f"{tmp_path / 'gone.bin'}: no such model file")
