"""What a run's config is: composed (CLI, API, other commands alike), its values
checked, `+key=` typos, `_target_` nodes, the command line's flags.
"""

# The clone's conf/ folder, shipped inside the package (pyproject.toml): Hydra finds it
# at pkg://flowers_sweep.conf in a clone and in an installed wheel alike.
CONFIG_MODULE = "flowers_sweep.conf"
