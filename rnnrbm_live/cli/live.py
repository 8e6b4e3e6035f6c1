"""`rnnrbm-live` playing live: open the model and the ports, run the engine, and report
how it ended (every note silenced first)."""

from __future__ import annotations

import gc
import math
import os
import signal
import sys
import time

from rnnrbm_live.cli.options import PROG, cc_map, check
from rnnrbm_live.cli.status import Say
from rnnrbm_live.errors import UserError
from rnnrbm_live.live.controls import describe
from rnnrbm_live.live.sender import LATE_S

NOTE_NAMES = {1: "quarter note", 2: "eighth note", 3: "eighth-note triplet",
              4: "sixteenth note"}


class _Stopper:
    """SIGTERM and SIGINT: one clean way out, before and while the engine runs."""

    def __init__(self):
        self.reason: str | None = None
        self.engine = None

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.reason is None:
            self.reason = signal.Signals(signum).name.lower()
        if self.engine is not None:
            self.engine.stop(self.reason)


def _warm_up(session, n: int = 4) -> float:
    """Run a few steps (the first is slow) and put the state back; seconds per step."""
    state = session.state
    session.step()
    start = time.perf_counter()
    for _ in range(n):
        session.step()
    per_step = (time.perf_counter() - start) / n
    session.state = state
    return per_step


def run_live(args) -> int:
    check(args)
    from rnnrbm_live.live.ports import library_lines_hidden
    with library_lines_hidden(not args.verbose):  # -v shows libjack's own lines
        return _play(args)


def _play(args) -> int:
    say = Say(PROG, sys.stderr, args.quiet)
    stopper = _Stopper()
    stopper.install()

    from rnnrbm_live.live import ports as portmod
    from rnnrbm_live.live.port_watch import ServerGone
    from rnnrbm_live.live.engine import Engine, LiveConfig
    from rnnrbm_live.live.recording import MAX_MESSAGES, dropped_messages, write_recording
    from rnnrbm_live.midi.roll import N_KEYS
    from rnnrbm_live.model.session import StepSession

    backend = portmod.choose_backend(args.backend)
    portmod.check_port_names(backend, args.out_port, args.in_port)  # before the slow part
    session = StepSession(args.model, batch=1, device=args.device, seed=args.seed,
                          threads=args.threads, temperature=args.temperature)
    n_visible = session.model.n_visible
    if n_visible != N_KEYS:
        raise UserError(f"{args.model}: the model has {n_visible} visible units; live play "
                        f"needs an {N_KEYS}-key piano model (midi 21..108)")
    fpb = args.frames_per_beat or session.model.frames_per_beat
    if args.clock == "midi" and 24 % fpb:
        raise UserError(f"--frames-per-beat {fpb}: to follow a midi clock (24 ticks a "
                        "beat) use 1, 2, 3, 4, 6, 8, 12 or 24")
    per_step = _warm_up(session)

    config = LiveConfig(
        mode=args.mode, bpm=args.bpm, frames_per_beat=fpb, clock=args.clock,
        channel=args.channel - 1, velocity=args.velocity, latency_s=args.latency_ms / 1000,
        temperature=args.temperature, beats_per_bar=args.beats_per_bar,
        silence_bars=args.silence_bars, answer_bars=args.answer_bars,
        max_answer_bars=args.max_answer_bars, compute_s=args.compute_ms / 1000,
        state_cc=args.state_cc, cc=cc_map(args), stop_after_s=args.stop_after,
        record=args.record is not None, learned_in_c=session.model.learned_in_c,
        realtime_priority=args.realtime_priority,
        clock_window=1 if backend.native else 24)

    holder: dict = {}

    def on_message(msg) -> None:  # the backend's thread; messages before the engine: dropped
        engine = holder.get("engine")
        if engine is not None:
            engine.on_message(msg)

    opened, watch, native = _open_ports(portmod, backend, args, on_message)
    try:
        engine = Engine(session, opened.output, config, log=say, port_check=watch.check,
                        out_name=opened.out_name, **native)
        holder["engine"] = holder["ran"] = engine
        if backend.native:
            opened.start_input(engine.on_message)
        else:
            watch.links = _connection_watch(opened, args.client_name, engine, say)
        _banner(say, args, backend, opened, session, config, per_step)
        stopper.engine = engine
        if stopper.reason is not None:
            engine.stop(stopper.reason)
        ready = _ready_line(args, opened)
        gc.freeze()  # what lives all run (the model, tables) is never traversed again

        def started() -> None:
            say(ready)
            say.show_status(engine)
        engine.run(on_started=started)
    finally:
        say.hide_status()
        holder.pop("engine", None)
        ran = holder.pop("ran", None)
        if not (ran is not None and isinstance(ran.failure, ServerGone)):
            with portmod.quiet_stderr():  # libjack complains at length if its server died
                if watch is not opened:
                    watch.close()
                opened.close()

    status = 0
    failure = engine.failure
    if failure is not None:
        status = 2 if isinstance(failure, UserError) else 1
        from rnnrbm_live.live.sender import PortFailed
        if isinstance(failure, PortFailed):
            status = 2
            line = (f"{failure}; the port is gone (note-offs were attempted); check the "
                    "midi system and restart rnnrbm-live")
        elif isinstance(failure, UserError):
            line = str(failure)
        else:
            line = (f"internal error in the model thread ({type(failure).__name__}: "
                    f"{str(failure).strip().lower()}); every note was silenced; please "
                    "report it")
            if os.environ.get("RNNRBM_DEBUG"):
                import traceback
                traceback.print_exception(failure)
        print(f"{PROG}: error: {line}", file=sys.stderr, flush=True)
    if args.record is not None:
        bpm = args.bpm
        if engine.follower is not None and engine.follower.bpm:
            bpm = engine.follower.bpm
        try:
            write_recording(args.record, engine, bpm=bpm,
                            ticks_per_beat=_record_resolution(backend, opened, bpm))
            say(f"recorded both sides to {args.record}")
            if dropped_messages(engine):
                say(f"--record: a long take; the last {dropped_messages(engine)} messages "
                    f"past {MAX_MESSAGES} a side were not recorded")
        except OSError as e:
            print(f"{PROG}: error: --record {args.record}: cannot write it "
                  f"({(e.strerror or str(e)).lower()}); nothing was recorded",
                  file=sys.stderr, flush=True)
            status = status or 2
    stats = engine.stats()
    if args.stats_json is not None:
        import json
        bpm = tempo_used(engine)
        stats.update(stop_reason=engine.stop_reason, clock=config.clock, bpm=bpm,
                     t0=engine.t0, latency_s=engine.sender.latency_s,
                     frame_seconds=bpm and 60.0 / bpm / config.frames_per_beat,
                     sender_realtime=engine.sender_realtime,
                     slots=[[int(k), round(late, 7)] for k, late in
                            zip(engine.sender.lateness_frames, engine.sender.lateness)],
                     frames_per_beat=config.frames_per_beat, mode=config.mode,
                     provider=session.provider,
                     step_ms=round(per_step * 1000, 3),
                     **(opened.stats() if backend.native else {}))
        try:
            with open(args.stats_json, "w") as f:
                json.dump(stats, f, indent=1)
        except OSError as e:
            print(f"{PROG}: error: --stats-json {args.stats_json}: cannot write it "
                  f"({(e.strerror or str(e)).lower()})", file=sys.stderr, flush=True)
            status = status or 2
    say(_stop_line(engine, stats))
    if isinstance(failure, ServerGone):
        # A dead server's clients are left as they are: closing them, here or as the
        # interpreter exits, waits on libjack's timeouts (about a second each).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


def tempo_used(engine) -> float | None:
    """The tempo it played at: --bpm on its own clock; the daw's last tempo when it
    followed a midi clock (None: no clock came)."""
    if engine.follower is None:
        return engine.config.bpm
    return engine.follower.bpm or None


def _ready_line(args, opened) -> str:
    """What it waits for, and how to hear it alone: continue mode sends nothing until
    the player has played a phrase."""
    if args.clock == "midi":
        return "waiting for the daw's midi clock (press play in the daw); ctrl+c stops"
    if args.mode == "continue":
        bars = f"{args.silence_bars:g} bar" + ("" if args.silence_bars == 1 else "s")
        return (f"listening on {opened.in_name}: play a phrase and pause for {bars}, and "
                "it answers in your key (to hear it play alone: --mode generate); ctrl+c "
                "stops")
    if args.mode == "accompany":
        return (f"listening on {opened.in_name}: hold notes and it plays around them; "
                "ctrl+c stops")
    return "playing; ctrl+c stops"


def _stop_line(engine, stats: dict) -> str:
    """How it ended, each count saying what it counts."""
    answers = (f"{stats['answers']} answers, " if engine.config.mode == "continue" else "")
    return (f"stopped ({engine.stop_reason}): {answers}{stats['frames_sent']} frames with "
            f"note changes sent ({stats['late_frames']} of them over {LATE_S * 1000:g} ms "
            f"late), {stats['skipped_frames']} frames skipped (the model fell behind)")


def _open_ports(portmod, backend, args, on_message):
    """(the open ports, what watches them, the engine's extra arguments) for the backend:
    JACK-native (its own frame clock and a sender that hands events over ahead of time),
    or rtmidi."""
    if backend.native:
        from rnnrbm_live.live.jack_ports import open_native
        opened = open_native(args.out_port, args.in_port, args.client_name)
        return opened, opened, {"clock": opened.clock, "sender_factory": opened.make_sender}
    opened = portmod.open_ports(backend, args.out_port, args.in_port, on_message,
                                client_name=args.client_name)
    try:
        from rnnrbm_live.live.port_watch import PortWatch
        return opened, PortWatch(backend, opened), {}
    except BaseException:
        opened.close()
        raise


def _record_resolution(backend, opened, bpm: float) -> int:
    """MIDI file ticks per beat for --record: on the JACK-native path fine enough that a
    tick is at most one sample (up to the format's 32767), so onsets keep their sample."""
    if not backend.native:
        return 480
    return min(32767, max(480, math.ceil(60.0 / bpm * opened.midi.rate)))


def _connection_watch(opened, client_name: str, engine, say):
    """Who is connected to our JACK output, re-synced on every new connection (see
    live/connections.py); None where libjack cannot be asked."""
    if not opened.own_out:
        return None
    from rnnrbm_live.live.connections import ConnectionWatch, open_connections
    from rnnrbm_live.live.ports import signals_held
    with signals_held():
        connections = open_connections(f"{client_name}-links")
    if connections is None:
        return None
    return ConnectionWatch(connections, opened.own_out,
                           None if opened.out_virtual else opened.out_name,
                           on_new=engine.sender.resync, log=say)


def _banner(say, args, backend, opened, session, config, per_step: float) -> None:
    say("sends midi only: a synth or a daw track makes the sound")
    if opened.out_virtual:
        say(f"  output (we send FROM it): {opened.out_name}  -> connect it to a synth or "
            "a daw track's midi input")
    else:
        say(f"  output: playing into {opened.out_name}")
    if opened.in_virtual:
        what = "your keyboard or a daw track" + (
            ", and the daw's midi clock" if args.clock == "midi" else "")
        say(f"  input (send TO it): {opened.in_name}  <- {what}")
    else:
        say(f"  input: listening to {opened.in_name}")
    if backend.native:
        say("  " + opened.latency_line())
    if backend.key in ("jack", "jack-native") and opened.out_virtual:
        say(f"  e.g. jack_connect {opened.out_name} <synth midi input>")
    grid = NOTE_NAMES.get(config.frames_per_beat, f"1/{config.frames_per_beat} beat")
    tempo = (f"{config.bpm:g} bpm, a frame per {grid} ({config.frame_seconds:.3f} s)"
             if config.clock == "internal" else f"the daw's tempo, a frame per {grid}")
    say(f"model {args.model} on {session.provider} "
        f"({per_step * 1000:.2f} ms a frame); {config.mode} mode; {tempo}; "
        f"channel {args.channel}, velocity {args.velocity or 'follow'}; "
        f"midi via {backend.key}")
    if config.clock == "internal" and per_step > 0.5 * config.frame_seconds:
        say(f"warning: the model needs {per_step * 1000:.0f} ms a frame and a frame lasts "
            f"{config.frame_seconds * 1000:.0f} ms: frames may be late; lower --bpm or use "
            "--device cuda")
    if config.mode == "accompany" and per_step * 2 > config.compute_s:
        say(f"warning: --compute-ms {config.compute_s * 1000:g} is short for a "
            f"{per_step * 1000:.1f} ms step; frames may be late; raise it")
    say("live control (cc on the input):\n" + describe(config.cc, config.state_cc))
