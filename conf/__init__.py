"""The Hydra config groups, importable as `flowers_sweep.conf` (see pyproject.toml), so
an installed wheel carries them and Hydra finds them at pkg://flowers_sweep.conf."""
