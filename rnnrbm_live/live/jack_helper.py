"""The JACK helper process: our JACK client, its ports and its process callback, alone in
a process of its own (started by jack_midi.py as `python -m rnnrbm_live.live.jack_helper`).

Why a process: the process callback is Python and needs its interpreter's lock (the GIL)
once a JACK period. In the engine's process the compute, sending, input and main threads
take that lock too, and a period that starts while one of them holds it comes late (an
xrun). Here the only Python threads are JACK's process thread and a main thread blocked
in a read (which holds no lock), so the callback never waits for the GIL.

The process callback, once a period (its rules are JACK's real-time rules, as far as
Python allows: no model work, no message building, no lock another thread holds, never
blocking):
1. reads the input port's events into the input ring as (frame, bytes), notes where this
   period's MIDI clock ticks fell (TickTracker), and wakes the engine's input reader with
   a non-blocking write to a pipe;
2. writes the urgent events (silencing note-offs, panic) at offset 0;
3. writes each queued timed event whose frame falls in this period at `frame - start`, in
   order; an event for a frame already past goes at offset 0 and is counted late; events
   of an epoch below the engine's floor are dropped unsent. An event keyed to a MIDI
   clock tick goes where that tick came in; while the clock is stopped it waits, and one
   keyed to NEXT_START (a frame computed while stopped) goes on the first frame tick
   after the next Start or Continue, with no round trip through the engine.
The rings and counters are shared memory (jack_shm.py).

A note-off that JACK took can still fail to reach the client after us: on a machine so
busy that a whole period's graph did not finish in time (jackd logs every client "not
finished"), that period's events were seen lost (a hanging chord after a transport Stop).
So when JACK reports an xrun, the next period writes again a note-off for every note
turned off in the last RESEND_S seconds that has not sounded since; a repeated note-off
is harmless to a note that is off.

Its lifetime is the engine's: it leaves when the engine says so (a "q" on its stdin) or
when its stdin reaches end of file, which is how it notices the engine gone, whatever way
it went (even killed -9). Either way it first writes a note-off for every note it sent a
note-on for and no note-off yet (it sees every byte it writes, so it knows), and only
then closes (writing them again after an xrun while it waits). All-notes-off (CC 123)
does not count as those note-offs: not every receiver honours it. Ctrl+C in the terminal
reaches it too: it ignores SIGINT (the engine silences through it); SIGTERM makes it
leave as above.

It prints one line on stdout: `ready RATE PERIOD`, or `error name-taken` / `error TEXT`
when the client cannot open.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import time
from array import array

from rnnrbm_live.live.jack_shm import (CALLBACK_ERROR, CYCLE_BASE, CYCLES, DROPPED, FLOOR,
                                       FRAME_TICKS, LATE, LOST, MAX_LATE, MAX_SHORT,
                                       NEXT_START, SHUT_DOWN, XRUNS, SharedBlock,
                                       pack, unpack, unwrapped)

LEAVE_TIMEOUT_S = 0.5
RESEND_S = 0.5          # after an xrun, note-offs this recent are written again
NEVER = -(1 << 62)      # the off_cycle of a note never turned off
SETTLE_S = 0.03         # leaving: how long an xrun's notice may still come after the silence
MAX_TICKS_PER_PERIOD = 64


class TickTracker:
    """Song position of the MIDI clock on our input, as the process callback reads it
    (Start: 0; Song Position: 6 per sixteenth; ticks count only while running, as the
    engine's follower counts them), and where this period's ticks fell."""

    def __init__(self, size: int = MAX_TICKS_PER_PERIOD):
        self.running = False
        self.next = 0                        # the position of the next tick
        self.run_start = 0                   # the position the last Start/Continue set off
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
            self.next = self.run_start = 0
            self.running = True
        elif status == 0xFB:
            self.run_start = self.next
            self.running = True
        elif status == 0xFC:
            self.running = False
        elif status == 0xF2 and len(data) == 3:
            self.next = 6 * (data[1] | data[2] << 7)

    def first_frame_tick(self, ticks_per_frame: int) -> int:
        """The position of the first frame tick of this run (NEXT_START's tick)."""
        n = max(1, ticks_per_frame)
        return -(-self.run_start // n) * n

    def offset_of(self, position: int) -> int:
        """The offset of tick `position` in this period; -1 if it came earlier (late),
        -2 if it has not come yet."""
        for j in range(self.count):
            if self.positions[j] == position:
                return self.offsets[j]
        return -1 if position < self.next else -2


class Helper:
    """One JACK client with a MIDI output and (optionally) a MIDI input, both ours."""

    def __init__(self, client, block: SharedBlock, want_input: bool, wake_fd: int):
        import jack
        self.jack = jack
        self.client = client
        self.block = block
        self.words = block.words
        self.out_port = client.midi_outports.register("out")
        self.in_port = client.midi_inports.register("in") if want_input else None
        self.clock = TickTracker()
        self.sounding = bytearray(16 * 128)  # (channel, note) we sent a note-on for
        self.off_cycle = array("q", [NEVER] * (16 * 128))  # ... the cycle of its last note-off
        self._xruns_seen = 0
        cycle_s = client.blocksize / client.samplerate
        self._resend_cycles = max(2, round(RESEND_S / cycle_s))
        self.settle_cycles = max(2, round(SETTLE_S / cycle_s))
        self.leaving = False                 # set by the main thread: silence, then go
        self.silenced_at = -1                # the cycle that wrote the last note-offs
        self._frame = client.frame_time      # the last period's start, unwrapped
        self._cycles = 0
        self._wake = wake_fd
        os.set_blocking(wake_fd, False)
        block[CYCLE_BASE] = self._frame
        client.set_process_callback(self._process)
        client.set_xrun_callback(self._xrun)
        client.set_shutdown_callback(self._shutdown)
        client.activate()

    # ------------------------------------------------------------ JACK's thread

    def _process(self, nframes: int) -> None:
        try:
            self._cycle(nframes)
        except Exception as e:  # noqa: BLE001 - JACK-Client would never call us again
            if not self.block[CALLBACK_ERROR]:
                self.block.set_text(f"{type(e).__name__}: {e}")
                self.block[CALLBACK_ERROR] = 1

    def _cycle(self, nframes: int) -> None:
        base = self._frame = unwrapped(self.client.last_frame_time, self._frame)
        self.block[CYCLE_BASE] = base
        self._cycles += 1
        self.block[CYCLES] = self._cycles
        if self.leaving:
            self._silence()
            return
        if self.in_port is not None:
            self._read_input(base)
        self._write_output(base, base + nframes)

    def _read_input(self, base: int) -> None:
        ring = self.block.input
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
            if ring.push(base + offset, pack(bytes(data))):
                got = True
            else:
                self.block[DROPPED] += 1     # the engine's reader stalled
        if got:
            try:
                os.write(self._wake, b"!")
            except (BlockingIOError, OSError):
                pass                         # the reader has a wake-up pending already

    def _write_output(self, base: int, end: int) -> None:
        port = self.out_port
        port.clear_buffer()
        if self.block[XRUNS] != self._xruns_seen:
            self._xruns_seen = self.block[XRUNS]
            self._resend_offs(port)
        urgent, timed, words = self.block.urgent, self.block.timed, self.words
        while (at := urgent.peek()) >= 0:
            self._write(port, 0, unpack(words[at]))
            urgent.advance()
        floor = self.block[FLOOR]
        last = 0
        while (at := timed.peek()) >= 0:
            frame, epoch, tick, data = words[at:at + 4]
            if epoch < floor:                # thrown away by the sending side
                timed.advance()
                continue
            if tick >= 0 or tick == NEXT_START:  # on a MIDI clock tick: where it came
                if not self.clock.running:   # stopped: no tick comes, none is late
                    break
                if tick == NEXT_START:
                    tick = self.clock.first_frame_tick(self.block[FRAME_TICKS])
                offset = self.clock.offset_of(tick)
                if offset == -2:
                    break
                frame = base + offset if offset >= 0 else base - 1
            elif frame >= end:
                break
            offset = frame - base
            if offset < 0:
                self._count_late(-offset)
                offset = 0
            if offset < last:
                offset = last                # JACK keeps a period's events in order
            self._write(port, offset, unpack(data))
            last = offset
            timed.advance()

    def _count_late(self, frames: int) -> None:
        block = self.block
        block[LATE] += 1
        if frames > block[MAX_LATE]:
            block[MAX_LATE] = frames

    def _write(self, port, offset: int, data: bytes) -> None:
        try:
            port.write_midi_event(offset, data)
        except self.jack.JackError:
            self.block[LOST] += 1            # the period's buffer is full: JACK's limit
            return
        kind = data[0] & 0xF0
        if kind == 0x90 or kind == 0x80:
            i = (data[0] & 15) * 128 + data[1]
            on = kind == 0x90 and data[2] > 0
            self.sounding[i] = on
            if not on:
                self.off_cycle[i] = self._cycles

    def _resend_offs(self, port) -> None:
        """After an xrun: the recent note-offs again (see the module doc)."""
        since, sounding, off_cycle = self._cycles - self._resend_cycles, self.sounding, \
            self.off_cycle
        for i in range(len(sounding)):
            if off_cycle[i] >= since and not sounding[i]:
                self._write(port, 0, bytes([0x80 | i >> 7, i & 127, 0]))

    def _silence(self) -> None:
        """Leaving: a note-off for every note still sounding, once, and again (with the
        recent ones) if an xrun is reported before leave() closes; nothing else."""
        port = self.out_port
        port.clear_buffer()
        xrun = self.block[XRUNS] != self._xruns_seen
        if self.silenced_at >= 0 and not xrun:
            return
        if xrun:
            self._xruns_seen = self.block[XRUNS]
            self._resend_offs(port)
        for i in range(len(self.sounding)):
            if self.sounding[i]:
                self._write(port, 0, bytes([0x80 | i >> 7, i & 127, 0]))
        self.silenced_at = self._cycles

    def _xrun(self, delayed_usecs: float) -> None:
        self.block[XRUNS] += 1

    def _shutdown(self, status, reason: str) -> None:
        self.block.set_text(reason or "the server shut down")
        self.block[SHUT_DOWN] = 1

    # ------------------------------------------------------------ the main thread

    def leave(self) -> None:
        """Silence what still sounds (written by the process callback), then close."""
        if self.block[SHUT_DOWN]:
            return                           # a dead server: closing would only wait
        self.leaving = True
        deadline = time.monotonic() + LEAVE_TIMEOUT_S
        period = self.client.blocksize / self.client.samplerate
        # A few more periods: the note-offs reach the clients after us in the graph, and
        # an xrun's notice (which comes a little after it) has time to arrive.
        while self.silenced_at < 0 or self._cycles < self.silenced_at + self.settle_cycles:
            if time.monotonic() > deadline or self.block[SHUT_DOWN]:
                break
            time.sleep(period)
        try:
            self.client.deactivate()
            self.client.close()
        except Exception:  # noqa: BLE001 - the server may be gone; nothing left to do
            pass


class _Leave(Exception):
    pass


def _on_sigterm(signum, frame) -> None:
    raise _Leave()


def _wait_for_engine() -> None:
    """Block until the engine says "q" or is gone (end of file on stdin)."""
    try:
        while True:
            got = os.read(0, 64)
            if not got or b"q" in got:
                return
    except (_Leave, OSError):
        return


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # ctrl+c is the engine's to handle
    name, want_input, fd, wake_fd = argv[0], argv[1] == "1", int(argv[2]), int(argv[3])
    block = SharedBlock(fd)
    import jack
    try:
        client = jack.Client(name, use_exact_name=True, no_start_server=True)
    except jack.JackOpenError as e:
        print("error name-taken" if e.status.name_not_unique else f"error {e}", flush=True)
        return 2
    helper = Helper(client, block, want_input, wake_fd)
    gc.freeze()       # what lives all run is never traversed again
    print(f"ready {client.samplerate} {client.blocksize}", flush=True)
    signal.signal(signal.SIGTERM, _on_sigterm)     # from here on: silence, then leave
    _wait_for_engine()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # leaving already
    helper.leave()
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(code)     # no interpreter teardown while libjack's threads may still run
