"""Lint and format are part of the suite, so CI holds the style line too."""

import ast
import io
import re
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]])
def test_ruff_clean(args):
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is missing: install the dev extra (pip install -e '.[dev]')"
    proc = subprocess.run([ruff, *args], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_front_page_is_short_and_every_page_it_links_exists():
    """The README stays a front page (depth lives in docs/), and no link is dead, in it
    or in the docs pages."""
    readme = ROOT / "README.md"
    assert len(readme.read_bytes()) <= 8000
    for page in [readme, *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)", page.read_text(encoding="utf-8")):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.name} links to {target}"


# --- the package's own shape ----------------------------------------------------------

PACKAGE = ROOT / "flowers_sweep"
MAX_FMT_SKIPS = 10


def package_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def run_folder_names() -> dict[str, str]:
    """The run folder's file names as runrecord.py defines them, by constant name: every
    module-level `*_FILE` string and HYDRA_DIR, and the evaluation stems (`*_STEM`,
    `*_STEMS`) where it defines some."""
    from flowers_sweep.record import runrecord

    names = {}
    for key, value in vars(runrecord).items():
        if key.endswith("_FILE") or key == "HYDRA_DIR" or key.endswith("_STEM"):
            names[key] = value
        elif key.endswith("_STEMS"):
            names.update({f"{key}[{i}]": v for i, v in enumerate(value)})
    assert all(isinstance(v, str) and v for v in names.values()), names
    return names


def docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings: the first statement of a module,
    class or function, when it is a bare string."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                found.add(id(first.value))
    return found


def string_literals(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string constant of the source but its docstrings, the
    literal parts of f-strings included (they are Constant nodes inside JoinedStr)."""
    tree = ast.parse(source)
    skip = docstrings(tree)
    return sorted(
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
    )


def named_files(text: str, names: dict[str, str]) -> list[str]:
    """The constants whose file name the text holds as a name of its own: not inside a
    longer name (`best_model.pt` is not `model.pt`, `plugins.hydra_x` is not `.hydra`)."""
    return [
        key
        for key, name in names.items()
        if re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", text)
    ]


def literal_file_names(source: str, names: dict[str, str]) -> list[tuple[int, str, list[str]]]:
    return [
        (line, text, hit)
        for line, text in string_literals(source)
        if (hit := named_files(text, names))
    ]


def test_the_collector_finds_planted_file_names_and_skips_docstrings():
    source = '''"""A module about result.json."""
import json
x = "result.json"


def f(d):
    """Reads {d}/metrics.csv."""
    y = f"{d}/metrics.csv"
    z = f"{d!r}: no {HYDRA_DIR}/config.yaml here" + ".hydra"
    return "best_model.pt", "plugins.hydra_sweeper", "model.pt is missing", "checkpoint.pts"


class C:
    """model_best_val.pt"""

    name = "traceback.txt"
'''
    names = run_folder_names()
    found = sorted((line, hit) for line, _, hit in literal_file_names(source, names))
    assert found == [
        (3, ["RESULT_FILE"]),
        (8, ["METRICS_FILE"]),
        (9, ["CONFIG_FILE"]),
        (9, ["HYDRA_DIR"]),
        (10, ["WEIGHTS_FILE"]),
        (16, ["TRACEBACK_FILE"]),
    ]


def test_run_folder_file_names_are_spelled_only_in_runrecord():
    """A file name of the run folder written out anywhere else is a second definition
    that a rename would miss: use runrecord's constant."""
    names = run_folder_names()
    assert {"RESULT_FILE", "METRICS_FILE", "CONFIG_FILE", "HYDRA_DIR", "WEIGHTS_FILE"} <= set(
        names
    )
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {text!r} spells {', '.join(hit)}"
        for path in package_modules()
        if path.name != "runrecord.py"
        for line, text, hit in literal_file_names(path.read_text(encoding="utf-8"), names)
    ]
    assert not offenders, "\n".join(offenders)


def fmt_markers(source: str) -> list[int]:
    """Lines of the source's `# fmt: skip` (and `# fmt: off`) comments, strings aside."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return [
        t.start[0]
        for t in tokens
        if t.type == tokenize.COMMENT and re.search(r"fmt:\s*(skip|off)\b", t.string)
    ]


def test_the_package_has_at_most_10_fmt_skips():
    """Each marker is a line the formatter may not touch; a few tables earn one."""
    assert fmt_markers('x = [1,  2]  # fmt: skip\ns = "# fmt: skip"\n# fmt: off\n') == [1, 3]
    markers = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in package_modules()
        for line in fmt_markers(path.read_text(encoding="utf-8"))
    ]
    assert len(markers) <= MAX_FMT_SKIPS, f"{len(markers)} markers:\n" + "\n".join(markers)


def test_the_package_never_switches_matplotlibs_backend():
    """Figures are built as matplotlib.figure.Figure, never through pyplot, so that a
    notebook's backend (inline, widget) is left as it was after a report is drawn."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Call) and ast.unparse(node.func) == "matplotlib.use":
                names = ["matplotlib.use()"]
            offenders += [
                f"{path.relative_to(ROOT)}:{node.lineno}: {n}"
                for n in names
                if n.startswith(("matplotlib.pyplot", "matplotlib.use"))
            ]
    assert offenders == []
