"""The engine on a fake clock: one thread moves virtual time from one due time to the next,
so tests run hours of play in seconds, exactly the same code as live but for the threads."""

from __future__ import annotations

from typing import Callable, Iterable

import mido

from rnnrbm_live.live.clock import RETRY_S, FakeClock


def run_fake(engine, until: float, events: Iterable[tuple[float, mido.Message]] = (),
             port_check_s: float = 0.5, observe: Callable[[], None] | None = None) -> None:
    """Run single-threaded on a FakeClock until virtual time `until` (absolute), feeding
    `events` (absolute time, message) to the input as they fall due; then shut down
    as a stop would. Exceptions from either side end the run as they would live.
    `observe` (tests' invariants) is called after every step of the sending side."""
    clock = engine.clock
    if not isinstance(clock, FakeClock):
        raise TypeError("run_fake needs a FakeClock")
    pending = sorted(events, key=lambda e: e[0])
    i = 0
    engine.start()
    next_check = clock.now() + port_check_s
    try:
        while True:
            now = clock.now()
            while i < len(pending) and pending[i][0] <= now:
                engine.on_message(pending[i][1])
                i += 1
            if engine.port_check is not None and now >= next_check:
                next_check = now + port_check_s
                engine.port_check()
            c = engine.composer.poll(now)
            s = engine.sender.poll(now)
            if observe is not None:
                observe()
            if now >= until or engine.stop_event.is_set():
                break
            candidates = [until, next_check if engine.port_check else until]
            candidates += [x for x in (c, s) if x is not None]
            if i < len(pending):
                candidates.append(pending[i][0])
            future = [x for x in candidates if x > now]
            if len(future) < len(candidates):
                future.append(now + RETRY_S)  # a wake at a time just passed: soon again
            clock.set(min(future))
    except BaseException as e:  # noqa: BLE001 - the same way out as live
        engine._fail(e)
    engine.stop_reason = engine.stop_reason or "stopped"
    engine.shutdown()
