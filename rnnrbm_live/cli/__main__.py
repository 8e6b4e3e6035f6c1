"""`python -m rnnrbm_live.cli` is `rnnrbm-live`."""

import signal
import sys

from rnnrbm_live.cli import leave_at_once

if __name__ == "__main__":
    # Ctrl+C while main's module is still importing leaves in one line too; main sets the
    # same handler again for the installed command, which imports main directly.
    signal.signal(signal.SIGINT, leave_at_once)
    from rnnrbm_live.cli.main import main
    sys.exit(main())
