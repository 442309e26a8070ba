"""The statistics of the report: a case's confidence interval, and the tests that
compare cases, each with the source of its formula.

Only plain, well-known procedures, so that a reader can check any number by hand:
Student's t-interval for a mean, Welch's t-test for two means, and Holm's step-down
adjustment for testing many pairs at once. scipy computes the distributions.
"""

from __future__ import annotations

import itertools
import sys
import warnings
from collections.abc import Sequence

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


def pairwise_tests(runs_df: pd.DataFrame) -> pd.DataFrame:
    """Welch's t-test between cases that both have n > 1, Holm-adjusted; a pair where
    the test is undefined (see `testable`) gets no p-value and is not significant.

    Every pair in a small sweep; in a larger one, each case against the best (highest
    mean test accuracy), which is the question a reader of a search asks: what is not
    distinguishable from the winner. `table.attrs["scope"]` says which.
    """
    done = runs_df[runs_df["status"] == "completed"]
    groups = {k: g["test_acc"].astype(float).tolist() for k, g in done.groupby("case", sort=False)}
    groups = {k: v for k, v in groups.items() if len(v) > 1}
    means = {k: sum(v) / len(v) for k, v in groups.items()}
    if len(groups) <= ALL_PAIRS_MAX:
        pairs, scope = list(itertools.combinations(groups, 2)), "all pairs"
    else:
        best = max(means, key=means.get)
        pairs, scope = [(best, k) for k in groups if k != best], f"each case against {best}"
    rows = [
        {
            "case_a": a,
            "case_b": b,
            "diff": means[a] - means[b],
            "p_value": welch_p(groups[a], groups[b]),
        }
        for a, b in pairs
    ]
    table = pd.DataFrame(rows, columns=["case_a", "case_b", "diff", "p_value"])
    valid = table["p_value"].notna()
    table["p_holm"] = float("nan")
    if valid.any():
        table.loc[valid, "p_holm"] = holm(table.loc[valid, "p_value"].tolist())
    table["significant"] = table["p_holm"] < ALPHA  # NaN (not testable): never significant
    table.attrs["scope"] = scope
    return table
