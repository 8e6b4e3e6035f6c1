"""Time for the live engine: an injectable clock and the internal frame grid.

Every time in the engine is a float in seconds of one monotonic clock. Frames fall on an
absolute grid, t0 + k * dt; nothing ever sleeps a relative dt in a loop, so no error
accumulates. `RealClock` sleeps until shortly before a deadline and spins the rest for
sub-millisecond accuracy; `FakeClock` is virtual time for tests, moved by the test (or by
`Engine.run_fake`) and never by the wall clock.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Protocol

# A wake-up time that has already passed means "not yet" (a late clock tick): try again
# this much later rather than spin.
RETRY_S = 0.0005


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""

    def sleep_until(self, t: float) -> None:
        """Return at (not before) time t; at once if t has passed."""

    def wait_until(self, t: float, wake: threading.Event) -> bool:
        """Like sleep_until, but return early, with True, once `wake` is set."""


class RealClock:
    """time.perf_counter (CLOCK_MONOTONIC on Linux), with a spin at the end of each wait.

    The OS wakes a sleeping thread up to a millisecond or so late; sleeping until `spin_s`
    before the deadline and spinning the rest makes the wake-up accurate to a few
    microseconds for a cost of about `spin_s` of CPU per deadline.
    """

    def __init__(self, spin_s: float = 0.0012):
        self.spin_s = spin_s

    def now(self) -> float:
        return time.perf_counter()

    def sleep_until(self, t: float) -> None:
        remaining = t - time.perf_counter() - self.spin_s
        if remaining > 0:
            time.sleep(remaining)
        self._spin(t)

    def wait_until(self, t: float, wake: threading.Event) -> bool:
        remaining = t - time.perf_counter() - self.spin_s
        if remaining > 0 and wake.wait(remaining):
            return True
        if wake.is_set():
            return True
        self._spin(t)
        return False

    @staticmethod
    def _spin(t: float) -> None:
        counter = time.perf_counter
        while counter() < t:
            pass


class FakeClock:
    """Virtual time that moves only when told: sleep_until jumps straight to the deadline.

    For single-threaded tests: the engine's fake driver (`Engine.run_fake`) moves it from
    one due time to the next, so a test of minutes of music runs in milliseconds and every
    send time is exact.
    """

    def __init__(self, start: float = 1000.0):
        self._t = float(start)

    def now(self) -> float:
        return self._t

    def set(self, t: float) -> None:
        if t < self._t:
            raise ValueError(f"a monotonic clock cannot go back from {self._t} to {t}")
        self._t = float(t)

    def advance(self, seconds: float) -> None:
        self.set(self._t + seconds)

    def sleep_until(self, t: float) -> None:
        if t > self._t:
            self._t = float(t)

    def wait_until(self, t: float, wake: threading.Event) -> bool:
        if wake.is_set():
            return True
        self.sleep_until(t)
        return False


class InternalGrid:
    """Frame k at t0 + k * dt, for the engine's own tempo (--clock internal)."""

    exact = True  # every frame's time is known in advance

    def __init__(self, t0: float, dt: float):
        if not dt > 0:
            raise ValueError(f"dt must be positive, got {dt}")
        self.t0 = float(t0)
        self.dt = float(dt)

    @property
    def running(self) -> bool:
        return True

    @property
    def frame_seconds(self) -> float:
        return self.dt

    def time_of(self, k: float) -> float:
        """When frame k (fractions allowed) falls."""
        return self.t0 + k * self.dt

    def arrived_time(self, k: int) -> float:
        """The time frame k is due: on the internal grid, its grid time."""
        return self.t0 + k * self.dt

    def position(self, t: float) -> float:
        """The fractional frame index at time t (0.0 at t0)."""
        return (t - self.t0) / self.dt

    def first_frame_after(self, t: float) -> int:
        return max(0, math.floor(self.position(t)) + 1)

    def lost_at(self) -> float | None:
        """Our own clock is never lost (see MidiClockGrid.lost_at)."""
        return None
