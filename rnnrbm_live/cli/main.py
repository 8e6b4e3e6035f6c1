"""rnnrbm-live: play an RNN-RBM live into a DAW or synth through MIDI ports.

    rnnrbm-live [options]          play live (see --help)
    rnnrbm-live ports              list the MIDI ports, with their directions
    rnnrbm-live continue|generate  offline commands (rnnrbm_live.cli.offline)

Errors a user can meet are one line, `rnnrbm-live: error: ...`, exit status 2; a stop by
SIGTERM, Ctrl+C or --stop-after exits 0 after silencing every note.
"""

from __future__ import annotations

import argparse
import sys

from rnnrbm_live.cli import options
from rnnrbm_live.cli.options import PROG
from rnnrbm_live.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    return options.build_parser(run_ports, _add_offline_commands)


def _add_offline_commands(sub) -> None:
    from rnnrbm_live.cli import offline
    offline.add_commands(sub)


# ----------------------------------------------------------------------------- ports


def run_ports(args) -> int:
    from rnnrbm_live.live import ports
    backend = ports.choose_backend(getattr(args, "backend", "auto"))
    print(ports.describe_ports(backend, getattr(args, "client_name", PROG)))
    return 0


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
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
