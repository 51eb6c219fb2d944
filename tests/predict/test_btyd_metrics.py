"""BG/NBD and Gamma-Gamma recover known parameters; the metrics behave at their extremes."""

from __future__ import annotations

import numpy as np
import pytest

from panorama.predict.btyd import BGNBD, GammaGamma
from panorama.predict.metrics import churn_metrics, clv_metrics, normalized_gini


def simulate_bgnbd(n, r, alpha, a, b, T, seed=3):
    """The BG/NBD story: Poisson purchases at rate lambda; after each, drop out with prob p."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1 / alpha, n)
    p = rng.beta(a, b, n)
    x, t_x = np.zeros(n), np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > T:
                break
            x[i] += 1
            t_x[i] = t
            if rng.random() < p[i]:
                break
    return x, t_x, np.full(n, float(T))


def test_bgnbd_recovers_parameters():
    x, t_x, T = simulate_bgnbd(6000, r=0.8, alpha=20.0, a=0.8, b=2.5, T=365)
    m = BGNBD.fit(x, t_x, T)
    assert m.r == pytest.approx(0.8, rel=0.25)
    assert m.alpha == pytest.approx(20.0, rel=0.35)
    assert m.a == pytest.approx(0.8, rel=0.4)
    assert m.b == pytest.approx(2.5, rel=0.5)
    # P(alive) is 1 for one-time buyers; P(no purchase in the window) still ranks them
    assert m.p_alive([0, 0], [0, 0], [30, 300]).tolist() == [1.0, 1.0]
    p0 = m.p_no_purchase(90, [0, 0], [0, 0], [30, 300])
    assert 0 < p0[0] < p0[1] < 1
    # a frequent recent buyer is more likely to buy again than one who went quiet
    quiet, recent = m.p_no_purchase(90, [5, 5], [50, 360], [365, 365])
    assert recent < quiet
    e = m.expected_purchases(365, [5, 0], [360, 0], [365, 365])
    assert e[0] > e[1] > 0


def test_gamma_gamma_recovers_and_shrinks():
    rng = np.random.default_rng(5)
    p, q, v = 6.0, 4.0, 15.0
    n = 5000
    nu = rng.gamma(q, 1 / v, n)
    x = rng.integers(1, 10, n)
    m = np.array([rng.gamma(p * k, 1 / (nu_i * k)) for k, nu_i in zip(x, nu, strict=True)])
    gg = GammaGamma.fit(x, m)
    assert gg.p == pytest.approx(p, rel=0.3)
    assert gg.q == pytest.approx(q, rel=0.3)
    population = gg.expected_spend([0], [0])[0]
    assert population == pytest.approx(p * v / (q - 1), rel=0.25)
    one, many = gg.expected_spend([1, 20], [100.0, 100.0])
    assert population < one < many <= 100.0  # few purchases: shrunk towards the population mean


def test_churn_metrics_extremes():
    y = np.array([0, 0, 1, 1, 1])
    perfect = churn_metrics(y, [0.0, 0.1, 0.9, 0.95, 1.0])
    assert perfect["roc_auc"] == 1.0 and perfect["pr_auc"] == 1.0 and perfect["brier"] < 0.01
    assert len(perfect["calibration"]) == 5
    flipped = churn_metrics(y, [1.0, 0.9, 0.1, 0.05, 0.0])
    assert flipped["roc_auc"] == 0.0


def test_clv_metrics_extremes():
    rng = np.random.default_rng(1)
    actual = np.where(rng.random(5000) < 0.3, rng.gamma(2, 50, 5000), 0.0)
    perfect = clv_metrics(actual, actual)
    assert perfect["normalized_gini"] == pytest.approx(1.0)
    assert perfect["decile_mape"] == pytest.approx(0.0)
    assert perfect["total_error"] == pytest.approx(0.0)
    assert perfect["spearman"] == pytest.approx(1.0)
    # a constant prediction orders nobody: Gini ~ 0 thanks to random tie-breaking
    assert abs(normalized_gini(actual, np.zeros_like(actual))) < 0.05
    doubled = clv_metrics(actual, 2 * actual)
    assert doubled["total_error"] == pytest.approx(1.0)
    assert doubled["normalized_gini"] == pytest.approx(1.0)
