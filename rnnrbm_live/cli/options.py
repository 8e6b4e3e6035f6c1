"""The live command line: its options, their help, and checking them before anything
opens (one line naming the option and value, exit status 2)."""

from __future__ import annotations

import argparse

from rnnrbm_live.cli import PROG, checks  # noqa: F401  (PROG: the name messages start with)
from rnnrbm_live.errors import UserError
from rnnrbm_live.live.controls import CCMap, describe

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


# --cc-NAME: (default, what that input cc does)
CC_OPTIONS = {
    "temperature": (1, "sets the temperature, 0.1..2; 1 is the mod wheel"),
    "lock": (20, "turns the scale lock on (64..127) and off"),
    "key": (21, "picks the lock's key: 0..11 c..b major, 12..23 minor, 24..127 follow "
                "the player"),
    "panic": (22, "silences every note at once; cc 120 and 123 always do"),
}


def given(args, prog: str) -> dict:
    """The options typed on the command line of parser `prog` (dest -> value), not
    their defaults; taken out of args."""
    return vars(args).pop(f"_given:{prog}", {})


def _mark(parser, namespace, dest: str, value) -> None:
    # Keyed by the parser's prog: a subcommand's namespace is copied over the top level's.
    vars(namespace).setdefault(f"_given:{parser.prog}", {})[dest] = value


class _Store(argparse._StoreAction):
    def __call__(self, parser, namespace, values, option_string=None):
        super().__call__(parser, namespace, values, option_string)
        _mark(parser, namespace, self.dest, values)


class _StoreTrue(argparse._StoreTrueAction):
    def __call__(self, parser, namespace, values, option_string=None):
        super().__call__(parser, namespace, values, option_string)
        _mark(parser, namespace, self.dest, True)


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line (no usage block), exit status 2, and
    the options that were typed are told from defaults (see `given`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register("action", None, _Store)
        self.register("action", "store", _Store)
        self.register("action", "store_true", _StoreTrue)

    def error(self, message: str):
        self.exit(2, f"{PROG}: error: {message.lower()}; see {self.prog} --help\n")


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
                   help="auto: coremidi on macOS, windows multimedia on windows; on "
                        "linux when a jack server runs jack-native (sample-accurate, "
                        "needs JACK-Client) or else jack (through rtmidi); else alsa "
                        "(default %(default)s)")
    g.add_argument("--client-name", default=PROG, metavar="NAME",
                   help="client name of the virtual ports (default %(default)s)")
    for control, (default, does) in CC_OPTIONS.items():
        g.add_argument(f"--cc-{control}", type=int, default=default, metavar="CC",
                       help=f"the input cc that {does} (default %(default)s)")
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
                        "below a jack server's usual 70; 0: do not ask (default %(default)s; without the "
                        "permission it runs at normal priority)")
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
    p.command_parsers = sub.choices
    return p


LIVE_NUMBERS = ("bpm", "temperature", "seed", "frames_per_beat", "beats_per_bar",
                "silence_bars", "answer_bars", "max_answer_bars", "channel", "latency_ms",
                "cc_temperature", "cc_lock", "cc_key", "cc_panic", "state_cc", "threads",
                "compute_ms", "realtime_priority", "stop_after")


def check(args) -> None:
    """Every live option, before anything opens; UserError names the option and value."""
    checks.check_ranges(args, LIVE_NUMBERS)
    if args.answer_bars is not None and args.answer_bars > args.max_answer_bars:
        raise UserError(f"--answer-bars {args.answer_bars:g}: longer than --max-answer-bars "
                        f"{args.max_answer_bars:g}; raise that too or shorten the answer")
    try:
        cc_map(args).check()
    except ValueError as e:
        raise UserError(str(e)) from None
    checks.check_client_name(args.client_name)
    if args.record is not None:
        checks.check_output_file("--record", args.record, "take.mid")
    if args.stats_json is not None:
        checks.check_output_file("--stats-json", args.stats_json, "stats.json")


def cc_map(args) -> CCMap:
    return CCMap(temperature=args.cc_temperature, lock=args.cc_lock, key=args.cc_key,
                 panic=args.cc_panic)
