"""Experiment 2, encoder width: jointly trained VAEs of every width, and encoders of each width
trained against frozen decoders (capacity or accommodation?). The run is
:func:`amortgap.sweep.train_members` and :func:`amortgap.gaps.decompose`; this module summarizes
the tables the notebook wrote: each width's gaps, the encoder x decoder design, and the paper's
tables and macros. Every interval is over seeds *and* images."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..plots import GAP_LABELS
from ..report import Number, Value, bounds, number, with_interval
from ..stats import Interval, by_seed_and_image, crossed_interval, trend

GAPS = list(GAP_LABELS)


def load(table_dir: str | Path) -> dict[str, pd.DataFrame]:
    """``joint`` (one row per width, seed and image) and ``design`` (per frozen decoder, encoder
    width, seed and image)."""
    table_dir = Path(table_dir)
    return {"joint": pd.read_csv(table_dir / "joint.csv"), "design": pd.read_csv(table_dir / "encoder_decoder.csv")}


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


def per_model(joint: pd.DataFrame) -> pd.DataFrame:
    """One row per joint model (width, seed): its active units, epochs and mean gaps over the images."""
    return joint.groupby(["width", "seed"]).agg(active_units=("active_units", "first"), epochs=("epochs", "first"),
                                                **{g: (g, "mean") for g in GAPS}).reset_index()


def trends(joint: pd.DataFrame) -> dict[str, str]:
    """Each gap's trend over the widths, in words computed from the intervals (:func:`amortgap.stats.trend`)."""
    widths = sorted(joint.width.unique())
    return {gap: trend([by_seed_and_image(joint[joint.width == w], gap) for w in widths]) for gap in GAPS}


def sweep_table(joint: pd.DataFrame) -> pd.DataFrame:
    """The paper's sweep table: each width's gaps (mean +- half-width), active units and epochs."""
    widths = sorted(joint.width.unique())
    models = per_model(joint)
    return pd.DataFrame({
        **{GAP_LABELS[g]: [with_interval(crossed_interval(by_seed_and_image(joint[joint.width == w], g))) for w in widths]
           for g in GAPS},
        "active units": [f"{models[models.width == w].active_units.mean():.1f}" for w in widths],
        "epochs": [f"{models[models.width == w].epochs.min()}-{models[models.width == w].epochs.max()}" for w in widths],
    }, index=pd.Index(widths, name="width"))  # fmt: skip


def encoder_decoder(design: pd.DataFrame) -> pd.DataFrame:
    """The amortization gap of each (frozen decoder, encoder width) cell of the design: columns
    decoder, encoder_width, mean, low, high, level, se, ci."""
    summary = pd.DataFrame([{"decoder": d, "encoder_width": w, **vars(crossed_interval(by_seed_and_image(g, "amortization_gap")))}
                            for (d, w), g in design.groupby(["decoder", "encoder_width"], sort=False)])  # fmt: skip
    summary["ci"] = summary.high - summary["mean"]
    return summary


def design_table(design: pd.DataFrame) -> pd.DataFrame:
    """The paper's design table: rows the frozen decoders, columns the encoder widths."""
    summary = encoder_decoder(design)
    cells = summary.assign(cell=[with_interval(Interval(r.mean, r.low, r.high)) for r in summary.itertuples()])
    cells = cells.pivot(index="decoder", columns="encoder_width", values="cell")
    cells.columns = [f"encoder {w}" for w in cells.columns]
    cells.index = [d.replace("joint_w", "joint width ") + " decoder" for d in cells.index]
    cells.index.name = "frozen decoder"
    return cells


def numbers(joint: pd.DataFrame, design: pd.DataFrame) -> dict[str, Value]:
    """The paper's macros of the sweep: the trend words, and the narrowest and widest widths'
    approximation and amortization gaps; and, for each frozen decoder, the widest encoder's
    amortization gap minus the narrowest one's, paired (with each seed's own difference, since the
    design has few seeds)."""
    widths = sorted(joint.width.unique())
    words = trends(joint)
    models = per_model(joint)
    macros: dict[str, Value] = {}
    for gap, short in (("approximation_gap", "Approx"), ("amortization_gap", "Amort"), ("inference_gap", "Inference")):
        macros[f"Joint{short}Trend"] = words[gap]
    for gap, short in (("approximation_gap", "Approx"), ("amortization_gap", "Amort")):  # the two the prose quotes
        for label, w in (("Narrow", widths[0]), ("Wide", widths[-1])):
            macros[f"Joint{short}{label}"] = number(crossed_interval(by_seed_and_image(joint[joint.width == w], gap)))
    macros["JointNarrowWidth"], macros["JointWideWidth"] = int(widths[0]), int(widths[-1])
    macros["JointNumWidths"], macros["JointNumSeeds"] = len(widths), int(joint.seed.nunique())
    macros["JointPoints"] = int(joint.groupby(["width", "seed"]).size().min())
    macros["JointUnitsNarrow"] = Number(models[models.width == widths[0]].active_units.mean(), digits=1)
    macros["JointUnitsWide"] = Number(models[models.width == widths[-1]].active_units.mean(), digits=1)
    enc = sorted(design.encoder_width.unique())
    joint_decoders = sorted(int(d.removeprefix("joint_w")) for d in design.decoder.unique() if d != "reference")
    # the reference decoder, and the decoders of the narrowest and widest joint models (one and the same
    # when the sweep froze a single joint decoder)
    names = {"Ref": "reference", "NarrowJoint": f"joint_w{joint_decoders[0]}", "WideJoint": f"joint_w{joint_decoders[-1]}"}
    macros["DesignNarrowDecoder"], macros["DesignWideDecoder"] = joint_decoders[0], joint_decoders[-1]
    for name, decoder in names.items():
        g = design[design.decoder == decoder]
        narrow = by_seed_and_image(g[g.encoder_width == enc[0]], "amortization_gap")
        wide = by_seed_and_image(g[g.encoder_width == enc[-1]], "amortization_gap")
        difference = crossed_interval(wide - narrow)
        macros[f"Design{name}WideMinusNarrow"] = number(difference)
        macros[f"Design{name}WideMinusNarrowCi"] = bounds(difference)
        # with few seeds the interval is wide (a t quantile with seeds - 1 degrees of freedom): the paper
        # also gives each seed's own difference
        macros[f"Design{name}SeedDifferences"] = " and ".join(f"{d:.2f}" for d in (wide - narrow).mean(axis=1))
    macros["DesignNarrowEncoder"], macros["DesignWideEncoder"] = int(enc[0]), int(enc[-1])
    # how much more a decoder trained beside wide encoders penalises a narrow encoder than one trained beside narrow ones
    macros["DesignPenaltyRatio"] = Number(macros["DesignWideJointWideMinusNarrow"].value
                                          / macros["DesignNarrowJointWideMinusNarrow"].value, digits=1)
    macros["DesignSeeds"] = int(design.seed.nunique())
    macros["DesignPoints"] = int(design.groupby(["decoder", "encoder_width", "seed"]).size().min())
    return macros
