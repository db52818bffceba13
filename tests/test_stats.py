"""Statistics over seeds checked against scipy on hand-made arrays: intervals, Welch and paired t-tests (one seed,
two seeds, constant samples, NaN), Holm's correction by hand, Friedman, the Nemenyi critical difference and its
groups."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sp

from harness.results import stats

A = [0.90, 0.92, 0.94, 0.91]
B = [0.85, 0.95, 0.90, 0.88]


def test_interval_is_scipys_t_interval_and_absent_below_two_seeds():
    mean, half = stats.mean_confidence_interval(A)
    lo, hi = sp.t.interval(0.95, len(A) - 1, loc=np.mean(A), scale=sp.sem(A))
    assert mean == pytest.approx(np.mean(A)) and half == pytest.approx((hi - lo) / 2)
    assert stats.mean_confidence_interval([0.5])[0] == 0.5 and math.isnan(stats.mean_confidence_interval([0.5])[1])
    assert all(math.isnan(x) for x in stats.mean_confidence_interval([]))
    assert stats.mean_confidence_interval([0.9, None, float("nan"), 0.94]) == stats.mean_confidence_interval([0.9, 0.94])


@pytest.mark.filterwarnings("ignore:Precision loss")  # scipy, on a constant sample
@pytest.mark.parametrize("a, b", [(A, B), (A[:2], B[:2]), (A, B[:2]), ([0.7, 0.7, 0.7], [0.6, 0.65, 0.7])])
def test_welch_is_scipys_ttest_ind_without_equal_variances(a, b):
    assert stats.welch_p_value(a, b) == pytest.approx(sp.ttest_ind(a, b, equal_var=False).pvalue)


@pytest.mark.parametrize("a, b", [(A, B), (A[:2], B[:2]), ([0.5, 0.55, 0.6], [0.7, 0.72, 0.74])])
def test_paired_is_scipys_ttest_rel(a, b):
    assert stats.paired_p_value(a, b) == pytest.approx(sp.ttest_rel(a, b).pvalue)


def test_one_seed_gives_no_p_value():
    assert math.isnan(stats.welch_p_value([0.9], B)) and math.isnan(stats.welch_p_value(A, [0.8]))
    assert math.isnan(stats.paired_p_value([0.9], [0.8]))
    one = stats.compare({0: 0.9}, {0: 0.8, 1: 0.85}, paired=False)
    assert one.test == "" and math.isnan(one.p_value)


@pytest.mark.filterwarnings("ignore:Precision loss")  # scipy, on a constant sample
def test_constant_samples():
    # scipy answers 0.29 here (rounding noise in the means) and NaN for [1, 1] against [1, 1]
    assert stats.welch_p_value([0.8, 0.8, 0.8], [0.8, 0.8]) == 1.0 == stats.welch_p_value([1, 1], [1, 1])
    assert stats.welch_p_value([0.8, 0.8, 0.8], [0.9, 0.9]) == 0.0 == sp.ttest_ind([1, 1, 1], [2, 2],
                                                                                     equal_var=False).pvalue
    assert stats.paired_p_value([0.8, 0.9, 0.7], [0.8, 0.9, 0.7]) == 1.0  # zero differences; scipy: NaN
    assert stats.paired_p_value([0.8, 0.9, 0.7], [0.7, 0.8, 0.6]) == 0.0  # constant differences of 0.1
    assert stats.paired_p_value([1.0, 2.0, 3.0], [0.0, 1.0, 2.0]) == 0.0 == sp.ttest_rel([1, 2, 3], [0, 1, 2]).pvalue


def test_nan_values_are_dropped_and_pairs_kept_only_where_both_sides_have_a_value():
    nan = float("nan")
    assert stats.welch_p_value([0.9, nan, 0.92, 0.94], [0.8, 0.82, None]) == pytest.approx(
        sp.ttest_ind([0.9, 0.92, 0.94], [0.8, 0.82], equal_var=False).pvalue)
    a, b = [0.9, nan, 0.92, 0.95, 0.91], [0.8, 0.85, None, 0.86, 0.84]
    assert stats.paired_p_value(a, b) == pytest.approx(sp.ttest_rel([0.9, 0.95, 0.91], [0.8, 0.86, 0.84]).pvalue)
    assert math.isnan(stats.paired_p_value([0.9, nan, 0.92], [0.8, 0.85, nan]))  # one pair left


def test_compare_pairs_by_seed_and_falls_back_to_welch():
    a = {0: 0.9, 1: 0.92, 2: 0.95}
    b = {2: 0.86, 0: 0.8, 1: 0.85}
    paired = stats.compare(a, b, paired=True)
    assert paired.test == "paired_t"
    assert paired.p_value == pytest.approx(sp.ttest_rel([0.9, 0.92, 0.95], [0.8, 0.85, 0.86]).pvalue)
    welch = stats.compare(a, b, paired=False)
    assert welch.test == "welch_t" and welch.p_value == pytest.approx(
        sp.ttest_ind([0.9, 0.92, 0.95], [0.86, 0.8, 0.85], equal_var=False).pvalue)
    # two seeds a side but only one present on both: no paired test possible, Welch over what there is
    fallback = stats.compare({0: 0.9, 1: 0.92, 2: float("nan")}, {0: float("nan"), 1: 0.85, 2: 0.86}, paired=True)
    assert fallback.test == "welch_t" and fallback.p_value == pytest.approx(
        sp.ttest_ind([0.9, 0.92], [0.85, 0.86], equal_var=False).pvalue)
    too_few = stats.compare({0: 0.9, 1: float("nan")}, b, paired=True)
    assert too_few.test == "" and math.isnan(too_few.p_value)


def test_seeds_pair_only_when_every_seed_shares_data_that_varies_across_seeds():
    varied = {0: (0, 0), 1: (0, 1), 2: (0, 2)}
    assert stats.seeds_pair(varied, dict(varied))
    assert not stats.seeds_pair({0: (0, 7), 1: (0, 7)}, {0: (0, 7), 1: (0, 7)})  # only initialisation varies
    assert not stats.seeds_pair(varied, {0: (0, 0), 1: (0, 1)})  # different seeds
    assert not stats.seeds_pair(varied, {0: (0, 0), 1: (1, 1), 2: (0, 2)})  # seed 1 on another split


def test_holm_against_hand_computed_values():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> 0.06 (monotone)
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = stats.holm([0.02, float("nan"), 0.04])  # NaN is no hypothesis: m = 2
    assert out[0] == pytest.approx(0.04) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)
    assert stats.holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1
    assert stats.holm([0.3]) == [0.3] and stats.holm([]) == []


def test_verdicts_never_claim_a_difference_without_two_seeds_a_side():
    p = stats.Comparison("welch_t", 0.001)
    assert stats.verdict(True, stats.Comparison("", math.nan), math.nan) == "best"
    assert stats.verdict(False, p, 0.003) == "significantly worse than the best"
    assert stats.verdict(False, p, 0.07) == "not distinguishable from the best"
    assert stats.verdict(False, stats.Comparison("", math.nan), math.nan) == "too few seeds"
    assert set(stats.VERDICTS) == {"best", "significantly worse than the best", "not distinguishable from the best",
                                   "too few seeds"}


@pytest.mark.parametrize("k, q", [(2, 1.960), (3, 2.343), (4, 2.569), (5, 2.728), (10, 3.164)])
def test_nemenyi_q_reproduces_demsars_table(k, q):
    assert stats.nemenyi_q(k) == pytest.approx(q, abs=1e-3)


@pytest.mark.parametrize("k", [2, 3, 7, 20, 50])
@pytest.mark.parametrize("alpha", [0.05, 0.10])
def test_nemenyi_q_is_scipys_studentized_range_at_infinite_df(k, alpha):
    expected = sp.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    assert stats.nemenyi_q(k, alpha) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_friedman_chi2_is_scipys_with_ties_in_every_block(seed):
    values = np.random.default_rng(seed).integers(0, 4, size=(5, 6)).astype(float)  # k=5 entries, n=6 blocks
    res = sp.friedmanchisquare(*values)
    assert stats.friedman_chi2(values) == pytest.approx((res.statistic, res.pvalue), rel=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_t_tests_are_scipys_on_random_samples(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0.8, 0.05, 5), rng.normal(0.78, 0.02, 4)
    assert stats.welch_p_value(a, b) == pytest.approx(sp.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-10)
    assert stats.paired_p_value(a[:4], b) == pytest.approx(sp.ttest_rel(a[:4], b).pvalue, rel=1e-10)
    assert stats.t_quantile(0.975, 3) == pytest.approx(sp.t.ppf(0.975, 3), rel=1e-12)


def test_critical_difference_formula():
    assert stats.critical_difference(4, 14) == pytest.approx(stats.nemenyi_q(4) * math.sqrt(4 * 5 / (6 * 14)))
    assert stats.critical_difference(4, 14) == pytest.approx(1.25, abs=0.01)  # Demsar 2006, section 3.2.4


SCORES = pd.DataFrame({"d1": [0.90, 0.85, 0.80, 0.70], "d2": [0.60, 0.62, 0.55, 0.50],
                       "d3": [0.70, 0.70, 0.65, 0.66], "d4": [0.95, 0.93, 0.90, 0.91]},
                      index=["a", "b", "c", "d"])


def test_friedman_is_scipys_and_ranks_average_ties():
    f = stats.friedman(SCORES)
    assert f.reason == ""
    res = sp.friedmanchisquare(*SCORES.to_numpy())
    assert f.chi2 == pytest.approx(res.statistic) and f.p_value == pytest.approx(res.pvalue)
    # d1: a1 b2 c3 d4; d2: b1 a2 c3 d4; d3: a,b tie 1.5, d3 c4; d4: a1 b2 d3 c4
    assert f.ranks == pytest.approx({"a": (1 + 2 + 1.5 + 1) / 4, "b": (2 + 1 + 1.5 + 2) / 4,
                                     "c": (3 + 3 + 4 + 4) / 4, "d": (4 + 4 + 3 + 3) / 4})
    assert f.cd == pytest.approx(stats.critical_difference(4, 4))
    assert f.entries == ["a", "b", "c", "d"] and f.datasets == ["d1", "d2", "d3", "d4"]


def test_friedman_uses_entries_present_on_every_dataset_and_says_why_when_it_cannot_run():
    with_gap = SCORES.copy()
    with_gap.loc["e"] = [0.5, np.nan, 0.5, 0.5]
    f = stats.friedman(with_gap)
    assert f.entries == ["a", "b", "c", "d"] and f.chi2 == pytest.approx(stats.friedman(SCORES).chi2)
    two = stats.friedman(SCORES[["d1", "d2"]])
    assert two.reason == "needs 3 or more datasets; these results have 2" and math.isnan(two.p_value)
    few = stats.friedman(SCORES.iloc[:2])
    assert few.reason == "needs 3 or more entries with a score on every dataset; these results have 2"
    tied = stats.friedman(pd.DataFrame({"d1": [0.5] * 3, "d2": [0.7] * 3, "d3": [0.1] * 3}, index=list("abc")))
    assert (tied.chi2, tied.p_value) == (0.0, 1.0)  # scipy divides by zero here
    assert tied.ranks == {"a": 2.0, "b": 2.0, "c": 2.0}


def test_cd_groups_are_the_maximal_runs_within_the_critical_difference():
    ranks = {"a": 1.0, "b": 1.5, "c": 2.4, "d": 3.9, "e": 4.0}
    assert stats.cd_groups(ranks, 1.5) == [["a", "b", "c"], ["d", "e"]]  # c-d is 1.5: not within
    assert stats.cd_groups(ranks, 1.7) == [["a", "b", "c"], ["c", "d", "e"]]
    assert stats.cd_groups(ranks, 0.05) == []
    assert stats.cd_groups(ranks, 10) == [["a", "b", "c", "d", "e"]]
