"""BG/NBD and Gamma-Gamma: the classic "buy till you die" baselines, fitted by maximum likelihood.

No maintained BTYD package installs cleanly on current numpy/pandas (`lifetimes` is
unmaintained, `btyd` is an alpha), and both models are short, so they are implemented here
from the papers, with scipy:

- BG/NBD: Fader, Hardie & Lee (2005), "Counting your customers the easy way: an alternative
  to the Pareto/NBD model", Marketing Science 24(2). Likelihood eq. (6), conditional
  expectation eq. (10), P(alive) eq. (11).
- Gamma-Gamma spend: Fader, Hardie & Lee (2005), "RFM and CLV: using iso-value curves for
  customer base analysis", JMR 42(4); "The Gamma-Gamma model of monetary value" (Fader &
  Hardie, 2013 note), eq. (5) for the conditional expected spend.

Inputs follow lifetimes' conventions (time in days): x = repeat purchase days, t_x = days
from the first to the last purchase day, T = days from the first purchase day to the cutoff,
m = mean revenue of the repeat purchase days.

Churn score: P(alive) is 1 for every one-time buyer (x = 0), so it cannot rank them. The
baseline uses P(no purchase in (T, T + t]) instead:
    1 - P(alive) + P(alive) * ((alpha + T) / (alpha + T + t)) ** (r + x)
(while alive, purchases are Poisson with lambda | history, alive ~ Gamma(r + x, alpha + T)).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special


def _compress(*cols: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Unique rows and their counts (likelihoods are sums over identical customers)."""
    frame = pd.DataFrame({f"c{i}": c for i, c in enumerate(cols)})
    grouped = frame.groupby(list(frame.columns), sort=False).size().reset_index(name="n")
    return [grouped[f"c{i}"].to_numpy(float) for i in range(len(cols))], grouped["n"].to_numpy(float)


@dataclass
class BGNBD:
    r: float
    alpha: float
    a: float
    b: float

    @staticmethod
    def _loglik(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        r, alpha, a, b = params
        a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
        a2 = special.betaln(a, b + x) - special.betaln(a, b) - (r + x) * np.log(alpha + T)
        with np.errstate(divide="ignore", invalid="ignore"):
            a3 = np.where(
                x > 0,
                special.betaln(a + 1, b + np.maximum(x, 1) - 1) - special.betaln(a, b)
                - (r + x) * np.log(alpha + t_x),
                -np.inf,
            )
        return a1 + np.logaddexp(a2, a3)

    @classmethod
    def fit(cls, x, t_x, T) -> BGNBD:
        (x, t_x, T), n = _compress(np.asarray(x, float), np.asarray(t_x, float), np.asarray(T, float))
        scale = max(float(np.max(T)), 1.0)  # fit in units of the longest T: better conditioned

        def nll(logp: np.ndarray) -> float:
            p = np.exp(logp)
            ll = cls._loglik(np.array([p[0], p[1], p[2], p[3]]), x, t_x / scale, T / scale)
            value = -float(np.sum(n * ll)) / n.sum()
            return value if np.isfinite(value) else 1e10

        best = None
        for start in (np.log([0.5, 0.1, 1.0, 2.0]), np.log([1.0, 1.0, 1.0, 1.0])):
            res = optimize.minimize(nll, start, method="L-BFGS-B", bounds=[(-12, 8)] * 4,
                                    options={"maxiter": 500})
            if best is None or res.fun < best.fun:
                best = res
        r, alpha, a, b = np.exp(best.x)
        return cls(float(r), float(alpha * scale), float(a), float(b))

    def p_alive(self, x, t_x, T) -> np.ndarray:
        x, t_x, T = (np.asarray(v, float) for v in (x, t_x, T))
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            log_ratio = (np.log(a) - np.log(b + np.maximum(x, 1) - 1)
                         + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x)))
            odds = np.where(x > 0, np.exp(log_ratio), 0.0)
        return 1.0 / (1.0 + odds)

    def expected_purchases(self, t: float, x, t_x, T) -> np.ndarray:
        """E[purchases in (T, T + t] | x, t_x, T]."""
        x, t_x, T = (np.asarray(v, float) for v in (x, t_x, T))
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        if abs(a - 1) < 1e-6:  # removable singularity of the closed form at a = 1
            a = 1 + 1e-6
        z = t / (alpha + T + t)
        hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, z)
        term = 1.0 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp
        out = (a + b + x - 1) / (a - 1) * term * self.p_alive(x, t_x, T)
        return np.clip(np.nan_to_num(out, nan=0.0, posinf=0.0), 0.0, None)

    def p_no_purchase(self, t: float, x, t_x, T) -> np.ndarray:
        """P(no purchase in (T, T + t] | x, t_x, T]: the churn score (defined for x = 0 too)."""
        x, t_x, T = (np.asarray(v, float) for v in (x, t_x, T))
        pa = self.p_alive(x, t_x, T)
        return 1.0 - pa + pa * ((self.alpha + T) / (self.alpha + T + t)) ** (self.r + x)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class GammaGamma:
    p: float
    q: float
    v: float  # gamma (scale) parameter of the population

    @classmethod
    def fit(cls, x, m) -> GammaGamma:
        x, m = np.asarray(x, float), np.asarray(m, float)
        keep = (x > 0) & (m > 0)
        (x, m), n = _compress(x[keep], m[keep])
        scale = float(np.average(m, weights=n)) or 1.0
        ms = m / scale

        def nll(logp: np.ndarray) -> float:
            p, q, v = np.exp(logp)
            ll = (special.gammaln(p * x + q) - special.gammaln(p * x) - special.gammaln(q)
                  + q * np.log(v) + (p * x - 1) * np.log(ms) + p * x * np.log(x)
                  - (p * x + q) * np.log(v + ms * x))
            value = -float(np.sum(n * ll)) / n.sum()
            return value if np.isfinite(value) else 1e10

        res = optimize.minimize(nll, np.log([1.0, 3.0, 1.0]), method="L-BFGS-B", bounds=[(-12, 8)] * 3,
                                options={"maxiter": 500})
        p, q, v = np.exp(res.x)
        return cls(float(p), float(q), float(v * scale))

    def expected_spend(self, x, m) -> np.ndarray:
        """E[mean spend per purchase | x, m]; the population mean for x = 0."""
        x, m = np.asarray(x, float), np.asarray(m, float)
        p, q, v = self.p, self.q, self.v
        population = p * v / (q - 1) if q > 1 else float(np.mean(m[m > 0])) if (m > 0).any() else 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            cond = (v + m * x) * p / (p * x + q - 1)
        return np.where(x > 0, cond, population)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class BTYD:
    """BG/NBD + Gamma-Gamma fitted on the customers' summaries at one cutoff."""

    bgnbd: BGNBD
    gg: GammaGamma

    @classmethod
    def fit(cls, summary: pd.DataFrame) -> BTYD:
        return cls(BGNBD.fit(summary["x"], summary["t_x"], summary["T"]),
                   GammaGamma.fit(summary["x"], summary["monetary"]))

    def churn(self, summary: pd.DataFrame, horizon_days: float) -> np.ndarray:
        return self.bgnbd.p_no_purchase(horizon_days, summary["x"], summary["t_x"], summary["T"])

    def clv(self, summary: pd.DataFrame, horizon_days: float) -> np.ndarray:
        # expected purchase *days* after T (each a repeat purchase day) x expected spend per day
        purchases = self.bgnbd.expected_purchases(horizon_days, summary["x"], summary["t_x"], summary["T"])
        return purchases * self.gg.expected_spend(summary["x"], summary["monetary"])

    def to_dict(self) -> dict:
        return {"bgnbd": self.bgnbd.to_dict(), "gamma_gamma": self.gg.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> BTYD:
        return cls(BGNBD(**d["bgnbd"]), GammaGamma(**d["gamma_gamma"]))
