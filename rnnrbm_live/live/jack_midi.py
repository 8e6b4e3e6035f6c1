"""The JACK-native MIDI path: one JACK client, its ports, and its process callback.

The process callback runs once a JACK period on JACK's own thread. It reads the input
port's events with their own sample offsets into a ring, and writes each queued output
event at its exact sample offset in the period it falls in. Its rules (JACK's real-time
rules, as far as Python allows):
- no model work, no message building: the sending side queues raw MIDI bytes ahead of
  time, each with its frame; the input side's messages are parsed elsewhere;
- no locks that another thread of ours holds and no waiting: every queue is a
  single-producer single-consumer ring of fixed size, allocated once, whose two indices
  are each written by one side only (one attribute store each, atomic under CPython);
- it wakes the input reader with a non-blocking write to a pipe, never a lock.
Python itself still needs the GIL to run the callback: the engine keeps its hold short
(sys.setswitchinterval) and the onnxruntime step releases it; docs/timing.md says what
that costs.

Times are JACK frames: an event at frame F is written at offset F - last_frame_time of
the period holding F, as every JACK client stamps events (last_frame_time + offset).
JACK's 32-bit frame counter wraps every 24.8 hours at 48 kHz; frames here are unwrapped
to Python ints, so they never do.
"""

from __future__ import annotations

import os
from array import array

WRAP = 1 << 32
RING_SIZE = 4096            # events; a power of two. Several seconds of dense music.
MAX_SHORT = 3               # bytes of the longest message the input keeps (no sysex)
NOW = -1                    # the frame of an urgent event: the next period's first sample
MAX_TICKS_PER_PERIOD = 64


def available() -> bool:
    """Whether JACK-Client imports here (it needs libjack at import time)."""
    try:
        import jack  # noqa: F401  (PyPI JACK-Client)
        del jack
    except (ImportError, OSError):
        return False
    return True


class Ring:
    """Fixed-size single-producer single-consumer queue of (frame, epoch, bytes)."""

    def __init__(self, size: int = RING_SIZE):
        if size & (size - 1):
            raise ValueError(f"ring size must be a power of two, got {size}")
        self.mask = size - 1
        self.size = size
        self.frames = array("q", bytes(8 * size))
        self.epochs = array("q", bytes(8 * size))
        self.ticks = array("q", bytes(8 * size))    # MIDI clock position, or NO_TICK
        self.data: list[bytes] = [b""] * size
        self.w = 0      # written by the producer only
        self.r = 0      # written by the consumer only

    def __len__(self) -> int:
        return self.w - self.r

    def push(self, frame: int, epoch: int, data: bytes, tick: int = -1) -> bool:
        """Queue one event, for `frame`, or (tick >= 0) for the MIDI clock tick at song
        position `tick`; False (nothing queued) when the ring is full."""
        w = self.w
        if w - self.r > self.mask:
            return False
        i = w & self.mask
        self.frames[i] = frame
        self.epochs[i] = epoch
        self.ticks[i] = tick
        self.data[i] = data
        self.w = w + 1  # last: the consumer sees the slot only once it is whole
        return True


class InputRing:
    """The input's events, written by the process callback: frames and up to three bytes
    each, in storage allocated once."""

    def __init__(self, size: int = RING_SIZE):
        self.mask = size - 1
        self.frames = array("q", bytes(8 * size))
        self.lengths = bytearray(size)
        self.bytes = bytearray(MAX_SHORT * size)
        self.w = 0
        self.r = 0
        self.dropped = 0    # events lost to a full ring (the reader stalled)

    def pop(self) -> tuple[int, bytes] | None:
        """The oldest event as (frame, message bytes); None when empty. Reader side."""
        r = self.r
        if r == self.w:
            return None
        i = r & self.mask
        at = MAX_SHORT * i
        event = (self.frames[i], bytes(self.bytes[at:at + self.lengths[i]]))
        self.r = r + 1
        return event


class TickTracker:
    """Song position of the MIDI clock on our input, as the process callback reads it
    (Start: 0; Song Position: 6 per sixteenth; ticks count only while running, as the
    engine's follower counts them), and where this period's ticks fell."""

    def __init__(self, size: int = MAX_TICKS_PER_PERIOD):
        self.running = False
        self.next = 0                        # the position of the next tick
        self.positions = array("q", bytes(8 * size))
        self.offsets = array("q", bytes(8 * size))
        self.count = 0                       # ticks in this period

    def read(self, offset: int, status: int, data: bytes = b"") -> None:
        """One system message at `offset`: its status byte (and, for a Song Position
        Pointer, its three bytes)."""
        if status == 0xF8:
            if self.running:
                n = self.count
                if n < len(self.positions):
                    self.positions[n] = self.next
                    self.offsets[n] = offset
                    self.count = n + 1
                self.next += 1
        elif status == 0xFA:
            self.next = 0
            self.running = True
        elif status == 0xFB:
            self.running = True
        elif status == 0xFC:
            self.running = False
        elif status == 0xF2 and len(data) == 3:
            self.next = 6 * (data[1] | data[2] << 7)

    def offset_of(self, position: int) -> int:
        """The offset of tick `position` in this period; -1 if it came earlier (late),
        -2 if it has not come yet."""
        for j in range(self.count):
            if self.positions[j] == position:
                return self.offsets[j]
        return -1 if position < self.next else -2


class JackMidi:
    """One JACK client with a MIDI output and (optionally) a MIDI input, both ours."""

    def __init__(self, client_name: str, want_input: bool = True):
        import jack
        self.jack = jack
        self.client = jack.Client(client_name, use_exact_name=True, no_start_server=True)
        self.rate = self.client.samplerate
        self.period = self.client.blocksize
        self.out_port = self.client.midi_outports.register("out")
        self.in_port = self.client.midi_inports.register("in") if want_input else None
        self.timed = Ring()
        self.urgent = Ring()
        self.input = InputRing()
        self.clock = TickTracker()
        self.floor = 0              # timed events of older epochs are dropped unsent
        self.late_events = 0        # timed events written after their frame had passed
        self.lost_events = 0        # events JACK's period buffer had no room for
        self.max_late_frames = 0
        self.cycles = 0
        self.xruns = 0
        self.shut_down: str | None = None   # why the server dropped us, once it has
        self.callback_error: str | None = None  # a bug in the callback, for the watch
        self._hi = 0                        # the unwrapped frame counter's upper part
        self._raw = self.client.frame_time
        self.cycle_base = self._raw         # last_frame_time of the latest period, unwrapped
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self.client.set_process_callback(self._process)
        self.client.set_xrun_callback(self._xrun)
        self.client.set_shutdown_callback(self._shutdown)
        self.client.activate()

    # ------------------------------------------------------------ JACK's thread

    def _process(self, nframes: int) -> None:
        try:
            self._cycle(nframes)
        except Exception as e:  # noqa: BLE001 - JACK-Client would never call us again
            self.callback_error = f"{type(e).__name__}: {e}"

    def _cycle(self, nframes: int) -> None:
        raw = self.client.last_frame_time
        if raw < self._raw:
            self._hi += WRAP
        self._raw = raw
        base = self._hi + raw
        self.cycle_base = base
        self.cycles += 1
        if self.in_port is not None:
            self._read_input(base)
        self._write_output(base, base + nframes)

    def _read_input(self, base: int) -> None:
        ring = self.input
        clock = self.clock
        clock.count = 0
        got = False
        for offset, data in self.in_port.incoming_midi_events():
            n = len(data)
            status = ord(data[0])            # a cffi buffer's items are bytes
            if n > MAX_SHORT or status == 0xF0:
                continue                     # sysex: not ours to read
            if status >= 0xF2:
                clock.read(offset, status, bytes(data) if status == 0xF2 else b"")
            w = ring.w
            if w - ring.r > ring.mask:
                ring.dropped += 1
                continue
            i = w & ring.mask
            ring.frames[i] = base + offset
            ring.lengths[i] = n
            ring.bytes[MAX_SHORT * i:MAX_SHORT * i + n] = data
            ring.w = w + 1
            got = True
        if got:
            try:
                os.write(self._wake_w, b"!")
            except (BlockingIOError, OSError):
                pass                         # the reader has a wake-up pending already

    def _write_output(self, base: int, end: int) -> None:
        port = self.out_port
        port.clear_buffer()
        urgent = self.urgent
        r = urgent.r
        while r != urgent.w:
            self._write(port, 0, urgent.data[r & urgent.mask])
            r += 1
        urgent.r = r
        timed = self.timed
        floor = self.floor
        last = 0
        r = timed.r
        while r != timed.w:
            i = r & timed.mask
            if timed.epochs[i] < floor:      # thrown away by the sending side
                r += 1
                continue
            tick = timed.ticks[i]
            if tick >= 0:                    # on a MIDI clock tick: where it came
                if not self.clock.running:   # stopped: no tick comes, none is late
                    break
                offset = self.clock.offset_of(tick)
                if offset == -2:
                    break
                frame = base + offset if offset >= 0 else base - 1
            else:
                frame = timed.frames[i]
                if frame >= end:
                    break
                offset = frame - base
            if offset < 0:
                self.late_events += 1
                if -offset > self.max_late_frames:
                    self.max_late_frames = -offset
                offset = 0
            if offset < last:
                offset = last                # JACK keeps a period's events in order
            self._write(port, offset, timed.data[i])
            last = offset
            r += 1
        timed.r = r

    def _write(self, port, offset: int, data: bytes) -> None:
        try:
            port.write_midi_event(offset, data)
        except self.jack.JackError:
            self.lost_events += 1            # the period's buffer is full: JACK's limit

    def _xrun(self, delayed_usecs: float) -> None:
        self.xruns += 1

    def _shutdown(self, status, reason: str) -> None:
        self.shut_down = reason or "the server shut down"

    # ------------------------------------------------------------ the sending side

    def send_at(self, frame: int, epoch: int, data: bytes, tick: int = -1) -> bool:
        """Queue `data` for JACK frame `frame`, or (tick >= 0) for the MIDI clock tick at
        song position `tick` on our input (queued in order); False if full."""
        return self.timed.push(frame, epoch, data, tick)

    def send_now(self, data: bytes) -> bool:
        """Queue `data` for the start of the next period, before any timed event."""
        return self.urgent.push(NOW, 0, data)

    def drop_before(self, epoch: int) -> None:
        """Timed events of epochs below `epoch` are dropped, unless already written."""
        if epoch > self.floor:
            self.floor = epoch

    def drop_all(self) -> None:
        self.floor = 1 << 62

    # ------------------------------------------------------------ any thread

    def frame_now(self) -> int:
        """JACK's estimate of the current frame, unwrapped next to the latest period, and
        never before that period's start: the estimate can lag the periods the callback
        has already run (seen on the dummy backend), and input read in a period must not
        look as if it came from the future."""
        base = self.cycle_base
        delta = (self.client.frame_time - base) % WRAP
        if delta >= WRAP // 2:
            delta = 0
        return base + delta

    def wait_input(self, timeout: float) -> None:
        """Block until the callback has read input (or `timeout` seconds pass)."""
        import select
        ready, _, _ = select.select([self._wake_r], [], [], timeout)
        if ready:
            os.read(self._wake_r, 4096)

    def flush(self, timeout: float = 0.5) -> bool:
        """Wait until JACK has written every urgent event (the final note-offs)."""
        import time
        deadline = time.monotonic() + timeout
        while len(self.urgent) and self.shut_down is None:
            if time.monotonic() > deadline:
                return False
            time.sleep(self.period / self.rate)
        return not len(self.urgent)

    def close(self) -> None:
        try:
            self.client.deactivate()
            self.client.close()
        except Exception:  # noqa: BLE001 - the server may be gone; nothing left to do
            pass
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
