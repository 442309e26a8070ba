"""`python -m flowers_sweep [overrides]` (or the `flowers-sweep` command): run one case,
or with `-m` a sweep of them."""

import sys


def main() -> None:
    """The command line's door: Hydra's arguments prepared, the run or sweep, and the
    one line a Ctrl-C outside a run gets."""
    try:
        from flowers_sweep.app import main  # inside: Ctrl-C while torch imports, too
        from flowers_sweep.config.command_line import UsageError, hydra_args

        try:
            sys.argv[1:] = hydra_args(sys.argv[1:])
        except UsageError as exc:  # flags Hydra refuses, a missing -cd folder: one line
            print(f"flowers_sweep: error: {exc}", file=sys.stderr)
            sys.exit(2)
        main()
    except KeyboardInterrupt as exc:  # Ctrl-C outside a run (start-up, between jobs)
        # Not imported here: Ctrl-C may have come while torch was half imported, and
        # importing more would crash; a LaunchStopped comes only once it is loaded.
        stopping = sys.modules.get("flowers_sweep.job.stopping")
        if stopping and isinstance(exc, stopping.LaunchStopped):  # jobs saved their work
            print(exc, file=sys.stderr)
            sys.exit(exc.exit_status)
        print(
            "flowers_sweep: interrupted (Ctrl-C); run the same command again to resume",
            file=sys.stderr,
        )
        sys.exit(130)


if __name__ == "__main__":
    main()
