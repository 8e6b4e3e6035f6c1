"""rnnrbm-live: play an RNN-RBM live into a DAW or synth through MIDI ports.

    rnnrbm-live [options]          play live (see --help)
    rnnrbm-live ports              list the MIDI ports, with their directions
    rnnrbm-live continue|generate  offline commands (rnnrbm_live.offline)

Errors a user can meet are one line, `rnnrbm-live: error: ...`, exit status 2; a stop by
SIGTERM, Ctrl+C or --stop-after exits 0 after silencing every note.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time

from rnnrbm_live.controls import CCMap, describe
from rnnrbm_live.errors import UserError

PROG = "rnnrbm-live"
DEFAULT_MODEL = "nottingham"
NOTE_NAMES = {1: "quarter note", 2: "eighth note", 3: "eighth-note triplet",
              4: "sixteenth note"}


def _epilog() -> str:
    return f"""\
rnnrbm-live sends MIDI only: a synth or a DAW track makes the sound. By default it
makes two virtual ports under the client name {PROG}: "out" (connect it to a synth or
to a DAW track's MIDI input) and "in" (send your keyboard, a DAW track, or the DAW's
MIDI clock TO it). `{PROG} ports` lists the ports that exist.

modes:
  continue   (default) listen while you play; after a bar of silence the model answers
             in your key, as long as your phrase, and stops when you play again
  generate   play on its own, frame after frame
  accompany  harmonise live: the notes you hold are clamped, the model plays the rest
             and never doubles your notes

live control, control changes on the input port (any channel):
{describe(CCMap())}
the numbers can be changed with --cc-temperature, --cc-lock, --cc-key, --cc-panic.

examples:
  {PROG}                                  # continue mode, virtual ports, 100 bpm
  {PROG} --mode generate --bpm 90 --out-port fluidsynth
  {PROG} --clock midi --mode accompany    # follow the DAW's clock and transport
  {PROG} ports
"""


def _velocity(text: str) -> int | None:
    if text == "follow":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not 1..127 or 'follow'") from None
    if not 1 <= value <= 127:
        raise argparse.ArgumentTypeError(f"{value} is not 1..127 or 'follow'")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line (no usage block), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message.lower()}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    from rnnrbm_live.ports import BACKEND_CHOICES

    p = _Parser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Play an RNN-RBM live: it listens on a MIDI input and plays into a "
                    "MIDI output, frame by frame, on the beat.",
        epilog=_epilog())
    g = p.add_argument_group("music")
    g.add_argument("--mode", choices=("continue", "generate", "accompany"),
                   default="continue", help="what the model does (default %(default)s)")
    g.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME|PATH",
                   help="nottingham (one frame per eighth note), jsb_chorales (one per "
                        "quarter note), or a path to STEM.onnx (default %(default)s)")
    g.add_argument("--bpm", type=float, default=100.0,
                   help="tempo with --clock internal (default %(default)g: 0.3 s frames "
                        "for the nottingham model)")
    g.add_argument("--frames-per-beat", type=int, default=None, metavar="N",
                   help="grid: 1 quarter notes, 2 eighths, 4 sixteenths (default: the "
                        "model's own grid)")
    g.add_argument("--temperature", type=float, default=1.0,
                   help="sampling temperature, 0.1..2 on the mod wheel (default %(default)g)")
    g.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    g.add_argument("--beats-per-bar", type=int, default=4, metavar="N",
                   help="beats in a bar, for the spans below (default %(default)s)")
    g.add_argument("--silence-bars", type=float, default=1.0, metavar="BARS",
                   help="continue: answer after this much silence; accompany: rest after "
                        "it (default %(default)g)")
    g.add_argument("--answer-bars", type=float, default=None, metavar="BARS",
                   help="continue: length of an answer (default: as long as the phrase)")
    g.add_argument("--max-answer-bars", type=float, default=16.0, metavar="BARS",
                   help="continue: the longest answer (default %(default)g)")

    g = p.add_argument_group("midi")
    g.add_argument("--channel", type=int, default=1, help="output channel 1-16 "
                   "(default %(default)s)")
    g.add_argument("--velocity", type=_velocity, default=80, metavar="1-127|follow",
                   help="note-on velocity, or 'follow' the player's (default %(default)s)")
    g.add_argument("--latency-ms", type=float, default=0.0, metavar="MS",
                   help="send every note MS later (negative: earlier) to line it up with "
                        "what you hear (default %(default)g)")
    g.add_argument("--clock", choices=("internal", "midi"), default="internal",
                   help="internal: our own --bpm; midi: follow the DAW's MIDI clock, start, "
                        "stop, continue and song position on the input (default "
                        "%(default)s)")
    g.add_argument("--out-port", metavar="NAME", default=None,
                   help="play into this existing port (a unique part of its name is "
                        "enough) instead of making a virtual one")
    g.add_argument("--in-port", metavar="NAME", default=None,
                   help="listen to this existing port instead of making a virtual one")
    g.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                   help="auto: coremidi on macOS, windows multimedia on windows, jack "
                        "on linux when a jack server runs, else alsa (default %(default)s)")
    g.add_argument("--client-name", default=PROG, metavar="NAME",
                   help="client name of the virtual ports (default %(default)s)")
    g.add_argument("--cc-temperature", type=int, default=1, metavar="CC")
    g.add_argument("--cc-lock", type=int, default=20, metavar="CC")
    g.add_argument("--cc-key", type=int, default=21, metavar="CC")
    g.add_argument("--cc-panic", type=int, default=22, metavar="CC")
    g.add_argument("--state-cc", type=int, default=None, metavar="CC",
                   help="send the state (0 idle, 1 listening, 2 answering, 3 playing) as "
                        "this CC on the output channel (default: off)")

    g = p.add_argument_group("running")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the model runs (default %(default)s)")
    g.add_argument("--threads", type=int, default=1,
                   help="CPU threads for the model (default %(default)s: leaves a core to "
                        "the sending thread)")
    g.add_argument("--compute-ms", type=float, default=20.0, metavar="MS",
                   help="accompany: how long before each grid line the model decides; "
                        "notes pressed later join the next frame (default %(default)g)")
    g.add_argument("--realtime-priority", type=int, default=40, metavar="N",
                   help="ask for realtime (SCHED_FIFO) priority N for the sending thread, "
                        "below a jack server's usual 70; 0: do not ask (default "
                        "%(default)s; without the permission it runs at normal priority)")
    g.add_argument("--record", metavar="FILE.mid", default=None,
                   help="write what was played, both sides, to FILE.mid on exit")
    g.add_argument("--stop-after", type=float, default=None, metavar="SECONDS",
                   help="stop after SECONDS (for scripts and tests)")
    g.add_argument("--stats-json", metavar="FILE", default=None,
                   help="write timing statistics to FILE on exit (for benchmarks)")
    g.add_argument("-q", "--quiet", action="store_true",
                   help="print only errors")

    sub = p.add_subparsers(dest="command", metavar="COMMAND",
                           title="commands (without one: play live)")
    ports = sub.add_parser(
        "ports", help="list the midi ports you can play into and listen to",
        description="List the MIDI ports: those rnnrbm-live can play INTO (--out-port) "
                    "and those it can listen TO (--in-port).")
    ports.add_argument("--backend", choices=BACKEND_CHOICES, default=argparse.SUPPRESS,
                       help="as for live play (default auto)")
    ports.set_defaults(func=run_ports)
    _add_offline_commands(sub)
    return p


def _add_offline_commands(sub) -> None:
    try:
        from rnnrbm_live import offline
    except ModuleNotFoundError as e:  # offline (or what it needs) not in this build yet
        if not (e.name or "").startswith("rnnrbm_live."):
            raise
        return
    offline.add_commands(sub)


# ----------------------------------------------------------------------------- ports


def run_ports(args) -> int:
    from rnnrbm_live import ports
    backend = ports.choose_backend(getattr(args, "backend", "auto"))
    print(ports.describe_ports(backend, getattr(args, "client_name", PROG)))
    return 0


# ----------------------------------------------------------------------------- live


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


def _check(args) -> None:
    def bad(option: str, value, what: str):
        shown = f"{value:g}" if isinstance(value, float) else value
        raise UserError(f"{option} {shown}: {what}")

    if not math.isfinite(args.bpm) or not 20 <= args.bpm <= 400:
        bad("--bpm", args.bpm, "give a tempo between 20 and 400")
    if not 1 <= args.channel <= 16:
        bad("--channel", args.channel, "give a midi channel 1-16")
    if not math.isfinite(args.temperature) or not 0.05 <= args.temperature <= 10:
        bad("--temperature", args.temperature, "give a temperature between 0.05 and 10")
    if not math.isfinite(args.latency_ms) or abs(args.latency_ms) > 1000:
        bad("--latency-ms", args.latency_ms, "give an offset between -1000 and 1000 ms")
    for option, value in (("--silence-bars", args.silence_bars),
                          ("--answer-bars", args.answer_bars),
                          ("--max-answer-bars", args.max_answer_bars)):
        if value is not None and (not math.isfinite(value) or not 0 < value <= 256):
            bad(option, value, "give a number of bars above 0 (at most 256)")
    if not 1 <= args.beats_per_bar <= 32:
        bad("--beats-per-bar", args.beats_per_bar, "give 1 to 32 beats")
    if args.frames_per_beat is not None and not 1 <= args.frames_per_beat <= 24:
        bad("--frames-per-beat", args.frames_per_beat, "give 1 to 24 frames per beat")
    if not 0 <= args.realtime_priority <= 99:
        bad("--realtime-priority", args.realtime_priority, "give 0 (off) to 99")
    if args.threads < 1:
        bad("--threads", args.threads, "give at least 1 thread")
    if not math.isfinite(args.compute_ms) or not 1 <= args.compute_ms <= 1000:
        bad("--compute-ms", args.compute_ms, "give 1 to 1000 ms")
    if args.stop_after is not None and not args.stop_after > 0:
        bad("--stop-after", args.stop_after, "give a positive number of seconds")
    if args.state_cc is not None and not 0 <= args.state_cc <= 119:
        bad("--state-cc", args.state_cc, "give a controller number 0-119")
    try:
        _cc_map(args).check()
    except ValueError as e:
        raise UserError(str(e)) from None
    if args.record is not None:
        path = os.path.abspath(args.record)
        folder = os.path.dirname(path)
        if os.path.isdir(path):
            raise UserError(f"--record {args.record}: is a folder; give a file name such "
                            "as take.mid")
        if not os.path.isdir(folder):
            raise UserError(f"--record {args.record}: the folder {folder} does not exist; "
                            "create it or record elsewhere")
        if not os.access(folder, os.W_OK) or (os.path.exists(path)
                                              and not os.access(path, os.W_OK)):
            raise UserError(f"--record {args.record}: cannot write there; choose a "
                            "writable place")


def _cc_map(args) -> CCMap:
    return CCMap(temperature=args.cc_temperature, lock=args.cc_lock, key=args.cc_key,
                 panic=args.cc_panic)


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
    _check(args)
    say = (lambda line: None) if args.quiet else \
        (lambda line: print(f"{PROG}: {line}", file=sys.stderr, flush=True))
    stopper = _Stopper()
    stopper.install()

    from rnnrbm_live import ports as portmod
    from rnnrbm_live.engine import Engine, LiveConfig, write_recording
    from rnnrbm_live.pianoroll import N_KEYS
    from rnnrbm_live.session import StepSession

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
        state_cc=args.state_cc, cc=_cc_map(args), stop_after_s=args.stop_after,
        record=args.record is not None, learned_in_c=session.model.learned_in_c,
        realtime_priority=args.realtime_priority)

    holder: dict = {}

    def on_message(msg) -> None:  # the backend's thread; messages before the engine: dropped
        engine = holder.get("engine")
        if engine is not None:
            engine.on_message(msg)

    opened = portmod.open_ports(backend, args.out_port, args.in_port, on_message,
                                client_name=args.client_name)
    watch = None
    try:
        watch = portmod.PortWatch(backend, opened)
        engine = Engine(session, opened.output, config, log=say, port_check=watch.check,
                        out_name=opened.out_name)
        holder["engine"] = engine
        _banner(say, args, backend, opened, session, config, per_step)
        stopper.engine = engine
        if stopper.reason is not None:
            engine.stop(stopper.reason)
        ready = ("playing; ctrl+c stops" if args.clock == "internal"
                 else "waiting for the daw's midi clock (start); ctrl+c stops")
        engine.run(on_started=lambda: say(ready))
    finally:
        holder.pop("engine", None)
        with portmod.quiet_stderr():  # libjack complains at length if its server died
            if watch is not None:
                watch.close()
            opened.close()

    status = 0
    failure = engine.failure
    if failure is not None:
        status = 2 if isinstance(failure, UserError) else 1
        from rnnrbm_live.sender import PortFailed
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
            write_recording(args.record, engine, bpm=bpm)
            say(f"recorded both sides to {args.record}")
        except OSError as e:
            print(f"{PROG}: error: --record {args.record}: cannot write it "
                  f"({(e.strerror or str(e)).lower()}); nothing was recorded",
                  file=sys.stderr, flush=True)
            status = status or 2
    stats = engine.stats()
    if args.stats_json is not None:
        import json
        stats.update(stop_reason=engine.stop_reason, bpm=args.bpm, t0=engine.t0,
                     frame_seconds=config.frame_seconds, latency_s=config.latency_s,
                     sender_realtime=engine.sender_realtime,
                     slots=[[int(k), round(late, 7)] for k, late in
                            zip(engine.sender.lateness_frames, engine.sender.lateness)],
                     frames_per_beat=config.frames_per_beat, mode=config.mode,
                     provider=session.provider,
                     step_ms=round(per_step * 1000, 3))
        try:
            with open(args.stats_json, "w") as f:
                json.dump(stats, f, indent=1)
        except OSError as e:
            print(f"{PROG}: error: --stats-json {args.stats_json}: cannot write it "
                  f"({(e.strerror or str(e)).lower()})", file=sys.stderr, flush=True)
    say(f"stopped ({engine.stop_reason}): {stats['frames_sent']} frames sent, "
        f"{stats['late_frames']} late, {stats['skipped_frames']} skipped")
    return status


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
    if backend.key == "jack" and opened.out_virtual:
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


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        func = getattr(args, "func", None)
        if func is not None:
            return int(func(args) or 0)
        return run_live(args)
    except UserError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
