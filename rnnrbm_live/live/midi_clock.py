"""Follow a DAW's MIDI clock: 24 ticks per quarter note, start, stop, continue, and the
song position pointer (in sixteenths, 6 ticks each).

`MidiClockFollower.handle` is called from the input thread with each timing message and
its arrival time; the sender and the compute side read it from their own threads. Every
value another thread reads is one attribute holding an immutable object (a tuple or a
float), so a reader never sees half an update.

Song position counts ticks from the start of the song. After Start the first clock tick
is position 0; after Continue the first tick is the position where the song stopped (or
where a song position pointer moved it). Ticks that arrive while stopped (many DAWs send
clock all the time) keep the tempo estimate fresh but do not move the position.

`MidiClockGrid` puts frame k on tick k * ticks_per_frame, so frames fall exactly on the
DAW's ticks and the tempo follows the DAW.

A clock master can vanish while rolling, with no Stop (the DAW crashed, a cable came
out). `MidiClockGrid.lost_at` says when the clock counts as lost: a few ticks' worth of
silence after the last tick (never less than LOST_MIN_S, which covers a busy machine's
jitter at a fast tempo).
"""

from __future__ import annotations

import math

TICKS_PER_BEAT = 24
TICKS_PER_SPP_UNIT = 6  # the song position pointer counts sixteenth notes
_RING = 1024  # recent tick arrival times kept for exact look-up
LOST_TICKS = 6        # a quarter of a beat without a tick while rolling: the clock is lost
LOST_MIN_S = 0.05


class MidiClockFollower:
    def __init__(self, window: int = TICKS_PER_BEAT):
        if window < 1:
            raise ValueError("window must be at least one tick interval")
        self.window = window
        self.running = False
        self.generation = 0          # bumps on every transport change
        self._next_pos = 0           # song position of the next tick while running
        self._anchor: tuple[int, float] | None = None   # (pos, time) of the last tick
        self.period: float | None = None                # seconds per tick
        self._recent: list[float] = []                  # arrival times of recent ticks
        self._ring: list[tuple[int, int, float] | None] = [None] * _RING

    # ------------------------------------------------------------------ input thread

    def handle(self, kind: str, t: float, spp: int | None = None) -> str | None:
        """Take one message ('clock', 'start', 'stop', 'continue', 'songpos'); return
        the event it makes ('tick', 'start', 'stop', 'continue', 'songpos') or None."""
        if kind == "clock":
            self._tempo_tick(t)
            if not self.running:
                return None
            pos = self._next_pos
            self._next_pos = pos + 1
            self._ring[pos % _RING] = (self.generation, pos, t)
            self._anchor = (pos, t)
            return "tick"
        if kind == "start":
            self._next_pos = 0
            self._transport(True)
            return "start"
        if kind == "continue":
            self._transport(True)
            return "continue"
        if kind == "stop":
            # The position stays where the song stopped: Continue resumes from there.
            self._transport(False)
            return "stop"
        if kind == "songpos":
            self._next_pos = TICKS_PER_SPP_UNIT * int(spp or 0)
            self._transport(self.running)
            return "songpos"
        return None

    def _transport(self, running: bool) -> None:
        self._anchor = None
        self.generation += 1
        self.running = running

    def _tempo_tick(self, t: float) -> None:
        recent = self._recent
        if recent and self.period is not None and t - recent[-1] > 4 * self.period:
            recent.clear()  # a gap (the DAW paused its clock): start the estimate afresh
        recent.append(t)
        if len(recent) > self.window + 1:
            del recent[0]
        if len(recent) >= 2:
            self.period = (recent[-1] - recent[0]) / (len(recent) - 1)

    # ------------------------------------------------------------------ readers

    @property
    def bpm(self) -> float | None:
        period = self.period
        return None if not period else 60.0 / (period * TICKS_PER_BEAT)

    @property
    def next_position(self) -> int:
        """Song position (ticks) of the next tick."""
        return self._next_pos

    def arrival(self, pos: int) -> float | None:
        """When tick `pos` arrived in the current run, or None if it has not (yet)."""
        entry = self._ring[pos % _RING]
        if entry is None or entry[0] != self.generation or entry[1] != pos:
            return None
        return entry[2]

    def time_of_tick(self, pos: float) -> float | None:
        """When tick `pos` arrived, or when it should arrive at the current tempo; None
        while stopped or before the tempo is known."""
        if pos == int(pos):
            exact = self.arrival(int(pos))
            if exact is not None:
                return exact
        anchor, period = self._anchor, self.period
        if not self.running or anchor is None or not period:
            return None
        return anchor[1] + (pos - anchor[0]) * period

    def position_at(self, t: float) -> float:
        """Song position in ticks (fractional) at time t. It never runs more than one tick
        past the last tick received, so a DAW that stalls does not run away with it."""
        anchor, period = self._anchor, self.period
        if not self.running or anchor is None or not period:
            # Stopped, or started with no tick yet: the next tick's position.
            return float(self._next_pos)
        ahead = min(max((t - anchor[1]) / period, 0.0), 1.0)
        return anchor[0] + ahead


class MidiClockGrid:
    """Frame k on tick k * ticks_per_frame of a MidiClockFollower."""

    exact = False  # a frame's time is known only when its tick arrives

    def __init__(self, follower: MidiClockFollower, ticks_per_frame: int,
                 default_frame_seconds: float = 0.25):
        if ticks_per_frame < 1 or TICKS_PER_BEAT % ticks_per_frame:
            raise ValueError(f"ticks_per_frame must divide {TICKS_PER_BEAT}, got "
                             f"{ticks_per_frame}")
        self.follower = follower
        self.ticks_per_frame = ticks_per_frame
        self._default = default_frame_seconds

    @property
    def running(self) -> bool:
        return self.follower.running

    @property
    def generation(self) -> int:
        return self.follower.generation

    @property
    def frame_seconds(self) -> float:
        period = self.follower.period
        return period * self.ticks_per_frame if period else self._default

    def time_of(self, k: float) -> float | None:
        return self.follower.time_of_tick(k * self.ticks_per_frame)

    def arrived_time(self, k: int) -> float | None:
        return self.follower.arrival(k * self.ticks_per_frame)

    def position(self, t: float) -> float:
        return self.follower.position_at(t) / self.ticks_per_frame

    def first_frame_at_or_after_position(self, position: int | None = None) -> int:
        """The first frame at or after song position `position` (ticks; default: the
        next tick's). A transport event passes the position it set: by the time the
        compute side reads it, tick 0 may have come and moved the follower on."""
        if position is None:
            position = self.follower.next_position
        return math.ceil(position / self.ticks_per_frame)

    def lost_at(self) -> float | None:
        """When the clock counts as lost unless a tick comes first; None while stopped or
        before the first tick of a run (waiting for it is normal)."""
        follower = self.follower
        anchor, period = follower._anchor, follower.period
        if not follower.running or anchor is None or not period:
            return None
        return anchor[1] + max(LOST_TICKS * period, LOST_MIN_S)

    def is_frame_tick(self, pos: int) -> bool:
        return pos % self.ticks_per_frame == 0
