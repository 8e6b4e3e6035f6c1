"""The sending side of the JACK-native path: hand each slot to JACK ahead of time.

The same `Sender` (the guards, the epochs, `sounding`, every way out), except that a slot
is handed over `ahead_s` before its due time, as raw bytes with its JACK frame, and the
process callback (jack_midi.py) writes it at that exact sample. So the sending thread's
own wake-up jitter no longer reaches the output; only a hand-over later than the period
that holds the frame does (counted by the helper process: `JackMidi.late_events`).

Because events wait in the port's queue, throwing the look-ahead away (a new epoch) must
also reach the queue: `_drop_queued` raises the port's epoch floor *before* the silencing
note-offs go out, so a queued note-on can never land after its note-off; and since a
queued note-off may be dropped too, every note with a queued event gets a note-off then.
The final panic drops everything queued first, the same way.

On a MIDI clock grid each slot is handed over with its tick's song position, ahead of
time (at the tick's predicted time less `ahead_s`, or at once while no tempo is known),
and the process callback writes it at the sample where that tick comes in on our input,
in the same period: so a frame falls on its tick even across a tempo change, with no
prediction in the timing. With a --latency-ms offset a frame is due off its tick, at the
tick's frame (or prediction) plus the offset, placed like an internal-grid frame.
`--latency-ms` shifts by whole samples.

On a MIDI clock with no offset, a slot for frame PREARMED (computed while the DAW is
stopped) goes over at once keyed to NEXT_START, and the process callback plays it on the
first frame tick after Start or Continue: the first frame no longer waits for Start to
travel from JACK through the engine's threads and back, two periods at most before tick 0.
"""

from __future__ import annotations

import time

from rnnrbm_live.live.jack_shm import NEXT_START, NOT_ON_TICK
from rnnrbm_live.live.sender import PREARMED, Sender

AHEAD_S = 0.03          # hand-over lead: covers a sending thread woken late on a busy machine
# On a MIDI clock a slot goes over this part of a frame before its tick's prediction too:
# a faster tempo brings the tick early (120 -> 150 bpm: a fifth of a frame), and a slot
# that arrives after its tick can only go at the start of the next period. Half a frame
# covers a tempo doubling; the composer has the slot a whole frame ahead.
TICK_LEAD_FRAMES = 0.5
QUEUE_FULL_WAIT_S = 1.0
PREDICT_RETRY_S = 0.002


class JackQueueFull(Exception):
    """JACK is not taking events out of the queue (the server stopped processing)."""


class JackSender(Sender):
    def __init__(self, port, notes, grid, clock, latency_s: float = 0.0, *,
                 ahead_s: float = AHEAD_S, **kwargs):
        rate = port.rate
        super().__init__(port, notes, grid, clock, round(latency_s * rate) / rate, **kwargs)
        self.rate = rate
        self._ahead_s = ahead_s
        self.on_ticks = not self.grid.exact and self.latency_s == 0.0
        self.can_prearm = self.on_ticks
        if self.on_ticks:
            port.follow_frames(self.grid.ticks_per_frame)
        self._tick = NOT_ON_TICK            # the song position of the slot being sent
        self.queued_notes = bytearray(128)  # notes with an event queued since the last drop

    @property
    def ahead_s(self) -> float:
        """How long before its due time a slot is handed over (Sender.poll)."""
        if self.on_ticks:
            return self._ahead_s + TICK_LEAD_FRAMES * self.grid.frame_seconds
        return self._ahead_s

    def due(self, frame: int) -> float | None:
        grid = self.grid
        if frame == PREARMED:
            return 0.0          # long due: goes over at once; JACK's thread places it
        if grid.exact:
            return grid.time_of(frame) + self.latency_s
        at = grid.time_of(frame)    # the tick's own time if it came, else its prediction
        if at is None:
            # No tempo yet: a slot placed on its tick goes over now; one off its tick
            # waits until the tick can be predicted (see poll).
            return self.clock.now() + self.ahead_s if self.on_ticks else None
        return at + self.latency_s

    def _send_slot(self, slot, due: float) -> None:
        if slot.frame == PREARMED:
            self._tick = NEXT_START
        else:
            self._tick = slot.frame * self.grid.ticks_per_frame if self.on_ticks \
                else NOT_ON_TICK
        super()._send_slot(slot, due)

    def poll(self, now: float) -> float | None:
        nxt = super().poll(now)
        if nxt is None and self.slots and not self.grid.exact:
            # The next slot's tick cannot be predicted yet (no tempo since Start): look
            # again soon rather than at its tick, which would be too late to place it.
            return now + PREDICT_RETRY_S
        return nxt

    def _write(self, msg, due: float | None) -> float:
        data = bytes(msg.bytes())
        port = self.port
        if port.shut_down is not None:
            raise JackQueueFull(port.shut_down)
        if due is None:
            self._push(lambda: port.send_now(data))
            return self.clock.now()
        frame, tick = round(due * self.rate), self._tick
        self._push(lambda: port.send_at(frame, self.epoch, data, tick))
        if data[0] & 0xE0 == 0x80:          # a note-on or note-off, queued ahead
            self.queued_notes[data[1]] = 1
        return frame / self.rate

    def _push(self, push) -> None:
        deadline = time.monotonic() + QUEUE_FULL_WAIT_S
        while not push():
            if time.monotonic() > deadline or self.port.shut_down is not None:
                raise JackQueueFull("the jack server is not taking midi events")
            time.sleep(self.port.period / self.rate)

    def _drop_queued(self, epoch: int) -> None:
        self.port.drop_before(epoch)
        self._forget_queued()

    def _forget_queued(self) -> None:
        """Queued events may have been written or dropped: count every note they touched
        as sounding, so the silencing note-offs cover a dropped note-off too."""
        queued, sounding = self.queued_notes, self.sounding
        for note in range(128):
            if queued[note]:
                sounding[note] = 1
                queued[note] = 0

    def _count_lateness(self, frame: int, late: float) -> None:
        if frame == PREARMED:
            return                          # its time is the DAW's Start: never late
        # Lateness against the last safe hand-over, two periods before the due time, not
        # the due time itself: up to then JACK still places the slot on its sample (so
        # the normal lateness is about -ahead_s, and "late" means at risk).
        super()._count_lateness(frame, late + 2 * self.port.period / self.rate)

    def panic(self) -> int:
        self.port.drop_all()
        self._forget_queued()
        return super().panic()
