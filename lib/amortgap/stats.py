"""Intervals: Student-t over a handful of seeds (no SciPy needed), and the two-way bootstrap over
seeds and images that every table of the study uses, with trend words read from its intervals."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
import pandas as pd


@lru_cache(maxsize=4096)
def t_quantile(p: float, df: int) -> float:
    """The p-quantile (p in (0.5, 1)) of Student's t with ``df`` degrees of freedom, by bisection on
    the CDF, which is integrated numerically (Simpson's rule on 2,001 points)."""
    if not 0.5 < p < 1 or df < 1:
        raise ValueError(f"need 0.5 < p < 1 and df >= 1, not p={p}, df={df}")
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def cdf(x: float) -> float:
        t = np.linspace(0.0, x, 2001)
        density = np.exp(log_norm - (df + 1) / 2 * np.log1p(t * t / df))
        h = x / 2000
        return 0.5 + h / 3 * (density[0] + density[-1] + 4 * density[1:-1:2].sum() + 2 * density[2:-1:2].sum())

    lo, hi = 0.0, 1.0
    while cdf(hi) < p:
        lo, hi = hi, 2 * hi
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Mean of ``values`` and the half-width of its Student-t confidence interval (NaN for one value)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return float(x.mean()), math.nan
    return float(x.mean()), t_quantile(0.5 + level / 2, len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x))


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean of ``values`` and its standard error, sd / sqrt(n) (NaN for one value)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return float(x.mean()), math.nan
    return float(x.mean()), float(x.std(ddof=1)) / math.sqrt(len(x))


# --- intervals over seeds *and* images ------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A point estimate, its two-sided interval [low, high] at ``level``, and its standard error."""

    mean: float
    low: float
    high: float
    level: float = 0.95
    se: float = math.nan

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def format(self, digits: int = 2, bound_digits: int | None = None) -> str:
        """'mean [low, high]'; ``bound_digits`` (default ``digits``) for the bounds, which are
        mean +- t * SE and so move in a later digit than the mean across CPUs."""
        bound = digits if bound_digits is None else bound_digits
        return f"{self.mean:.{digits}f} [{self.low:.{bound}f}, {self.high:.{bound}f}]"


def crossed_interval(values: np.ndarray, level: float = 0.95) -> Interval:
    """The grand mean of ``values`` [S, N], S seeds (trained models) crossed with N images (every
    model evaluated on the same images), with a t interval from the two-way random-effects model
    v_sn = mu + a_s + b_n + e_sn. Its variance, sigma_a^2 / S + sigma_b^2 / N + sigma_e^2 / (S N),
    is (MS_seed + MS_image - MS_residual) / (S N) from the two-way ANOVA, with Satterthwaite's
    degrees of freedom: with 3 seeds the seed term has 2, and the interval widens as it should
    (a bootstrap over 3 seeds would not); simulated coverage of a 95% interval is 91-96%
    (``tests/test_stats.py``). A component whose estimate is negative (MS_seed or MS_image below
    MS_residual, from sampling noise) is set to zero, so its mean square gives way to the
    residual's: the variance is never below what the other components alone give. One seed
    (S = 1): images only, the seed spread unknown."""
    v = np.asarray(values, dtype=float)
    if v.ndim != 2 or min(v.shape) < 1 or v.size < 2:
        raise ValueError(f"values must be [seeds, images] with at least two entries, not of shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("values contain NaN or infinity")
    S, N = v.shape
    mean = float(v.mean())
    if S == 1 or N == 1:
        flat = v.ravel()
        se = float(flat.std(ddof=1)) / math.sqrt(len(flat))
        half = t_quantile(0.5 + level / 2, len(flat) - 1) * se
        return Interval(mean, mean - half, mean + half, level, se)
    seed_means, image_means = v.mean(1), v.mean(0)
    residual = (float(((v - seed_means[:, None] - image_means[None, :] + mean) ** 2).sum()) / ((S - 1) * (N - 1)),
                (S - 1) * (N - 1))  # fmt: skip
    effects = [(N * float(((seed_means - mean) ** 2).sum()) / (S - 1), S - 1),
               (S * float(((image_means - mean) ** 2).sum()) / (N - 1), N - 1)]  # fmt: skip
    # (coefficient, mean square, degrees of freedom) of the components estimated positive
    terms = [(1.0, ms, df) for ms, df in effects if ms > residual[0]]
    terms += [(1.0 - len(terms), *residual)] if len(terms) != 1 else []
    combined = sum(c * ms for c, ms, _ in terms)
    if combined == 0:  # every value the same: no spread to estimate
        return Interval(mean, mean, mean, level, 0.0)
    df = combined**2 / sum((c * ms) ** 2 / d for c, ms, d in terms)
    se = math.sqrt(combined / (S * N))
    half = t_quantile(0.5 + level / 2, max(1, int(df))) * se
    return Interval(mean, mean - half, mean + half, level, se)


def trend(levels: Sequence[np.ndarray], level: float = 0.95) -> str:
    """The word for how a quantity moves along ordered levels (``levels[k]``: values [S, N] at level
    k, on the same images), read from the :func:`crossed_interval` of each step between neighbours
    and of the last level minus the first: "rises" or "falls" when every resolved step goes one way
    and the ends differ, "is non-monotone" when resolved steps go both ways, and "shows no resolved
    change" otherwise."""
    if len(levels) < 2:
        raise ValueError("need at least two levels")
    steps = [crossed_interval(np.asarray(b) - np.asarray(a), level) for a, b in zip(levels[:-1], levels[1:])]
    ends = crossed_interval(np.asarray(levels[-1]) - np.asarray(levels[0]), level)
    up, down = any(s.low > 0 for s in steps), any(s.high < 0 for s in steps)
    if up and down:
        return "is non-monotone"
    if ends.low > 0 and not down:
        return "rises"
    if ends.high < 0 and not up:
        return "falls"
    return "shows no resolved change"


def by_seed_and_image(rows: pd.DataFrame, column: str) -> np.ndarray:
    """[seeds, images] of ``column`` (rows carry ``seed`` and ``image``), over the images where it
    was computed (the flow q* only on a subset of the gap table's images): the layout that
    :func:`crossed_interval` takes."""
    return rows.dropna(subset=[column]).pivot(index="seed", columns="image", values=column).to_numpy()
