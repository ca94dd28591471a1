"""stats.py: intervals, tests against a margin, Holm, censored bounds, the verdict rule."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from biasprobe.analysis import stats


def test_t_interval_matches_scipy():
    v = np.array([1.0, 2.0, 4.0])
    r = stats.t_interval(v)
    lo, hi = sps.t.interval(0.95, 2, loc=v.mean(), scale=sps.sem(v))
    assert r["ci_low"] == pytest.approx(lo) and r["ci_high"] == pytest.approx(hi) and r["n_units"] == 3


def test_stratified_interval_removes_image_levels():
    # two images at very different levels, the same seed-to-seed spread: strata take the level out
    values = np.array([10.0, 10.2, 9.8, 0.0, 0.2, -0.2])
    images = ["a"] * 3 + ["b"] * 3
    r = stats.stratified_interval(values, images)
    assert r["method"].startswith("stratified-t") and r["effect"] == pytest.approx(5.0)
    # se from within-image spread only: sqrt((0.04/3 + 0.04/3) / 4) = 0.0816
    assert r["se"] == pytest.approx(math.sqrt((0.04 / 3 + 0.04 / 3) / 4))
    plain = stats.t_interval(values)
    assert r["ci_high"] - r["ci_low"] < (plain["ci_high"] - plain["ci_low"]) / 10
    # one seed per image: the images are clusters
    c = stats.stratified_interval([1.0, 2.0, 3.0], ["a", "b", "c"])
    assert c["method"].startswith("cluster-t") and c["df"] == 2


def test_stratified_t_coverage_at_three_seeds():
    """The interval keeps ~95% coverage at 3 seeds per image (a percentile bootstrap over 3 values does not)."""
    rng = np.random.default_rng(0)
    n = 2000
    # the true effect is the mean of the per-image means: (3.0 + -1.0) / 2 = 1.0
    hits = 0
    for _ in range(n):
        values = np.concatenate([rng.normal(3.0, 0.5, 3), rng.normal(-1.0, 0.5, 3)])
        r = stats.stratified_interval(values, ["a"] * 3 + ["b"] * 3)
        hits += r["ci_low"] <= 1.0 <= r["ci_high"]
    assert 0.93 <= hits / n <= 0.975


def test_claim_kinds_and_margins():
    tie = dict(effect=0.1, se=0.1, df=10, n_units=11)
    # an equivalence claim within a 1 dB margin: a tie is supported (TOST), not refuted
    p_sup, p_ref = stats.test_claim(tie, "equivalent", 1.0)
    assert stats.verdict(p_sup, p_ref) == "supported"
    # a clear loss refutes "greater than 0" and supports "less than 1"
    loss = dict(effect=-2.0, se=0.2, df=10, n_units=11)
    assert stats.verdict(*stats.test_claim(loss, "greater", 0.0)) == "refuted"
    assert stats.verdict(*stats.test_claim(loss, "less", 1.0)) == "supported"
    # a small positive effect is not a refutation of "greater than 0" when its interval contains 0
    small = dict(effect=0.05, se=0.2, df=10, n_units=11)
    assert stats.verdict(*stats.test_claim(small, "greater", 0.0)) == "inconclusive"
    # outside an equivalence margin, clearly: refuted
    far = dict(effect=3.0, se=0.2, df=10, n_units=11)
    assert stats.verdict(*stats.test_claim(far, "equivalent", 1.0)) == "refuted"
    with pytest.raises(ValueError):
        stats.test_claim(tie, "bigger", 0.0)


def test_single_row_equals_its_95_interval():
    r = stats.t_interval([0.3, 0.5, 0.4, 0.6])
    p_sup, p_ref = stats.test_claim(r, "greater", 0.0)
    assert (p_sup < 0.025) == (r["ci_low"] > 0)
    r2 = stats.t_interval([0.3, -0.5, 0.4, 0.6])
    p_sup, _ = stats.test_claim(r2, "greater", 0.0)
    assert (p_sup < 0.025) == (r2["ci_low"] > 0) and p_sup >= 0.025


def test_holm():
    adj = stats.holm([0.01, 0.04, 0.03, np.nan])
    assert adj[0] == pytest.approx(0.03) and adj[2] == pytest.approx(0.06) and adj[1] == pytest.approx(0.06)
    assert np.isnan(adj[3])
    assert list(stats.holm([0.5, 0.9])) == [pytest.approx(1.0), pytest.approx(1.0)]  # capped at 1, monotone


def test_bca_interval_and_units_needed():
    rng = np.random.default_rng(1)
    v = rng.normal(1.0, 1.0, 12)
    r = stats.bca_interval(v)
    assert r["method"] == "bca" and r["ci_low"] < v.mean() < r["ci_high"]
    assert stats.bca_interval([1.0, 2.0])["method"] == "t"  # too few for BCa
    wide = dict(effect=0.2, se=0.5, n_units=6)
    assert stats.units_needed(wide, 0.0) > 6 * 10


def test_archs_for_rho_power_is_the_fisher_sample_size_when_the_interval_is_fishers():
    """Given Fisher's own interval at n (se 1/sqrt(n - 3)), the guide is the textbook sample size for a
    correlation test, 3 + ((z_alpha + z_power) / (atanh(threshold) - atanh(rho)))^2, rounded up; wider observed
    intervals ask for more architectures; rho on the wrong side asks for none."""
    import math

    from scipy.stats import norm

    from biasprobe.analysis.stats import archs_for_rho_power

    n, rho = 20, 0.2
    half = norm.ppf(0.975) / math.sqrt(n - 3)
    lo, hi = math.tanh(math.atanh(rho) - half), math.tanh(math.atanh(rho) + half)
    textbook = 3 + ((norm.ppf(0.975) + norm.ppf(0.8)) / (math.atanh(0.5) - math.atanh(rho))) ** 2
    assert archs_for_rho_power(rho, lo, hi, n, 0.5, "less") == math.ceil(textbook) == 69
    wider = archs_for_rho_power(rho, lo - 0.2, min(hi + 0.2, 0.99), n, 0.5, "less")
    assert wider > 69
    assert archs_for_rho_power(0.7, 0.3, 0.9, n, 0.5, "less") == math.inf  # wrong side: no n supports it
    assert archs_for_rho_power(0.7, 0.55, 0.85, n, 0.5, "greater") < math.inf  # the other direction
    # a skewed (bootstrap) interval that has not cleared the threshold: the claim-side bound sets the spread, so an
    # undecided rho never asks for fewer architectures than it has
    assert archs_for_rho_power(0.2, 0.19, 0.55, n, 0.5, "less") > n
    assert archs_for_rho_power(0.2, 0.0, 0.52, n, 0.5, "less") > n
    # a 90% interval decides at one-sided alpha 0.05: the textbook size with z_0.95
    half90 = norm.ppf(0.95) / math.sqrt(n - 3)
    lo90, hi90 = math.tanh(math.atanh(rho) - half90), math.tanh(math.atanh(rho) + half90)
    textbook90 = 3 + ((norm.ppf(0.95) + norm.ppf(0.8)) / (math.atanh(0.5) - math.atanh(rho))) ** 2
    assert archs_for_rho_power(rho, lo90, hi90, n, 0.5, "less", ci=0.9) == math.ceil(textbook90)
    assert math.isnan(archs_for_rho_power(rho, float("nan"), hi, n, 0.5, "less"))  # no interval: cannot say
