"""Experiment 1, the gap table (the form of Cremer et al. 2018, Table 2): its rows, per datapoint,
and what the paper says of them.

Run: :func:`evaluate` gives one model's rows.
For a model and a batch of images: log p(x) by AIS from the FFG q*; L[q*] in both families (FFG and
planar flow); L[q] of the model's own encoder; the gaps, measured in the family of the model's own
encoder; and, for the encoder's q, q refined by a few gradient steps, and the FFG q*, the ELBO's
reconstruction and KL parts and the pixel accuracy of the decoded posterior mean. A flow's ELBO is not concave in its
parameters, so the flow q* is the better of two starts: the encoder's q (an FFG is a flow with
u = 0) and the FFG q* with identity layers.

Summarize (from the tables as written, so the paper's numbers are those a reader can recompute):
:func:`load` reads them back, :func:`intervals` gives each (model, split, quantity) its 95% interval
over seeds *and* images, :func:`table` is the paper's table with Cremer et al.'s columns beside
ours, and :func:`numbers` the paper's macros.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import gaps, latents, models, qstar
from ..report import Number, Value, bounds, number, with_interval
from ..stats import Interval, by_seed_and_image, crossed_interval
from ..bounds import elbo_parts_from_terms, log_weight_terms_chunked
from ..families import DiagonalGaussian, PlanarFlow
from ..rng import seeded

PASSED_ON = ["log_px", "log_px_se", "log_px_iwae", "elbo_amortized", "elbo_amortized_se",
             "reconstruction_amortized", "kl_amortized", "reconstruction_optimal", "kl_optimal"]  # fmt: skip


def evaluate(
    model: models.VAE, x: torch.Tensor, config: gaps.DecomposeConfig, flow_length: int = 10,
    flow_rows: torch.Tensor | None = None, refine_steps: int = 20,
) -> pd.DataFrame:
    """The per-datapoint gap-table rows of ``model`` on images x [N, D] (see the module's docstring).
    The flow q*, the costliest number here, is found only for the rows where ``flow_rows`` [N] (bool)
    is true (default: all); the others get NaN in its columns. The refined q takes ``refine_steps``
    steps from the encoder's q (for a flow encoder, in the flow family)."""
    own_is_ffg = model.config.family == "diagonal"
    ffg, ffg_star = gaps.decompose_with_qstar(model, x, replace(config, qstar_init="encoder" if own_is_ffg else "prior"))
    rows = torch.ones(len(x), dtype=torch.bool) if flow_rows is None else flow_rows.bool()
    flow_family = PlanarFlow(flow_length)
    start = {k: v[rows] for k, v in ffg_star.items()}
    starts = {"encoder": "encoder", "ffg_qstar": flow_family.params_from(DiagonalGaussian().distribution(start))}
    flows = {name: gaps.optimal_elbo(model, x[rows], flow_family, config, init=init) for name, init in starts.items()}
    from_encoder = flows["encoder"].elbo_optimal >= flows["ffg_qstar"].elbo_optimal
    found = flows["ffg_qstar"].copy()
    found.loc[from_encoder] = flows["encoder"].loc[from_encoder]
    found.index = rows.nonzero().squeeze(1).numpy()
    flow = found.reindex(range(len(x)))

    table = ffg[PASSED_ON].copy()
    table["elbo_optimal_ffg"], table["elbo_optimal_ffg_se"] = ffg.elbo_optimal, ffg.elbo_optimal_se
    table["elbo_optimal_flow"], table["elbo_optimal_flow_se"] = flow.elbo_optimal, flow.elbo_optimal_se
    table["flow_start"] = pd.Series(from_encoder.map({True: "encoder", False: "ffg_qstar"}).to_numpy(),
                                    index=found.index).reindex(range(len(x)))
    table["qstar_steps_ffg"], table["qstar_steps_flow"] = ffg.qstar_steps, flow.qstar_steps
    own = "elbo_optimal_ffg" if own_is_ffg else "elbo_optimal_flow"
    table["approximation_gap"] = table.log_px - table[own]
    table["approximation_gap_se"] = (table.log_px_se**2 + table[f"{own}_se"] ** 2) ** 0.5
    table["amortization_gap"] = table[own] - table.elbo_amortized
    table["inference_gap"] = table.log_px - table.elbo_amortized
    # A flow's posterior mean is a Monte Carlo mean: seeded, so that it does not depend on which tasks a
    # worker process ran before this one.
    with torch.no_grad(), seeded(config.seed + 2, x.device):
        table["accuracy_amortized"] = latents.pixel_accuracy(model, x, model.encode(x)).cpu().double().numpy()
    table["accuracy_optimal_ffg"] = latents.pixel_accuracy(model, x, DiagonalGaussian().distribution(ffg_star)).cpu().double().numpy()
    with seeded(config.seed + 1, x.device):
        refined = qstar.refine(model, x, refine_steps, model.family, config.qstar).q
        terms = log_weight_terms_chunked(model, x, refined, config.elbo_samples, config.max_pairs)
    parts = elbo_parts_from_terms(*terms)
    table["elbo_refined"] = sum(terms).mean(0).cpu().double().numpy()
    table["reconstruction_refined"] = parts.reconstruction.cpu().double().numpy()
    table["kl_refined"] = parts.kl.cpu().double().numpy()
    with seeded(config.seed + 3, x.device):
        table["accuracy_refined"] = latents.pixel_accuracy(model, x, refined).cpu().double().numpy()
    table["refine_steps"] = refine_steps
    for column in ("elbo_samples", "ais_steps", "ais_chains"):
        table[column] = ffg[column]
    return table


def evaluate_checkpoint(
    path: str | os.PathLike, x: torch.Tensor, config: gaps.DecomposeConfig, flow_rows: torch.Tensor | None = None,
    refine_steps: int = 20,
) -> pd.DataFrame:
    """:func:`evaluate` of the model saved at ``path`` (for worker processes: a path travels light)."""
    model = models.load(path)
    return evaluate(model, x, config, model.config.flow_length, flow_rows, refine_steps)


FAMILIES = {"diagonal": "FFG", "planar": "flow"}
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


def load(table_dir: str | Path, seeds: list[int]) -> dict[str, pd.DataFrame]:
    """The tables the notebook wrote to ``table_dir``: ``rows`` (every model, seed and split, one row
    per image), ``parts`` (the FFG model's amortization gap in reconstruction and KL) and ``units``."""
    table_dir = Path(table_dir)
    rows = pd.concat([pd.read_csv(table_dir / f"{m}_s{s}_{split}.csv") for m in FAMILIES for s in seeds
                      for split in ("train", "test")], ignore_index=True)  # fmt: skip
    return {"rows": rows, "parts": pd.read_csv(table_dir / "parts.csv"), "units": pd.read_csv(table_dir / "units.csv")}


def intervals(rows: pd.DataFrame) -> dict[tuple[str, str, str], Interval]:
    """(model, split, quantity) -> its 95% interval over seeds and images."""
    return {(m, split, q): crossed_interval(by_seed_and_image(g, q)) for (m, split), g in rows.groupby(["model", "split"])
            for q in QUANTITIES}  # fmt: skip


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


def table(rows: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """The paper's gap table: mean +- half-width per model and split, and Cremer et al.'s columns (as
    published, on training images). A dagger marks a mean over the flow q*'s subset of the images,
    which need not add up with the cells over all of them."""
    found = intervals(rows)
    theirs = published_gaps(published)
    images = {(m, split, q): g.dropna(subset=[q]).image.nunique() for (m, split), g in rows.groupby(["model", "split"])
              for q in QUANTITIES}  # fmt: skip

    def cell(model: str, split: str, q: str) -> str:
        subset = images[(model, split, q)] < images[(model, split, "log_px")]
        return with_interval(found[(model, split, q)]) + ("$^\\dagger$" if subset else "")

    columns = {f"{name} {split}": [cell(m, split, q) for q in QUANTITIES] for split in ("train", "test")
               for m, name in FAMILIES.items()}  # fmt: skip
    columns |= {f"Cremer {name} train": [f"{theirs.loc[q, key]:.2f}" if q in theirs.index and not np.isnan(theirs.loc[q, key])
                                         else "--" for q in QUANTITIES] for key, name in (("ffg", "FFG"), ("planar", "flow"))}
    return pd.DataFrame(columns, index=pd.Index(list(QUANTITIES.values()), name=""))


def numbers(rows: pd.DataFrame, parts: pd.DataFrame, units: pd.DataFrame, published: pd.DataFrame) -> dict[str, Value]:
    """The paper's macros of the gap table: every cell with its standard error, the paired
    comparisons (flow against FFG, test against training images), the amortization gap's parts,
    and the models' active units."""
    found = intervals(rows)
    theirs = published_gaps(published)
    macros: dict[str, Value] = {}
    for model, name in (("diagonal", "Ffg"), ("planar", "Flow")):
        for split in ("train", "test"):
            for q, short in (("approximation_gap", "Approx"), ("amortization_gap", "Amort"), ("inference_gap", "Inference"),
                             ("log_px", "LogPx"), ("elbo_amortized", "Elbo")):
                macros[f"Tab{name}{split.title()}{short}"] = number(found[(model, split, q)])
        key = "ffg" if model == "diagonal" else "planar"
        macros[f"Cremer{name}Approx"] = theirs.loc["approximation_gap", key]
        macros[f"Cremer{name}Amort"] = theirs.loc["amortization_gap", key]
    macros["TabPoints"] = int(rows.groupby(["model", "seed", "split"]).size().min())
    macros["TabFlowPoints"] = int(rows.dropna(subset=["elbo_optimal_flow"]).groupby(["model", "seed", "split"]).size().min())
    macros["TabSeeds"] = int(rows.seed.nunique())
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
    flow_minus_ffg = crossed_interval(by_seed_and_image(flow_test, "inference_gap") - by_seed_and_image(ffg_test, "inference_gap"))
    macros["TabFlowMinusFfgInference"] = number(flow_minus_ffg)
    macros["TabFlowMinusFfgInferenceCi"] = bounds(flow_minus_ffg)
    flow_gain = crossed_interval(by_seed_and_image(ffg_test, "elbo_optimal_flow")
                                 - by_seed_and_image(ffg_test.dropna(subset=["elbo_optimal_flow"]), "elbo_optimal_ffg"))
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
    """Active latent units of each reference model, and L[q] on the whole test set (means over seeds)."""
    by_model = units.groupby("model")
    whole = by_model.elbo_amortized_whole_test
    return {"UnitsFfg": Number(by_model.active_units.mean()["diagonal"], by_model.active_units.sem()["diagonal"], 1),
            "UnitsFlow": Number(by_model.active_units.mean()["planar"], by_model.active_units.sem()["planar"], 1),
            "WholeTestElboFfg": Number(whole.mean()["diagonal"], whole.sem()["diagonal"]),
            "WholeTestElboFlow": Number(whole.mean()["planar"], whole.sem()["planar"])}
