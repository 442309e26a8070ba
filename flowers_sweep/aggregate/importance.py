"""Which settings mattered: how much of the spread in results each varying setting
explains, for a grid (an ANOVA of test accuracy across runs) and for a search
(Optuna's PED-ANOVA over its trials), read from the sweep folder alone.

A search's importance is Optuna's own: the completed trials are put back into an
in-memory study (their values, and their settings with the distributions of
multirun.yaml's search space), and `optuna.importance.get_param_importances` is asked
with PED-ANOVA, which needs no more than Optuna (fANOVA, Optuna 4's default, needs
scikit-learn, which flowers_sweep does not depend on). So the report says the same on a
folder copied from a cluster, without the study's database.

importance.csv, one row per setting (the grid's then its remainder), has the columns
IMPORTANCE_COLUMNS; docs/results.md says what they mean.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import yaml

from flowers_sweep.aggregate.figures import ParallelAxis
from flowers_sweep.aggregate.markdown import plural
from flowers_sweep.aggregate.runs import OPTIONAL_COLUMNS, RUN_COLUMNS
from flowers_sweep.aggregate.search import Search, trial_number
from flowers_sweep.errors import ConfigError
from flowers_sweep.record.runrecord import MULTIRUN_FILE, RunRecord, read_yaml

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

BASE = "case"  # the factor of a case's base (its case preset, else model-activation)
REPLICATES = ("seed", "fold")  # repeats of one case, never settings
METRIC = "test_acc"  # what a grid's runs are compared on
IMPORTANCE_COLUMNS = [
    "kind",  # "setting", "interactions" or "residual"
    "setting",
    "levels",  # values the setting took among the runs compared
    "importance",  # grid: share of the sum of squares; search: PED-ANOVA's, normalised
    "sum_sq",
    "df",
    "F",
    "p",
    "method",
    "note",  # why a number is missing, or how far to trust it
]
TOP_QUANTILE = 0.1  # PED-ANOVA's target_quantile (Optuna's default)
ADVISED_TOP = 5  # Optuna's docs: at least this many trials in the top quantile
LOG_SPAN = 100.0  # a grid's positive numbers spanning this ratio get a log axis
# Where cases share folds: why a grid's F test and results.md's t-tests can disagree.
PAIRED_NOTE = (
    "the paired t-tests above (cases that share their seeds and folds) take out what a "
    "fold does to both cases and this F test does not: the two can disagree"
)


# ---------------------------------------------------------------- a grid
def setting_names(runs: pd.DataFrame) -> list[str]:
    """runs.csv's columns of varying settings (runs.runs_table puts them between `case`
    and RUN_COLUMNS' others), but replicates: a `seed` or `fold`, by itself or as the
    last part of a dotted key."""
    known = {*RUN_COLUMNS, *OPTIONAL_COLUMNS}
    return [
        c for c in runs.columns if c not in known and str(c).rsplit(".", 1)[-1] not in REPLICATES
    ]


def case_base(label: str) -> str:
    """A case label's base, its case preset or model-activation: the label's parts
    before the first `key=value` part (runs.case_labels writes base-key=value-...)."""
    parts = str(label).split("-")
    first = next((i for i, part in enumerate(parts) if "=" in part), len(parts))
    return "-".join(parts[:first])


def levels_of(values: pd.Series) -> pd.Series:
    """A setting's values as level names (text; a missing value is `none`)."""
    return values.astype(object).map(lambda v: "none" if _missing(v) else str(v))


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def grid_factors(runs: pd.DataFrame) -> pd.DataFrame:
    """The settings to weigh, one column each, and `test_acc`, one row per completed
    run with a test accuracy (runs.csv's rows, `test_acc` the weights counted).

    The factors: the case's base (`case`, case_base of the label) where it varies, then
    each varying setting of runs.csv that varies among these runs, but one that follows
    the base (one value per base: a model's block counts, a case preset's own settings),
    which is the base's effect again.
    """
    done = runs[(runs["status"] == "completed") & runs[METRIC].notna()]
    factors: dict[str, pd.Series] = {}
    base = done["case"].map(case_base)
    if base.nunique() > 1:
        factors[BASE] = base
    for name in setting_names(runs):
        levels = levels_of(done[name])
        if levels.nunique() < 2:
            continue
        if BASE in factors and levels.groupby(base).nunique().max() == 1:
            continue  # follows the base
        factors[name] = done[name]
    table = pd.DataFrame(factors, index=done.index)
    table[METRIC] = done[METRIC].astype(float)
    return table.reset_index(drop=True)


def grid_importance(runs: pd.DataFrame) -> pd.DataFrame | None:
    """Each varying setting's share of the variance of test accuracy across completed
    runs, with an F test: an N-way ANOVA's main effects (Fisher, Statistical Methods
    for Research Workers, 1925, ch. VII; Montgomery, Design and Analysis of
    Experiments, 8th ed., §5.3-5.4). None when no setting varies (grid_factors).

    With y the runs' test accuracies (fractions) and ȳ their mean:
    SS_total = Σ(y - ȳ)²; a setting's SS = Σ_levels n_l (ȳ_l - ȳ)², df = levels - 1,
    its share (`importance`, eta squared) = SS / SS_total. A cell is a combination of
    the settings (a case); SS_within = Σ(y - ȳ_cell)², df = runs - cells (the seeds, and
    folds, as replicates), and `interactions` = SS_cells - Σ SS_setting, df = cells - 1
    - Σ df. A setting's F = (SS/df) / (SS_within/df_within), p = P(F(df, df_within) > F)
    (scipy.stats.f.sf); with one run per cell the interactions are the error term
    instead, which assumes the settings do not interact (Montgomery §5.3.7).

    Settings that change together (aliased: their values map one to one over the runs
    compared, as lr and batch size moved together) have one and the same effect, which
    no analysis of these runs can share out between them: they are one row, named
    "a + b", and the note says so (aliased).

    Balanced (every combination of the settings present, each with as many runs): the
    main effects are orthogonal, so the shares and the remainder sum to 1 and each
    share is that setting's own. Unbalanced (a combination missing, unequal seeds):
    each share is the setting's one-way share and includes whatever of the other
    settings goes with its values; shares may sum to more than 1 and the interactions
    cannot be told apart (their row has no number). The F test then asks whether the
    setting's level means, as the runs fell, differ beyond the seeds' spread.

    Returns IMPORTANCE_COLUMNS: the settings, largest share first, then an
    `interactions` row (with more than one setting) and a `residual` row (between
    seeds of a case, where a case has several).
    """
    from scipy import stats

    data = grid_factors(runs)
    names = [c for c in data.columns if c != METRIC]
    if not names:
        return None
    found = pd.DataFrame({name: levels_of(data[name]) for name in names})
    together = aliased(found)
    levels = pd.DataFrame({" + ".join(group): found[group[0]] for group in together})
    names = list(levels.columns)
    y = data[METRIC].to_numpy(float)
    total = float(((y - y.mean()) ** 2).sum())
    by_cell = pd.Series(y).groupby([levels[n] for n in names])
    counts = by_cell.size()
    cell_means = by_cell.transform("mean").to_numpy(float)
    ss_cells = float(((cell_means - y.mean()) ** 2).sum())
    df_within = len(y) - len(counts)
    ss_within = float(((y - cell_means) ** 2).sum())
    effects = []
    for name in names:
        means = pd.Series(y).groupby(levels[name]).transform("mean").to_numpy(float)
        ss = float(((means - y.mean()) ** 2).sum())
        effects.append((name, levels[name].nunique(), ss))
    crossed = len(counts) == math.prod(levels[n].nunique() for n in names)
    balanced = crossed and counts.nunique() == 1
    df_inter = len(counts) - 1 - sum(n_levels - 1 for _, n_levels, _ in effects)
    rounding = len(y) * np.finfo(float).eps * total  # a sum of squares this small is 0
    ss_inter = ss_cells - sum(ss for *_, ss in effects) if balanced else math.nan
    ss_inter = 0.0 if ss_inter <= rounding else ss_inter  # (NaN stays)
    replicates = _replicates(runs)
    if df_within > 0:
        error, ss_error, df_error = f"the {replicates} within a case", ss_within, df_within
    else:
        error, ss_error, df_error = "the interactions (one run per case)", ss_inter, df_inter
    untested = _untested(df_within, ss_error, df_error, balanced, rounding)
    method = "ANOVA main effect: share of the sum of squares of test accuracy (eta squared)"
    method += "; no F test" if untested else f"; F test against {error}"
    notes = [_together(g) for g in together if len(g) > 1]
    notes += [_unbalanced(total, balanced, crossed), untested]
    if not untested and paired_cases(runs):
        notes.append(PAIRED_NOTE)
    rows = []
    for name, n_levels, ss in effects:
        f_stat = p = math.nan
        if not untested:
            f_stat = (ss / (n_levels - 1)) / (ss_error / df_error)
            p = float(stats.f.sf(f_stat, n_levels - 1, df_error))
        rows.append(["setting", name, n_levels, ss, n_levels - 1, f_stat, p])
    rows.sort(key=lambda r: -r[3])
    if len(names) > 1 and df_inter > 0:
        rows.append(
            ["interactions", "interactions", math.nan, ss_inter, df_inter, math.nan, math.nan]
        )
    if df_within > 0:
        rows.append(["residual", replicates, math.nan, ss_within, df_within, math.nan, math.nan])
    table = pd.DataFrame(rows, columns=["kind", "setting", "levels", "sum_sq", "df", "F", "p"])
    table["importance"] = table["sum_sq"] / total if total > 0 else math.nan
    table["method"], table["note"] = method, "; ".join(n for n in notes if n)
    return table[IMPORTANCE_COLUMNS].astype({"levels": "Int64", "df": "Int64"})


def aliased(levels: pd.DataFrame) -> list[list[str]]:
    """The columns of `levels` (a setting's level names each, one row per run) in
    groups whose levels map one to one over the rows, each group in column order and
    the groups in the order of their first column; a setting that goes with no other
    is a group of its own. Such settings split the runs into the same groups, so their
    effects on the runs are one and the same (aliased, or completely confounded:
    Montgomery, Design and Analysis of Experiments, 8th ed., §8.2)."""
    groups: list[list[str]] = []
    for name in levels.columns:
        for group in groups:
            if _one_to_one(levels[group[0]], levels[name]):
                group.append(name)
                break
        else:
            groups.append([name])
    return groups


def _one_to_one(a: pd.Series, b: pd.Series) -> bool:
    pairs = len(pd.DataFrame({"a": a, "b": b}).drop_duplicates())
    return pairs == a.nunique() == b.nunique()


SHOWN_TOGETHER = 4  # names of settings that change together shown in results.md's text


def _together(group: Sequence[str]) -> str:
    if len(group) > SHOWN_TOGETHER:  # an experiment preset moves dozens of keys at once
        names = ", ".join(group[:SHOWN_TOGETHER]) + f" and {len(group) - SHOWN_TOGETHER} more"
    else:
        names = ", ".join(group[:-1]) + f" and {group[-1]}"
    return f"{names} change together: their shares cannot be told apart (one row)"


def shown_setting(name: str) -> str:
    """A row's setting as results.md shows it: settings that change together past
    SHOWN_TOGETHER are counted, not listed (importance.csv lists them all)."""
    parts = name.split(" + ")
    if len(parts) <= SHOWN_TOGETHER:
        return name
    return " + ".join(parts[:SHOWN_TOGETHER]) + f" + {len(parts) - SHOWN_TOGETHER} more"


def paired_cases(runs: pd.DataFrame) -> bool:
    """Whether results.md's t-tests pair two cases (stats.pairwise_tests): both have
    the same (seed, fold) pairs, at least two, cross-validation's."""
    from flowers_sweep.aggregate.stats import run_keys

    done = runs[(runs["status"] == "completed") & runs[METRIC].notna()]
    keys = [run_keys(group) for _, group in done.groupby("case", sort=False)]
    sets = [frozenset(k) for k in keys if k is not None and len(k) > 1]
    return len(set(sets)) < len(sets)


def _replicates(runs: pd.DataFrame) -> str:
    """What the runs of one case differ by: "seeds", "folds" or "seeds and folds"."""
    done = runs[runs["status"] == "completed"]
    folds = "fold" in done and done["fold"].notna().any()
    if not folds:
        return "seeds"
    return "seeds and folds" if done["seed"].nunique() > 1 else "folds"


def _unbalanced(total: float, balanced: bool, crossed: bool) -> str:
    """What the grid's shares cannot say, or ""."""
    if total == 0:
        return "every run has the same test accuracy: nothing to share out"
    if balanced:
        return ""
    what = "unequal runs per case" if crossed else "a combination of the settings missing"
    return (
        f"unbalanced grid ({what}): each share is the setting's one-way share, which "
        "includes the effects of settings that go with it; interactions not separable"
    )


def _untested(
    df_within: int, ss_error: float, df_error: int, balanced: bool, rounding: float
) -> str:
    """Why there is no F test, or "" when there is one: its error term (the seeds', else
    the interactions') must have degrees of freedom and a spread beyond rounding, where
    an F of rounding errors would mean nothing."""
    if df_within > 0:
        if ss_error > rounding:
            return ""
        return "every seed of a case scored the same: no spread to test against, no p-values"
    if not balanced or df_error <= 0:
        return "one run per case and no interactions to test against: no p-values"
    if ss_error > rounding:
        return ""
    return "one run per case and the settings' effects add up exactly: no p-values"


# ---------------------------------------------------------------- a search
def search_folder(run_dirs: Iterable[str | Path]) -> Path:
    """A search's folder: the trials' folders are its children (0/, 1/, ...)."""
    parents = [str(Path(d).parent) for d in run_dirs]
    return Path(os.path.commonpath(parents)) if parents else Path(".")


def searched_space(search: Search, folder: Path) -> dict[str, BaseDistribution]:
    """The search's distributions as its sweeper made them: multirun.yaml's
    `hydra.sweeper.params` with the command's overrides (`hydra.overrides.task`) on top
    (search.space.search_space). Empty when they cannot be parsed."""
    from flowers_sweep.search.space import search_space

    try:
        tree = read_yaml(Path(folder) / MULTIRUN_FILE) or {}
        task = [str(o) for o in (tree["hydra"]["overrides"]["task"] or [])]
    except (OSError, KeyError, TypeError, yaml.YAMLError):  # no command overrides known
        task = []
    try:
        return search_space(search.params, task)[0]
    except ConfigError:
        return {}


def _optuna_value(value: Any, dist: BaseDistribution) -> Any:
    """A trial's setting as its study stored it: a choice that is not a number or bool
    as its override text (search.space.distribution)."""
    from optuna.distributions import CategoricalDistribution

    from flowers_sweep.config.overrides import override_text
    from flowers_sweep.search.space import NUMERIC

    if isinstance(dist, CategoricalDistribution) and not isinstance(value, NUMERIC):
        return override_text(value)
    return value


def search_trials(
    search: Search, runs: Sequence[RunRecord], space: Mapping[str, BaseDistribution]
) -> tuple[list[Any], int]:
    """The completed trials with a finite value as Optuna's FrozenTrials, in trial
    order, and how many completed ones do not fit the space (a value outside it)."""
    import optuna

    frozen, misfits = [], 0
    done = [r for r in runs if r.status == "completed"]
    for run in sorted(done, key=lambda r: trial_number(Path(r.path)) or 0):
        value = (run.result or {}).get(search.metric)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if not math.isfinite(value):
            continue
        try:
            params = {k: _optuna_value(run.config.get(k), d) for k, d in space.items()}
            frozen.append(
                optuna.trial.create_trial(
                    params=params, distributions=dict(space), value=float(value)
                )
            )
        except (ValueError, TypeError, ConfigError):
            misfits += 1
    return frozen, misfits


def search_importance(
    search: Search, runs: Sequence[RunRecord], space: Mapping[str, BaseDistribution]
) -> pd.DataFrame | None:
    """Optuna's PED-ANOVA importance of each searched setting (Watanabe et al.,
    "PED-ANOVA: Efficiently Quantifying Hyperparameter Importance in Arbitrary
    Subspaces", IJCAI 2023, arXiv:2304.10255): how differently each setting is spread
    among the best TOP_QUANTILE of the completed trials than among them all,
    normalised to sum to 1, as `optuna.importance.get_param_importances(study,
    evaluator=PedAnovaImportanceEvaluator())` gives it on a study holding the same
    completed trials (search_trials) and direction.

    `space`: searched_space's distributions. None when nothing is searched. Below 2
    completed trials Optuna has no importance to give (it would return equal shares):
    the rows then have none, and `note` says why; with fewer than ADVISED_TOP trials in
    the top quantile (under about 50 trials) `note` says the numbers are rough, as
    Optuna's documentation advises at least that many.
    """
    import optuna

    if not space:
        return None
    importance = optuna_importance()
    trials, misfits = search_trials(search, runs, space)
    top = math.ceil(TOP_QUANTILE * len(trials))
    method = (
        f"PED-ANOVA (Optuna {optuna.__version__}): the best {TOP_QUANTILE:.0%} of "
        f"{plural(len(trials), 'completed trial')} against all, by {search.metric}"
    )
    notes = []
    if misfits:
        notes.append(f"{plural(misfits, 'completed trial')} outside the search space left out")
    levels = {k: len({str(t.params[k]) for t in trials}) for k in space}
    if len(trials) < 2:
        notes.insert(0, f"PED-ANOVA needs 2 completed trials with a value; {len(trials)} here")
        found = {k: math.nan for k in space}
    else:
        if top < ADVISED_TOP:
            notes.append(
                f"rough: {plural(top, 'trial')} in the top {TOP_QUANTILE:.0%}, where Optuna "
                f"advises at least {ADVISED_TOP}"
            )
        study = in_memory_study(search.maximize)
        study.add_trials(trials)
        with warnings.catch_warnings():  # its warnings of few trials: `note` says so
            warnings.simplefilter("ignore")
            evaluator = importance.PedAnovaImportanceEvaluator(target_quantile=TOP_QUANTILE)
            found = importance.get_param_importances(study, evaluator=evaluator)
    table = pd.DataFrame(
        {
            "kind": "setting",
            "setting": list(found),
            "levels": [levels[k] for k in found],
            "importance": list(found.values()),
        }
    )
    table["method"], table["note"] = method, "; ".join(notes)
    return table.reindex(columns=IMPORTANCE_COLUMNS).astype({"levels": "Int64", "df": "Int64"})


def optuna_importance() -> Any:
    """`optuna.importance`, imported leaving os.environ as it was. The package imports
    scikit-learn where that is installed (for fANOVA; flowers_sweep does not depend on
    it: a dev install has it through mlflow), and scikit-learn's import adds
    KMP_INIT_AT_FORK to the process' environment; a report must not change the caller's
    process (docs/python.md)."""
    before = dict(os.environ)
    try:
        import optuna.importance
    finally:
        for key in set(os.environ) - set(before):
            del os.environ[key]
    return optuna.importance


def in_memory_study(maximize: bool) -> Any:
    """An empty optuna.Study in memory, without Optuna's log line of its creation."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.create_study(direction="maximize" if maximize else "minimize")
    finally:
        optuna.logging.set_verbosity(verbosity)


# ---------------------------------------------------------------- the report's text
def importance_markdown(table: pd.DataFrame | None) -> str:
    """results.md's section "Which settings mattered", after a blank line: a row per
    setting (and the grid's remainder), the method and any note; "" for no table."""
    if table is None or table.empty:
        return ""
    grid = table["method"].iloc[0].startswith("ANOVA")
    lines = ["", "## Which settings mattered", "", f"{table['method'].iloc[0]}.", ""]
    if grid:
        lines += ["| setting | values | share | p |", "|---|---|---|---|"]
    else:
        lines += ["| setting | values | importance |", "|---|---|---|"]
    for r in table.itertuples():
        share = "-" if pd.isna(r.importance) else f"{100 * r.importance:.1f}%"
        values = "" if pd.isna(r.levels) else str(r.levels)
        cells = [shown_setting(r.setting), values, share]
        if grid:
            cells.append("-" if pd.isna(r.p) else f"{r.p:.3g}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if grid:
        lines += [
            "Share: the part of the variance of test accuracy across runs that the "
            "setting's values account for; p: its F test. importance.csv has the sums of "
            "squares.",
            "",
        ]
    else:
        lines += [
            "Importance: how differently each setting's values are spread among the best "
            "trials than among all; the importances add up to 100%.",
            "",
        ]
    note = table["note"].iloc[0]
    if note:
        lines += [f"Note: {note}.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- parallel coordinates
GRID_METRIC = "test accuracy (%)"  # a grid's result axis; "mean " before it with replicates


def grid_parallel(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[ParallelAxis], str, str]:
    """What figures.parallel_figure draws for a grid: one row per case (a combination of
    the factors of grid_factors) at its mean test accuracy in percent over its completed
    runs, so that runs differing only by seed or fold, which would draw one on top of
    the other, are one line at their mean rather than the best run's colour.

    Returns (table, axes, metric, note): the table a column per factor and one for
    `metric` ("mean test accuracy (%)", or GRID_METRIC with one run per case); a numeric
    factor on a log axis where its values are positive and span LOG_SPAN or more;
    `note` for the title ("mean over its 3 runs"; "" with one run per case).
    """
    data = grid_factors(runs)
    names = [c for c in data.columns if c != METRIC]
    axes = [_grid_axis(name, data[name]) for name in names]
    if not names:
        return data.rename(columns={METRIC: GRID_METRIC}), axes, GRID_METRIC, ""
    cell = pd.Series(list(zip(*(levels_of(data[n]) for n in names), strict=True)))
    cases = data.groupby(cell, sort=False)
    table = cases[names].first().reset_index(drop=True)
    n = cases.size()
    several = n.max() > 1
    metric = f"mean {GRID_METRIC}" if several else GRID_METRIC
    table[metric] = 100 * cases[METRIC].mean().to_numpy(float)
    runs_each = str(n.min()) if n.min() == n.max() else f"{n.min()} to {n.max()}"
    return table, axes, metric, f"mean over its {runs_each} runs" if several else ""


def _grid_axis(name: str, values: pd.Series) -> ParallelAxis:
    numeric = pd.to_numeric(values, errors="coerce")
    is_bool = values.map(lambda v: isinstance(v, (bool, np.bool_))).any()
    if is_bool or numeric.isna().any():
        return ParallelAxis(name)
    low, high = float(numeric.min()), float(numeric.max())
    wide = low > 0 and high / low >= LOG_SPAN
    return ParallelAxis(name, "log" if wide else "linear")


def search_parallel(
    search: Search, trials: pd.DataFrame, space: Mapping[str, BaseDistribution]
) -> tuple[pd.DataFrame, list[ParallelAxis]]:
    """What figures.parallel_figure draws for a search: its completed trials (trials.csv's
    rows), each searched setting over its whole search space, and the value searched
    on: a number over its distribution's bounds (a log axis where the space is log), a
    choice with every one of the space's choices, in the space's order (a trial's value
    outside them after them). A setting of the preset that the command fixed is not
    searched and has no axis; with no space known (it cannot be parsed) every setting
    of the preset has one, scaled as a grid's, over the values found."""
    from optuna.distributions import CategoricalDistribution

    done = trials[(trials["status"] == "completed") & trials["value"].notna()]
    axes, columns = [], {}
    for name in search.params:
        dist = space.get(name)
        if dist is None:
            if not space:
                axes.append(_grid_axis(name, done[name]))
                columns[name] = done[name]
            continue
        if isinstance(dist, CategoricalDistribution):
            labels = [choice_label(c) for c in dist.choices]
            axes.append(ParallelAxis(name, levels=tuple(labels)))
            columns[name] = done[name].map(lambda v, d=dist: choice_label(v, d.choices))
            continue
        scale = "log" if getattr(dist, "log", False) else "linear"
        axes.append(ParallelAxis(name, scale, (float(dist.low), float(dist.high))))
        columns[name] = done[name]
    data = pd.DataFrame(columns).reset_index(drop=True)
    data[search.metric] = done["value"].to_numpy(float)
    return data, axes


def choice_label(value: Any, choices: Sequence[Any] = ()) -> str:
    """A categorical setting's value as its axis names it: the choice of `choices` it
    equals (search.space.distribution's: a number or bool as itself, anything else as
    its override text), as text; a number as `{:g}` gives it (16, 0.001). A trials.csv
    value may be text ("[0.5,0.75]", runs.fmt's) or a number stored as a float (16.0):
    both are read as YAML and compared as values. A value equal to no choice: as
    itself."""
    key = _choice_key(value)
    for choice in choices:
        if _choice_key(choice) == key:
            value = choice
            break
    if isinstance(value, float) and not isinstance(value, bool):
        return f"{value:g}"
    return str(value)


def _choice_key(value: Any) -> Any:
    """A value comparable across its forms: text read as YAML, numbers as floats (a
    bool stays a bool), lists as tuples."""
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    if isinstance(value, (list, tuple)):
        return tuple(_choice_key(v) for v in value)
    if isinstance(value, (bool, np.bool_)):
        return ("bool", bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    return value
