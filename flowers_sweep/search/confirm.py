"""A search's confirmation: its best trials run again on fresh seeds, as plain files.

A search picks its winner from one run per trial, while two seeds of one setting can
differ by several points. With `hydra.sweeper.confirm.top_k=K` (0: off), once the
search's trials are done, the K best completed trials (by the searched metric, in the
study's direction; ties to the lower trial number) each run again on `confirm.seeds=S`
seeds, as Hydra jobs of the same launcher, in folders of their own:

    SWEEP_DIR/confirm/chosen.json         the trials chosen, in rank order (written once)
    SWEEP_DIR/confirm/<trial>-seed<s>/    one confirmation run (a run folder like any)

The seeds are the trial's own seed + 1 ... + S (the trial's seed: `seed`, or its
sampled value where the search searches `seed`), so none repeats the trial's run.

chosen.json makes the confirmation resumable: a relaunch confirms the trials recorded
there even if the study has changed since (more trials, say), and launches only the
confirmation runs whose folder has no completed result: as in a relaunch of any sweep
(app.execute skips only a completed run), a run that failed or diverged runs again,
resuming from its last checkpoint. A larger `top_k` adds the best trials not yet
chosen; a smaller one confirms the first `top_k` recorded. To choose again from
scratch, delete chosen.json.

This module holds the rules (which trials, which seeds, which folders, the record); the
sweeper (hydra_plugins/flowers_sweep_search/_confirm.py) launches the runs and the
aggregator (aggregate/confirmations.py) reads them back, without Optuna.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flowers_sweep.atomic import write_json
from flowers_sweep.errors import ConfigError, FlowersSweepError
from flowers_sweep.record.runrecord import RunRecordError, completed_result, read_result

CONFIRM_DIR = "confirm"  # SWEEP_DIR/confirm/: the confirmation runs and chosen.json
CHOSEN_NAME = "chosen.json"  # in CONFIRM_DIR: the trials chosen, best first
KEYS = {"top_k": 0, "seeds": 3}  # hydra.sweeper.confirm's keys and their defaults
_RUN_NAME = re.compile(r"^(\d+)-seed(-?\d+)$")


class ChosenRecordError(FlowersSweepError):
    """SWEEP_DIR/confirm/chosen.json cannot be read; the message names it."""


@dataclass(frozen=True)
class Chosen:
    """One trial chosen for confirmation: its number, the searched metric's value, its
    own seed, and its sampled parameters as the study stores them (plain types)."""

    trial: int
    value: float
    seed: int
    params: dict[str, Any] = field(default_factory=dict)


def confirm_settings(node: Mapping[str, Any] | None) -> tuple[int, int]:
    """`hydra.sweeper.confirm` as (top_k, seeds); None or a missing key: the default.

    Raises:
        ConfigError: a node that is not a mapping (`hydra.sweeper.confirm=3`), an
            unknown key, a top_k that is not an integer >= 0, or seeds not an integer
            (>= 2 when top_k > 0: a mean of one seed has no interval).
    """
    if node is not None and not isinstance(node, Mapping):
        raise ConfigError(
            f"hydra.sweeper.confirm={node}: must be a mapping of top_k and seeds; give "
            "hydra.sweeper.confirm.top_k=K (and hydra.sweeper.confirm.seeds=S)"
        )
    node = dict(node or {})
    unknown = sorted(set(node) - set(KEYS))
    if unknown:
        raise ConfigError(
            f"hydra.sweeper.confirm.{unknown[0]}: unknown key; allowed keys are {', '.join(KEYS)}"
        )
    top_k, seeds = (node.get(k, default) for k, default in KEYS.items())
    if not _integer(top_k) or top_k < 0:
        raise ConfigError(
            f"hydra.sweeper.confirm.top_k={top_k}: must be an integer >= 0 (0: no confirmation)"
        )
    if not _integer(seeds) or (top_k > 0 and seeds < 2):
        raise ConfigError(
            f"hydra.sweeper.confirm.seeds={seeds}: must be an integer >= 2 "
            "(seeds per confirmed trial: one seed has no interval)"
        )
    return top_k, seeds


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def confirm_seeds(seed: int, n: int) -> list[int]:
    """The seeds a trial of seed `seed` is confirmed on: seed + 1, ..., seed + n."""
    return [seed + i for i in range(1, n + 1)]


def run_name(trial: int, seed: int) -> str:
    """A confirmation run's folder name in CONFIRM_DIR: `3-seed1` (trial 3, seed 1)."""
    return f"{trial}-seed{seed}"


def run_subdir(trial: int, seed: int) -> str:
    """Its `hydra.sweep.subdir`, relative to the sweep folder: `confirm/3-seed1`. A
    trial's folder is its number, so no confirmation folder can ever be a trial's."""
    return f"{CONFIRM_DIR}/{run_name(trial, seed)}"


def confirmation_of(run_dir: Path) -> tuple[int, int] | None:
    """(trial, seed) of a confirmation run folder (SWEEP_DIR/confirm/<trial>-seed<s>),
    or None for any other folder (a trial's, a plain sweep's job)."""
    match = _RUN_NAME.match(Path(run_dir).name)
    if match is None or Path(run_dir).parent.name != CONFIRM_DIR:
        return None
    return int(match[1]), int(match[2])


def rank(
    done: Iterable[tuple[int, float, Mapping[str, Any]]], maximize: bool
) -> list[tuple[int, float, Mapping[str, Any]]]:
    """Completed trials as (number, value, params), best first; ties by trial number."""
    return sorted(done, key=lambda t: (-t[1] if maximize else t[1], t[0]))


def choose(
    recorded: Sequence[Chosen] | None,
    done: Iterable[tuple[int, float, Mapping[str, Any]]],
    top_k: int,
    maximize: bool,
    seed_of: Any,
) -> tuple[list[Chosen], bool]:
    """The trials to confirm, best first, and whether the record must be (re)written.

    `recorded`: chosen.json's trials (None: none yet); `done`: the study's completed
    trials as (number, value, params); `seed_of(params)`: a trial's own seed. The
    recorded trials stay chosen whatever the study holds now; while fewer than `top_k`
    are recorded, the best trials not recorded are added (a new record, or a larger
    top_k). Fewer than `top_k` completed trials: all of them.
    """
    chosen = list(recorded or [])
    taken = {c.trial for c in chosen}
    for number, value, params in rank(done, maximize):
        if len(chosen) >= top_k:
            break
        if number not in taken:
            chosen.append(Chosen(number, float(value), int(seed_of(params)), dict(params)))
    changed = recorded is None or len(chosen) != len(recorded)
    return chosen[:top_k], changed


def chosen_path(sweep_dir: Path) -> Path:
    return Path(sweep_dir) / CONFIRM_DIR / CHOSEN_NAME


def write_chosen(sweep_dir: Path, chosen: Sequence[Chosen], metric: str, maximize: bool) -> None:
    """chosen.json, atomically: the chosen trials best first, with what ranked them."""
    record = {
        "metric": metric,
        "direction": "maximize" if maximize else "minimize",
        "trials": [asdict(c) for c in chosen],
    }
    write_json(chosen_path(sweep_dir), record)


def read_chosen(sweep_dir: Path) -> list[Chosen] | None:
    """chosen.json's trials, best first; None where there is no such file.

    Raises ChosenRecordError (one line naming the file) when it cannot be read.
    """
    path = chosen_path(sweep_dir)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return [
            Chosen(int(t["trial"]), float(t["value"]), int(t["seed"]), dict(t["params"]))
            for t in record["trials"]
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ChosenRecordError(
            f"{path}: cannot be read ({type(exc).__name__}: {exc}); delete it to choose "
            "the trials to confirm again"
        ) from None


def pending(sweep_dir: Path, chosen: Sequence[Chosen], seeds: int) -> list[tuple[Chosen, int]]:
    """The confirmation runs still to launch, as (trial, seed): those whose folder has
    no completed result. A run killed part-way resumes from its checkpoint there; a
    failed or diverged one runs again too (from its last checkpoint), as a relaunch of a
    plain sweep reruns its failed and diverged jobs."""
    return [
        (c, s)
        for c in chosen
        for s in confirm_seeds(c.seed, seeds)
        if completed_result(Path(sweep_dir) / run_subdir(c.trial, s)) is None
    ]


def rerun_statuses(sweep_dir: Path, jobs: Sequence[tuple[Chosen, int]]) -> dict[str, int]:
    """Of the pending runs (`pending`), those that ran before, by what their folder
    says: {"diverged": 1, "unfinished": 2, ...} ("unfinished": a folder without a
    result, a run killed part-way; "unreadable": a result that cannot be read). Runs
    with no folder yet are not counted."""
    counts: dict[str, int] = {}
    for chosen, seed in jobs:
        folder = Path(sweep_dir) / run_subdir(chosen.trial, seed)
        if not folder.is_dir():
            continue
        try:
            status = str((read_result(folder) or {}).get("status", "unfinished"))
        except RunRecordError:
            status = "unreadable"
        counts[status] = counts.get(status, 0) + 1
    return counts


def confirmation_overrides(chosen: Chosen, seed: int, fixed: Mapping[str, str]) -> list[str]:
    """A confirmation run's overrides: the search's fixed settings and the trial's
    values (as trial_overrides gives them), its seed, and its folder."""
    from flowers_sweep.search.space import trial_overrides

    params = {k: v for k, v in chosen.params.items() if k != "seed"}
    kept = {k: v for k, v in fixed.items() if k != "seed"}
    return [
        *trial_overrides(params, kept),
        f"seed={seed}",
        f"hydra.sweep.subdir={run_subdir(chosen.trial, seed)}",
    ]
