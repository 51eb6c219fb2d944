"""The statistics of A/B tests, vectorised with numpy (arrays in, arrays out; scalars work too).

Every function is a formula from the textbook, written once so that the analysis of one
experiment and the simulation of thousands (tests, `panorama experiments power`) share it:

* conversion: two-proportion z-test (pooled standard error) for the p-value; unpooled Wald
  interval for the absolute difference; delta-method interval on log(ratio) for the relative
  lift; Beta(1 + x, 1 + n - x) posteriors for P(variant beats control).
* means (revenue per user): Welch's t-test and interval (Welch-Satterthwaite degrees of
  freedom); delta-method interval for the relative lift; normal posterior approximation for
  P(beat control).
* sample-ratio mismatch: chi-square goodness of fit of the exposure counts to the weights.
* sample size / power for both.
* mSPRT (mixture sequential probability ratio test, Johari, Pekelis & Walsh 2017): an
  always-valid p-value and confidence interval for the difference, for experiments declared
  `sequential: true`.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

SRM_ALPHA = 0.001  # a sample-ratio mismatch is flagged below this p-value


def _z(alpha: float) -> float:
    return float(stats.norm.ppf(1 - alpha / 2))


def _arr(x):
    return np.asarray(x, dtype=float)


def proportions(x_c, n_c, x_t, n_t, alpha: float = 0.05) -> dict:
    """Two-proportion comparison of treatment (x_t of n_t converted) with control (x_c of n_c)."""
    x_c, n_c, x_t, n_t = map(_arr, (x_c, n_c, x_t, n_t))
    z = _z(alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_c, p_t = x_c / n_c, x_t / n_t
        diff = p_t - p_c
        se = np.sqrt(p_c * (1 - p_c) / n_c + p_t * (1 - p_t) / n_t)
        pooled = (x_c + x_t) / (n_c + n_t)
        se0 = np.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_t))
        zstat = np.where(se0 > 0, diff / se0, 0.0)
        p_value = 2 * stats.norm.sf(np.abs(zstat))
        rel = p_t / p_c - 1
        se_log = np.sqrt(1 / x_t - 1 / n_t + 1 / x_c - 1 / n_c)
        log_r = np.log(p_t / p_c)
        rel_lo = np.exp(log_r - z * se_log) - 1
        rel_hi = np.exp(log_r + z * se_log) - 1
    return {
        "rate_control": p_c, "rate_variant": p_t,
        "abs_lift": diff, "abs_ci": (diff - z * se, diff + z * se),
        "rel_lift": rel, "rel_ci": (rel_lo, rel_hi),
        "z": zstat, "p_value": p_value,
    }  # fmt: skip


def welch(mean_c, var_c, n_c, mean_t, var_t, n_t, alpha: float = 0.05) -> dict:
    """Welch's t-test of the difference of means (treatment - control), with sample variances."""
    mean_c, var_c, n_c, mean_t, var_t, n_t = map(_arr, (mean_c, var_c, n_c, mean_t, var_t, n_t))
    with np.errstate(divide="ignore", invalid="ignore"):
        a, b = var_c / n_c, var_t / n_t
        se = np.sqrt(a + b)
        df = (a + b) ** 2 / (a**2 / (n_c - 1) + b**2 / (n_t - 1))
        diff = mean_t - mean_c
        tstat = np.where(se > 0, diff / se, 0.0)
        p_value = 2 * stats.t.sf(np.abs(tstat), df)
        q = stats.t.ppf(1 - alpha / 2, df)
        rel = mean_t / mean_c - 1
        se_log = np.sqrt(b / mean_t**2 + a / mean_c**2)
        log_r = np.log(mean_t / mean_c)
        z = _z(alpha)
        rel_lo = np.exp(log_r - z * se_log) - 1
        rel_hi = np.exp(log_r + z * se_log) - 1
    return {
        "mean_control": mean_c, "mean_variant": mean_t,
        "abs_lift": diff, "abs_ci": (diff - q * se, diff + q * se),
        "rel_lift": rel, "rel_ci": (rel_lo, rel_hi),
        "t": tstat, "df": df, "p_value": p_value,
    }  # fmt: skip


def prob_beat_control_beta(x_c: int, n_c: int, x_t: int, n_t: int, draws: int = 200_000,
                           seed: int = 0) -> float:
    """P(rate_variant > rate_control) under uniform Beta(1, 1) priors (Monte Carlo, seeded)."""
    rng = np.random.default_rng(seed)
    c = rng.beta(1 + x_c, 1 + n_c - x_c, draws)
    t = rng.beta(1 + x_t, 1 + n_t - x_t, draws)
    return float(np.mean(t > c))


def prob_beat_control_normal(diff, se):
    """P(difference > 0) under a flat prior and a normal likelihood (means, revenue)."""
    diff, se = _arr(diff), _arr(se)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(se > 0, stats.norm.cdf(diff / se), 0.5)


def srm(counts: list[int], weights: list[float] | None = None) -> dict:
    """Chi-square test that exposures split as the weights say (equal by default)."""
    counts_a = np.asarray(counts, dtype=float)
    w = np.ones(len(counts_a)) if weights is None else np.asarray(weights, dtype=float)
    expected = counts_a.sum() * w / w.sum()
    if counts_a.sum() == 0:
        return {"chi2": 0.0, "p_value": 1.0, "mismatch": False, "expected": expected.tolist()}
    chi2, p = stats.chisquare(counts_a, expected)
    return {"chi2": float(chi2), "p_value": float(p), "mismatch": bool(p < SRM_ALPHA),
            "expected": [float(e) for e in expected]}


# -- planning ------------------------------------------------------------------------------------


def sample_size_proportions(baseline: float, mde: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Exposures per variant to detect a relative lift `mde` on a conversion rate `baseline`
    with a two-sided test at `alpha` and the given power (equal split)."""
    p1, p2 = baseline, baseline * (1 + mde)
    if not (0 < p1 < 1 and 0 < p2 < 1):
        raise ValueError(f"rates must be between 0 and 1 (baseline {p1:g}, with the effect {p2:g})")
    pbar = (p1 + p2) / 2
    za, zb = _z(alpha), float(stats.norm.ppf(power))
    n = (za * np.sqrt(2 * pbar * (1 - pbar)) + zb * np.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2 / (p2 - p1) ** 2
    return int(np.ceil(n))


def power_proportions(baseline: float, mde: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided two-proportion z-test with `n` exposures per variant."""
    p1, p2 = baseline, baseline * (1 + mde)
    pbar = (p1 + p2) / 2
    za = _z(alpha)
    se0 = np.sqrt(2 * pbar * (1 - pbar) / n)
    se1 = np.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / n)
    d = abs(p2 - p1)
    return float(stats.norm.cdf((d - za * se0) / se1) + stats.norm.cdf((-d - za * se0) / se1))


def sample_size_means(mean: float, sd: float, mde: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Users per variant to detect a relative lift `mde` on a mean (e.g. revenue per user)."""
    d = mean * mde
    if d == 0 or sd <= 0:
        raise ValueError("the mean, the effect and the standard deviation must be positive")
    za, zb = _z(alpha), float(stats.norm.ppf(power))
    return int(np.ceil(2 * (za + zb) ** 2 * sd**2 / d**2))


def power_means(mean: float, sd: float, mde: float, n: int, alpha: float = 0.05) -> float:
    d = abs(mean * mde)
    se = sd * np.sqrt(2 / n)
    za = _z(alpha)
    return float(stats.norm.cdf(d / se - za) + stats.norm.cdf(-d / se - za))


# -- always valid (mSPRT) -------------------------------------------------------------------------


def msprt(diff, var, tau2: float, alpha: float = 0.05) -> dict:
    """Normal-mixture SPRT for an estimated difference `diff` with variance `var` (= s_c²/n_c +
    s_t²/n_t) and mixing variance `tau2` of the effect under the alternative. Returns the
    likelihood ratio, the p-value 1/Λ (take the running minimum over looks for the always-valid
    p-value) and the always-valid confidence interval at this look."""
    diff, var = _arr(diff), _arr(var)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_lr = 0.5 * np.log(var / (var + tau2)) + diff**2 * tau2 / (2 * var * (var + tau2))
        p = np.minimum(1.0, np.exp(-log_lr))
        half = np.sqrt(var * (var + tau2) / tau2 * (np.log((var + tau2) / var) - 2 * np.log(alpha)))
    return {"log_lr": log_lr, "p_value": p, "ci": (diff - half, diff + half)}
