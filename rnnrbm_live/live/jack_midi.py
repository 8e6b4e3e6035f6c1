"""The JACK-native MIDI path, as the engine sees it: our JACK client lives in a helper
process (jack_helper.py: its ports and its process callback), and this side talks to it
through shared memory (jack_shm.py).

The helper process has no other Python work, so its process callback never waits for an
interpreter lock that the engine's threads hold (docs/timing.md). This side:
- starts the helper with the shared block and the input wake-up pipe, and waits for its
  ready line (or its one-line reason it could not open the client);
- queues output events (frame, epoch, MIDI clock tick, raw bytes) and urgent events in
  the shared rings, and raises the epoch floor below which queued events are dropped;
- reads the input ring and the helper's counters (late, lost, xruns, dropped input);
- keeps a second JACK client of its own, with no ports and no process callback (never
  activated, so JACK never waits for it), for what is asked rather than timed: JACK's
  frame clock (jack_frame_time reads the server's shared timer, no round trip), the port
  list, connecting ports, latency;
- notices the helper gone (its exit status) or the server gone (the helper's shutdown
  flag), and on close tells the helper to leave and waits for it.

Times are JACK frames: the helper writes an event for frame F at offset F - start of the
period holding F. JACK's 32-bit frame counter wraps every 24.8 hours at 48 kHz; frames
here are unwrapped to Python ints (the helper publishes each period's unwrapped start).
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

from rnnrbm_live.live.jack_shm import (CALLBACK_ERROR, CYCLE_BASE, DROPPED, FLOOR,
                                       FRAME_TICKS, LATE, LOST, MAX_LATE, SHUT_DOWN, WRAP,
                                       XRUNS, SharedBlock, pack, unpack)

READY_TIMEOUT_S = 20.0      # a fresh interpreter importing JACK-Client, on a busy machine
LEAVE_WAIT_S = 3.0


def available() -> bool:
    """Whether JACK-Client imports here (it needs libjack at import time)."""
    try:
        import jack  # noqa: F401  (PyPI JACK-Client)
        del jack
    except (ImportError, OSError):
        return False
    return True


class HelperOpenError(Exception):
    """The helper could not open our JACK client; `name_taken` if the name is in use."""

    def __init__(self, text: str, name_taken: bool = False):
        super().__init__(text)
        self.name_taken = name_taken


class JackMidi:
    """Our JACK client (in its helper process) and what the engine needs of it."""

    def __init__(self, client_name: str, want_input: bool = True):
        self.block = SharedBlock()
        self._wake_r, wake_w = os.pipe()
        self._closing = False
        try:
            self.helper = _start_helper(client_name, want_input, self.block.fd, wake_w)
        finally:
            os.close(wake_w)
        try:
            self.rate, self.period = _ready(self.helper)
            self.client = _query_client(client_name)
        except BaseException:
            self.close()
            raise
        self.name = client_name
        self.out_port = self.client.get_port_by_name(f"{client_name}:out")
        self.in_port = (self.client.get_port_by_name(f"{client_name}:in")
                        if want_input else None)

    # ------------------------------------------------------------ the helper's counters

    late_events = property(lambda self: self.block[LATE])
    lost_events = property(lambda self: self.block[LOST])
    max_late_frames = property(lambda self: self.block[MAX_LATE])
    xruns = property(lambda self: self.block[XRUNS])
    input_dropped = property(lambda self: self.block[DROPPED])

    @property
    def callback_error(self) -> str | None:
        return self.block.text() if self.block[CALLBACK_ERROR] else None

    @property
    def server_gone(self) -> str | None:
        """Why the server dropped us, once it has."""
        return (self.block.text() or "the server shut down") if self.block[SHUT_DOWN] else None

    @property
    def helper_gone(self) -> str | None:
        """How the helper process ended, if it has and we did not ask it to."""
        code = self.helper.poll()
        if code is None or self._closing:
            return None
        return f"killed by signal {-code}" if code < 0 else f"exit status {code}"

    @property
    def shut_down(self) -> str | None:
        """Why nothing we queue can reach JACK any more (server or helper gone)."""
        if (server := self.server_gone) is not None:
            return f"the jack server shut us down: {server}"
        if (helper := self.helper_gone) is not None:
            return f"the jack client's helper process ended ({helper})"
        return None

    # ------------------------------------------------------------ the sending side

    def follow_frames(self, ticks_per_frame: int) -> None:
        """The grid's frames fall on every `ticks_per_frame`-th MIDI clock tick (for events
        queued for jack_shm.NEXT_START)."""
        self.block[FRAME_TICKS] = ticks_per_frame

    def send_at(self, frame: int, epoch: int, data: bytes, tick: int = -1) -> bool:
        """Queue `data` for JACK frame `frame`, or (tick >= 0) for the MIDI clock tick at
        song position `tick` on our input, or (tick NEXT_START) for the first frame tick
        after the next Start or Continue (queued in order); False if full."""
        return self.block.timed.push(frame, epoch, tick, pack(data))

    def send_now(self, data: bytes) -> bool:
        """Queue `data` for the start of the next period, before any timed event."""
        return self.block.urgent.push(pack(data))

    def drop_before(self, epoch: int) -> None:
        """Timed events of epochs below `epoch` are dropped, unless already written."""
        if epoch > self.block[FLOOR]:
            self.block[FLOOR] = epoch

    def drop_all(self) -> None:
        self.block[FLOOR] = 1 << 62

    # ------------------------------------------------------------ input

    def skip_input(self) -> None:
        """What came before now is not ours to read."""
        self.block.input.skip_all()

    def pop_input(self) -> tuple[int, bytes] | None:
        """The oldest input event as (frame, message bytes); None when there is none."""
        event = self.block.input.pop()
        return None if event is None else (event[0], unpack(event[1]))

    def wait_input(self, timeout: float) -> None:
        """Block until the helper has read input (or `timeout` seconds pass)."""
        ready, _, _ = select.select([self._wake_r], [], [], timeout)
        if ready:
            os.read(self._wake_r, 4096)

    # ------------------------------------------------------------ any thread

    def frame_now(self) -> int:
        """JACK's estimate of the current frame, unwrapped next to the latest period, and
        never before that period's start: the estimate can lag the periods the callback
        has already run (seen on the dummy backend), and input read in a period must not
        look as if it came from the future."""
        base = self.block[CYCLE_BASE]
        delta = (self.client.frame_time - base) % WRAP
        if delta >= WRAP // 2:
            delta = 0
        return base + delta

    def flush(self, timeout: float = 0.5) -> bool:
        """Wait until JACK has written every urgent event (the final note-offs)."""
        deadline = time.monotonic() + timeout
        while len(self.block.urgent) and self.shut_down is None:
            if time.monotonic() > deadline:
                return False
            time.sleep(self.period / self.rate)
        return not len(self.block.urgent)

    def close(self) -> None:
        """Tell the helper to leave (it silences what still sounds), wait for it, and
        close our query client."""
        self._closing = True
        helper = self.helper if hasattr(self, "helper") else None
        if helper is not None:
            _stop_helper(helper)
        client = getattr(self, "client", None)
        if client is not None and self.server_gone is None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - the server may be gone; nothing left to do
                pass
        os.close(self._wake_r)
        self.block.close()


def _start_helper(name: str, want_input: bool, fd: int, wake_w: int) -> subprocess.Popen:
    """`python -m rnnrbm_live.live.jack_helper`, importing this copy of the package. Its
    stderr is ours (libjack's lines go where ours do: hidden unless -v)."""
    env = os.environ.copy()
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [sys.executable, "-m", "rnnrbm_live.live.jack_helper", name,
         "1" if want_input else "0", str(fd), str(wake_w)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=(fd, wake_w), env=env)


def _ready(helper: subprocess.Popen) -> tuple[int, int]:
    """The helper's ready line: (sample rate, period); HelperOpenError if it has none."""
    ready, _, _ = select.select([helper.stdout], [], [], READY_TIMEOUT_S)
    line = helper.stdout.readline().decode(errors="replace").strip() if ready else ""
    words = line.split()
    if words[:1] == ["ready"] and len(words) == 3:
        return int(words[1]), int(words[2])
    if line == "error name-taken":
        raise HelperOpenError(line, name_taken=True)
    if words[:1] == ["error"]:
        raise HelperOpenError(line[len("error "):])
    code = helper.poll()
    raise HelperOpenError("its helper process did not start (" + (
        f"exit status {code}" if code is not None else f"no answer in {READY_TIMEOUT_S:g} s")
        + ")")


def _query_client(name: str):
    """A client for questions (frame clock, ports, connections, latency): no ports, no
    process callback, never activated."""
    import jack
    return jack.Client(f"{name}-query", no_start_server=True)


def _stop_helper(helper: subprocess.Popen) -> None:
    try:
        helper.stdin.write(b"q")
        helper.stdin.close()
    except OSError:
        pass                             # gone already
    try:
        helper.wait(LEAVE_WAIT_S)
    except subprocess.TimeoutExpired:
        helper.kill()
        helper.wait()
    helper.stdout.close()
