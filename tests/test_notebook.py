"""docs/notebook.ipynb, executed headless in a local kernel as a user would run it, and
what it wrote checked: the issue's acceptance for the Python API, end to end."""

from __future__ import annotations

import shutil
import signal

import pytest

import flowers_sweep as fs
from flowers_sweep.aggregate.cli import main as aggregate_main

from .helpers.cli import HANG_GUARD_S, ROOT

NOTEBOOK = ROOT / "docs" / "notebook.ipynb"


def _text(cell: dict) -> str:
    """A code cell's outputs as text: streams, results and errors."""
    parts = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            parts.append(out["text"])
        elif out["output_type"] in ("execute_result", "display_data"):
            parts.append(out["data"].get("text/plain", ""))
        elif out["output_type"] == "error":
            parts.append(f"{out['ename']}: {out['evalue']}")
    return "".join(parts)


@pytest.mark.e2e
def test_the_example_notebook_runs(tmp_path, cache_dir):
    import nbformat
    from nbclient import NotebookClient

    shutil.copy(NOTEBOOK, tmp_path / NOTEBOOK.name)
    nb = nbformat.read(tmp_path / NOTEBOOK.name, as_version=4)
    # the kernel is this interpreter's (ipykernel's own spec), on localhost
    sigint = signal.getsignal(signal.SIGINT)  # the kernel's client sets Python's default
    client = NotebookClient(
        nb,
        timeout=HANG_GUARD_S,  # a cell's, and the kernel's start: a busy machine is slow
        startup_timeout=HANG_GUARD_S,
        kernel_name="python3",
        resources={"metadata": {"path": tmp_path}},
    )
    try:
        client.execute()
    finally:
        signal.signal(signal.SIGINT, sigint)
    code = [c for c in nb.cells if c.cell_type == "code"]
    outputs = [_text(c) for c in code]
    assert not any("Error" in o and "Traceback" in o for o in outputs)
    # every figure cell drew an image in the notebook's own (inline) backend
    images = [c for c in code if any("image/png" in o.get("data", {}) for o in c.outputs)]
    assert len(images) >= 2  # the seaborn re-plot and the report's accuracy figure
    assert "backend unchanged" in outputs[-1] and "agg" not in outputs[-1].lower()
    assert "4 runs; 8 rows of curves" in "".join(outputs)

    sweep_dir, run_dir = tmp_path / "sweeps" / "batch_x_size", tmp_path / "runs" / "baseline_cnn"
    report = fs.load(sweep_dir)
    assert len(report.runs) == 4 and set(report.runs["status"]) == {"completed"}
    assert {"trainer.batch_size", "dataset.image_size"} <= set(report.runs.columns)
    swept = zip(report.runs["trainer.batch_size"], report.runs["dataset.image_size"], strict=True)
    assert sorted(swept) == [(16, 32), (16, 48), (32, 32), (32, 48)]
    assert len(report.curves) == 4 * 2  # runs x epochs
    assert len(report.cases) == 4
    # the run trained through the API is an ordinary run folder for the CLI's aggregator
    # (its main, in this process: `python -m flowers_sweep.aggregate`, test_wheel)
    assert aggregate_main([str(run_dir)]) == 0
    assert (run_dir / "report" / "results.md").is_file()
