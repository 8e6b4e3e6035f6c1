"""`python -m rnnrbm_live.cli` is `rnnrbm-live`."""

import sys

from rnnrbm_live.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
