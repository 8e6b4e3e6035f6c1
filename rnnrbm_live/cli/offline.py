"""The offline subcommands, `continue` and `generate`: their options, and running them with
one-line errors."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Callable

from rnnrbm_live.bundled import bundled_names
from rnnrbm_live.cli import checks
from rnnrbm_live.errors import UserError
from rnnrbm_live.offline.continuation import (DEFAULT_MAX_PRIMER_BARS, DEFAULT_MODEL,
                                              GENERATE_BPM, Continuation, continue_midi,
                                              generate, parse_time_signature)
from rnnrbm_live.offline.output import note


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `continue` and `generate` on the rnnrbm-live subparsers; each parsed
    namespace's func(args) runs the command and returns the exit status."""
    cont = subparsers.add_parser(
        "continue", help="continue a MIDI clip, like Magenta Studio's Continue",
        description="Write VARIATIONS continuations of a MIDI clip, each BARS bars long, "
                    "in the clip's key, tempo, time signature and channel.")
    cont.add_argument("primer", help="the MIDI file to continue")
    _add_common(cont)
    cont.add_argument("--only-continuation", action="store_true",
                      help="write only the continuation, not the primer before it")
    cont.add_argument("--max-primer-bars", type=int, default=DEFAULT_MAX_PRIMER_BARS,
                      metavar="N", help="refuse longer primers (default %(default)s)")
    cont.set_defaults(func=_run_continue)

    gen = subparsers.add_parser(
        "generate", help="generate MIDI from scratch, as the original tutorial does",
        description="Write VARIATIONS pieces of BARS bars each, sampled from the model's "
                    "initial state.")
    _add_common(gen)
    gen.add_argument("--name", default="generated",
                     help="file name stem: NAME-1.mid, NAME-2.mid, ... (default %(default)s)")
    gen.add_argument("--time-signature", default="4/4", metavar="N/D",
                     help="time signature that sets the bar length (default %(default)s)")
    gen.add_argument("--bpm", type=float, default=GENERATE_BPM,
                     help="tempo written to the files (default %(default)g)")
    gen.set_defaults(func=_run_generate)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bars", type=int, default=8, help="bars to write (default %(default)s)")
    p.add_argument("--variations", type=int, default=4,
                   help="how many different files to write (default %(default)s)")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="above 1 wilder, below 1 tamer (default %(default)g)")
    p.add_argument("--seed", type=int, default=None,
                   help="the same seed writes the same files (default: a random one, "
                        "printed)")
    p.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME|PATH",
                   help=f"a bundled model ({', '.join(bundled_names()) or 'none installed'}"
                        ") or an exported STEM.onnx (default %(default)s)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where to run the model (default %(default)s: the GPU when there "
                        "is one)")
    p.add_argument("--threads", type=int, default=1,
                   help="cpu threads for the model (default %(default)s)")
    p.add_argument("-o", "--out-dir", default=".", metavar="DIR",
                   help="folder to write into (default: the current folder)")
    p.add_argument("--plot", action="store_true", help="also write a piano-roll .png of "
                   "each file (needs the plot extra)")
    p.add_argument("--wav", action="store_true", help="also render a .wav of each file "
                   "(needs fluidsynth and a general midi soundfont)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace files of an earlier run (by default a file that exists "
                        "is an error)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print only the written files and errors")


# ----------------------------------------------------------------------------- checks

OFFLINE_NUMBERS = ("bars", "variations", "temperature", "seed", "threads",
                   "max_primer_bars", "bpm")


def check_options(args: argparse.Namespace) -> None:
    """The options of `continue` and `generate`, before the model opens; UserError names
    the option, the value and the range."""
    checks.check_ranges(args, OFFLINE_NUMBERS)
    signature = getattr(args, "time_signature", None)
    if signature is not None:
        try:
            parse_time_signature(signature)
        except UserError:
            raise UserError(f"--time-signature {signature}: give it as beats/note value, "
                            "beats 1 to 64, note value 1, 2, 4, 8, 16 or 32 (e.g. 4/4, "
                            "3/4 or 6/8)") from None


def _checked(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A command that first checks its options: a bad one is one line, exit status 2."""
    def checked_run(args: argparse.Namespace) -> int:
        try:
            check_options(args)
        except UserError as e:
            print(f"rnnrbm-live: error: {e}", file=sys.stderr)
            return 2
        return run(args)
    return checked_run


@_checked
def _run_continue(args: argparse.Namespace) -> int:
    return _guarded(lambda: continue_midi(
        args.primer, bars=args.bars, variations=args.variations,
        temperature=args.temperature, seed=args.seed, model=args.model, device=args.device,
        out_dir=args.out_dir, only_continuation=args.only_continuation, plot=args.plot,
        wav=args.wav, max_primer_bars=args.max_primer_bars, threads=args.threads,
        progress=True, overwrite=args.overwrite), quiet=getattr(args, "quiet", False))


@_checked
def _run_generate(args: argparse.Namespace) -> int:
    return _guarded(lambda: generate(
        bars=args.bars, variations=args.variations, temperature=args.temperature,
        seed=args.seed, model=args.model, device=args.device, out_dir=args.out_dir,
        name=args.name, time_signature=args.time_signature,
        bpm=args.bpm, plot=args.plot, wav=args.wav, threads=args.threads, progress=True,
        overwrite=args.overwrite), quiet=getattr(args, "quiet", False))


def _guarded(run: Callable[[], Continuation], quiet: bool = False) -> int:
    """Run a command: its files on stdout, a summary line on stderr (unless quiet); a
    UserError is one line on stderr and exit status 2, Ctrl+C one line and 130 (files
    are moved in only once all are written, so none is half written), never a
    traceback."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # main's quick exit ends here
    try:
        result = run()
    except UserError as e:
        print(f"rnnrbm-live: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rnnrbm-live: stopped (ctrl+c); no file written", file=sys.stderr)
        return 130
    for path in result.paths + result.plots + result.wavs:
        print(path)
    if quiet:
        return 0
    key = f", primer in {result.key} (shifted {result.shift:+d} to c)" \
        if result.key is not None else ""
    note(f"{len(result.rolls)} x {result.bars} bars of model {result.model} on "
         f"{result.provider}, seed {result.seed}{key}")
    return 0
