"""`python -m flowers_sweep [overrides]`: run one case, or with `-m` a sweep of them."""

import sys

if __name__ == "__main__":
    try:
        from flowers_sweep.app import main  # inside: Ctrl-C while torch imports, too

        main()
    except KeyboardInterrupt:  # Ctrl-C outside a run (start-up, between jobs): one line
        print(
            "flowers_sweep: interrupted (Ctrl-C); run the same command again to resume",
            file=sys.stderr,
        )
        sys.exit(130)
