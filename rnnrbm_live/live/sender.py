"""The sending side: send each frame's messages at the frame's time, and nothing else.

The compute side publishes `Slot`s (frame index, note-offs, note-ons, extra messages),
built ahead of time, and urgent commands (silence everything now; one note off now). The
sender owns the truth about what sounds on the output (`sounding`, one byte per MIDI
note), so every way out can turn off exactly the notes that sound.

Two guards keep the output right even when the compute side's look-ahead is stale:
a note-off is sent only for a note that sounds, and (accompany mode) a note-on is not
sent for a note the player holds at that moment (`held`, written by the input thread).
When the compute side takes a note back (`note_off_now(note, through_frame)`: the player
pressed it), the note-ons of that note in slots it already published for frames up to
`through_frame` are dropped too: the player may have released it again before those
slots fall due, and the model side no longer believes the note sounds there.

Slots carry an epoch. When the compute side throws its look-ahead away (the player
interrupted an answer, a panic, the DAW stopped) it raises the epoch and sends
`silence(epoch)`; from then on slots of older epochs are dropped unsent.

A sender that can place a slot on the DAW's next Start by itself (`can_prearm`: the
JACK-native path on a MIDI clock) takes a slot for frame PREARMED, computed while the DAW
is stopped: it goes to the port at once and sounds on the first frame tick of the next
run, with no round trip through the compute side when Start comes.

Timing: `due(frame)` is the frame's grid time plus the latency offset. On the internal
grid that is known in advance; on a MIDI clock grid it is the arrival time of the frame's
tick (or the predicted time, for a negative offset), so frames fall on the DAW's ticks.
"""

from __future__ import annotations

import os
import threading
from array import array
from collections import deque
from dataclasses import dataclass
from typing import Callable

import mido

from rnnrbm_live.live.notes import NoteMessages
from rnnrbm_live.live.recording import MessageLog

LATE_S = 0.002  # a slot sent more than this after its due time counts as late
# A resync's note-offs go out a few at a time: a JACK MIDI buffer holds only a few dozen
# events a period (256 bytes at 64 frames), and what does not fit is lost.
RESYNC_BATCH = 8
RESYNC_GAP_S = 0.002
PREARMED = -1   # a slot's frame: the first frame of the DAW's next run (can_prearm)
NONE_TAKEN = -(1 << 62)   # taken_back: no note-on of this note is dropped


@dataclass(slots=True, frozen=True)
class Slot:
    frame: int
    epoch: int
    offs: tuple[mido.Message, ...] = ()
    ons: tuple[mido.Message, ...] = ()
    extra: tuple[mido.Message, ...] = ()


class PortFailed(Exception):
    """Sending to the output port raised: the port (or the MIDI server) is gone."""


class Sender:
    # How long before its due time a slot is handed to the port. 0 here: this sender sends
    # at the due time. A port that places events itself (jack_sender.py) takes them early.
    ahead_s = 0.0
    can_prearm = False   # whether slots for frame PREARMED are taken

    def __init__(self, port, notes: NoteMessages, grid, clock, latency_s: float = 0.0,
                 held: bytearray | None = None, record: bool = False,
                 port_name: str = "the output port"):
        self.port = port
        self.notes = notes
        self.grid = grid
        self.clock = clock
        self.latency_s = float(latency_s)
        self.held = held                    # accompany mode: the player's held notes
        self.port_name = port_name
        self.slots: deque[Slot] = deque()
        self.urgent: deque[tuple] = deque()
        self.wake = threading.Event()
        self.epoch = 0                      # the epoch whose slots are sent
        self.sounding = bytearray(128)
        # note -> the last frame whose note-on of it is dropped
        self.taken_back = array("q", [NONE_TAKEN] * 128)
        self.resync_left: deque[int] = deque()   # note-offs of a resync still to send
        self.resync_at = 0.0
        self.log = MessageLog() if record else None
        self.sent_slots = 0
        self.late_slots = 0
        self.max_late_s = 0.0
        self.lateness = array("d")          # seconds after its due time, per slot sent
        self.lateness_frames = array("q")   # ... and the slot's frame
        self.messages_sent = 0

    # ------------------------------------------------------------- compute side calls

    def publish(self, slot: Slot) -> None:
        self.slots.append(slot)
        self.wake.set()

    def silence(self, epoch: int) -> None:
        """Turn off everything now, and drop every slot older than `epoch`."""
        self.urgent.append(("silence", epoch))
        self.wake.set()

    def note_off_now(self, note: int, through_frame: int | None = None) -> None:
        """Turn `note` off now; with `through_frame`, also drop its note-ons from the slots
        already published for frames up to that one."""
        self.urgent.append(("off", (note, through_frame)))
        self.wake.set()

    def resync(self) -> None:
        """A receiver connected from outside: send a note-off for every note that does
        not sound, so it holds nothing the engine believes is off."""
        self.urgent.append(("resync", None))
        self.wake.set()

    def send_now(self, message: mido.Message) -> None:
        self.urgent.append(("message", message))
        self.wake.set()

    # ------------------------------------------------------------- sending loop

    def due(self, frame: int) -> float | None:
        """When the slot for `frame` is to be sent; None while that is not yet known."""
        grid = self.grid
        if grid.exact:
            return grid.time_of(frame) + self.latency_s
        arrived = grid.arrived_time(frame)
        if arrived is not None:
            return arrived + self.latency_s
        if self.latency_s < 0:
            predicted = grid.time_of(frame)
            if predicted is not None:
                return predicted + self.latency_s
        return None

    def poll(self, now: float) -> float | None:
        """Send the urgent commands and every slot due by `now`; return the next due time
        (None: nothing is scheduled, or the next slot waits for its clock tick)."""
        if self.resync_left and now >= self.resync_at:
            self._resync_some(now)
        nxt = self._poll_slots(now)
        if self.resync_left:
            return self.resync_at if nxt is None else min(nxt, self.resync_at)
        return nxt

    def _resync_some(self, now: float) -> None:
        left = self.resync_left
        for _ in range(min(RESYNC_BATCH, len(left))):
            note = left.popleft()
            if not self.sounding[note]:
                self._send(self.notes.off(note))
        self.resync_at = now + RESYNC_GAP_S

    def _poll_slots(self, now: float) -> float | None:
        slots = self.slots
        while True:
            if self.urgent:
                self._run_urgent()
            if not slots:
                return None
            slot = slots[0]
            if slot.epoch < self.epoch:
                slots.popleft()
                continue
            if slot.epoch > self.epoch:
                # Its silence command was queued first; run it before anything else.
                if not self.urgent:
                    self.epoch = slot.epoch
                continue
            due = self.due(slot.frame)
            if due is None:
                return None
            if due - self.ahead_s > now:
                return due - self.ahead_s
            slots.popleft()
            self._send_slot(slot, due)

    def _send_slot(self, slot: Slot, due: float) -> None:
        started = self.clock.now()
        send = self._send
        sounding = self.sounding
        held = self.held
        taken_back = self.taken_back
        for msg in slot.offs:
            if sounding[msg.note]:
                send(msg, due)
                sounding[msg.note] = 0
        for msg in slot.ons:
            note = msg.note
            if sounding[note] or (held is not None and held[note]) \
                    or taken_back[note] >= slot.frame:
                continue
            send(msg, due)
            sounding[note] = 1
        for msg in slot.extra:
            send(msg, due)
        self._count_lateness(slot.frame, started - due)

    def _count_lateness(self, frame: int, late: float) -> None:
        self.lateness.append(late)
        self.lateness_frames.append(frame)
        self.sent_slots += 1
        if late > LATE_S:
            self.late_slots += 1
        if late > self.max_late_s:
            self.max_late_s = late

    def _run_urgent(self) -> None:
        urgent = self.urgent
        while urgent:
            kind, value = urgent.popleft()
            if kind == "silence":
                self._drop_queued(value)
                self._all_off()
                self.epoch = max(self.epoch, value)
                # A new epoch may count frames afresh (a DAW's Start): forget the old ones.
                self.taken_back = array("q", [NONE_TAKEN] * 128)
            elif kind == "off":
                note, through = value
                if through is not None:
                    self.taken_back[note] = max(self.taken_back[note], through)
                if self.sounding[note]:
                    self._send(self.notes.off(note))
                    self.sounding[note] = 0
            elif kind == "resync":
                self.resync_left = deque(n for n in range(128) if not self.sounding[n])
                self.resync_at = self.clock.now()
            else:
                self._send(value)

    def _all_off(self) -> None:
        sounding = self.sounding
        for note in range(128):
            if sounding[note]:
                self._send(self.notes.off(note))
                sounding[note] = 0

    def _drop_queued(self, epoch: int) -> None:
        """Forget what the port holds of epochs before `epoch` (a port that is handed
        events ahead of time); this sender hands nothing over early."""

    def _write(self, msg: mido.Message, due: float | None) -> float:
        """Hand `msg` to the port, now (due None: an urgent one) or for `due`; return the
        time it goes out. Here: sent now."""
        self.port.send(msg)
        return self.clock.now()

    def _send(self, msg: mido.Message, due: float | None = None) -> None:
        try:
            t = self._write(msg, due)
        except Exception as e:  # the backend's own error types differ; all mean the same
            raise PortFailed(f"{self.port_name}: sending failed ({type(e).__name__}: "
                             f"{str(e).strip().lower() or 'no detail'})") from e
        self.messages_sent += 1
        if self.log is not None:
            self.log.append(t, msg)

    # ------------------------------------------------------------- every way out

    def panic(self) -> int:
        """Note-off for every sounding note, then all-notes-off (CC 123) on the channel.
        Keeps going past send errors (a vanished port); returns the number of failures."""
        failures = 0
        for note in range(128):
            if self.sounding[note]:
                try:
                    self._send(self.notes.off(note))
                except PortFailed:
                    failures += 1
                self.sounding[note] = 0
        try:
            self._send(self.notes.all_notes_off)
        except PortFailed:
            failures += 1
        return failures

    def sounding_notes(self) -> list[int]:
        return [n for n in range(128) if self.sounding[n]]


def try_realtime(priority: int) -> bool:
    """Ask for SCHED_FIFO at `priority` for the calling thread (Linux: pid 0 is the
    thread). Without the permission (most desktops unless in the audio group) it stays a
    normal thread, which on a loaded machine can wake a millisecond or two late."""
    if priority <= 0 or not hasattr(os, "sched_setscheduler"):
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (OSError, ValueError):
        return False
    return True


def run_sender_thread(sender: Sender, stop: threading.Event,
                      on_error: Callable[[BaseException], None],
                      realtime_priority: int = 0,
                      on_start: Callable[[bool], None] | None = None) -> None:
    """The real-time sending loop: wait until the next due time (or a wake-up), send."""
    clock = sender.clock
    wake = sender.wake
    realtime = try_realtime(realtime_priority)
    if on_start is not None:
        on_start(realtime)
    try:
        while not stop.is_set():
            wake.clear()
            nxt = sender.poll(clock.now())
            if stop.is_set():
                break
            if nxt is None:
                wake.wait(0.5)
            else:
                clock.wait_until(nxt, wake)
    except BaseException as e:  # noqa: BLE001 - handed to the engine, which exits cleanly
        on_error(e)
