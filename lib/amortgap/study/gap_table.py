"""Experiment 1, the gap table (the form of Cremer et al. 2018, Table 2): its rows, per datapoint,
and what the paper says of them.

:func:`amortgap.gap_rows.evaluate` gives one model's rows. Summarize (from the tables as written, so
the paper's numbers are those a reader can recompute): :func:`load` reads them back,
:func:`intervals` gives each (model, split, quantity) of one protocol its 95% interval over seeds
*and* images (images only with one seed), :func:`paired_difference` pairs two sets of rows over the
seeds both have, :func:`table` is the paper's table of one protocol (with Cremer et al.'s columns
beside the long-trained models'), and :func:`numbers` the paper's macros.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..plots import MODEL_NAMES
from ..report import Number, Value, bounds, format_number, number, with_interval
from ..stats import Interval, by_seed_and_image, crossed_interval
from .wording import FAMILY_KEYS, compared, in_words

QUANTITIES = {
    "log_px": r"$\log \hat p(x)$",
    "elbo_optimal_flow": r"$\mathcal{L}[q^*_{\mathrm{flow}}]$",
    "elbo_optimal_ffg": r"$\mathcal{L}[q^*_{\mathrm{FFG}}]$",
    "elbo_amortized": r"$\mathcal{L}[q]$",
    "approximation_gap": "approximation gap",
    "amortization_gap": "amortization gap",
    "inference_gap": "inference gap",
}
"""The table's rows: per-image column -> its label in the paper."""


def model_epoch(run: str | Path, file: str) -> int:
    """The epoch of a campaign model: a snapshot's from its name (``train.snapshots/e3280.pt``), the
    early-stopped ``best.pt``'s from its run's ``run.json`` (``best_epoch``)."""
    found = re.fullmatch(r".*e(\d+)\.pt", file)
    if found:
        return int(found.group(1))
    return int(json.loads((Path(run) / "run.json").read_text())["best_epoch"])


def load(table_dir: str | Path) -> dict[str, pd.DataFrame]:
    """The tables the notebook wrote to ``table_dir``: ``rows`` (every model, protocol, seed and
    split, one row per image), ``parts`` (the FFG model's amortization gap in reconstruction and
    KL, per protocol) and ``units``."""
    table_dir = Path(table_dir)
    return {name: pd.read_csv(table_dir / f"{name}.csv") for name in ("rows", "parts", "units")}


def intervals(rows: pd.DataFrame) -> dict[tuple[str, str, str], Interval]:
    """(model, split, quantity) -> its 95% interval over seeds and images, for the rows of one
    protocol (over images only where there is one seed)."""
    return {(m, split, q): crossed_interval(by_seed_and_image(g, q)) for (m, split), g in rows.groupby(["model", "split"])
            for q in QUANTITIES}  # fmt: skip


def paired_difference(a: pd.DataFrame, b: pd.DataFrame, column: str) -> Interval:
    """The 95% interval of ``column`` in rows ``a`` minus rows ``b``, paired over the seeds both have
    (two families may have finished different numbers of seeds) and their images."""
    seeds = sorted(set(a.seed) & set(b.seed))
    return crossed_interval(by_seed_and_image(a[a.seed.isin(seeds)], column) - by_seed_and_image(b[b.seed.isin(seeds)], column))


def published_gaps(published: pd.DataFrame) -> pd.DataFrame:
    """Cremer et al.'s Table 2 (rows: quantity, columns: model) with the three gaps derived from its
    bounds, each in the family of the model's own encoder."""
    published = published.pivot(index="quantity", columns="model", values="nats")
    own_bound = {"ffg": "elbo_optimal_ffg", "planar": "elbo_optimal_flow"}
    for model, bound in own_bound.items():
        published.loc["approximation_gap", model] = published.loc["log_px", model] - published.loc[bound, model]
        published.loc["amortization_gap", model] = published.loc[bound, model] - published.loc["elbo_amortized", model]
        published.loc["inference_gap", model] = published.loc["log_px", model] - published.loc["elbo_amortized", model]
    return published


def table(rows: pd.DataFrame, published: pd.DataFrame | None = None) -> pd.DataFrame:
    """The paper's gap table of one protocol's rows: mean +- half-width per model and split, and, if
    ``published`` is given, Cremer et al.'s columns (as published, on training images). A dagger
    marks a mean over the flow q*'s subset of the images, which need not add up with the cells over
    all of them."""
    found = intervals(rows)
    images = {(m, split, q): g.dropna(subset=[q]).image.nunique() for (m, split), g in rows.groupby(["model", "split"])
              for q in QUANTITIES}  # fmt: skip

    def cell(model: str, split: str, q: str) -> str:
        subset = images[(model, split, q)] < images[(model, split, "log_px")]
        return with_interval(found[(model, split, q)]) + ("$^\\dagger$" if subset else "")

    columns = {f"{name} {split}": [cell(m, split, q) for q in QUANTITIES] for split in ("train", "test")
               for m, name in MODEL_NAMES.items()}  # fmt: skip
    if published is None:
        return pd.DataFrame(columns, index=pd.Index(list(QUANTITIES.values()), name=""))
    theirs = published_gaps(published)
    columns |= {f"Cremer {name} train": [f"{theirs.loc[q, key]:.2f}" if q in theirs.index and not np.isnan(theirs.loc[q, key])
                                         else "--" for q in QUANTITIES] for key, name in (("ffg", "FFG"), ("planar", "flow"))}
    return pd.DataFrame(columns, index=pd.Index(list(QUANTITIES.values()), name=""))


def numbers(rows: pd.DataFrame, parts: pd.DataFrame, units: pd.DataFrame, published: pd.DataFrame) -> dict[str, Value]:
    """The paper's macros of the gap table: the headline (long-trained) models' (:func:`headline_numbers`),
    the long-trained minus the early-stopped models' gaps (paired over seeds and images; the
    early-stopped models' own cells are in the table), and where Cremer et al.'s FFG values lie
    against our intervals."""
    macros = headline_numbers(rows[rows.protocol == "long_trained"], parts[parts.protocol == "long_trained"],
                              units[units.protocol == "long_trained"], published)  # fmt: skip
    early = rows[rows.protocol == "early_stopped"]
    for model, name in FAMILY_KEYS.items():
        for split in ("train", "test"):
            for q, short in (("approximation_gap", "Approx"), ("amortization_gap", "Amort"), ("log_px", "LogPx")):
                if model == "planar" and short != "Amort":
                    continue  # the paper pairs the protocols on these only
                long = rows[(rows.protocol == "long_trained") & (rows.model == model) & (rows.split == split)]
                here = early[(early.model == model) & (early.split == split)]
                change = paired_difference(long, here, q)
                macros[f"Tab{name}LongMinusEarly{split.title()}{short}"] = number(change)
                macros[f"Tab{name}LongMinusEarly{split.title()}{short}Ci"] = bounds(change)
    epochs = early[early.model == "diagonal"].groupby("seed").epoch.first()
    macros["TabEarlyEpochs"] = (f"epoch{'s' if len(epochs) > 1 else ''} {in_words([format_number(int(e)) for e in epochs])} "
                                f"of seed{'s' if len(epochs) > 1 else ''} {in_words([str(s) for s in epochs.index])}")
    theirs = published_gaps(published)
    ours = intervals(rows[rows.protocol == "long_trained"])
    for q, short in (("log_px", "LogPx"), ("elbo_optimal_ffg", "Optimal"), ("elbo_amortized", "Elbo"),
                     ("approximation_gap", "Approx"), ("amortization_gap", "Amort")):
        found_q = ours[("diagonal", "train", q)]
        value = theirs.loc[q, "ffg"]
        macros[f"Cremer{short}Inside"] = "inside" if found_q.low <= value <= found_q.high else (
            "above" if value > found_q.high else "below")
    return macros


def headline_numbers(rows: pd.DataFrame, parts: pd.DataFrame, units: pd.DataFrame, published: pd.DataFrame) -> dict[str, Value]:
    """The macros of the headline protocol's rows that the paper's prose quotes (the table prints the
    rest): the FFG model's gaps and the flow model's on test images, each with its standard error,
    the paired comparisons (flow against FFG, test against training images), the amortization gap's
    parts, and the models' active units."""
    found = intervals(rows)
    theirs = published_gaps(published)
    macros: dict[str, Value] = {}
    gaps = (("approximation_gap", "Approx"), ("amortization_gap", "Amort"))
    quoted = {("diagonal", "train"): gaps, ("planar", "test"): gaps,
              ("diagonal", "test"): gaps + (("inference_gap", "Inference"), ("log_px", "LogPx"))}
    for (model, split), quantities in quoted.items():
        for q, short in quantities:
            macros[f"Tab{FAMILY_KEYS[model]}{split.title()}{short}"] = number(found[(model, split, q)])
    macros["CremerFfgApprox"] = theirs.loc["approximation_gap", "ffg"]
    macros["CremerFfgAmort"] = theirs.loc["amortization_gap", "ffg"]
    macros["TabPoints"] = int(rows.groupby(["model", "seed", "split"]).size().min())
    macros["TabFlowPoints"] = int(rows.dropna(subset=["elbo_optimal_flow"]).groupby(["model", "seed", "split"]).size().min())
    macros["TabSeeds"] = int(rows[rows.model == "diagonal"].seed.nunique())
    macros["TabIntervalOver"] = "seeds and images" if macros["TabSeeds"] > 1 else "images only (one seed)"
    flow_subset = rows[rows.model == "diagonal"].dropna(subset=["elbo_optimal_flow"])
    for split in ("train", "test"):  # log p(x) on the flow subset, beside which the daggered cells read
        macros[f"TabSubsetFfg{split.title()}LogPx"] = number(
            crossed_interval(by_seed_and_image(flow_subset[flow_subset.split == split], "log_px")))
    macros["TabAisSteps"], macros["TabAisChains"] = int(rows.ais_steps.iloc[0]), int(rows.ais_chains.iloc[0])
    macros["TabElboSamples"] = int(rows.elbo_samples.iloc[0])
    macros["TabLogPxSe"] = Number(rows.log_px_se.median(), digits=2)
    macros["TabRefineSteps"] = int(rows.refine_steps.iloc[0])
    # paired comparisons over the same seeds and images
    test = rows[rows.split == "test"]
    ffg_test, flow_test = test[test.model == "diagonal"], test[test.model == "planar"]
    flow_minus_ffg = paired_difference(flow_test, ffg_test, "inference_gap")
    macros["TabFlowMinusFfgInference"] = number(flow_minus_ffg)
    macros["TabFlowMinusFfgInferenceCi"] = bounds(flow_minus_ffg)
    macros["TabFlowInferenceVerdict"] = compared(flow_minus_ffg)  # the flow's, at 95%
    flow_gain = crossed_interval(by_seed_and_image(ffg_test, "elbo_optimal_flow")
                                 - by_seed_and_image(ffg_test.dropna(subset=["elbo_optimal_flow"]), "elbo_optimal_ffg"))
    flow_model = rows[rows.model == "planar"].dropna(subset=["elbo_optimal_flow"])
    # the flow model's flow q*: how often its best start was the FFG q*, which the validation's starts do not include
    macros["TabFlowFromFfgShare"] = Number(100 * (flow_model.flow_start == "ffg_qstar").mean(), digits=0)
    macros["TabFlowGainFfgModel"] = number(flow_gain)
    macros["TabFlowGainFfgModelCi"] = bounds(flow_gain)
    generalization = {q: (found[("diagonal", "test", q)].mean - found[("diagonal", "train", q)].mean,
                          np.hypot(found[("diagonal", "test", q)].se, found[("diagonal", "train", q)].se))
                      for q in ("amortization_gap", "approximation_gap")}  # fmt: skip
    macros["TabAmortTestMinusTrain"] = Number(*generalization["amortization_gap"])
    macros["TabApproxTestMinusTrain"] = Number(*generalization["approximation_gap"])
    for q, short in (("amortization_gap", "Amort"), ("approximation_gap", "Approx")):  # normal 95% interval, unpaired
        mean, se = generalization[q]
        macros[f"Tab{short}TestMinusTrainCi"] = bounds(Interval(mean, mean - 1.96 * se, mean + 1.96 * se))
    macros["CremerLogPxAhead"] = Number(theirs.loc["log_px", "ffg"] - found[("diagonal", "train", "log_px")].mean, digits=1)
    return macros | parts_numbers(parts) | units_numbers(units)


def parts_numbers(parts: pd.DataFrame) -> dict[str, Value]:
    """The FFG model's amortization gap on test images in reconstruction and KL, the KL of each q,
    and the pixel accuracy of each q's decoded posterior mean."""
    part = parts[parts.split == "test"].set_index("quantity")
    macros: dict[str, Value] = {}
    for q, name in (("amortization_gap_reconstruction", "PartRec"), ("accuracy_amortized", "PartAccAmortized"),
                    ("accuracy_optimal_ffg", "PartAccOptimal"), ("accuracy_refined", "PartAccRefined"),
                    ("kl_refined", "PartKlRefined"), ("kl_amortized", "PartKlAmortized"), ("kl_optimal", "PartKlOptimal")):
        digits = 3 if name.startswith("PartAcc") else 2
        macros[name] = Number(part.loc[q, "mean"], part.loc[q, "se"], digits)
    macros["PartKlPaid"] = Number(-part.loc["amortization_gap_kl", "mean"], part.loc["amortization_gap_kl", "se"])  # KL q* pays
    return macros


def units_numbers(units: pd.DataFrame) -> dict[str, Value]:
    """Active latent units of each model of the table, and L[q] on the whole test set (means over seeds)."""
    by_model = units.groupby("model")
    whole = by_model.elbo_amortized_whole_test
    return {"UnitsFfg": Number(by_model.active_units.mean()["diagonal"], by_model.active_units.sem()["diagonal"], 1),
            "UnitsFlow": Number(by_model.active_units.mean()["planar"], by_model.active_units.sem()["planar"], 1),
            "WholeTestElboFfg": Number(whole.mean()["diagonal"], whole.sem()["diagonal"]),
            "WholeTestElboFlow": Number(whole.mean()["planar"], whole.sem()["planar"])}
