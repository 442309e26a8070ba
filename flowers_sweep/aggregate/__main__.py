"""`python -m flowers_sweep.aggregate SWEEP_DIR ...`: see cli.py."""

import sys

from flowers_sweep.aggregate.cli import main

if __name__ == "__main__":
    sys.exit(main())
