"""Experiment 1b, convergence: do the gaps settle as the model trains? The first seed's FFG model at
log-spaced epochs, decomposed on the same images (the run is :func:`amortgap.gaps.decompose` of
each kept checkpoint); this module summarizes the tables the notebook wrote."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..report import Number, Value, bounds, number
from ..stats import crossed_interval


def load(table_dir: str | Path) -> dict[str, pd.DataFrame]:
    """``summary`` (each epoch's gaps, with intervals over images) and ``gaps`` (one row per epoch and image)."""
    table_dir = Path(table_dir)
    return {"summary": pd.read_csv(table_dir / "summary.csv"), "gaps": pd.read_csv(table_dir / "gaps.csv")}


def numbers(summary: pd.DataFrame, gaps: pd.DataFrame) -> dict[str, Value]:
    """The gaps at the first, the last-but-one and the last (kept) epoch, and the paired change of
    the amortization gap between the last two, over images."""
    epochs = sorted(summary.epoch.unique())
    at = summary.set_index(["epoch", "quantity"])
    macros: dict[str, Value] = {}
    for gap, short in (("approximation_gap", "Approx"), ("amortization_gap", "Amort")):
        macros[f"Conv{short}First"] = Number(at.loc[(epochs[0], gap), "mean"], at.loc[(epochs[0], gap), "se"])
        macros[f"Conv{short}Final"] = Number(at.loc[(epochs[-1], gap), "mean"], at.loc[(epochs[-1], gap), "se"])
        macros[f"Conv{short}Before"] = Number(at.loc[(epochs[-2], gap), "mean"], at.loc[(epochs[-2], gap), "se"])
    macros["ConvFirstEpoch"], macros["ConvBeforeEpoch"], macros["ConvFinalEpoch"] = int(epochs[0]), int(epochs[-2]), int(epochs[-1])
    per_image = gaps.pivot(index="image", columns="epoch", values="amortization_gap")
    change = crossed_interval((per_image[epochs[-1]] - per_image[epochs[-2]]).to_numpy()[None])  # paired over images
    macros["ConvPoints"] = len(per_image)
    macros["ConvAmortChange"] = number(change)
    macros["ConvAmortChangeCi"] = bounds(change)
    return macros
