"""rnnrbm-live under faults on real JACK servers: a server killed with SIGKILL, the output's
connections removed and made again from outside, a signal while the ports are created,
and two instances with one client name.

Tests that kill a server start their own (`own_server`: `jackd -n <session name>-kill`),
never the session's shared one. A server killed with SIGKILL leaves its entry in JACK's
shared registry, which holds 8 servers for the whole machine; only a server of the same
name reclaims it. So the name is fixed, and the fixture ends by starting that server
again and stopping it cleanly, which frees the entry.
"""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import subprocess
import time

import pytest

from conftest import JACK_ENV, _stop, jack_answers

pytestmark = [pytest.mark.jack, pytest.mark.slow]


def _start_jackd(name: str) -> subprocess.Popen:
    env = {**os.environ, **JACK_ENV, "JACK_DEFAULT_SERVER": name}
    proc = subprocess.Popen(["jackd", "-S", "-n", name, "-d", "dummy", "-r", "48000",
                             "-p", "64"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if jack_answers(env):
            return proc
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    pytest.fail(f"jackd -n {name} did not start (exit status {proc.returncode})")


@pytest.fixture
def own_server(jack_server, monkeypatch):
    """A JACK server of this test's own, the default for clients started from now on."""
    name = f"{os.environ.get('JACK_DEFAULT_SERVER', 'default')}-kill"
    proc = _start_jackd(name)
    monkeypatch.setenv("JACK_DEFAULT_SERVER", name)
    yield proc
    if proc.poll() is not None and proc.returncode == -signal.SIGKILL:
        proc = _start_jackd(name)  # reclaims the dead server's registry entry ...
    _stop(proc)                    # ... and a clean stop frees it
    for leftover in glob.glob(f"/dev/shm/jack_sem.*_{name}_*"):  # clients that died with it
        with contextlib.suppress(OSError):
            os.unlink(leftover)


def _engine(engine_process, model, *args):
    return engine_process("--model", str(model), "--backend", "jack", "--client-name",
                          f"rnnrbm-f{os.getpid() % 100000}", *args)


def test_a_server_killed_with_sigkill_ends_the_engine_within_a_second_with_one_line(
        own_server, engine_process, live_model):
    p = _engine(engine_process, live_model, "--mode", "generate", "--bpm", "200")
    p.wait_for("ctrl+c stops")
    time.sleep(0.5)
    before = len(p.lines)
    killed = time.monotonic()
    own_server.send_signal(signal.SIGKILL)
    own_server.wait()
    try:
        code = p.proc.wait(10)
    except subprocess.TimeoutExpired:
        pytest.fail("the engine runs on after its jack server was killed")
    took = time.monotonic() - killed
    p._reader.join(2)
    after = p.lines[before:]
    assert code == 2
    errors = [line for line in after if "error" in line.lower()]
    assert len(errors) == 1 and "the jack server is gone" in errors[0], after
    # libjack's own lines ("Cannot read socket", "CheckRes error") stay out of the terminal
    assert all(line.startswith("rnnrbm-live:") for line in after), after
    # half a second to notice, the exit at once (libjack is not waited for)
    print(f"sigkill to exit: {took:.2f} s")
    assert took < 1.5, f"{took:.2f} s from SIGKILL to exit"


SIGNAL_STORM = """
# SIGTERMs from another process, as fast as bash sends them, while the ports are created.
import faulthandler, os, subprocess
from rnnrbm_live.live import ports
# a crash says where (fd 2 goes to /dev/null while the engine runs: a file of its own)
_faults = open(os.path.join(os.path.dirname(__file__), f"faults-{os.getpid()}.txt"), "w")
faulthandler.enable(_faults)
_open = ports.open_ports
def _stormy(*args, **kwargs):
    storm = subprocess.Popen(["bash", "-c", f"while kill -TERM {os.getpid()}; do :; done"])
    try:
        return _open(*args, **kwargs)
    finally:
        storm.kill()
        storm.wait()
ports.open_ports = _stormy
"""


def test_a_signal_while_the_ports_are_created_is_a_stop_not_a_missing_server(
        jack_server, engine_process, live_model, tmp_path, monkeypatch):
    (tmp_path / "sitecustomize.py").write_text(SIGNAL_STORM)
    monkeypatch.setenv("RNNRBM_TEST_PYTHONPATH", str(tmp_path))
    for _ in range(2):
        p = _engine(engine_process, live_model, "--mode", "generate", "--stop-after", "5")
        code = p.proc.wait(60)
        p._reader.join(2)
        faults = "".join(f.read_text() for f in tmp_path.glob(f"faults-{p.proc.pid}.txt"))
        assert not [line for line in p.lines if "error" in line], p.lines
        assert code == 0 and any("stopped (sigterm)" in line for line in p.lines), \
            "\n".join([f"exit status {code}", *p.lines[-4:], faults])


def test_out_port_plays_from_a_client_named_after_client_name_and_a_second_is_refused(
        jack_server, receiver, engine_process, live_model):
    from conftest import jack_ports
    name = f"rnnrbm-f{os.getpid() % 100000}"
    first = _engine(engine_process, live_model, "--mode", "generate", "--bpm", "240",
                    "--out-port", receiver.name)
    first.wait_for("ctrl+c stops")
    assert f"{name}:out" in jack_ports()
    deadline = time.monotonic() + 10
    while not receiver.note_events() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert receiver.note_events(), "nothing reached the port played into"
    second = _engine(engine_process, live_model, "--mode", "generate",
                     "--out-port", receiver.name)
    code = second.proc.wait(60)
    second._reader.join(2)
    assert code == 2
    assert len(second.lines) == 1 and f"a jack client named {name} already exists" \
        in second.lines[0], second.lines
    assert first.stop() == 0


def _jack(*args: str) -> None:
    subprocess.run(["jack_" + args[0], *args[1:]], check=True, timeout=10,
                   capture_output=True)


def _left_on(events) -> set[int]:
    """Notes whose last message at the receiver is a note-on: they sound on. (A synth
    ends a note at its note-off, however many note-ons came before; a note-on for a
    sounding key starts it again.)"""
    last: dict[int, str] = {}
    for _, kind, note in events:
        last[note] = kind
    return {n for n, kind in last.items() if kind == "on"}


def test_a_receiver_connected_again_is_not_left_with_notes_the_engine_turned_off(
        jack_server, receiver, jack_sender, engine_process, live_model):
    # continue mode: the answer ends while the receiver is disconnected, so its last
    # note-offs are lost, and nothing is played after it to cover them
    name = f"rnnrbm-f{os.getpid() % 100000}"
    rate = receiver.rate
    p = _engine(engine_process, live_model, "--mode", "continue", "--bpm", "200",
                "--seed", "5", "--answer-bars", "2", "--in-port", jack_sender.name)
    p.wait_for("ctrl+c stops")
    _jack("connect", f"{name}:out", receiver.name)
    start = jack_sender.frame_time() + int(0.3 * rate)
    for i, note in enumerate([64, 68, 71, 73, 71, 68]):
        on = start + int(i * 0.15 * rate)
        jack_sender.at(on, bytes([0x90, note, 90]))
        jack_sender.at(on + int(0.12 * rate), bytes([0x80, note, 0]))
    deadline = time.monotonic() + 10
    while not _left_on(receiver.note_events()) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)                                      # the answer sounds ...
    assert _left_on(receiver.note_events()), "the answer was not sounding"
    _jack("disconnect", f"{name}:out", receiver.name)   # ... and ends unheard
    time.sleep(3.0)
    _jack("connect", f"{name}:out", receiver.name)
    time.sleep(1.5)
    left = _left_on(receiver.note_events())
    assert p.stop() == 0
    assert not left, f"notes the engine turned off still sound at the receiver: {left}"


def test_a_removed_connection_of_the_out_port_is_noticed(
        jack_server, receiver, engine_process, live_model):
    name = f"rnnrbm-f{os.getpid() % 100000}"
    p = _engine(engine_process, live_model, "--mode", "generate", "--out-port",
                receiver.name)
    p.wait_for("ctrl+c stops")
    _jack("disconnect", f"{name}:out", receiver.name)
    p.wait_for("its connection was removed from outside", timeout=5)
    _jack("connect", f"{name}:out", receiver.name)
    p.wait_for("connected again", timeout=5)
    assert p.stop() == 0
