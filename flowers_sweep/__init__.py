"""Reproducible sweeps of the Flowers102 activation-function study."""

__version__ = "0.1.0"
