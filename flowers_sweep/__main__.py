"""`python -m flowers_sweep [overrides]`: run one case, or with `-m` a sweep of them."""

import sys

from flowers_sweep.app import main

if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C outside a run (composing, between jobs): one line
        print("flowers_sweep: interrupted (Ctrl-C); run the same command again to resume",
              file=sys.stderr)  # fmt: skip
        sys.exit(130)
