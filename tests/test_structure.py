"""The package's structure, checked from its source: what imports what."""

from __future__ import annotations

import subprocess
import sys

from .helpers.cli import ROOT


def test_reading_a_sweep_imports_no_torch():
    """The aggregator reads CSV and JSON files: a report of a sweep copied from a
    cluster must not pay torch's import (seconds) or need torch at all (shared/DESIGN.md:
    the aggregator reads files only)."""
    code = (
        "import sys, flowers_sweep.aggregate, flowers_sweep.aggregate.cli; "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip() == "[]", proc.stdout[:500]
