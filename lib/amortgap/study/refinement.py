"""Experiment 3, a fair compute frontier: refinement from the encoder and VI from the prior, each
budget at its step size tuned on validation images, against q*; HMC's posterior-mean error against
its gradient evaluations; and break-even, the images after which the encoder's training repays.
The run is :func:`amortgap.qstar.refinement_curve` and :func:`amortgap.mcmc.hmc`; this module
summarizes the tables the notebook wrote."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..report import Number, Value, significant_digits, with_interval
from ..stats import Interval
from .wording import to_significant

TABLES = ("frontier", "timings", "chosen", "hmc", "break_even", "qstar", "curves")


def load(table_dir: str | Path) -> dict[str, pd.DataFrame]:
    """Every table the notebook wrote, by name (:data:`TABLES`)."""
    return {name: pd.read_csv(Path(table_dir) / f"{name}.csv") for name in TABLES}


def training_seconds(run: str | Path, epoch: int) -> float:
    """The recorded training seconds of a campaign run up to ``epoch``: each stretch of its
    ``run.json`` (from_epoch, to_epoch, seconds) counts in proportion to its epochs before ``epoch``."""
    stretches = json.loads((Path(run) / "run.json").read_text())["stretches"]
    return sum(s["seconds"] * min(max((epoch - s["from_epoch"]) / (s["to_epoch"] - s["from_epoch"]), 0.0), 1.0)
               for s in stretches if s["to_epoch"] > s["from_epoch"])


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


def refinement_table(frontier: pd.DataFrame) -> pd.DataFrame:
    """The paper's table: the gap left to L[q*] after each budget, from the encoder and from the prior."""
    table = frontier.assign(cell=[with_interval(Interval(r.mean, r.low, r.high)) for r in frontier.itertuples()])
    table = table.pivot(index="steps", columns="init", values="cell")
    table.columns = [{"encoder": "refinement from the encoder", "prior": "VI from the prior"}[c] for c in table.columns]
    return table


def numbers(tables: dict[str, pd.DataFrame]) -> dict[str, Value]:
    """The gap left after the largest budget, q*'s cost, HMC's evaluations to match the encoder (on
    the images where the reference's chains agree, and how many they are of how many), and
    the timed numbers (the encoder's pass, q*'s seconds, break-even), which belong to the machine."""
    frontier, hmc, timings = tables["frontier"], tables["hmc"], tables["timings"]
    start = frontier[frontier.init == "encoder"].set_index("steps")
    qstar_runs = tables["qstar"]
    macros: dict[str, Value] = {
        "RefGapAfterMax": Number(start["mean"].iloc[-1], start.se.iloc[-1]),
        "RefMaxSteps": int(start.index.max()),
        "RefQstarEvaluations": Number(qstar_runs.evaluations.mean(), qstar_runs.evaluations.sem(), 0),
        "RefPoints": len(tables["curves"].datapoint.unique()),
    }
    encoder_error = hmc.loc[hmc.method == "encoder", "mean_z_error"].item()
    reached = hmc[(hmc.method == "hmc") & (hmc.mean_z_error <= encoder_error)]
    macros["HmcMatchEvaluations"] = int(reached.evaluations.min()) if len(reached) else f"more than {int(hmc.evaluations.max())}"
    macros["HmcEncoderError"] = Number(encoder_error, digits=3)
    macros["HmcReferenceImages"], macros["HmcPoints"] = int(hmc.images.iloc[0]), int(hmc.points.iloc[0])
    macros["HmcAgreement"] = Number(hmc.agreement.iloc[0], digits=1)
    return macros | timed_numbers(tables)


TIMED = ("RefEncoderUs", "RefQstarMs", "BreakEvenQstarImages", "RefTrainHours")
"""The macros measured in seconds: they belong to the machine, and no regression test compares them."""


def timed_numbers(tables: dict[str, pd.DataFrame]) -> dict[str, Value]:
    """The encoder's one pass (microseconds), q*'s time per image (milliseconds), the images after
    which training the encoder repays against q*, and the training hours counted."""
    timings, frontier = tables["timings"], tables["frontier"]
    seconds = timings.groupby(["method", "steps"]).seconds_per_image.mean()
    _, qstar_point = frontier_seconds(frontier, timings, tables["qstar"].evaluations.mean())
    qstar_ms = qstar_point.seconds.iloc[0] * 1e3
    encoder_us = seconds[("encoder", 0)] * 1e6  # one pass is far under a millisecond: microseconds read better
    return {"RefEncoderUs": Number(encoder_us, digits=significant_digits(encoder_us)),
            "RefQstarMs": Number(qstar_ms, digits=significant_digits(qstar_ms)),
            # one figure: a ratio of two timings, which moves by tens of percent between runs of the stage
            "BreakEvenQstarImages": Number(to_significant(tables["break_even"].iloc[0].break_even_images, 1), digits=0),
            "RefTrainHours": Number(tables["break_even"].iloc[0].training_seconds / 3600, digits=1)}
