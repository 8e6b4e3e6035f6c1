"""The command line `rnnrbm-live`: live play (live.py, options.py), `ports`, and the
offline subcommands (offline.py); main.py dispatches. Nothing else imports from here."""

import os

PROG = "rnnrbm-live"  # the command's name, as messages start


def leave_at_once(signum, frame) -> None:
    """Ctrl+C before a command has set up its own stop (the live engine's, or an offline
    run's clean-up): nothing is written or sounding yet, so leave at once. A
    KeyboardInterrupt raised inside an import can come out as another error (onnxruntime's
    "initialization failed") or leave its threads waiting. Here, beside PROG, so that
    `python -m rnnrbm_live.cli` can set it before it imports anything else of ours."""
    os.write(2, f"{PROG}: stopped (ctrl+c)\n".encode())
    os._exit(130)
