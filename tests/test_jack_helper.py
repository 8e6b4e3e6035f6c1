"""The JACK helper process (rnnrbm_live/live/jack_helper.py) and the shared rings between
it and the engine (jack_shm.py).

The rings: a long random stream of publishes and reads loses and reorders nothing, across
wrap-around and a full ring (hypothesis, one process), and the same holds with the
producer in another process, as the engine and the helper are; a slot whose index is
visible before its contents (a weakly ordered CPU) is not taken until it is whole.

The helper's lifetime, end to end on a real JACK server: killed -9, the engine leaves no
note sounding (an independent receiver sees a note-off for every note-on) and no port
behind; the helper killed (or terminated: then it silences its notes first), the engine
ends with one line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from conftest import jack_ports
from test_jack_native import _client_name, _e2e, _hanging, _native
from test_live_jack import _wait

from rnnrbm_live.live.jack_shm import WRAP, SharedBlock, pack, stamp, unpack, unwrapped

REPO = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- rings


@settings(max_examples=60, deadline=None)
@given(size=st.sampled_from([1, 2, 4, 8]),
       bursts=st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), min_size=1,
                       max_size=200),
       salt=st.integers(-(1 << 40), 1 << 40))
def test_a_long_random_stream_loses_and_reorders_nothing(size, bursts, salt):
    ring = SharedBlock(ring_size=size).timed
    sent, model, received = 0, deque(), []
    full_seen = 0
    for pushes, pops in bursts:
        for _ in range(pushes):
            slot = (sent, salt - sent, -1 if sent % 3 else sent, pack(bytes([0x90, sent % 128])))
            ok = ring.push(*slot)
            assert ok == (len(model) < size), "refused with room, or took one when full"
            if ok:
                model.append(slot)
                sent += 1
            else:
                full_seen += 1
            assert len(ring) == len(model)
        for _ in range(pops):
            got = ring.pop()
            assert got == (model.popleft() if model else None)
            if got is not None:
                received.append(got)
    while (got := ring.pop()) is not None:
        received.append(got)
        model.popleft()
    assert not model
    assert [slot[0] for slot in received] == list(range(sent))


@settings(max_examples=500, deadline=None)
@given(start=st.integers(0, 3 * WRAP), steps=st.lists(st.integers(-4096, 1 << 20), max_size=200))
def test_the_frame_counter_unwraps_across_32_bits_and_small_steps_back(start, steps):
    """The helper's frame counter: JACK's 32-bit count, unwrapped. A period start a little
    behind the last count is not a wrap: the helper reads JACK's frame estimate before its
    first period, and on a busy machine that period can start before the estimate (a false
    wrap put every recorded onset 2^32 frames, 24.8 hours, late)."""
    frame = start
    for step in steps:
        target = frame + step
        frame = unwrapped(target % WRAP, frame)
        assert frame == target


def test_full_and_wrapping_many_times_over():
    ring = SharedBlock(ring_size=4).input
    for lap in range(100):
        assert all(ring.push(4 * lap + k, pack(b"\xf8")) for k in range(4))
        assert not ring.push(-1, pack(b"\xf8"))
        assert [ring.pop()[0] for _ in range(4)] == [4 * lap + k for k in range(4)]
        assert ring.pop() is None


def test_a_slot_seen_before_its_contents_is_not_taken_until_whole():
    # What a weakly ordered CPU may show the reader: the write index moved, the slot's
    # words (or its stamp) still those of its last lap.
    ring = SharedBlock(ring_size=2).urgent
    assert ring.push(pack(b"\x90<Z")) and ring.pop() == (pack(b"\x90<Z"),)
    assert ring.push(pack(b"\x90=Z")) and ring.pop() == (pack(b"\x90=Z"),)
    at = ring.slots                      # slot 0, its third lap
    words = ring.words
    words[ring.w_at] = 3                 # the index first ...
    assert ring.peek() == -1             # ... its old contents and stamp: not taken
    words[at] = pack(b"\x80<\x00")
    assert ring.peek() == -1             # new contents, stale stamp: not yet
    words[at + 1] = stamp(3, [pack(b"\x80<\x00")])
    assert ring.pop() == (pack(b"\x80<\x00"),) and unpack(pack(b"\x80<\x00")) == b"\x80<\x00"


PRODUCER = """
import os, sys, time
from rnnrbm_live.live.jack_shm import SharedBlock
block = SharedBlock(int(sys.argv[1]), ring_size=16)
ring = block.timed
for i in range(int(sys.argv[2])):
    while not ring.push(i, -i, i * 7 - 3, (i * 2654435761) & 0xFFFFFF):
        time.sleep(0)
"""


def test_a_producer_in_another_process_loses_and_reorders_nothing():
    n = 20000
    block = SharedBlock(ring_size=16)
    producer = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, str(block.fd), str(n)], pass_fds=(block.fd,),
        env={**os.environ, "PYTHONPATH": str(REPO)})
    ring, got = block.timed, []
    deadline = time.monotonic() + 120
    try:
        while len(got) < n and time.monotonic() < deadline:
            slot = ring.pop()
            if slot is None:
                time.sleep(0)
            else:
                got.append(slot)
        assert producer.wait(10) == 0
    finally:
        producer.kill()
    assert got == [(i, -i, i * 7 - 3, (i * 2654435761) & 0xFFFFFF) for i in range(n)]
    assert ring.pop() is None


# ----------------------------------------------------------------------------- lifetime


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _helper_of(engine) -> int:
    helpers = [pid for pid in _children(engine.proc.pid)
               if b"jack_helper" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(helpers) == 1, f"helper processes: {helpers}"
    return helpers[0]


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"     # a zombie: it has exited


@_e2e
def test_the_helper_leaves_and_silences_when_the_engine_is_killed(
        jack_server, receiver, engine_process, live_model):
    p = _native(engine_process, live_model, "--mode", "generate", "--bpm", "240",
                "--frames-per-beat", "4", "--seed", "3", "--out-port", receiver.name)
    p.wait_for("ctrl+c stops")
    helper = _helper_of(p)
    _wait(lambda: len({n for _, k, n in receiver.note_events() if k == "on"}) >= 3, 20,
          "notes playing")
    _wait(lambda: _hanging(receiver.note_events()), 10, "a note sounding")
    p.proc.kill()                           # -9: the engine sends nothing more
    p.proc.wait(5)
    _wait(lambda: _gone(helper), 10, "the helper to leave")
    time.sleep(0.2)
    events = receiver.note_events()
    assert not _hanging(events), "a note still sounds after the engine was killed"
    assert events[-1][1] == "off"
    assert not [port for port in jack_ports() if port.startswith(_client_name() + ":")]


@_e2e
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_helper_killed_ends_the_engine_with_one_line(
        sig, jack_server, receiver, engine_process, live_model):
    p = _native(engine_process, live_model, "--mode", "generate", "--bpm", "200",
                "--out-port", receiver.name)
    p.wait_for("ctrl+c stops")
    _wait(receiver.note_events, 10, "notes")
    os.kill(_helper_of(p), sig)
    assert p.proc.wait(15) == 2
    p._reader.join(2)
    errors = [line for line in p.lines if "error" in line]
    assert len(errors) == 1 and "helper process" in errors[0], p.lines[-3:]
    assert not [line for line in p.lines if "Traceback" in line]
    if sig == signal.SIGTERM:   # it silences what it sounded before it goes
        assert not _hanging(receiver.note_events())


# ----------------------------------------------------------------------------- xruns


class _Staller:
    """A JACK client that, when asked, sleeps in its process callback for a few periods:
    a real xrun, reported to every client."""

    def __init__(self, name: str):
        import jack
        self.left = 0
        self.client = jack.Client(name, no_start_server=True)
        self.client.set_process_callback(self._process)
        self.client.activate()

    def _process(self, frames):
        if self.left > 0:
            self.left -= 1
            time.sleep(0.004)

    def close(self):
        self.client.deactivate()
        self.client.close()


def _midi(name: str):
    from rnnrbm_live.live.jack_midi import JackMidi
    return JackMidi(name, want_input=False)


@_e2e
def test_after_an_xrun_the_recent_note_offs_go_out_again(jack_server, receiver):
    # A note-off written in a period whose graph did not finish in time can be lost
    # downstream (seen as a chord left hanging after a transport Stop): after an xrun the
    # helper writes the recent note-offs again.
    midi = _midi(_client_name())
    staller = _Staller(f"stall{os.getpid() % 10000}")
    try:
        midi.client.connect(f"{midi.name}:out", receiver.name)
        time.sleep(0.2)
        for note in range(40, 50):
            midi.send_now(bytes([0x90, note, 90]))
        time.sleep(0.05)
        for note in range(40, 50):
            midi.send_now(bytes([0x80, note, 0]))
        midi.send_now(bytes([0x90, 60, 90]))      # one note still sounds: left alone
        time.sleep(0.05)
        xruns = midi.xruns
        staller.left = 3
        _wait(lambda: midi.xruns > xruns, 5, "an xrun")
        time.sleep(0.2)
        offs = [n for _, k, n in receiver.note_events() if k == "off"]
        assert all(offs.count(n) >= 2 for n in range(40, 50)), offs
        assert 60 not in offs, [e for e in receiver.note_events() if e[2] in (40, 60)]
    finally:
        staller.close()
        midi.close()
    assert not _hanging(receiver.note_events())


@_e2e
def test_all_notes_off_does_not_stand_for_the_note_offs_when_the_helper_leaves(
        jack_server, receiver):
    # Not every receiver honours CC 123: a note it covered still gets its note-off.
    midi = _midi(_client_name())
    try:
        midi.client.connect(f"{midi.name}:out", receiver.name)
        time.sleep(0.2)
        midi.send_now(bytes([0x90, 64, 90]))
        midi.send_now(bytes([0xB0, 123, 0]))
        time.sleep(0.1)
    finally:
        midi.close()
    time.sleep(0.1)
    assert receiver.note_events()[-1] == (receiver.note_events()[-1][0], "off", 64)
