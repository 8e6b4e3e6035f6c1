"""rnnrbm-live: play an RNN-RBM live into a DAW or synth through MIDI ports.

    rnnrbm-live [options]          play live (see --help)
    rnnrbm-live ports              list the MIDI ports, with their directions
    rnnrbm-live continue|generate  offline commands (rnnrbm_live.cli.offline)

Errors a user can meet are one line, `rnnrbm-live: error: ...`, exit status 2; a stop by
SIGTERM, Ctrl+C or --stop-after exits 0 after silencing every note.
"""

from __future__ import annotations

import argparse
import signal
import sys

from rnnrbm_live.cli import PROG, leave_at_once
from rnnrbm_live.errors import UserError

# The command's modules (options, checks) import numpy: they load inside main, once Ctrl+C
# has its clean way out.


# Options of the top level that every command takes as its own when written before it.
ANY_COMMAND = ("quiet", "verbose")
PORTS_TAKES = ("backend", "client_name")


def build_parser() -> argparse.ArgumentParser:
    from rnnrbm_live.cli import options
    return options.build_parser(run_ports, _add_offline_commands)


def apply_options_before_command(parser: argparse.ArgumentParser, args) -> None:
    """`rnnrbm-live --model jsb_chorales --seed 5 continue tune.mid`: options written
    before a command apply to it when it has them (as `git -C` or `docker --host` do), and
    are a one-line error when it has not, or when one is given twice, differently. Never
    silently dropped."""
    from rnnrbm_live.cli import checks, options
    before = options.given(args, parser.prog)
    command = getattr(args, "command", None)
    if command is None:
        return
    sub = parser.command_parsers[command]
    after = options.given(args, sub.prog)
    takes = {action.dest for action in sub._actions}  # argparse keeps no public list
    takes.update(ANY_COMMAND + (PORTS_TAKES if command == "ports" else ()))
    for dest, value in before.items():
        option = checks.option_name(dest)
        if dest not in takes:
            raise UserError(f"{option} before {command}: {command} has no such option (it "
                            f"is for live play); drop it, see {PROG} {command} --help")
        if dest in after and after[dest] != value:
            raise UserError(f"{option} given twice, {checks.shown(value)} before {command} "
                            f"and {checks.shown(after[dest])} after it; give it once")
        setattr(args, dest, value)


def _add_offline_commands(sub) -> None:
    from rnnrbm_live.cli import offline
    offline.add_commands(sub)


# ----------------------------------------------------------------------------- ports


def run_ports(args) -> int:
    from rnnrbm_live.cli import checks
    from rnnrbm_live.live import ports
    checks.check_client_name(getattr(args, "client_name", PROG))
    backend = ports.choose_backend(getattr(args, "backend", "auto"))
    print(ports.describe_ports(backend, getattr(args, "client_name", PROG)))
    return 0


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    previous = signal.signal(signal.SIGINT, leave_at_once)
    try:
        return _run(argv)
    except KeyboardInterrupt:
        print(f"{PROG}: stopped (ctrl+c)", file=sys.stderr, flush=True)
        return 130
    finally:
        if previous is not None:  # called in-process (tests, a host program): put it back
            signal.signal(signal.SIGINT, previous)


def _run(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        apply_options_before_command(parser, args)
        func = getattr(args, "func", None)
        if func is not None:
            return int(func(args) or 0)
        from rnnrbm_live.cli.live import run_live
        return run_live(args)
    except UserError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
