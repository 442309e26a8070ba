"""`python -m flowers_sweep [overrides]`: run one case, or with `-m` a sweep of them."""

from flowers_sweep.app import main

if __name__ == "__main__":
    main()
