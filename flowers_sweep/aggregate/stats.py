"""The statistics of the report: a case's confidence interval, and the tests that
compare cases, each with the source of its formula.

Only plain, well-known procedures, so that a reader can check any number by hand:
Student's t-interval for a mean, Welch's t-test for two means (the paired t-test where
two cross-validated cases ran the same seeds and folds), and Holm's step-down
adjustment for testing many pairs at once. scipy computes the distributions.
"""

from __future__ import annotations

import itertools
import sys
import warnings
from collections.abc import Hashable, Sequence

import pandas as pd

ALPHA = 0.05  # 95% intervals; a comparison is significant below this adjusted p
# Up to this many cases every pair is tested; beyond, each case against the best one
# (a grid of 2,000 cases would be 2 million pairs, and nobody reads them).
ALL_PAIRS_MAX = 12


def t_interval(values: Sequence[float]) -> tuple[float, float]:
    """Student's t 95% interval of the mean accuracy; needs at least two values.

    mean ± t(1 - ALPHA/2, n - 1) · s / √n, with s the sample standard deviation
    (n - 1 in its denominator): "Student" (W. S. Gosset), The probable error of a
    mean, Biometrika 6(1), 1908, pp. 1-25.

    Cut to [0, 1]: with few seeds near 100% the t-interval reaches past what an accuracy
    can be, and a table reading "101%" is read as a bug, not as a wide interval.
    """
    from scipy import stats

    mean, sem = sum(values) / len(values), float(stats.sem(values))
    if sem == 0:  # all equal: scipy wants a positive scale; the interval is the point
        return mean, mean
    low, high = stats.t.interval(1 - ALPHA, len(values) - 1, loc=mean, scale=sem)
    return max(float(low), 0.0), min(float(high), 1.0)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values: many pairs are compared at once.

    With the m p-values sorted, p(1) <= ... <= p(m), the adjusted p(i) is
    max over j <= i of min(1, (m - j + 1) p(j)): S. Holm, A simple sequentially
    rejective multiple test procedure, Scandinavian Journal of Statistics 6(2), 1979,
    pp. 65-70. It holds the family-wise error rate at ALPHA, like Bonferroni, and
    rejects at least as often.
    """
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def testable(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether Welch's t-test is defined for two samples: at least two values each and
    some spread. With no spread in either group its standard error is zero, so t is
    x/0: scipy answers p = 0 (or nan) for any difference, a certainty no data gave."""
    return len(a) >= 2 and len(b) >= 2 and (has_spread(a) or has_spread(b))


def has_spread(values: Sequence[float]) -> bool:
    """More than float64 rounding apart (a few ulps: 0.5 and 0.5000000000000001, as a
    sum of fractions may give, are the same accuracy)."""
    scale = max(abs(v) for v in values) or 1.0
    return max(values) - min(values) > 4 * sys.float_info.epsilon * scale


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test, which does not assume equal variances.

    t = (mean_a - mean_b) / √(s_a²/n_a + s_b²/n_b), on the Welch-Satterthwaite degrees
    of freedom: B. L. Welch, The generalization of "Student's" problem when several
    different population variances are involved, Biometrika 34(1-2), 1947, pp. 28-35;
    F. E. Satterthwaite, Biometrics Bulletin 2(6), 1946, pp. 110-114. NaN where the
    test is undefined (see `testable`).
    """
    from scipy import stats

    if not testable(a, b):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def paired_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of the paired t-test, a[i] matched with b[i].

    t = mean(d) / (s_d / √n) on n - 1 degrees of freedom, d = a - b: "Student", The
    probable error of a mean, Biometrika 6(1), 1908 (scipy.stats.ttest_rel). NaN with
    fewer than two pairs, or where every pair differs by the same amount (s_d = 0: t
    is x/0, as in `testable`).
    """
    from scipy import stats

    diffs = [x - y for x, y in zip(a, b, strict=True)]
    if len(diffs) < 2 or not has_spread(diffs):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_rel(a, b).pvalue)


def run_keys(group: pd.DataFrame) -> list[Hashable] | None:
    """A case's completed runs' (seed, fold) pairs, in its order; None where they cannot
    match another case's runs: no `fold` column (no cross-validation), a run without a
    fold, or one pair twice."""
    if "fold" not in group or group["fold"].isna().any():
        return None
    keys = list(zip(group["seed"].tolist(), group["fold"].tolist(), strict=True))
    return keys if len(set(keys)) == len(keys) else None


def matched(
    keys: dict[str, list[Hashable] | None], groups: dict[str, list[float]], a: str, b: str
) -> tuple[list[float], list[float]] | None:
    """Two cases' accuracies matched run by run, where their runs have the same
    (seed, fold) pairs, all of them, at least two; else None (Welch's test then)."""
    ka, kb = keys[a], keys[b]
    if ka is None or kb is None or len(ka) < 2 or set(ka) != set(kb):
        return None
    of_b = dict(zip(kb, groups[b], strict=True))
    return groups[a], [of_b[k] for k in ka]


def pairwise_tests(runs_df: pd.DataFrame) -> pd.DataFrame:
    """A t-test between cases that both have n > 1, Holm-adjusted over all pairs; a pair
    where the test is undefined (see `testable`, `paired_p`) gets no p-value and is
    not significant. Column `test` says which: "paired" (`paired_p`) where both cases'
    completed runs have the same (seed, fold) pairs, cross-validation's, all of them and
    at least two; else "welch" (`welch_p`). A paired test takes out what a fold does to
    both cases alike (its training images), so it tells smaller differences apart.

    Every pair in a small sweep; in a larger one, each case against the best (highest
    mean test accuracy), which is the question a reader of a search asks: what is not
    distinguishable from the winner. `table.attrs["scope"]` says which.
    """
    done = runs_df[runs_df["status"] == "completed"]
    by_case = dict(list(done.groupby("case", sort=False)))
    groups = {k: g["test_acc"].astype(float).tolist() for k, g in by_case.items()}
    groups = {k: v for k, v in groups.items() if len(v) > 1}
    keys = {k: run_keys(by_case[k]) for k in groups}
    means = {k: sum(v) / len(v) for k, v in groups.items()}
    if len(groups) <= ALL_PAIRS_MAX:
        pairs, scope = list(itertools.combinations(groups, 2)), "all pairs"
    else:
        best = max(means, key=means.get)
        pairs, scope = [(best, k) for k in groups if k != best], f"each case against {best}"
    rows = []
    for a, b in pairs:
        pair = matched(keys, groups, a, b)
        rows.append(
            {
                "case_a": a,
                "case_b": b,
                "diff": means[a] - means[b],
                "test": "welch" if pair is None else "paired",
                "p_value": welch_p(groups[a], groups[b]) if pair is None else paired_p(*pair),
            }
        )
    table = pd.DataFrame(rows, columns=["case_a", "case_b", "diff", "test", "p_value"])
    valid = table["p_value"].notna()
    table["p_holm"] = float("nan")
    if valid.any():
        table.loc[valid, "p_holm"] = holm(table.loc[valid, "p_value"].tolist())
    table["significant"] = table["p_holm"] < ALPHA  # NaN (not testable): never significant
    table.attrs["scope"] = scope
    return table
