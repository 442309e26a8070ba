"""gpu_check.sh's two helpers: the versions, and one gpu_check.json with its summary.

    python benchmarks/gpu_check_report.py versions FILE
    python benchmarks/gpu_check_report.py merge OUT [--device D] [--quick] [--seconds S]

`versions` (torch needed) writes Python, torch, torchvision, CUDA, cuDNN, Hydra and GPU
facts to FILE. `merge` (standard library only, so it runs even when the set-up failed)
reads OUT/steps.tsv, OUT/versions.json, OUT/gpu_tests.xml and each step's OUT/STEP.json,
writes OUT/gpu_check.json and prints the summary; its exit status is the number of
steps that failed or ran out of time.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

STEPS = (
    "setup", "gpu_tests", "epoch_speed", "checkpoint_cost", "compile_gain",
    "concurrent_cases", "report_sweep", "data_pipeline", "resume_eager", "resume_compiled",
)  # fmt: skip
OTHERS = ("checkpoint_cost", "compile_gain")  # benchmarks gpu_check.sh runs when present


def versions(path: Path) -> None:
    import hydra
    import omegaconf
    import pytest
    import torch
    import torchvision

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "hydra": hydra.__version__,
        "omegaconf": omegaconf.__version__,
        "pytest": pytest.__version__,
        "cuda_available": torch.cuda.is_available(),
        "gpu_count": torch.cuda.device_count(),
        "gpus": [],
    }
    for i in range(info["gpu_count"]):
        p = torch.cuda.get_device_properties(i)
        info["gpus"].append({"name": p.name, "capability": f"{p.major}.{p.minor}",
                             "memory_gb": round(p.total_memory / 2**30, 1)})  # fmt: skip
    if shutil.which("nvidia-smi"):
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
             "--format=csv,noheader"], capture_output=True, text=True, timeout=20, check=False,
        )  # fmt: skip
        info["nvidia_smi"] = smi.stdout.strip().splitlines()
    Path(path).write_text(json.dumps(info, indent=1) + "\n")
    gpus = ", ".join(g["name"] for g in info["gpus"]) or "no CUDA GPU"
    print(f"Python {info['python']}, torch {info['torch']}, torchvision {info['torchvision']}, "
          f"CUDA {info['cuda']}, cuDNN {info['cudnn']}, Hydra {info['hydra']}; "
          f"{gpus}")  # fmt: skip


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def test_counts(xml: Path) -> dict[str, Any] | None:
    """pass/fail/skip counts from pytest's JUnit XML."""
    try:
        root = ET.parse(xml).getroot()
    except (OSError, ET.ParseError):
        return None
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "failures": []}
    for case in root.iter("testcase"):
        outcome = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), None)
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        if outcome == "failure":
            counts["failed"] += 1
            counts["failures"].append(name)
        elif outcome == "error":
            counts["errors"] += 1
            counts["failures"].append(name)
        elif outcome == "skipped":
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    counts["total"] = counts["passed"] + counts["failed"] + counts["errors"] + counts["skipped"]
    return counts


def log_figures(log: Path) -> list[str]:
    """The `ratio:` and `summary:` lines of a step's log (for benchmarks without JSON)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [x.strip() for x in lines if x.startswith(("ratio:", "summary:"))]


def fmt(x: Any, digits: int = 0) -> str:
    return "?" if x is None else f"{x:,.{digits}f}"


def summary_lines(report: dict[str, Any], out: Path) -> list[str]:
    steps, lines = report["steps"], []

    def failed(name: str) -> str | None:
        s = steps.get(name)
        if s is None:
            return "not run"
        if s["status"] in ("passed",):
            return None
        if s["status"] == "missing":
            return f"missing (benchmarks/{name}.py is not in this clone)"
        if s["status"] == "skipped":
            return "skipped (out of time)"
        return f"{s['status'].upper()} (exit {s['exit']}; {out / (name + '.log')})"

    v = report.get("versions") or {}
    gpus = ", ".join(f"{g['name']} ({g['capability']}, {g['memory_gb']} GB)"
                     for g in v.get("gpus", [])) or "no CUDA GPU"  # fmt: skip
    lines.append(f"versions: Python {v.get('python', '?')}, torch {v.get('torch', '?')}, "
                 f"torchvision {v.get('torchvision', '?')}, CUDA {v.get('cuda')}, cuDNN "
                 f"{v.get('cudnn')}; {gpus}" if v else f"versions: {failed('setup')}")  # fmt: skip

    t = report.get("gpu_tests")
    problem = failed("gpu_tests")
    if t:
        names = f": {', '.join(t['failures'])}" if t["failures"] else ""
        lines.append(f"gpu tests (tests/test_gpu.py): {t['passed']} passed, {t['failed']} failed, "
                     f"{t['errors']} errors, {t['skipped']} skipped{names}"
                     + (f" [{problem}]" if problem else ""))  # fmt: skip
    else:
        lines.append(f"gpu tests: {problem or 'no JUnit XML'}")

    e = report.get("epoch_speed")
    if e:
        for case, r in e["cases"].items():
            s, nf, nd = r["shipped"], r["nan_fill"], r["nondeterministic"]
            peak = r.get("peak_memory_mb")
            fill = "on" if s["fill_uninitialized_memory"] else "off"
            lines.append(
                f"epoch, {case} ({r['model']}, {r['precision']} {r['layout']}, batch "
                f"{r['batch_size']}, {e['train_size']} images at {e['image_size']} px): "
                f"shipped {fmt(s['img_s'])} img/s (NaN fill {fill}); NaN fill "
                f"{fmt(nf['img_s'])} img/s; deterministic=false {fmt(nd['img_s'])} img/s; "
                f"peak memory {'n/a' if peak is None else fmt(peak) + ' MB'}; device pipeline "
                f"{fmt(r['pipeline_img_s'])} img/s = {r['pipeline_over_step']:.1f}x the step"
            )  # fmt: skip
    else:
        lines.append(f"epoch_speed: {failed('epoch_speed')}")

    for name in OTHERS:
        problem = failed(name)
        figures = report.get(f"{name}_log_lines") or []
        if problem and not figures:
            lines.append(f"{name}: {problem}")
        else:
            lines.append(f"{name}: {'; '.join(figures) or 'see ' + name + '.json'}"
                         + (f" [{problem}]" if problem else ""))  # fmt: skip

    c = report.get("concurrent_cases")
    if c:
        lines.append(f"four cases on one device ({c['train_size']} images each): concurrent "
                     f"{fmt(c['concurrent_img_s'])} img/s aggregate, sequential "
                     f"{fmt(c['sequential_img_s'])} img/s (ratio {c['ratio']:.2f})")  # fmt: skip
    else:
        lines.append(f"concurrent_cases: {failed('concurrent_cases')}")

    r = report.get("report_sweep")
    if r:
        p = r["parts_s"]
        lines.append(f"report projected (4 cases, 100 epochs): {r['total_s'] / 60:.1f} min: "
                     f"training {p['train'] / 60:.1f}, evaluation {p['eval'] / 60:.1f}, "
                     f"checkpoints {p['checkpoints'] / 60:.2f}, start-up "
                     f"{p['startup'] / 60:.2f} min (start-up {r['startup']['startup_s']:.1f} s "
                     f"a run)")  # fmt: skip
    else:
        lines.append(f"report_sweep: {failed('report_sweep')}")

    d = report.get("data_pipeline")
    if d:
        lines.append(f"data pipeline ({d['images']} JPEGs to {d['size']} px): ours on "
                     f"{d['device']} {fmt(d['ours_img_s'])} img/s; the report's "
                     f"{fmt(d['report_img_s'])} img/s in one process, "
                     f"{fmt(d['report_loader_img_s'])} img/s with {d['workers']} DataLoader "
                     f"workers")  # fmt: skip
    else:
        lines.append(f"data_pipeline: {failed('data_pipeline')}")

    for name in ("resume_eager", "resume_compiled"):
        x = report.get(name)
        label = name.replace("_", ", ")
        if x and x.get("equal") is not None:
            diff = x.get("largest_difference")
            verdict = "equal to the twin" if diff == 0 else f"largest difference {diff}"
            lines.append(f"{label}: {verdict} (tolerance {x['tolerance']}; resumed after epoch "
                         f"{x.get('resumed_after_epoch')}; {x['images_per_split']} images a "
                         f"split at {x['image_size']} px"
                         f"{'; ' + ' '.join(x['overrides']) if x.get('overrides') else ''})"
                         + (f" [{failed(name)}]" if failed(name) else ""))  # fmt: skip
        else:
            lines.append(f"{label}: {failed(name)}")

    by_status: dict[str, list[str]] = {}
    for name, s in steps.items():
        by_status.setdefault(s["status"], []).append(name)
    lines.append("steps: " + "; ".join(f"{k} {len(v)}" + ("" if k == "passed" else
                 f" ({', '.join(v)})") for k, v in by_status.items()))  # fmt: skip
    return lines


def merge(out: Path, device: str, quick: bool, seconds: int) -> int:
    steps: dict[str, dict[str, Any]] = {}
    tsv = out / "steps.tsv"
    if tsv.is_file():
        for line in tsv.read_text().splitlines():
            name, status, rc, secs, limit = line.split("\t")
            logged = status not in ("missing", "skipped")
            steps[name] = {"status": status, "exit": int(rc) if rc else None,
                           "seconds": int(secs), "limit_s": int(limit),
                           "log": f"{name}.log" if logged else None}  # fmt: skip
    report: dict[str, Any] = {
        "device": device,
        "quick": quick,
        "total_s": seconds,
        "out": str(out),
        "versions": read_json(out / "versions.json"),
        "steps": steps,
        "gpu_tests": test_counts(out / "gpu_tests.xml"),
    }
    for name in STEPS[2:]:
        report[name] = read_json(out / f"{name}.json")
    for name in OTHERS:
        report[f"{name}_log_lines"] = log_figures(out / f"{name}.log")
    report["missing"] = [n for n, s in steps.items() if s["status"] == "missing"]
    report["summary"] = summary_lines(report, out)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")
    name = (report["versions"] or {}).get("gpus") or [{"name": device}]
    print(f"\n== gpu_check summary: {device} ({name[0]['name']}), "
          f"{'quick toy sizes' if quick else 'full sizes'}, {seconds} s; logs and "
          f"gpu_check.json in {out}")  # fmt: skip
    print("\n".join(report["summary"]))
    return sum(s["status"] in ("failed", "timed out") for s in steps.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("versions")
    v.add_argument("file", type=Path)
    m = sub.add_parser("merge")
    m.add_argument("out", type=Path)
    m.add_argument("--device", default="cuda")
    m.add_argument("--quick", action="store_true")
    m.add_argument("--seconds", type=int, default=0)
    args = parser.parse_args()
    if args.command == "versions":
        versions(args.file)
        return 0
    return merge(args.out, args.device, args.quick, args.seconds)


if __name__ == "__main__":
    sys.exit(main())
