"""The statistics against simulation: A/A tests keep the false-positive rate at alpha, intervals
cover the true effect 95% of the time, the power calculator predicts the simulated power."""

from __future__ import annotations

import numpy as np
import pytest

from panorama.experiments import stats

RUNS = 2000


def _binomial_runs(p_c: float, p_t: float, n: int, seed: int):
    rng = np.random.default_rng(seed)
    return rng.binomial(n, p_c, RUNS), rng.binomial(n, p_t, RUNS)


def test_aa_false_positive_rate_near_alpha():
    x_c, x_t = _binomial_runs(0.1, 0.1, 2000, seed=1)
    r = stats.proportions(x_c, 2000, x_t, 2000, alpha=0.05)
    fpr = float(np.mean(r["p_value"] < 0.05))
    # binomial sd of the rate over 2,000 runs is 0.5 percentage points
    assert 0.035 <= fpr <= 0.065, fpr


def test_aa_p_values_uniform():
    x_c, x_t = _binomial_runs(0.2, 0.2, 3000, seed=2)
    p = stats.proportions(x_c, 3000, x_t, 3000)["p_value"]
    from scipy.stats import kstest

    assert kstest(p, "uniform").pvalue > 0.001  # discreteness of the counts aside


@pytest.mark.parametrize("p_c,lift", [(0.1, 0.0), (0.17, 0.18), (0.05, 0.3)])
def test_ci_coverage_near_95(p_c, lift):
    n = 3000
    p_t = p_c * (1 + lift)
    x_c, x_t = _binomial_runs(p_c, p_t, n, seed=3)
    r = stats.proportions(x_c, n, x_t, n)
    lo, hi = r["abs_ci"]
    cover_abs = np.mean((lo <= p_t - p_c) & (p_t - p_c <= hi))
    lo, hi = r["rel_ci"]
    cover_rel = np.mean((lo <= lift) & (lift <= hi))
    assert 0.935 <= cover_abs <= 0.965, cover_abs
    assert 0.935 <= cover_rel <= 0.965, cover_rel


def test_power_calculator_matches_simulation():
    n = stats.sample_size_proportions(0.17, 0.18, alpha=0.05, power=0.8)
    assert 2500 < n < 3500  # textbook: ~2,900 per arm for 17% -> 20.06%
    assert stats.power_proportions(0.17, 0.18, n) == pytest.approx(0.8, abs=0.01)
    x_c, x_t = _binomial_runs(0.17, 0.17 * 1.18, n, seed=4)
    simulated = float(np.mean(stats.proportions(x_c, n, x_t, n)["p_value"] < 0.05))
    assert simulated == pytest.approx(0.8, abs=0.035)


def test_welch_aa_and_coverage_on_skewed_revenue():
    rng = np.random.default_rng(5)
    n = 1500
    # revenue per user: 10% buy, spend lognormal
    def sample(mult):
        buy = rng.random((RUNS // 2, n)) < 0.1
        return np.where(buy, rng.lognormal(3.5, 0.8, (RUNS // 2, n)) * mult, 0.0)
    c, t = sample(1.0), sample(1.0)
    r = stats.welch(c.mean(1), c.var(1, ddof=1), n, t.mean(1), t.var(1, ddof=1), n)
    assert 0.03 <= float(np.mean(r["p_value"] < 0.05)) <= 0.07
    lo, hi = r["abs_ci"]
    assert 0.93 <= float(np.mean((lo <= 0) & (hi >= 0))) <= 0.97
    n_means = stats.sample_size_means(4.3, 14.0, 0.1)
    assert n_means > 1000


def test_bayesian_probability_to_beat_control():
    assert stats.prob_beat_control_beta(100, 1000, 100, 1000) == pytest.approx(0.5, abs=0.01)
    assert stats.prob_beat_control_beta(100, 1000, 140, 1000) > 0.99
    assert stats.prob_beat_control_beta(140, 1000, 100, 1000) < 0.01
    # agrees with the normal approximation at these sizes
    se = np.sqrt(0.1 * 0.9 / 1000 + 0.12 * 0.88 / 1000)
    assert stats.prob_beat_control_beta(100, 1000, 120, 1000) == pytest.approx(
        float(stats.prob_beat_control_normal(0.02, se)), abs=0.02)


def test_srm():
    assert not stats.srm([5000, 5050])["mismatch"]
    assert stats.srm([5000, 5400])["mismatch"]
    assert not stats.srm([2000, 8000], [0.2, 0.8])["mismatch"]
    assert stats.srm([2000, 8000])["mismatch"]


def test_peeking_inflates_fixed_horizon_but_not_msprt():
    """Looking 20 times and stopping at the first p < 0.05 inflates the z-test's false positives;
    the mSPRT always-valid p-value keeps them under alpha."""
    rng = np.random.default_rng(6)
    runs, looks, per_look, p = 1000, 20, 200, 0.1
    c = rng.binomial(per_look, p, (runs, looks)).cumsum(1)
    t = rng.binomial(per_look, p, (runs, looks)).cumsum(1)
    n = per_look * np.arange(1, looks + 1)
    naive = stats.proportions(c, n, t, n)["p_value"]
    naive_fpr = float(np.mean((naive < 0.05).any(1)))
    pc, pt = c / n, t / n
    var = pc * (1 - pc) / n + pt * (1 - pt) / n
    seq = stats.msprt(pt - pc, var, tau2=(0.1 * 0.2) ** 2)["p_value"]
    seq_fpr = float(np.mean((np.minimum.accumulate(seq, 1) < 0.05).any(1)))
    assert naive_fpr > 0.15, naive_fpr
    assert seq_fpr <= 0.05, seq_fpr
