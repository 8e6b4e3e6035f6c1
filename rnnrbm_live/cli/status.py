"""The live status line: mode and state (listening, answering, playing), the key heard,
the temperature and bar:beat, redrawn in place a few times a second on a terminal.

It runs on its own thread and only reads the engine's state (single attributes the
engine's threads write: no lock is shared with them). The engine's own lines go through
`say`, which only appends to a queue; this thread prints them above the status line. So
a terminal that is slow, or stopped with ctrl+s, holds up this thread alone, never a
frame: the compute and sending threads never wait on a write to the terminal.
"""

from __future__ import annotations

import math
import shutil
import threading
from collections import deque
from typing import TextIO

from rnnrbm_live.live.controls import STATE_IDLE, STATE_NAMES
from rnnrbm_live.midi.keys import key_name

REDRAW_S = 0.25
IDLE_NAMES = {"continue": "waiting for a phrase", "accompany": "resting (play to start)",
              "generate": "starting"}
CLEAR = "\r\x1b[K"  # to the start of the line, and erase it


def wanted(quiet: bool, stream: TextIO) -> bool:
    """A status line only on a terminal, and not with -q: a log file or a pipe gets the
    plain lines alone."""
    isatty = getattr(stream, "isatty", None)
    return not quiet and isatty is not None and isatty()


def describe(engine, now: float) -> str:
    """The status of `engine` at clock time `now`, in one line."""
    composer, config = engine.composer, engine.config
    state = STATE_NAMES.get(composer.state, "idle")
    if composer.state == STATE_IDLE:
        state = IDLE_NAMES.get(config.mode, state)
    key = composer.player_key
    heard = f"heard {key_name(*key)}" if key is not None else "no key heard yet"
    return (f"{config.mode}: {state} | {heard} | temperature "
            f"{engine.controls.temperature:.2f} | {_bar_beat(engine, now)}")


def _bar_beat(engine, now: float) -> str:
    grid, config = engine.grid, engine.config
    if not grid.running:
        return "waiting for the clock" if config.clock == "midi" else "starting"
    position = grid.position(now)
    if position is None or not math.isfinite(position) or position < 0:
        return "starting"
    beat = int(position) // config.frames_per_beat
    return f"bar {beat // config.beats_per_bar + 1}:{beat % config.beats_per_bar + 1}"


class StatusLine:
    """Draws `describe(engine)` on `stream` every REDRAW_S until `stop`; `say` prints a
    line above it. Any thread may call `say`; it never blocks."""

    def __init__(self, engine, stream: TextIO, prefix: str = "", interval: float = REDRAW_S):
        self.engine = engine
        self.stream = stream
        self.prefix = prefix
        self.interval = interval
        self.lines: deque[str] = deque()
        self._wake = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rnnrbm-status", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def say(self, line: str) -> None:
        self.lines.append(line)
        self._wake.set()

    def stop(self, timeout: float = 1.0) -> None:
        """Print what is queued and erase the status line (unless the terminal is stuck:
        then give up after `timeout`; the thread is a daemon)."""
        self._done.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _status_text(self) -> str:
        """The line, cut to the terminal's width (a wrapped line could not be redrawn in
        place); empty if the engine's state cannot be read (never a traceback)."""
        try:
            text = self.prefix + describe(self.engine, self.engine.clock.now())
        except Exception:  # noqa: BLE001 - a status line is not worth an error
            return ""
        return text[: max(20, shutil.get_terminal_size().columns - 1)]

    def _run(self) -> None:
        write = self.stream.write
        while True:
            self._wake.clear()
            done = self._done.is_set()
            text = ""
            while self.lines:
                text += f"{CLEAR}{self.lines.popleft()}\n"
            if done:
                write(text + CLEAR)
                self.stream.flush()
                return
            write(f"{text}{CLEAR}{self._status_text()}")
            self.stream.flush()
            self._wake.wait(self.interval)


class Say:
    """The command's own lines ("rnnrbm-live: ..."): straight to the stream, or, while a
    status line runs, queued to be printed above it. Nothing with -q."""

    def __init__(self, prog: str, stream: TextIO, quiet: bool):
        self.prog = prog
        self.stream = stream
        self.quiet = quiet
        self.status: StatusLine | None = None

    def __call__(self, line: str) -> None:
        if self.quiet:
            return
        text = f"{self.prog}: {line}"
        status = self.status
        if status is not None:
            status.say(text)
        else:
            print(text, file=self.stream, flush=True)

    def show_status(self, engine) -> None:
        """Start the status line under the lines (on a terminal, without -q)."""
        if wanted(self.quiet, self.stream):
            self.status = StatusLine(engine, self.stream, prefix=f"{self.prog}: ")
            self.status.start()

    def hide_status(self) -> None:
        status, self.status = self.status, None
        if status is not None:
            status.stop()
