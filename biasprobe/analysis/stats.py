"""Generic statistics for testing a study's claims: intervals that keep their coverage at 3-5 seeds, one-sided tests
against a stated margin, censored differences, Holm's correction, and the verdict rule. No study-specific names here.

Units and intervals
-------------------
A DIP unit is one (image, seed) fit; seeds are nested in images. Two interval methods, named in every result:

* ``stratified-t`` (the default when every image has >= 2 seeds): the images are fixed strata (the claim is read on
  these test images), the seeds are the replicates. effect = mean over images of the per-image means;
  se^2 = sum_i s_i^2 / n_i / I^2; Student t with Welch-Satterthwaite degrees of freedom. Exact coverage for normal
  seed-to-seed noise at any n >= 2 per image (a percentile bootstrap over 3 values is [min, max] and covers far
  less than 95%).
* ``cluster-t``: the images are a random sample (clusters): a t interval over the per-image means, I - 1 degrees
  of freedom (needs I >= 2; honest but wide with few images). Used when some image has a single seed.
* ``bca``: scipy's BCa bootstrap (``scipy.stats.bootstrap``) of the mean over unclustered units (e.g. predictive
  seeds), for when a t interval's normality is in doubt; with fewer than 3 units it falls back to t.

Tests against a margin
----------------------
A claim about a contrast's true effect E is one of: ``greater`` (E > margin), ``less`` (E < margin) or
``equivalent`` (|E| < margin, two one-sided tests, TOST). Each row gets two one-sided p-values: ``p_support`` (H0:
the claim is false) and ``p_refute`` (H0: the claim's opposite, beyond the margin, is false). How a claim's rows
combine is the claim's form (``analysis.verdicts._decide``: support of a conjunction needs every row's own
p_support < alpha, intersection-union; refutation is Holm over the rows' p_refute; :func:`verdict` for one row).
With alpha = 0.025 a single row is supported exactly when its
95% two-sided interval lies on the claimed side of the margin, and refuted only when it lies on the wrong side of
it (a small effect is not a refutation). A tie inside an equivalence margin can be supported.

Censored differences
--------------------
A time that was not observed (the gap never turned negative before the run stopped) is censored: the true value is
later than the recorded one. ``gehan_paired`` tests a paired difference of such times exactly (what the data order)
and ``rmst_difference`` gives its effect as a difference of Kaplan-Meier restricted means.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

KINDS = ("greater", "less", "equivalent")


def t_interval(values, ci: float = 0.95) -> dict:
    """Mean of ``values`` with a Student t interval (n - 1 df); NaN interval for fewer than 2 values."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    n = v.size
    out = dict(effect=float(v.mean()) if n else math.nan, se=math.nan, df=math.nan, ci_low=math.nan,
               ci_high=math.nan, n_units=int(n), method="t")
    if n >= 2:
        se = float(v.std(ddof=1) / math.sqrt(n))
        out.update(se=se, df=float(n - 1))
        _fill_ci(out, ci)
    return out


def stratified_interval(values, strata, ci: float = 0.95, method: str = "auto") -> dict:
    """Mean over strata of the per-stratum means of ``values`` with a t interval (see the module docstring).

    ``method``: ``"stratified-t"``, ``"cluster-t"``, ``"bca"`` (strata ignored) or ``"auto"`` (stratified-t when
    every stratum has >= 2 finite values, else cluster-t with >= 2 strata, else t over the values)."""
    v = np.asarray(values, float)
    s = np.asarray(strata, dtype=object)
    keep = np.isfinite(v)
    v, s = v[keep], s[keep]
    groups = [v[s == g] for g in dict.fromkeys(s.tolist())]
    if method == "auto":
        method = ("stratified-t" if groups and min(g.size for g in groups) >= 2
                  else "cluster-t" if len(groups) >= 2 else "t")
    if method == "bca":
        return bca_interval(v, ci)
    if method == "t" or len(groups) == 1 and method == "stratified-t" and groups[0].size >= 2:
        out = t_interval(v, ci)
        out["method"] = "t"
        return out
    if method == "cluster-t":
        out = t_interval([g.mean() for g in groups], ci)
        out.update(n_units=int(v.size), method=f"cluster-t ({len(groups)} images)")
        return out
    if method != "stratified-t":
        raise ValueError(f"unknown interval method {method!r}")
    n_i = np.array([g.size for g in groups], float)
    var_i = np.array([g.var(ddof=1) for g in groups])
    k = len(groups)
    terms = var_i / n_i / k**2
    se2 = float(terms.sum())
    out = dict(effect=float(np.mean([g.mean() for g in groups])), se=math.sqrt(se2), df=math.nan, ci_low=math.nan,
               ci_high=math.nan, n_units=int(v.size), method=f"stratified-t ({k} images)")
    if se2 > 0:
        out["df"] = float(se2**2 / np.sum(terms**2 / (n_i - 1)))  # Welch-Satterthwaite
    else:
        out["df"] = float(np.sum(n_i - 1))
    _fill_ci(out, ci)
    return out


def bca_interval(values, ci: float = 0.95, n_resamples: int = 4999, seed: int = 0) -> dict:
    """Mean with scipy's BCa bootstrap interval; se from the bootstrap distribution; t for fewer than 3 values or
    constant values (BCa is undefined there)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size < 3 or np.ptp(v) == 0:
        return t_interval(v, ci)
    res = stats.bootstrap((v,), np.mean, confidence_level=ci, method="BCa", n_resamples=n_resamples,
                          random_state=np.random.default_rng(seed))
    return dict(effect=float(v.mean()), se=float(res.standard_error), df=float(v.size - 1),
                ci_low=float(res.confidence_interval.low), ci_high=float(res.confidence_interval.high),
                n_units=int(v.size), method="bca")


def _fill_ci(out: dict, ci: float) -> None:
    if out["se"] == 0:
        out["ci_low"] = out["ci_high"] = out["effect"]
        return
    half = stats.t.ppf((1 + ci) / 2, out["df"]) * out["se"]
    out["ci_low"], out["ci_high"] = out["effect"] - half, out["effect"] + half


def p_above(res: dict, margin: float) -> float:
    """One-sided p-value of H0: E <= margin (small when the effect is clearly above the margin)."""
    return _p(res, margin, upper=True)


def p_below(res: dict, margin: float) -> float:
    """One-sided p-value of H0: E >= margin (small when the effect is clearly below the margin)."""
    return _p(res, margin, upper=False)


def _p(res: dict, margin: float, upper: bool) -> float:
    eff, se, df = res["effect"], res["se"], res["df"]
    if not (np.isfinite(eff) and np.isfinite(se) and np.isfinite(df)):
        return math.nan
    if se == 0:
        return 0.0 if (eff > margin if upper else eff < margin) else 1.0
    z = (eff - margin) / se
    return float(stats.t.sf(z, df) if upper else stats.t.cdf(z, df))


def test_claim(res: dict, kind: str, margin: float, res_refute: dict | None = None) -> tuple[float, float]:
    """(p_support, p_refute) of a claim of ``kind`` about the effect in ``res`` (an interval dict); for censored
    contrasts ``res`` holds the lower-bound values and ``res_refute`` the upper-bound ones."""
    lo, hi = res, res_refute if res_refute is not None else res
    if kind == "greater":
        return p_above(lo, margin), p_below(hi, margin)
    if kind == "less":
        return p_below(hi, margin), p_above(lo, margin)
    if kind == "equivalent":
        m = abs(margin)
        return max(p_above(lo, -m), p_below(hi, m)), min(p_above(lo, m), p_below(hi, -m))
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN entries stay NaN and do not count)."""
    p = np.asarray(pvalues, float)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = idx.size
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def verdict(p_support: float, p_refute: float, alpha: float = 0.025) -> str:
    """supported / refuted / inconclusive from (corrected) one-sided p-values."""
    if np.isfinite(p_support) and p_support < alpha:
        return "supported"
    if np.isfinite(p_refute) and p_refute < alpha:
        return "refuted"
    return "inconclusive"


def units_needed(res: dict, margin: float, ci: float = 0.95) -> float:
    """Roughly how many units an interval of this spread needs to separate the effect from the margin (normal
    approximation, the seed-to-seed spread held fixed): n * (z * se / |effect - margin|)^2."""
    eff, se, n = res["effect"], res["se"], res["n_units"]
    if not (np.isfinite(eff) and np.isfinite(se)) or eff == margin or n < 1:
        return math.inf
    z = stats.norm.ppf((1 + ci) / 2)
    return float(math.ceil(n * (z * se / abs(eff - margin)) ** 2))


# ---------------------------------------------------------------------------------------------------------------
# Times to an event that may never happen (the gap crossing): survival methods

def gehan_paired(a, a_censored, b, b_censored, kind: str = "greater") -> dict:
    """Exact paired Gehan test of "A's time is longer than B's" (``kind`` "greater"; "less": shorter) on times
    right-censored at their recorded values, one pair per unit (image).

    Each pair scores +1 when the data order it A > B (A's time exceeds B's and B's is an event: B's observed
    crossing came first; or A is censored at or after B's event), -1 when they order it A < B, 0 when they cannot
    (both censored, a censored time before the other's event, or a tie). Under H0 (no difference, pairs
    exchangeable) each nonzero score is +-1 with probability 1/2, so the one-sided p-value is the exact binomial
    test of the nonzero scores (scipy.stats.binomtest): for n pairs all ordered the claimed way p = 2^-n.
    Returns n_pairs, n_for, n_against, n_tied (unordered), p_support (H0: not ``kind``), p_refute (the other
    direction)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ac, bc = np.asarray(a_censored, bool), np.asarray(b_censored, bool)
    gt = (~bc & (a > b)) | (~bc & ac & (a >= b))  # A surely later: B's event came first, A still going
    lt = (~ac & (b > a)) | (~ac & bc & (b >= a))
    n_for, n_against = int(gt.sum()), int(lt.sum())
    if kind == "less":
        n_for, n_against = n_against, n_for
    elif kind != "greater":
        raise ValueError(f"gehan_paired: kind must be greater or less, got {kind!r}")
    n = n_for + n_against
    p_sup = stats.binomtest(n_for, n, 0.5, alternative="greater").pvalue if n else math.nan
    p_ref = stats.binomtest(n_against, n, 0.5, alternative="greater").pvalue if n else math.nan
    return dict(n_pairs=int(a.size), n_for=n_for, n_against=n_against, n_tied=int(a.size - n),
                p_support=float(p_sup), p_refute=float(p_ref))


def rmst(times, censored, horizon: float) -> float:
    """Kaplan-Meier restricted mean time to ``horizon`` (lifelines): the area under the share of units whose event
    has not happened, from 0 to the horizon."""
    from lifelines import KaplanMeierFitter
    from lifelines.utils import restricted_mean_survival_time

    raw = np.asarray(times, float)
    t = np.minimum(raw, horizon)
    e = ~np.asarray(censored, bool) & (raw <= horizon)
    km = KaplanMeierFitter().fit(t, event_observed=e)
    return float(restricted_mean_survival_time(km, t=horizon))


def _censored_after_events(t, censored, horizon: float) -> bool:
    """Whether every censored time comes at or after every event before the horizon (then Kaplan-Meier is the
    empirical survival curve, censored units counting as still going at the horizon)."""
    events = t[~censored & (t < horizon)]
    return not events.size or not censored.any() or bool(t[censored].min() >= events.max())


def rmst_difference(a, a_censored, b, b_censored, horizon: float, ci: float = 0.95, n_resamples: int = 1999,
                    seed: int = 0) -> dict:
    """RMST(A) - RMST(B) to ``horizon`` (:func:`rmst`, lifelines) for paired units (one A and one B time per image),
    with a percentile interval from resampling the units (``scipy.stats.bootstrap``): an image drawn brings both
    its times, so the pairing is kept.

    When, in each arm, no censoring comes before an event that is before the horizon (the usual case: every
    censoring is at the common cap, after every crossing), the Kaplan-Meier curve is the empirical share still
    positive, so the RMST is exactly the mean of the units' restricted times (min(T, horizon) for an event, the
    horizon for a censored time) and so is every resample's: the bootstrap runs on the per-image differences of
    restricted times (vectorised). Otherwise each resample refits both Kaplan-Meier curves (slower)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ac, bc = np.asarray(a_censored, bool), np.asarray(b_censored, bool)
    ma, mb = rmst(a, ac, horizon), rmst(b, bc, horizon)
    effect = ma - mb
    out = dict(effect=effect, n_units=int(a.size), rmst_a=ma, rmst_b=mb)
    early = not (_censored_after_events(a, ac, horizon) and _censored_after_events(b, bc, horizon))
    if a.size < 2:
        return dict(out, se=math.nan, ci_low=-math.inf, ci_high=math.inf,
                    method=f"KM RMST to {horizon:g} (lifelines); no interval from {a.size} image")
    rng = np.random.default_rng(seed)
    if not early:
        d = np.where(ac, horizon, np.minimum(a, horizon)) - np.where(bc, horizon, np.minimum(b, horizon))
        if np.ptp(d) == 0:
            lo = hi = float(d[0])
            se = 0.0
        else:
            res = stats.bootstrap((d,), np.mean, confidence_level=ci, method="percentile",
                                  n_resamples=n_resamples, random_state=rng)
            lo, hi, se = res.confidence_interval.low, res.confidence_interval.high, res.standard_error
        how = "restricted times observed"
    else:
        idx = np.arange(a.size)

        def diff(i):
            i = np.asarray(i, int)
            return rmst(a[i], ac[i], horizon) - rmst(b[i], bc[i], horizon)

        res = stats.bootstrap((idx,), diff, vectorized=False, confidence_level=ci, method="percentile",
                              n_resamples=min(n_resamples, 999), random_state=rng)
        lo, hi, se = res.confidence_interval.low, res.confidence_interval.high, res.standard_error
        how = "KM refitted per resample"
    return dict(out, se=float(se), ci_low=float(lo), ci_high=float(hi),
                method=f"KM RMST to {horizon:g} (lifelines), {ci:.0%} percentile interval resampling images "
                       f"({how})")


# ---------------------------------------------------------------------------------------------------------------
# Power (noncentral t) for the paired t over units

def power_t(effect: float, sd: float, margin: float, kind: str, n: int, alpha: float = 0.025) -> float:
    """Power of the one-sided paired t test at level ``alpha`` with ``n`` units, for a true contrast ``effect``
    with unit-to-unit SD ``sd``, of the claim ``kind`` (greater / less) than ``margin`` (scipy's noncentral t)."""
    if n < 2 or not (np.isfinite(effect) and np.isfinite(sd)) or sd <= 0:
        return math.nan
    delta = (effect - margin) if kind == "greater" else (margin - effect)
    df = n - 1
    return float(stats.nct.sf(stats.t.ppf(1 - alpha, df), df, delta / sd * math.sqrt(n)))


def n_for_power(effect: float, sd: float, margin: float, kind: str, alpha: float = 0.025, power: float = 0.8,
                n_max: int = 10_000) -> float:
    """The fewest units giving the paired t test ``power`` (:func:`power_t`); inf when the effect is not on the
    claimed side of the margin (no sample size decides it for support) or more than ``n_max`` are needed."""
    if not (np.isfinite(effect) and np.isfinite(sd)):
        return math.inf
    delta = (effect - margin) if kind == "greater" else (margin - effect)
    if delta <= 0:
        return math.inf
    if sd <= 0:
        return 2.0
    lo, hi = 2, n_max
    if power_t(effect, sd, margin, kind, hi, alpha) < power:
        return math.inf
    while lo < hi:  # power grows with n: bisection
        mid = (lo + hi) // 2
        if power_t(effect, sd, margin, kind, mid, alpha) >= power:
            hi = mid
        else:
            lo = mid + 1
    return float(lo)


def slope_with_se(x, y) -> tuple[float, float]:
    """Least-squares slope of y on x and its standard error (scipy.stats.linregress); NaN with fewer than 3
    points."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3 or np.ptp(x[keep]) == 0:
        return math.nan, math.nan
    r = stats.linregress(x[keep], y[keep])
    return float(r.slope), float(r.stderr)


def archs_for_rho_power(rho: float, ci_low: float, ci_high: float, n: int, threshold: float, kind: str,
                        power: float = 0.8, ci: float = 0.95) -> float:
    """A planning guide for a rank correlation claimed below (``kind="less"``) or above a threshold and decided by
    whether its ``ci`` interval clears it: the number of architectures at which the observed rho would be decided
    with ``power``, if the interval narrowed as Fisher's z does (se proportional to 1/sqrt(n - 3)). The spread is
    the observed one, read on the z scale from the interval's bound on the claimed side (the bound the decision
    reads; a bootstrap interval may be skewed), so an undecided rho always asks for more than n. For Fisher's own
    interval it is the textbook sample size 3 + ((z_alpha + z_power) / (atanh(threshold) - atanh(rho)))^2, alpha
    = (1 - ci) / 2. inf when rho is not on the claimed side; NaN when the inputs cannot say (n <= 3, no interval)."""
    vals = np.clip(np.array([rho, ci_low, ci_high], float), -0.999, 0.999)
    if not (np.isfinite(vals).all() and n > 3):
        return math.nan
    z, lo, hi = np.arctanh(vals)
    z_ci = stats.norm.ppf(0.5 + ci / 2)
    if kind == "less":
        delta, se = np.arctanh(threshold) - z, (hi - z) / z_ci
    else:
        delta, se = z - np.arctanh(threshold), (z - lo) / z_ci
    if delta <= 0:
        return math.inf
    if se <= 0:
        return float(n)
    need = 3 + (n - 3) * ((z_ci + stats.norm.ppf(power)) * se / delta) ** 2
    return float(math.ceil(need))
