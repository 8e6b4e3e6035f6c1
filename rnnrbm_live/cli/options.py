"""The live command line: its options, their help, and checking them before anything
opens (one line naming the option and value, exit status 2)."""

from __future__ import annotations

import argparse
import math
import os

from rnnrbm_live.errors import UserError
from rnnrbm_live.live.controls import CCMap, describe

PROG = "rnnrbm-live"
DEFAULT_MODEL = "nottingham"


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


def build_parser(run_ports, add_offline_commands) -> argparse.ArgumentParser:
    """The whole command line; the subcommands' runners come from the caller."""
    from rnnrbm_live.live.ports import BACKEND_CHOICES

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
    g.add_argument("-v", "--verbose", action="store_true",
                   help="also show what the midi libraries print (libjack's own lines)")

    sub = p.add_subparsers(dest="command", metavar="COMMAND",
                           title="commands (without one: play live)")
    ports = sub.add_parser(
        "ports", help="list the midi ports you can play into and listen to",
        description="List the MIDI ports: those rnnrbm-live can play INTO (--out-port) "
                    "and those it can listen TO (--in-port).")
    ports.add_argument("--backend", choices=BACKEND_CHOICES, default=argparse.SUPPRESS,
                       help="as for live play (default auto)")
    ports.set_defaults(func=run_ports)
    add_offline_commands(sub)
    return p


def check(args) -> None:
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
        cc_map(args).check()
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


def cc_map(args) -> CCMap:
    return CCMap(temperature=args.cc_temperature, lock=args.cc_lock, key=args.cc_key,
                 panic=args.cc_panic)
