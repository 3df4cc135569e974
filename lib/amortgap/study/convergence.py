"""Experiment 1b, convergence: do the gaps settle as the model trains? One campaign run's FFG model at
its snapshots after the warm-up, decomposed on the same training and test images at every epoch
(the run is :func:`amortgap.gaps.decompose` of each snapshot), and a control run that differs in
one setting (the batch size) at one of those epochs; this module summarizes the tables the
notebook wrote."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..campaign import CampaignConfig
from ..report import Number, Value, bounds, number
from ..stats import Interval, crossed_interval
from .wording import compared

GAPS = ("approximation_gap", "amortization_gap", "inference_gap")


def load(table_dir: str | Path) -> dict[str, pd.DataFrame]:
    """``gaps``: one row per split, epoch and image (the notebook's ``gaps.csv``); ``control``: the
    batch-size control's rows at one epoch, on the same images (``control.csv``)."""
    return {name: pd.read_csv(Path(table_dir) / f"{name}.csv") for name in ("gaps", "control")}


def summary(gaps: pd.DataFrame) -> pd.DataFrame:
    """Each split's, epoch's and gap's mean with its 95% interval over images: columns split, epoch,
    quantity, mean, low, high, se."""
    return pd.DataFrame([{"split": split, "epoch": epoch, "quantity": gap, **vars(crossed_interval(g[[gap]].to_numpy().T))}
                         for (split, epoch), g in gaps.groupby(["split", "epoch"]) for gap in GAPS])  # fmt: skip


def change(gaps: pd.DataFrame, split: str, gap: str, start: int, end: int) -> Interval:
    """``gap`` at epoch ``end`` minus at epoch ``start`` on ``split``, paired over its images."""
    per_image = gaps[gaps.split == split].pivot(index="image", columns="epoch", values=gap)
    return crossed_interval((per_image[end] - per_image[start]).to_numpy()[None])


def protocol_differences(config: CampaignConfig, run: str, control: str) -> dict[str, tuple]:
    """The training settings in which campaign run ``control`` differs from ``run``: name -> (run's,
    control's), read from the campaign's entries (family, seed) and protocols (a control should
    differ in one setting, besides how long it trains and which snapshots it keeps)."""
    entries = {entry.run: entry for entry in config.entries}
    if missing := {run, control} - set(entries):
        raise ValueError(f"no campaign entry trains {sorted(missing)}; its runs are {sorted(entries)}")
    ours, theirs = ({"family": entries[name].family, "seed": entries[name].seed,
                     **vars(config.protocols[entries[name].protocol])} for name in (run, control))
    return {name: (ours[name], theirs[name]) for name in ours if ours[name] != theirs[name]}


def control_change(gaps: pd.DataFrame, control: pd.DataFrame, split: str, quantity: str) -> Interval:
    """``quantity`` of the control run minus the main run at the control's epoch on ``split``, paired
    over the images (both tables have one row per split and image; the control's at one epoch)."""
    epoch = int(control.epoch.iloc[0])
    main = gaps[(gaps.split == split) & (gaps.epoch == epoch)].set_index("image")[quantity]
    other = control[control.split == split].set_index("image")[quantity]
    if not main.index.equals(other.index):
        raise ValueError(f"the control and the main run were evaluated on different {split} images")
    return crossed_interval((other - main).to_numpy()[None])


def direction(interval: Interval) -> str:
    """How a paired change reads at 95%: "grows", "shrinks" or "shows no resolved change"."""
    return "grows" if interval.low > 0 else "shrinks" if interval.high < 0 else "shows no resolved change"


def numbers(gaps: pd.DataFrame, control: pd.DataFrame) -> dict[str, Value]:
    """Per split: both gaps at the first and the last snapshot; the amortization gap's paired change
    from the first to the last and over the last interval between snapshots, with their 95%
    intervals and the words they read as; the epochs and images; and the batch-size control minus
    the main run at the control's epoch (log p(x) and both gaps on training images, where Cremer et
    al.'s numbers are, and the amortization gap on test images)."""
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
    macros["ConvControlEpoch"] = int(control.epoch.iloc[0])
    macros["ConvControlBatch"] = int(control.batch_size.iloc[0])
    for split, quantities in (("train", (("log_px", "LogPx"), ("approximation_gap", "Approx"), ("amortization_gap", "Amort"))),
                              ("test", (("amortization_gap", "Amort"),))):
        for quantity, short in quantities:
            moved = control_change(gaps, control, split, quantity)
            macros[f"ConvControl{split.title()}{short}"] = number(moved)
            macros[f"ConvControl{split.title()}{short}Ci"] = bounds(moved)
            if short == "Amort":
                macros[f"ConvControl{split.title()}AmortVerdict"] = compared(moved)  # the control's gap, at 95%
    return macros
