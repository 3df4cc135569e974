"""Interval summaries of the experiments' per-image tables.

Each experiment's notebook draws its own figures and closing words from these, and the results
chapter draws the paper's figures and tables from the same functions, so the two never disagree.
Every interval is :func:`amortgap.stats.crossed_interval` over seeds *and* images.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .plots import GAP_LABELS
from .stats import crossed_interval


def by_seed_and_image(rows: pd.DataFrame, column: str) -> np.ndarray:
    """[seeds, images] of ``column`` (rows carry ``seed`` and ``image``), over the images where it
    was computed (the flow q* only on a subset of the gap table's images)."""
    return rows.dropna(subset=[column]).pivot(index="seed", columns="image", values=column).to_numpy()


def width_gaps(joint: pd.DataFrame) -> pd.DataFrame:
    """The joint sweep's three gaps per encoder width: columns variant, width, gap (its label),
    mean, ci (half-width of the 95% interval), se; ``joint`` has a row per (width, seed, image)."""
    rows = []
    for w in sorted(joint.width.unique()):
        for gap, label in GAP_LABELS.items():
            i = crossed_interval(by_seed_and_image(joint[joint.width == w], gap))
            rows.append({"variant": "joint training", "width": w, "gap": label, "mean": i.mean, "ci": i.high - i.mean,
                         "se": i.se})  # fmt: skip
    return pd.DataFrame(rows)


def encoder_decoder(design: pd.DataFrame) -> pd.DataFrame:
    """The amortization gap of each (frozen decoder, encoder width) cell of the design: columns
    decoder, encoder_width, mean, low, high, level, se, ci."""
    summary = pd.DataFrame([{"decoder": d, "encoder_width": w, **vars(crossed_interval(by_seed_and_image(g, "amortization_gap")))}
                            for (d, w), g in design.groupby(["decoder", "encoder_width"], sort=False)])  # fmt: skip
    summary["ci"] = summary.high - summary["mean"]
    return summary


def ais_lengths(real: pd.DataFrame) -> pd.DataFrame:
    """How far AIS of each length lies below the longest run, per model, on real images: columns
    model, evaluations, and the interval over images of ``below_longest``."""
    return pd.DataFrame([{"model": m, "evaluations": int(g.evaluations.iloc[0]),
                          **vars(crossed_interval(g[["below_longest"]].to_numpy().T))}
                         for (m, k), g in real.groupby(["model", "steps"])])  # fmt: skip


def frontier_seconds(
    frontier: pd.DataFrame, timings: pd.DataFrame, qstar_evaluations: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The frontier with each (start, steps) row's mean measured ``seconds`` per image, and full q*
    as one point (evaluations, seconds), from the repeated timings (rows: method, steps,
    seconds_per_image)."""
    seconds = timings.groupby(["method", "steps"]).seconds_per_image.mean()
    frontier = frontier.assign(seconds=[seconds.get((r.init, r.steps), np.nan) for r in frontier.itertuples()])
    qstar_seconds = seconds[seconds.index.get_level_values(0) == "q*"].iloc[0]
    return frontier, pd.DataFrame({"evaluations": [qstar_evaluations], "seconds": [qstar_seconds]})
