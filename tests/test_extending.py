"""docs/extending.md as a user follows it: its files written out, its commands run.

The page marks each file it shows (`<!-- file: PATH -->` before the fenced block) and
each block of commands that runs (`<!-- run: STEP -->`). The files are written into a
project folder as the page lays them out, and each step's commands run there, as
written (tiny settings appended): each training command and sweep through the real CLI
with the project on PYTHONPATH, once per behaviour; the steps that read what those wrote
(evaluate, predict, aggregate, summary, the second run that is skipped), the timm run
and the refusal in this process, as `python -m` runs them from the project folder (the
real commands' own tests start them). Every other command on the page, and every error
it shows, is composed and checked here in-process against the same folder:
test_docs_commands leaves the page's `-cd` commands to this file.
"""

from __future__ import annotations

import csv
import importlib
import json
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torchvision
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from PIL import Image

import flowers_sweep as fs
from flowers_sweep.data.synthetic import flower_classes
from flowers_sweep.errors import ConfigError
from flowers_sweep.models import build_model, count_parameters
from flowers_sweep.models.activations import ACTIVATIONS

from .helpers.cli import ROOT, TINY, keep_logging, metrics, result, run_app, run_cli
from .test_docs_commands import compose_like_the_cli

PAGE = ROOT / "docs" / "extending.md"
HYDRA_MODULES = ("flowers_sweep", "flowers_sweep.summary")  # those that take overrides
ERROR = "flowers_sweep: error: "
FENCED = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
MARKED = re.compile(r"^<!-- (file|run): (\S+) -->\n```[^\n]*\n(.*?)^```", re.S | re.M)
COMMAND = re.compile(r"^(?:\$ )?python -m (\S+)(.*)$")
# The page's <!-- run: --> steps, each run by a test below.
STEPS = {"activations", "refused", "torchvision", "timm", "train", "sweep", "summary", "use",
         "schedules"}  # fmt: skip
# Appended to each training command: TINY, and one batch an epoch (ResNets are slow here).
SMALL = [*TINY, "dataset.train_size=16"]


@dataclass
class Command:
    """One command the page shows, and the error line it shows after it, if any."""

    module: str
    args: list[str]
    line: int
    error: str | None = None


def commands_in(block: str, first_line: int = 1) -> list[Command]:
    """The `python -m` commands of a fenced block (`$ ` prompts and `  # ` comments
    dropped), each with the `flowers_sweep: error:` line that follows it."""
    found: list[Command] = []
    for number, line in enumerate(block.splitlines(), start=first_line):
        match = COMMAND.match(line)
        if match:
            rest = match.group(2).split("  #")[0].split(" # ")[0]
            found.append(Command(match.group(1), shlex.split(rest), number))
        elif line.startswith(ERROR) and found and found[-1].error is None:
            found[-1].error = line[len(ERROR) :]
    return found


def read_page(text: str) -> tuple[dict[str, str], dict[str, list[Command]], list[Command]]:
    """The page's files by path, its runnable steps by name, and all its commands."""
    files: dict[str, str] = {}
    steps: dict[str, list[Command]] = {}
    for kind, name, body in MARKED.findall(text):
        target = files if kind == "file" else steps
        assert name not in target, f"{PAGE.name} marks {kind} {name} twice"
        target[name] = body if kind == "file" else commands_in(body)
    every = []
    for match in FENCED.finditer(text):
        every += commands_in(match.group(1), text[: match.start(1)].count("\n") + 1)
    return files, steps, every


FILES, RUNS, ALL_COMMANDS = read_page(PAGE.read_text(encoding="utf-8"))
COMPOSED = [c for c in ALL_COMMANDS if c.module in HYDRA_MODULES]


def each_value(args: list[str]) -> list[list[str]]:
    """The arguments, then once more for each further value of each swept key (the others
    at their first value): the page's sweeps, every value composed at least once."""
    variants = [args]
    for at, arg in enumerate(args):
        if arg.startswith("-"):
            continue
        (parsed,) = OverridesParser.create().parse_overrides([arg])
        if parsed.is_sweep_override() and parsed.is_discrete_sweep():
            key = parsed.get_key_element()
            variants += [
                [*args[:at], f"{key}={value}", *args[at + 1 :]]
                for value in list(parsed.sweep_string_iterator())[1:]
            ]
    return variants


def value_of(args: list[str], key: str) -> str | None:
    """The last `key=value` among the arguments."""
    found = [a.split("=", 1)[1] for a in args if a.startswith(f"{key}=")]
    return found[-1] if found else None


def step(name: str) -> list[Command]:
    assert RUNS.get(name), f"{PAGE.name} has no commands marked <!-- run: {name} -->"
    return RUNS[name]


def page_yaml(path: str) -> dict:
    return OmegaConf.to_container(OmegaConf.create(FILES[path]))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The page's `project/` folder: every file it shows, where it shows it (modules a
    test imports from it are forgotten after the test: conftest.py)."""
    root = tmp_path_factory.mktemp("extending") / "project"
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text + "\n")
    return root


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory) -> Path:
    """A torch hub cache holding torchvision's IMAGENET1K_V1 file for the page's model,
    under its real name: randomly initialised weights in the file's place."""
    (command,) = step("torchvision")
    name, home = value_of(command.args, "model.name"), tmp_path_factory.mktemp("torch_home")
    enum = torchvision.models.get_model_weights(name)["IMAGENET1K_V1"]
    path = home / "hub" / "checkpoints" / Path(enum.url).name
    path.parent.mkdir(parents=True)
    torch.save(torchvision.models.get_model(name, num_classes=1000).state_dict(), path)
    return home


def run_step(project: Path, command: Command, *extra: str, cache: Path, env=None):
    """The command as the page shows it, run in the project folder, `extra` appended."""
    path = os.pathsep.join(p for p in (str(project), os.environ.get("PYTHONPATH")) if p)
    return run_cli(
        *command.args, *extra, module=command.module, cwd=project, cache=cache,
        env={"PYTHONPATH": path, **(env or {})},
    )  # fmt: skip


# The main() of each command the page runs in this process (aggregate's is in its cli)
MAINS = {"flowers_sweep.aggregate": "flowers_sweep.aggregate.cli"}


def run_in_process(project: Path, command: Command, *extra: str, monkeypatch) -> int:
    """The command as the page shows it, `extra` appended, in this process as `python -m`
    runs it from the project folder (the cwd, first on the import path); its exit status.
    Output goes to capsys; the cache is FLOWERS_SWEEP_CACHE's (cache_dir's)."""
    monkeypatch.chdir(project)
    monkeypatch.syspath_prepend(str(project))
    args = [*command.args, *extra]
    if command.module == "flowers_sweep":
        return run_app(args, monkeypatch)
    keep_logging(monkeypatch)
    return importlib.import_module(MAINS.get(command.module, command.module)).main(args)


def ok(proc) -> None:
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])


def train(project: Path, name: str, *extra: str, cache: Path, env=None) -> Path:
    """Run step `name`'s first command (tiny); its run folder: the page's, else
    outputs/<name> in the project."""
    command = step(name)[0]
    run_dir = value_of(command.args, "hydra.run.dir") or f"outputs/{name}"
    where = f"hydra.run.dir={run_dir}"
    ok(run_step(project, command, *SMALL, where, *extra, cache=cache, env=env))
    return project / run_dir


def sweep(project: Path, command: Command, *extra: str, cache: Path) -> list[Path]:
    """Run a sweep (tiny, no report); its run folders in job order."""
    assert "-m" in command.args and value_of(command.args, "hydra.sweep.dir")
    ok(run_step(project, command, *SMALL, "aggregate=false", *extra, cache=cache))
    folder = project / value_of(command.args, "hydra.sweep.dir")
    return sorted((d for d in folder.iterdir() if d.name.isdigit()), key=lambda d: int(d.name))


def tiny_net_parameters(project: Path) -> int:
    """TinyNet built directly, with the preset's keys, for the dataset's 10 classes."""
    keys = {k: v for k, v in page_yaml("myconf/model/tiny_net.yaml").items() if k != "weights"}
    assert keys.pop("_target_") == "tiny.TinyNet"
    scope: dict = {}
    exec(compile((project / "tiny.py").read_text(), "tiny.py", "exec"), scope)
    return count_parameters(scope["TinyNet"](num_classes=10, **keys))


def test_the_page_marks_the_files_and_steps_these_tests_use():
    assert set(RUNS) == STEPS, "a new <!-- run: --> step needs its test here"
    assert {"tiny.py", "my_layers.py", "schedules.py", "myconf/model/tiny_net.yaml"} <= set(FILES)
    assert all(RUNS.values()) and len(COMPOSED) >= 15
    assert sum(c.error is not None for c in COMPOSED) >= 5  # the errors it shows
    assert all(c.module.startswith("flowers_sweep") for c in ALL_COMMANDS)


@pytest.mark.parametrize("command", COMPOSED, ids=[f"line{c.line}" for c in COMPOSED])
def test_each_command_composes_and_each_error_is_the_line_shown(
    command, project, torch_home, monkeypatch
):
    """What the CLI composes for the page's command (each value of a sweep), against the
    page's folder, and the checks a run makes before reading data: none fails, but those
    shown failing, which fail with the very line the page shows ("..." ends a line the
    page shortens)."""
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    args = list(command.args)
    where = project
    if "-cd" in args:
        at = args.index("-cd")
        if args[at + 1].startswith(f"{project.name}/"):  # run from the folder above
            where = project.parent
        args[at : at + 2] = [f"hydra.searchpath=[file://{where / args[at + 1]}]"]
    if where == project:  # `python -m` puts the folder it runs in on the import path
        monkeypatch.syspath_prepend(str(project))
    else:  # nor imported before, in this process
        for name, module in list(sys.modules.items()):
            if str(getattr(module, "__file__", "") or "").startswith(str(project)):
                monkeypatch.delitem(sys.modules, name)
    if command.error is None:
        for variant in each_value(args):
            compose_like_the_cli(variant, check_values=True)
        return
    with pytest.raises(ConfigError) as caught:
        compose_like_the_cli(args, check_values=True)
    shown = command.error.removesuffix("...")
    said = str(caught.value)
    assert said.startswith(shown) if command.error.endswith("...") else said == shown


@pytest.fixture(scope="module")
def tiny_net_run(project, cache_dir) -> Path:
    """The page's first TinyNet command, trained once for the tests that use the run."""
    return train(project, "train", cache=cache_dir)


@pytest.mark.e2e
def test_your_model_trains_from_your_config_folder(tiny_net_run, project):
    res = result(tiny_net_run)
    assert res["status"] == "completed"
    assert (res["model"], res["activation"]) == ("tiny_net", "relu")
    assert res["params"] == tiny_net_parameters(project)


def test_the_same_command_again_skips_the_completed_run(
    tiny_net_run, project, cache_dir, monkeypatch, capsys
):
    first, again = step("train")
    assert again.args == first.args  # "run the same command again"
    before = (tiny_net_run / "result.json").read_text(), metrics(tiny_net_run)
    assert run_in_process(project, again, *SMALL, monkeypatch=monkeypatch) == 0
    out, err = capsys.readouterr()
    assert "already holds a completed run of these settings: skipped" in out + err
    assert ((tiny_net_run / "result.json").read_text(), metrics(tiny_net_run)) == before


def test_evaluate_rebuilds_your_model_from_the_run(
    tiny_net_run, project, cache_dir, monkeypatch, capsys
):
    evaluate, _ = step("use")
    assert evaluate.module == "flowers_sweep.evaluate"
    assert project / evaluate.args[0] == tiny_net_run  # the folder the page trained
    code = run_in_process(project, evaluate, monkeypatch=monkeypatch)
    out, err = capsys.readouterr()
    assert code == 0, (out[-2000:], err[-3000:])
    top1 = float(re.search(r"^top1: ([\d.]+)$", out, re.M).group(1))
    assert top1 == pytest.approx(result(tiny_net_run)["test_acc"], abs=1e-4)
    with open(tiny_net_run / "per_class.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 10
    assert (tiny_net_run / "confusion_matrix.png").stat().st_size > 0


def test_predict_names_five_classes_for_an_image(
    tiny_net_run, project, cache_dir, monkeypatch, capsys
):
    _, predict = step("use")
    assert predict.module == "flowers_sweep.predict"
    assert project / predict.args[0] == tiny_net_run
    (image,) = predict.args[1:]
    Image.new("RGB", (48, 40), (200, 40, 90)).save(project / image)
    code = run_in_process(project, predict, monkeypatch=monkeypatch)
    out, err = capsys.readouterr()
    assert code == 0, (out[-2000:], err[-3000:])
    rows = re.findall(r"^\s*(\d)\.\s+(\S+)\s+([\d.]+)%$", out, re.M)
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4, 5]
    assert {r[1] for r in rows} <= {c.name for c in flower_classes(10)}
    shares = [float(r[2]) for r in rows]
    assert shares == sorted(shares, reverse=True) and sum(shares) <= 100.05


def test_summary_reads_your_config_folder(project, cache_dir, monkeypatch, capsys):
    (summary,) = step("summary")
    code = run_in_process(project, summary, monkeypatch=monkeypatch)
    out, err = capsys.readouterr()
    assert code == 0, (out[-2000:], err[-3000:])
    assert out.startswith("model: tiny_net  activation: relu  input: 3 x 32 x 32")
    params = int(re.search(r"^params: (\d+)$", out, re.M).group(1))
    assert params == tiny_net_parameters(project)


@pytest.mark.e2e
def test_your_model_sweeps_and_aggregates(project, cache_dir, monkeypatch, capsys):
    command, aggregate = step("sweep")
    runs = sweep(project, command, cache=cache_dir)
    assert len(runs) == 4
    widths = [OmegaConf.load(r / ".hydra" / "config.yaml").model.width for r in runs]
    assert sorted(widths) == [8, 8, 16, 16]
    assert {result(r)["status"] for r in runs} == {"completed"}
    assert aggregate.module == "flowers_sweep.aggregate"
    assert project / aggregate.args[0] == runs[0].parent
    code = run_in_process(project, aggregate, monkeypatch=monkeypatch)
    assert code == 0, capsys.readouterr()
    with open(runs[0].parent / "report" / "runs.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4 and {r["model"] for r in table} == {"tiny_net"}
    assert (runs[0].parent / "report" / "results.md").is_file()


@pytest.mark.e2e
def test_your_activation_sweeps_next_to_the_reports_cases(project, cache_dir, monkeypatch):
    (command,) = step("activations")
    runs = sweep(project, command, "model.layers=[1,1,1,1]", cache=cache_dir)
    labels = [(result(r)["case"], result(r)["activation"], result(r)["status"]) for r in runs]
    assert labels == [
        ("relu", "relu", "completed"),
        ("sigmoid", "sigmoid", "completed"),
        ("scaled_tanh", "scaled_tanh", "completed"),
    ]
    monkeypatch.syspath_prepend(str(project))  # the run's own model, rebuilt from its config
    cfg = OmegaConf.load(runs[-1] / ".hydra" / "config.yaml")
    model = build_model(cfg.model, cfg.dataset.num_classes, cfg.dataset.image_size)
    used = [m for m in model.modules() if type(m).__name__ == "ScaledTanh"]
    alpha = page_yaml("myconf/case/scaled_tanh.yaml")["model"]["activation"]["alpha"]
    assert len(used) >= 5 and {m.alpha for m in used} == {alpha}


@pytest.mark.e2e
def test_a_torchvision_model_starts_from_the_hub_cache_offline(project, cache_dir, torch_home):
    run_dir = train(project, "torchvision", cache=cache_dir, env={"TORCH_HOME": str(torch_home)})
    res = result(run_dir)
    name = value_of(step("torchvision")[0].args, "model.name")
    assert (res["status"], res["model"]) == ("completed", name)
    log = (run_dir / "flowers_sweep.log").read_text()
    (file,) = (torch_home / "hub" / "checkpoints").iterdir()
    assert f"from {file}" in log
    assert "classifier replaced: the file has 1000 classes, this run 10" in log


def test_a_timm_model_takes_the_activation_as_act_layer(project, cache_dir):
    """In this process, through flowers_sweep.train (the run the command makes): the
    torchvision run above is the real command's hub run."""
    pytest.importorskip("timm")
    (command,) = step("timm")
    name, activation = (value_of(command.args, f"model.{k}") for k in ("name", "activation"))
    assert activation in ACTIVATIONS  # a short name, not the model's own
    assert command.module == "flowers_sweep" and not any(a.startswith("-") for a in command.args)
    res = fs.train(fs.compose([*command.args, *SMALL]), project / "outputs" / "timm")
    assert (res["status"], res["model"], res["activation"]) == ("completed", name, activation)


@pytest.mark.e2e
def test_your_optimizer_and_schedules_set_each_epochs_rate(project, cache_dir):
    (command,) = step("schedules")
    exponential, linear = sweep(project, command, "trainer.epochs=3", cache=cache_dir)
    lr = page_yaml("myconf/optimizer/rmsprop.yaml")["lr"]
    gamma = page_yaml("myconf/scheduler/exponential.yaml")["gamma"]
    end = page_yaml("myconf/scheduler/linear_decay.yaml")["end"]
    expected = {
        exponential: [lr * gamma**e for e in range(3)],
        linear: [lr * (1 - (1 - end) * e / 3) for e in range(3)],  # trainer.epochs: 3
    }
    for run_dir, rates in expected.items():
        assert result(run_dir)["status"] == "completed"
        cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
        assert cfg.optimizer._target_ == "torch.optim.RMSprop"
        assert [float(r["lr"]) for r in metrics(run_dir)] == pytest.approx(rates, rel=1e-6)


def test_a_refusal_is_one_line_and_exit_2_before_any_data(project, tmp_path, monkeypatch, capsys):
    """In this process (test_hub.py starts the real command for a refusal)."""
    (command,) = step("refused")
    cache = tmp_path / "cache"
    monkeypatch.setenv("FLOWERS_SWEEP_CACHE", str(cache))
    code = run_in_process(
        project, command, "hydra.run.dir=outputs/refused", monkeypatch=monkeypatch
    )
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [ERROR + command.error]
    assert not cache.exists()  # no data was read, nor generated
    assert json.loads((project / "outputs/refused/result.json").read_text())["status"] == "failed"
