"""Experiment 3, a fair compute frontier: refinement from the encoder and VI from the prior, each
budget at its step size tuned on validation images, against q*; HMC's posterior-mean error against
its gradient evaluations; and break-even, the images after which the encoder's training repays.
The run is :func:`amortgap.qstar.refinement_curve` and :func:`amortgap.mcmc.hmc`; this module
extends the step-size grids until each budget's best is interior (:func:`grid_extension`), settles
after how many steps refinement halves the gap (:func:`halving`), and summarizes the tables the
notebook wrote."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..report import Number, Value, significant_digits, with_interval
from ..stats import Interval, crossed_interval
from .wording import to_significant

TABLES = ("frontier", "timings", "chosen", "hmc", "break_even", "qstar", "curves", "halving")
LR_FACTOR = 3.0  # a step-size grid grows by this factor at the edge where a budget's best lies
LR_BOUNDS = (1e-4, 10.0)  # and no further than these


def chosen_settings(curves: pd.DataFrame) -> pd.DataFrame:
    """Per start and budget (``init``, ``steps``): the step size and schedule of highest mean ELBO
    over ``curves``' rows (:func:`amortgap.qstar.refinement_curve`'s, on the tuning images), and
    whether that step size is ``interior`` to the grid its start tried (strictly between its
    smallest and largest)."""
    tuning = curves.groupby(["init", "steps", "lr", "schedule"]).elbo.mean().reset_index()
    chosen = tuning.loc[tuning.groupby(["init", "steps"]).elbo.idxmax()].drop(columns="elbo").reset_index(drop=True)
    grid = curves.groupby("init").lr.agg(["min", "max"])
    return chosen.assign(interior=[grid.loc[r.init, "min"] < r.lr < grid.loc[r.init, "max"] for r in chosen.itertuples()])


def grid_extension(chosen: pd.DataFrame, curves: pd.DataFrame) -> list[tuple[str, float]]:
    """The (start, step size) pairs to try next: for every budget whose chosen step size is its
    start's smallest (largest) tried in ``curves``, the next one down (up) by :data:`LR_FACTOR`,
    within :data:`LR_BOUNDS` (three significant digits). Empty when every best is interior or at a
    bound."""
    grid = curves.groupby("init").lr.agg(["min", "max"])
    found = set()
    for row in chosen[~chosen.interior].itertuples():
        low, high = grid.loc[row.init, "min"], grid.loc[row.init, "max"]
        if row.lr == low and low / LR_FACTOR >= LR_BOUNDS[0]:
            found.add((row.init, float(f"{low / LR_FACTOR:.3g}")))
        if row.lr == high and high * LR_FACTOR <= LR_BOUNDS[1]:
            found.add((row.init, float(f"{high * LR_FACTOR:.3g}")))
    return sorted(found)


def halving(test: pd.DataFrame, gap: np.ndarray, level: float = 0.95) -> pd.DataFrame:
    """Does refinement from the encoder halve the amortization gap after k steps? Per budget k of
    ``test`` (rows of the chosen settings on the test images: init, steps, datapoint,
    ``gap_remaining``), the paired per-image difference gap_remaining - gap / 2 (``gap`` [N]: each
    image's amortization gap), its mean and 95% interval over the images, and the ``verdict``: "halved" when the interval lies below zero, "not halved" above,
    "unresolved" otherwise."""
    rows = []
    for k, g in test[test.init == "encoder"].groupby("steps", sort=True):
        interval = crossed_interval((g.gap_remaining.to_numpy() - gap[g.datapoint.to_numpy()] / 2)[None], level)
        verdict = "halved" if interval.high < 0 else "not halved" if interval.low > 0 else "unresolved"
        rows.append({"steps": k, **vars(interval), "verdict": verdict})
    return pd.DataFrame(rows)


def halving_words(table: pd.DataFrame, digits: int = 2) -> str:
    """The halving's finding as a clause (numbers to ``digits`` decimals): the fewest steps resolved
    to halve the gap, and what is known of the budget before it; or, where none is resolved to,
    whether every budget is resolved not to."""

    def cell(row) -> str:
        return Interval(row["mean"], row["low"], row["high"]).format(digits) + " nats"

    def steps(k: int) -> str:
        return f"{k} step{'s' if k != 1 else ''}"

    done = table[table.verdict == "halved"]
    if done.empty:
        most = steps(int(table.steps.max()))
        if (table.verdict == "not halved").all():
            return f"does not halve the gap within {most}: every budget's 95\\% interval lies above half the gap"
        return f"is not shown to halve the gap within {most}: no budget's 95\\% interval lies below half the gap"
    first = done.iloc[0]
    clause = f"halves the gap within {steps(int(first.steps))} (the gap left minus half the gap: {cell(first)})"
    before = table[table.steps < first.steps]
    if before.empty:
        return clause
    last = before.iloc[-1]
    if last.verdict == "not halved":
        return f"{clause}, and {steps(int(last.steps))} do not ({cell(last)})"
    return f"{clause}; whether {steps(int(last.steps))} do is unresolved ({cell(last)})"


def grid_words(chosen: pd.DataFrame) -> str:
    """How the tuned step sizes sit in their grids, as a clause: all interior, or how many are."""
    inside = int(chosen.interior.sum())
    if inside == len(chosen):
        return f"every budget's best step size is interior to its grid ({len(chosen)} budgets)"
    return (f"{inside} of {len(chosen)} budgets' best step sizes are interior to their grids; the others lie at an edge "
            f"whose next step size would leave [{LR_BOUNDS[0]:g}, {LR_BOUNDS[1]:g}], or where the extensions ran out")


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
        "RefHalving": halving_words(tables["halving"]),
        "RefGridWords": grid_words(tables["chosen"]),
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
