"""Shared fixtures: a small exported model, and a JACK server with independent clients.

JACK (see ../shared/docs/midi-testing.md): if a server already answers (CI starts one),
the tests use it; otherwise `jack_server` starts `jackd -S -R -d dummy -r 48000 -p 64`
for the session and stops it at the end. When jackd is missing or does not start, JACK
tests are skipped with the reason, or fail when RNNRBM_REQUIRE_JACK=1 (CI sets it).

The independent clients use JACK-Client (PyPI `JACK-Client`): the receiver records every
event with its sample-accurate frame time (last_frame_time + offset in the process
callback); the sender writes events at the exact frames it was given. Both share the
server's frame timeline, so the tests measure the engine in frames, not wall-clock time.
"""

from __future__ import annotations

import bisect
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import pytest

JACK_ENV = {"JACK_NO_AUDIO_RESERVATION": "1", "JACK_NO_START_SERVER": "1"}
JACK_BACKEND = "mido.backends.rtmidi/UNIX_JACK"
REPO = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- model


def _export_test_model(folder: Path, frames_per_beat: int = 2) -> Path:
    """A random-init RNN-RBM with larger initial weights (it plays notes), exported."""
    import torch
    from rnnrbm_export.model import RNNRBM, RNNRBMConfig
    from rnnrbm_export.onnx_export import export_model
    from rnnrbm_export.sampler import Sampler

    torch.manual_seed(1234)
    config = RNNRBMConfig(init_std=0.5, init_recurrent_std=0.3, gibbs_steps=5,
                          frames_per_beat=frames_per_beat, dataset="random (tests)")
    model = RNNRBM(config)
    # A small version 2 step (annealed chains, one leaning to the previous frame): the live
    # modes and offline verbs play it through StepSession unchanged.
    sampler = Sampler("sir", 3, chains=2, previous=1, lean=2.0)
    paths = export_model(model, {"metrics": None}, folder / f"random{frames_per_beat}", sampler=sampler)
    path = Path(paths["onnx"])
    assert path.is_file(), f"export_model wrote no {path}"
    return path


@pytest.fixture(scope="session")
def live_model(tmp_path_factory) -> Path:
    """Path to STEM.onnx of a small random model (one frame per eighth note)."""
    return _export_test_model(tmp_path_factory.mktemp("live-model"))


# ----------------------------------------------------------------------------- jack


def _unavailable(reason: str):
    if os.environ.get("RNNRBM_REQUIRE_JACK") == "1":
        pytest.fail(f"jack is required here (RNNRBM_REQUIRE_JACK=1): {reason}")
    pytest.skip(reason)


def needs(reason: str):
    """A tool this test needs is missing: skip on a developer's machine, fail under CI,
    which installs every tool (.ci/run sets RNNRBM_REQUIRE_TOOLS=1)."""
    if os.environ.get("RNNRBM_REQUIRE_TOOLS") == "1":
        pytest.fail(f"required here (RNNRBM_REQUIRE_TOOLS=1): {reason}")
    pytest.skip(reason)


def jack_answers(env: dict | None = None) -> bool:
    if not shutil.which("jack_lsp"):
        return False
    try:
        done = subprocess.run(["timeout", "5", "jack_lsp"], env=env or os.environ,
                              capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def jack_ports() -> list[str]:
    done = subprocess.run(["timeout", "5", "jack_lsp"], capture_output=True, text=True,
                          timeout=10)
    return done.stdout.split("\n")


# A timing check that fails while the machine was not running us says nothing about our
# timing. On these VMs that happens when the host takes the CPUs away (steal time in
# /proc/stat): the server's cycles are held up (xruns by the hundred) or its frame clock
# jumps. A JACK test that failed during more than STORM_XRUNS xruns or STORM_STEAL_S of
# stolen CPU time runs again (twice at most); a quiet test sees a few tens of xruns and
# a few hundredths of a second of steal.
STORM_XRUNS = 100
STORM_STEAL_S = 0.5


def stolen_seconds() -> float:
    """CPU time the host took from this machine since boot (Linux; 0 elsewhere)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class HostWatch:
    """When the machine was not ours, for the whole session: the server's xruns (heard by a
    client with no ports, as frame and monotonic times) and the host's steal time (sampled
    every 10 ms). `mark` starts a test's count; `storm` says whether the test met one."""

    def __init__(self):
        import jack
        self.xrun_frames: list[int] = []    # frame times of the xrun notifications
        self.xrun_times: list[float] = []   # ... and their monotonic times
        self.stolen: list[float] = []       # monotonic times at which the steal count grew
        self._mark = (0, stolen_seconds())  # xruns so far, steal: at the test's start
        self.client = jack.Client(f"xruns{os.getpid() % 10000}", no_start_server=True)
        self.client.set_xrun_callback(self._xrun)
        self.client.activate()
        self._done = threading.Event()
        threading.Thread(target=self._watch_steal, daemon=True).start()

    def _xrun(self, delayed_usecs):
        self.xrun_frames.append(self.client.frame_time)
        self.xrun_times.append(time.monotonic())

    def _watch_steal(self) -> None:
        last = stolen_seconds()
        while not self._done.wait(0.01):    # /proc/stat counts in 10 ms ticks
            now = stolen_seconds()
            if now > last:
                self.stolen.append(time.monotonic())
            last = now

    def mark(self) -> None:
        self._mark = (len(self.xrun_times), stolen_seconds())

    def storm(self) -> str | None:
        """'N xruns, S s stolen' when there was a storm since the mark, else None."""
        xruns, stolen = len(self.xrun_times) - self._mark[0], stolen_seconds() - self._mark[1]
        if xruns > STORM_XRUNS or stolen > STORM_STEAL_S:
            return f"{xruns} xruns, {stolen:.2f} s stolen"
        return None

    def busy_between(self, a: float, b: float) -> bool:
        """Whether the server logged an xrun or the host took CPU time between monotonic
        times a and b (both are noted when the stall ends)."""
        def within(moments: list[float]) -> bool:   # appended in time order: sorted
            i = bisect.bisect_left(moments, a)
            return i < len(moments) and moments[i] <= b
        return within(self.xrun_times) or within(self.stolen)

    def close(self) -> None:
        self._done.set()
        # on a wedged server libjack's close can block for good (see _JackMidiClient)
        closing = threading.Thread(target=lambda: (self.client.deactivate(),
                                                   self.client.close()), daemon=True)
        closing.start()
        closing.join(CLOSE_TIMEOUT_S)


_HOST: HostWatch | None = None  # while the session's JACK server runs
_STORMS: list[str] = []         # the tests that met a storm, for the summary


def storm_so_far() -> str | None:
    """'N xruns, S s stolen' when the running test has met a storm so far, else None."""
    return None if _HOST is None else _HOST.storm()


@pytest.fixture(autouse=True)
def _storms_from_here(request):
    if _HOST is not None:
        _HOST.mark()
    yield
    if (storm := storm_so_far()) is not None:
        _STORMS.append(f"{request.node.nodeid}: {storm}")


def host_busy_between(a: float, b: float) -> bool:
    """Whether the machine was taken from us (an xrun, or steal) between monotonic times
    a and b: a timing miss there says nothing about our timing."""
    return _HOST is not None and _HOST.busy_between(a, b)


def _during_a_storm() -> bool:
    """The rerun condition: whether the test that just ran met a storm."""
    return storm_so_far() is not None


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("jack") is not None:
            item.add_marker(pytest.mark.flaky(reruns=2, condition=_during_a_storm))


def pytest_terminal_summary(terminalreporter):
    if _STORMS:
        terminalreporter.write_line(
            f"storms (over {STORM_XRUNS} xruns or {STORM_STEAL_S} s stolen by the host in a "
            "test; a failure then runs again): " + "; ".join(_STORMS))


class JackServer:
    def __init__(self, started: bool, rate: int = 48000, period: int = 64):
        self.started = started
        self.rate = rate
        self.period = period

    @property
    def period_s(self) -> float:
        return self.period / self.rate


@pytest.fixture(scope="session")
def jack_server():
    os.environ.update(JACK_ENV)
    try:
        import jack  # noqa: F401  (JACK-Client; needs libjack)
    except (ImportError, OSError) as e:
        _unavailable(f"JACK-Client is not usable ({e}); pip install JACK-Client and "
                     "apt-get install libjack-jackd2-0")
    proc = None
    log = None
    if not jack_answers():
        jackd = shutil.which("jackd")
        if jackd is None:
            _unavailable("jackd is not installed (apt-get install jackd2 jack-tools)")
        if not shutil.which("jack_lsp"):
            _unavailable("jack_lsp is not installed (apt-get install jack-tools)")
        cmd = [jackd, "-S", "-R", "-P", "70", "--port-max", "128"]
        if os.environ.get("JACK_DEFAULT_SERVER"):
            cmd += ["-n", os.environ["JACK_DEFAULT_SERVER"]]
        cmd += ["-d", "dummy", "-r", "48000", "-p", "64"]
        log = tempfile.NamedTemporaryFile("w+", prefix="jackd-", suffix=".log",
                                          delete=False)
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=os.environ.copy())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            if jack_answers():
                break
            time.sleep(0.1)
        if proc.poll() is not None or not jack_answers():
            _stop(proc)
            log.seek(0)
            tail = " | ".join(log.read().strip().splitlines()[-3:])
            _unavailable(f"jackd did not start: {tail or 'no output'}")
    # A client of ours must talk to this server through rtmidi's JACK API, never ALSA.
    saved = os.environ.get("MIDO_BACKEND")
    os.environ["MIDO_BACKEND"] = JACK_BACKEND
    global _HOST
    _HOST = HostWatch()
    try:
        yield JackServer(started=proc is not None)
    finally:
        _HOST.close()
        _HOST = None
        if saved is None:
            os.environ.pop("MIDO_BACKEND", None)
        else:
            os.environ["MIDO_BACKEND"] = saved
        if proc is not None:
            _stop(proc)
        if log is not None:
            log.close()
            os.unlink(log.name)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


CLOSE_TIMEOUT_S = 15.0


class _JackMidiClient:
    """An independent JACK client with one MIDI port ("in" or "out"). Subclasses define
    _process, set up their state, then call _activate()."""

    def __init__(self, name: str, direction: str):
        import jack
        self.client = jack.Client(name, no_start_server=True)
        ports = self.client.midi_inports if direction == "in" else self.client.midi_outports
        self.port = ports.register(direction)
        self.lock = threading.Lock()
        self.client.set_process_callback(self._process)

    def _activate(self) -> None:
        self.client.activate()
        self.rate = self.client.samplerate
        self.period = self.client.blocksize

    @property
    def name(self) -> str:
        return self.port.name

    def frame_time(self) -> int:
        return self.client.frame_time

    def close(self) -> None:
        # libjack's close can block for good on a server left wedged (seen once after
        # clients were stopped mid-period): fail the test with a line instead of hanging.
        # A daemon thread, not an executor: a hung close must not hold up pytest's exit.
        name, closed = self.name, Future()  # the port's name is gone once it closes

        def run() -> None:
            try:
                closed.set_result(self._deactivate_and_close())
            except Exception as e:  # noqa: BLE001 - raised again by closed.result()
                closed.set_exception(e)
        threading.Thread(target=run, daemon=True).start()
        try:
            closed.result(CLOSE_TIMEOUT_S)
        except FutureTimeout:
            raise RuntimeError(f"closing jack client {name!r} did not return in "
                               f"{CLOSE_TIMEOUT_S:g} s: the jack server is wedged") from None

    def _deactivate_and_close(self) -> None:
        try:
            self.client.deactivate()
        finally:
            self.client.close()


class JackReceiver(_JackMidiClient):
    """One MIDI input: records (frame, bytes) events, frame = last_frame_time + offset,
    sample-accurate."""

    def __init__(self, name: str):
        super().__init__(name, "in")
        self.events: list[tuple[int, bytes]] = []
        self.times: list[float] = []  # each event's period, as time.monotonic() saw it run
        self._xruns_from = len(_HOST.xrun_frames) if _HOST is not None else 0
        self._activate()

    @property
    def xruns(self) -> list[int]:
        """Frame times of the server's xruns (dummy driver stalls) since this opened, as
        the session's HostWatch heard them."""
        return _HOST.xrun_frames[self._xruns_from:] if _HOST is not None else []

    def xrun_between(self, a: int, b: int) -> bool:
        """Whether the server reported an xrun between frames a and b (a period either
        side): its frame clock jumped there, so a timing check across it means nothing."""
        late = int(0.05 * self.rate)  # the notification comes a little after the xrun
        return any(a - self.period <= x <= b + late for x in self.xruns)

    def _process(self, frames):
        now = time.monotonic()
        base = self.client.last_frame_time
        got = [(base + offset, bytes(data)) for offset, data in
               self.port.incoming_midi_events()]
        if got:
            with self.lock:
                self.events.extend(got)
                self.times.extend([now] * len(got))

    def snapshot(self) -> list[tuple[int, bytes]]:
        with self.lock:
            return list(self.events)

    def frames_before(self, t: float) -> list[int]:
        """The frames of the events whose period ran before monotonic time t."""
        with self.lock:
            return [f for (f, _), ran in zip(self.events, self.times) if ran < t]

    def time_of(self, frame: int) -> float:
        """The monotonic time at which the period holding the event at `frame` ran."""
        with self.lock:
            return self.times[[f for f, _ in self.events].index(frame)]

    def note_events(self):
        """[(frame, 'on'|'off', note)] of the received note messages."""
        out = []
        for frame, data in self.snapshot():
            kind = data[0] & 0xF0
            if kind == 0x90 and data[2] > 0:
                out.append((frame, "on", data[1]))
            elif kind in (0x80, 0x90):
                out.append((frame, "off", data[1]))
        return out


class JackSender(_JackMidiClient):
    """One MIDI output that writes each queued event at the exact frame it was given
    (events for past frames go out at once)."""

    def __init__(self, name: str):
        super().__init__(name, "out")
        self.queue: list[tuple[int, bytes]] = []
        self.sent: list[tuple[int, bytes]] = []
        self.sent_times: list[float] = []  # each sent event's period, by time.monotonic()
        self.sent_for: list[int] = []      # each sent event's frame as queued
        self._activate()

    def at(self, frame: int, data: bytes) -> None:
        with self.lock:
            self.queue.append((int(frame), bytes(data)))
            self.queue.sort(key=lambda e: e[0])

    def _process(self, frames):
        now = time.monotonic()
        self.port.clear_buffer()
        base = self.client.last_frame_time
        end = base + frames
        with self.lock:  # held until sent: pending() == 0 means in `sent`
            due = [e for e in self.queue if e[0] < end]
            if not due:
                return
            self.queue = self.queue[len(due):]
            for frame, data in due:
                offset = max(0, frame - base)
                self.port.write_midi_event(offset, data)
                self.sent.append((base + offset, data))
                self.sent_times.append(now)
                self.sent_for.append(frame)

    def pending(self) -> int:
        with self.lock:
            return len(self.queue)

    def went(self, frame: int) -> int:
        """The frame the event queued for `frame` went out at: later than asked when this
        process's callback ran late (it needs the interpreter lock in time)."""
        with self.lock:
            return self.sent[self.sent_for.index(frame)][0]



@pytest.fixture
def receiver(jack_server):
    r = JackReceiver(f"recv{os.getpid() % 10000}")
    yield r
    r.close()


@pytest.fixture
def jack_sender(jack_server):
    s = JackSender(f"send{os.getpid() % 10000}")
    yield s
    s.close()


class EngineProcess:
    """`python -m rnnrbm_live.cli ...` in a subprocess, its stderr read on a thread."""

    def __init__(self, args: list[str]):
        env = os.environ.copy()
        env.update(JACK_ENV)
        extra = env.pop("RNNRBM_TEST_PYTHONPATH", "")  # a test's sitecustomize, if any
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (extra, str(REPO), env.get("PYTHONPATH", "")) if p)
        self.proc = subprocess.Popen([sys.executable, "-m", "rnnrbm_live.cli", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env, cwd=str(REPO))
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            if self.proc.poll() is not None:
                self._reader.join(2)
                raise AssertionError(f"the engine exited ({self.proc.returncode}) before "
                                     f"{text!r}: " + "\n".join(self.lines[-15:]))
            time.sleep(0.02)
        raise AssertionError(f"no {text!r} within {timeout} s: " + "\n".join(self.lines))

    def stop(self, sig=None, timeout: float = 15.0) -> int:
        import signal as signal_module
        if self.proc.poll() is None:
            self.proc.send_signal(sig or signal_module.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("the engine did not exit after SIGTERM")
        self._reader.join(2)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def engine_process():
    started: list[EngineProcess] = []

    def start(*args: str) -> EngineProcess:
        p = EngineProcess(list(args))
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill()
