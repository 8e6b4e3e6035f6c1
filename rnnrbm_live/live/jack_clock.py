"""JACK's frame clock as the engine's clock, for the JACK-native path.

On that path every time in the engine is a JACK frame time in seconds (frame / rate): the
grid t0 + k * dt, each input event's time (its own frame, as the process callback read
it), each output event's frame. So the grid keeps time with the audio, as a DAW's tempo
does, and no conversion between clocks ever rounds an event.

`now()` is the latest frame an input event can carry: JACK stamps an event read in the
period starting at frame B with B + offset, up to one period past JACK's estimate of the
current frame, so now() is that estimate plus one period. Nothing waits on this clock for
precision: the sending side hands events over ahead of time and JACK's own thread places
them; waits here are on the monotonic clock, in short steps, rechecking the frame clock.
"""

from __future__ import annotations

import threading
import time

MAX_STEP_S = 0.05   # recheck the frame clock at least this often while waiting


class JackFrameClock:
    def __init__(self, midi):
        self.midi = midi
        self.rate = midi.rate
        self._ahead = midi.period   # see the module doc

    def now(self) -> float:
        return (self.midi.frame_now() + self._ahead) / self.rate

    def frame_of(self, t: float) -> int:
        """The JACK frame of engine time t (the nearest sample)."""
        return round(t * self.rate)

    def sleep_until(self, t: float) -> None:
        self.wait_until(t, threading.Event())

    def wait_until(self, t: float, wake: threading.Event) -> bool:
        while True:
            remaining = t - self.now()
            if remaining <= 0:
                return wake.is_set()
            if wake.wait(min(remaining, MAX_STEP_S)):
                return True
            if self.midi.shut_down is not None:
                time.sleep(min(remaining, MAX_STEP_S))  # frames stopped: do not spin
                return False
