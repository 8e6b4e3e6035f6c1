"""The live engine: an input router, a compute thread, a sending thread, and every way out.

Threads (real time, `Engine.run`):
- input: the MIDI backend's callback thread calls `on_message`. It stamps each message
  with the clock, keeps the MIDI clock follower and the controls up to date, records the
  held notes, queues note events for the compute side and wakes it. Nothing else.
- compute (`Composer.poll`, modes/): steps the model and publishes each frame's messages ahead of
  the frame's time (see modes/).
- sender (`Sender.poll`): sleeps until the next due time on an absolute grid and sends
  what is due: note-offs, then note-ons. No model work, no message building.
- main: waits; checks every half second that the ports are still there; on any way out
  (stop-after, SIGTERM/SIGINT through `stop`, an exception in a thread, a vanished port)
  it stops the threads and silences: note-off for every sounding note, then CC 123.

Tests drive the same objects with `run_fake`, one thread on a FakeClock, moving virtual
time from one due time to the next.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable

import mido

from rnnrbm_live.live.clock import RETRY_S, Clock, InternalGrid, RealClock
from rnnrbm_live.live.controls import CCMap, Controls
from rnnrbm_live.live.midi_clock import TICKS_PER_BEAT, MidiClockFollower, MidiClockGrid
from rnnrbm_live.live.modes import make_composer
from rnnrbm_live.live.notes import NoteMessages
from rnnrbm_live.live.recording import MessageLog
from rnnrbm_live.live.sender import PortFailed, Sender, run_sender_thread

SWITCH_INTERVAL_S = 0.0005  # the GIL hand-over: 5 ms by default would delay the sender
PORT_CHECK_S = 0.5


@dataclass
class LiveConfig:
    mode: str = "continue"
    bpm: float = 100.0
    frames_per_beat: int = 2
    clock: str = "internal"            # or "midi"
    channel: int = 0                   # 0-based
    velocity: int | None = 80          # None: follow the player's velocity
    latency_s: float = 0.0
    temperature: float = 1.0
    beats_per_bar: int = 4
    silence_bars: float = 1.0
    answer_bars: float | None = None   # None: as long as the phrase
    max_answer_bars: float = 16.0
    lookahead_frames: float = 1.0
    compute_s: float = 0.02
    state_cc: int | None = None
    cc: CCMap = field(default_factory=CCMap)
    start_delay_s: float = 0.25
    stop_after_s: float | None = None
    record: bool = False
    learned_in_c: bool = True
    realtime_priority: int = 0         # SCHED_FIFO priority for the sending thread; 0: no
    clock_window: int = TICKS_PER_BEAT  # ticks in the tempo estimate; 1 where each tick
                                        # carries its own sample-accurate time (JACK-native)

    @property
    def frame_seconds(self) -> float:
        return 60.0 / self.bpm / self.frames_per_beat

    @property
    def frames_per_bar(self) -> int:
        return self.beats_per_bar * self.frames_per_beat

    def bars_to_frames(self, bars: float) -> int:
        return max(1, int(round(bars * self.frames_per_bar)))


class Engine:
    def __init__(self, session, out_port, config: LiveConfig, clock: Clock | None = None,
                 log: Callable[[str], None] | None = None,
                 port_check: Callable[[], None] | None = None,
                 out_name: str = "the output port",
                 sender_factory: Callable[..., Sender] = Sender):
        self.config = config
        self.clock = clock or RealClock()
        self.log = log or (lambda line: None)
        self.port_check = port_check
        self.session = session
        self.controls = Controls(config.cc, config.temperature)
        self.notes = NoteMessages(config.channel, config.velocity or 80)
        self.held = bytearray(128)
        if config.clock == "midi":
            if TICKS_PER_BEAT % config.frames_per_beat:
                raise ValueError(f"frames_per_beat must divide {TICKS_PER_BEAT} to follow "
                                 "a midi clock")
            self.follower: MidiClockFollower | None = \
                MidiClockFollower(config.clock_window)
            self.grid = MidiClockGrid(self.follower, TICKS_PER_BEAT // config.frames_per_beat,
                                      default_frame_seconds=config.frame_seconds)
        else:
            self.follower = None
            self.grid = InternalGrid(self.clock.now() + config.start_delay_s,
                                     config.frame_seconds)
        self.sender = sender_factory(
            out_port, self.notes, self.grid, self.clock, config.latency_s,
            held=self.held if config.mode == "accompany" else None, record=config.record,
            port_name=out_name)
        self.composer = make_composer(
            config.mode, session, self.grid, self.sender, self.notes, self.controls,
            frames_per_bar=config.frames_per_bar,
            silence_frames=config.bars_to_frames(config.silence_bars),
            answer_frames=(None if config.answer_bars is None
                           else config.bars_to_frames(config.answer_bars)),
            max_answer_frames=config.bars_to_frames(config.max_answer_bars),
            lookahead_frames=config.lookahead_frames, compute_s=config.compute_s,
            learned_in_c=config.learned_in_c, velocity=config.velocity,
            state_cc=config.state_cc, log=self.log)
        self.player_log = MessageLog() if config.record else None
        self.stop_event = threading.Event()
        self.compute_wake = threading.Event()
        self.stop_reason: str | None = None
        self.failure: BaseException | None = None
        self.t0: float | None = None
        self._threads: list[threading.Thread] = []
        self._sender_ready = threading.Event()
        self.sender_realtime = False
        self._shut = False

    # ================================================================== input thread

    def on_message(self, msg: mido.Message, t: float | None = None) -> None:
        """The input port's callback: stamp, route, wake. Runs on the backend's thread.
        `t`: the message's own time where the backend knows it (JACK-native), else now."""
        if t is None:
            t = self.clock.now()
        kind = msg.type
        follower = self.follower
        if kind == "clock":
            if follower is not None and follower.handle("clock", t) == "tick":
                if (follower.next_position - 1) % self.grid.ticks_per_frame == 0:
                    self.sender.wake.set()
                self.compute_wake.set()
            return
        if kind in ("start", "stop", "continue", "songpos"):
            if follower is None:
                return
            event = follower.handle(kind, t, getattr(msg, "pos", None))
            self.composer.inbox.append((t, "transport", event, follower.next_position))
        elif kind == "note_on" and msg.velocity > 0:
            self.held[msg.note] = 1
            self.composer.inbox.append((t, "on", msg.note, msg.velocity))
        elif kind == "note_off" or kind == "note_on":
            self.held[msg.note] = 0
            self.composer.inbox.append((t, "off", msg.note, 0))
        elif kind == "control_change":
            what = self.controls.handle_cc(msg.control, msg.value)
            if what is None:
                return
            if what == "panic":
                self.composer.inbox.append((t, "panic", None, None))
        else:
            return
        if self.player_log is not None:
            self.player_log.append(t, msg)
        self.compute_wake.set()

    # ================================================================== real time

    def start(self) -> None:
        """Fix the grid: frame 0 falls start_delay_s from now (internal clock)."""
        now = self.clock.now()
        if isinstance(self.grid, InternalGrid):
            self.grid.t0 = now + self.config.start_delay_s
            self.t0 = self.grid.t0
            self.composer.start(0)
        else:
            self.t0 = now
            self.composer.start(self.grid.first_frame_at_or_after_position())

    def run(self, on_started: Callable[[], None] | None = None) -> None:
        """Play until stopped; always ends silenced (see `shutdown`)."""
        old_interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        try:
            self.start()
            self._threads = [
                threading.Thread(target=run_sender_thread, name="rnnrbm-sender",
                                 args=(self.sender, self.stop_event, self._fail,
                                       self.config.realtime_priority, self._sender_started),
                                 daemon=True),
                threading.Thread(target=self._compute_loop, name="rnnrbm-compute",
                                 daemon=True),
            ]
            for thread in self._threads:
                thread.start()
            self._sender_ready.wait(2.0)
            if self.config.realtime_priority > 0:
                self.log("sending thread: " + (
                    f"realtime priority {self.config.realtime_priority}"
                    if self.sender_realtime else "normal priority (no permission for "
                    "realtime scheduling; timing may suffer on a busy machine)"))
            if on_started is not None:
                on_started()
            deadline = (None if self.config.stop_after_s is None
                        else self.clock.now() + self.config.stop_after_s)
            while not self.stop_event.wait(PORT_CHECK_S if deadline is None else
                                           min(PORT_CHECK_S,
                                               max(0.0, deadline - self.clock.now()))):
                if deadline is not None and self.clock.now() >= deadline:
                    self.stop("stop-after")
                    break
                if self.port_check is not None:
                    try:
                        self.port_check()
                    except Exception as e:  # noqa: BLE001
                        self._fail(e)
        finally:
            self.shutdown()
            sys.setswitchinterval(old_interval)

    def _sender_started(self, realtime: bool) -> None:
        self.sender_realtime = realtime
        self._sender_ready.set()

    def _compute_loop(self) -> None:
        clock = self.clock
        wake = self.compute_wake
        try:
            while not self.stop_event.is_set():
                wake.clear()
                nxt = self.composer.poll(clock.now())
                # A wake time that has passed means "not yet": the position it waits for
                # has not come (a late clock tick). Wait a little rather than spin.
                timeout = 0.5 if nxt is None else min(0.5, max(RETRY_S, nxt - clock.now()))
                wake.wait(timeout)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            self._fail(e)

    def stop(self, reason: str = "stopped") -> None:
        """Ask the engine to stop (safe from a signal handler and from any thread)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stop_event.set()
        self.sender.wake.set()
        self.compute_wake.set()

    def _fail(self, error: BaseException) -> None:
        if self.failure is None:
            self.failure = error
        self.stop("failure")

    def shutdown(self) -> None:
        """Stop the threads, then note-off every sounding note and send CC 123."""
        if self._shut:
            return
        self._shut = True
        self.stop(self.stop_reason or "stopped")
        for thread in self._threads:
            thread.join(timeout=2.0)
        failures = self.sender.panic()
        if failures and self.failure is None:
            self.failure = PortFailed(f"{self.sender.port_name}: could not send the final "
                                      "note-offs")

    # ================================================================== fake clock

    def run_fake(self, until: float, events: Iterable[tuple[float, mido.Message]] = (),
                 observe: Callable[[], None] | None = None) -> None:
        """Run single-threaded on a FakeClock until virtual time `until` (see fake_run.py)."""
        from rnnrbm_live.live.fake_run import run_fake
        run_fake(self, until, events, PORT_CHECK_S, observe)

    # ================================================================== reporting

    def stats(self) -> dict:
        s = self.sender
        late = sorted(s.lateness)

        def pct(q: float) -> float | None:
            return round(1000 * late[min(len(late) - 1, int(q * len(late)))], 3) \
                if late else None
        return {"frames_sent": s.sent_slots, "late_frames": s.late_slots,
                "send_lateness_ms": {"p50": pct(0.5), "p99": pct(0.99),
                                     "max": round(1000 * late[-1], 3) if late else None},
                "max_late_ms": round(1000 * s.max_late_s, 3),
                "skipped_frames": self.composer.skipped_frames,
                "answers": self.composer.answers,
                "interruptions": self.composer.interruptions,
                "messages_sent": s.messages_sent}
