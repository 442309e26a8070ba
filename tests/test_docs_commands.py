"""Every `python -m flowers_sweep` command in README.md and docs/ composes as written.

A documented command that no longer works is the first thing a new user meets, so each
one is read from the pages, parsed as Hydra (or the Optuna sweeper) parses it, and
composed; the README's own sweep and the search-space example also run, tiny (the
latter as the shared raced_search fixture's command).
"""

import json
import re
import shlex

import optuna
import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode

from flowers_sweep.config import CONFIG_MODULE
from flowers_sweep.config.overrides import validate_added_keys
from flowers_sweep.config.validate import validate
from flowers_sweep.errors import ConfigError
from flowers_sweep.search.space import search_space
from flowers_sweep.search.study import build_pruner, build_sampler, storage_url

from .helpers.cli import ROOT
from .helpers.searches import DOCUMENTED_SEARCH, RACED

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# The commands that take Hydra overrides; aggregate, evaluate, predict and status take paths.
HYDRA_COMMANDS = re.compile(r"python -m (flowers_sweep(?:\.summary|\.plan)?)(?=\s|$|`)(.*)")
PLACEHOLDER = {"...", "\\"}


def documented_commands() -> list[tuple[str, str, list[str], bool]]:
    """(where, module, arguments, shown failing) of each command, `\\` continuations
    joined; "shown failing" when the page's next line is the error it prints."""
    found = []
    for page in PAGES:
        text = re.sub(r"\\\n\s*", " ", page.read_text(encoding="utf-8"))
        lines = text.splitlines()
        for number, line in enumerate(lines, start=1):
            fails = number < len(lines) and lines[number].startswith("flowers_sweep: error")
            for match in HYDRA_COMMANDS.finditer(line):
                rest = match.group(2).split("`")[0].split("  #")[0].split(" # ")[0]
                args = [a for a in shlex.split(rest) if a not in PLACEHOLDER]
                # extending.md's and data.md's -cd folders are ones the pages build:
                # test_extending.py and test_data_page.py write them, and run these
                # commands against them.
                if page.name in ("extending.md", "data.md") and "-cd" in args:
                    continue
                found.append((f"{page.name}:{number}", match.group(1), args, fails))
    return found


COMMANDS = documented_commands()


def test_the_pages_hold_the_commands_this_test_reads():
    assert len(COMMANDS) >= 25
    assert any("tag(log, interval(1e-5, 1e-3))" in " ".join(c[2]) for c in COMMANDS)
    assert sum(c[3] for c in COMMANDS) >= 2  # the pages' error examples


def compose_like_the_cli(args: list[str], check_values: bool = False) -> None:
    """What `python -m flowers_sweep ARGS` composes, up to the first job's config (and
    with check_values, the checks a run makes before reading data)."""
    multirun = "-m" in args or "--multirun" in args
    overrides = [a for a in args if not a.startswith("-") and a not in ("job", "hydra")]
    parser = OverridesParser.create()
    parsed = parser.parse_overrides(overrides)
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        if not multirun:  # a preset's `hydra.mode` decides, as in Hydra's _run_app
            probe = loader.load_configuration(
                "config", overrides, run_mode=RunMode.RUN, validate_sweep_overrides=False
            )
            multirun = probe.hydra.mode == RunMode.MULTIRUN
        # Hydra's own checks for the launch (sweeps of hydra.* keys are refused here)
        master = loader.load_configuration(
            "config", overrides, run_mode=RunMode.MULTIRUN if multirun else RunMode.RUN
        )
        first = []
        search = master.hydra.sweeper.get("_target_", "").endswith("StudySweeper")
        for o in parsed:
            if o.is_sweep_override() and search and not o.is_discrete_sweep():
                continue  # a search space: the sweeper parses it (below)
            first.append(f"{o.get_key_element()}={next(o.sweep_string_iterator())}"
                         if o.is_sweep_override() else o.input_line)  # fmt: skip
        if search:  # the sweeper's own checks: its space, sampler and pruner
            sweeper = master.hydra.sweeper
            search_space(sweeper.params, [o for o in overrides if o not in first])
            build_sampler(sweeper.sampler, 0)
            build_pruner(sweeper.pruner)
        cfg = compose("config", overrides=first)
        validate_added_keys(cfg, first, set(master.hydra.runtime.choices))
        if check_values:
            validate(cfg)


@pytest.mark.parametrize(
    ("where", "module", "args", "fails"), COMMANDS, ids=[c[0] for c in COMMANDS]
)
def test_documented_command_composes(where, module, args, fails):
    if fails:  # an example of an error: it must still fail, as the page shows
        with pytest.raises(ConfigError):
            compose_like_the_cli(args, check_values=True)
    else:
        compose_like_the_cli(args)


def test_a_sweep_over_hydras_own_config_is_caught():
    with pytest.raises(Exception, match="Sweeping over Hydra's configuration"):
        compose_like_the_cli(
            [
                "-m",
                "hparams_search=optuna",
                "hydra.sweeper.params.optimizer.lr=tag(log, interval(1e-5, 1e-3))",
            ]
        )


@pytest.mark.e2e
def test_the_documented_search_space_example_runs_tiny(raced_search):
    """docs/tracking.md's search-space example, as written and tiny, is raced_search's
    command (conftest.py; helpers/searches.py): its trials complete, searched over the
    page's space. The README's own sweep runs in test_cli (test_activation_sweep_...)."""
    (args,) = [c[2] for c in COMMANDS if "tag(log, interval(1e-5" in " ".join(c[2])]
    assert args == DOCUMENTED_SEARCH  # the page's command is the one raced_search ran
    sweep = raced_search / RACED
    study = optuna.load_study(study_name="resnet18-relu", storage=storage_url("sqlite", sweep))
    lr = {t.distributions["optimizer.lr"] for t in study.trials}  # the page's space
    assert lr == {optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True)}
    for trial in ("0", "1"):
        assert json.loads((sweep / trial / "result.json").read_text())["status"] == "completed"
        config = json.loads((sweep / trial / "run_config.json").read_text())["config"]
        assert 1e-5 <= config["optimizer.lr"] <= 1e-3, config["optimizer.lr"]
