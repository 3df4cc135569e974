"""Experiment 1b, convergence: do the gaps settle as the model trains? One campaign run's FFG model at
its snapshots after the warm-up, decomposed on the same training and test images at every epoch
(the run is :func:`amortgap.gaps.decompose` of each snapshot); this module summarizes the tables the
notebook wrote."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..report import Number, Value, bounds, number
from ..stats import Interval, crossed_interval

GAPS = ("approximation_gap", "amortization_gap", "inference_gap")


def load(table_dir: str | Path) -> dict[str, pd.DataFrame]:
    """``gaps``: one row per split, epoch and image (the notebook's ``gaps.csv``)."""
    return {"gaps": pd.read_csv(Path(table_dir) / "gaps.csv")}


def summary(gaps: pd.DataFrame) -> pd.DataFrame:
    """Each split's, epoch's and gap's mean with its 95% interval over images: columns split, epoch,
    quantity, mean, low, high, se."""
    return pd.DataFrame([{"split": split, "epoch": epoch, "quantity": gap, **vars(crossed_interval(g[[gap]].to_numpy().T))}
                         for (split, epoch), g in gaps.groupby(["split", "epoch"]) for gap in GAPS])  # fmt: skip


def change(gaps: pd.DataFrame, split: str, gap: str, start: int, end: int) -> Interval:
    """``gap`` at epoch ``end`` minus at epoch ``start`` on ``split``, paired over its images."""
    per_image = gaps[gaps.split == split].pivot(index="image", columns="epoch", values=gap)
    return crossed_interval((per_image[end] - per_image[start]).to_numpy()[None])


def direction(interval: Interval) -> str:
    """How a paired change reads at 95%: "grows", "shrinks" or "shows no resolved change"."""
    return "grows" if interval.low > 0 else "shrinks" if interval.high < 0 else "shows no resolved change"


def numbers(gaps: pd.DataFrame) -> dict[str, Value]:
    """Per split: both gaps at the first and the last snapshot; the amortization gap's paired change
    from the first to the last and over the last interval between snapshots, with their 95%
    intervals and the words they read as; and the epochs and images."""
    epochs = sorted(gaps.epoch.unique())
    table = summary(gaps).set_index(["split", "epoch", "quantity"])
    macros: dict[str, Value] = {"ConvFirstEpoch": int(epochs[0]), "ConvBeforeEpoch": int(epochs[-2]),
                                "ConvFinalEpoch": int(epochs[-1]),
                                "ConvEpochs": ", ".join(str(e) for e in epochs[:-1]) + f" and {epochs[-1]}",
                                "ConvPoints": int(gaps.groupby(["split", "epoch"]).size().min())}  # fmt: skip
    for split in ("train", "test"):
        key = f"Conv{split.title()}"
        for gap, short in (("approximation_gap", "Approx"), ("amortization_gap", "Amort")):
            for label, epoch in (("First", epochs[0]), ("Final", epochs[-1])):
                row = table.loc[(split, epoch, gap)]
                macros[f"{key}{short}{label}"] = Number(row["mean"], row.se)
        for label, start in (("", epochs[0]), ("Last", epochs[-2])):
            moved = change(gaps, split, "amortization_gap", start, epochs[-1])
            macros[f"{key}AmortChange{label}"] = number(moved)
            macros[f"{key}AmortChange{label}Ci"] = bounds(moved)
            macros[f"{key}AmortChange{label}Verdict"] = direction(moved)
    return macros
