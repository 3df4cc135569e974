"""Experiment 4b, the gap table's settings validated on the models it decomposes. On real training
and test images each model's q* is searched in its own family from several starts (how many does a
search need to match them all?), and AIS at each candidate setting runs against a longer
reference from q*; on images simulated from the model the same runs meet a BDMC bracket. The runs
are :func:`amortgap.certify.validate_real` and :func:`amortgap.certify.validate_simulated`, each
kept as a part (:mod:`amortgap.parts`); this module lists them (:func:`tasks`), applies the rules
(:func:`cheapest_search`, :func:`ais_verdicts`, :func:`settings`), lets the gap table refuse
settings that did not pass (:func:`check_table_settings`), and names the paper's numbers."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import torch

from .. import certify
from ..ais import AISConfig
from ..plots import MODEL_NAMES, PROTOCOL_NAMES
from ..qstar import QStarConfig
from ..report import Number, Value
from .wording import FAMILY_KEYS

PROTOCOLS = {"early_stopped": "Early", "long_trained": "Long"}  # each protocol's name inside a macro's name
START = re.compile(r"^(encoder|prior|given|(prior|perturbed)_\d+)$")  # a search table's start columns (qstar.QStarSearch.starts)


REFERENCE_FACTOR = 4  # the reference AIS has at least this many times the table's steps


def check_reference(reference: AISConfig, table: AISConfig) -> None:
    """Refuse a reference that is not at least :data:`REFERENCE_FACTOR` x the table's steps with at
    least its chains."""
    if reference.steps < REFERENCE_FACTOR * table.steps or reference.chains < table.chains:
        raise ValueError(f"the reference AIS ({reference.steps} x {reference.chains}) must have at least "
                         f"{REFERENCE_FACTOR}x the table's steps and at least its chains ({table.steps} x {table.chains})")


def tasks(
    parts_dir: str | Path | None, trained: dict[str, torch.nn.Module], images: dict[str, torch.Tensor],
    qstar: QStarConfig, prior_starts: int, perturbed_starts: int, perturb_scale: float, reference: AISConfig,
    candidates: list[AISConfig], simulated_points: int, seed: int, from_prior: bool,
) -> list[tuple]:
    """The validation's parts, as :func:`amortgap.parts.kept` argument tuples, in the order they
    run: per model (``trained``: name -> model), one real part per split of ``images`` (split ->
    x [N, D]: the multi-start search in the model's own family and AIS against the reference,
    :func:`amortgap.certify.validate_real`), then its simulated part
    (:func:`amortgap.certify.validate_simulated`). Parts are named ``<model>_<split>`` and
    ``<model>_simulated``."""
    found = []
    for name, model in trained.items():
        found += [(parts_dir, f"{name}_{split}", certify.validate_real, model, x, qstar, prior_starts, perturbed_starts,
                   perturb_scale, reference, candidates, seed, model.family, from_prior) for split, x in images.items()]
        found.append((parts_dir, f"{name}_simulated", certify.validate_simulated, model, simulated_points, qstar,
                      reference, candidates, seed, from_prior))
    return found


def search_shortfalls(search: pd.DataFrame) -> pd.DataFrame:
    """How far the best of the first k starts ends below the best of all K, per image (rows) and k =
    1..K (columns), nats: what a search with only its first k starts would lose."""
    starts = start_columns(search)
    best = search[starts].max(axis=1)
    return pd.DataFrame({k: best - search[starts[:k]].max(axis=1) for k in range(1, len(starts) + 1)})


def cheapest_search(search: pd.DataFrame, mean_nats: float = 0.05, far_nats: float = 0.3,
                    far_share: float = 0.01) -> int:
    """The fewest starts k whose search matches the whole search (all K starts) within ``mean_nats``
    in the mean over images, with at most a ``far_share`` of images more than ``far_nats`` below it
    (:func:`search_shortfalls`); K if none fewer does."""
    shortfalls = search_shortfalls(search)
    for k in shortfalls.columns:
        if shortfalls[k].mean() <= mean_nats and (shortfalls[k] > far_nats).mean() <= far_share:
            return int(k)
    return int(shortfalls.columns[-1])


def start_columns(search: pd.DataFrame) -> list[str]:
    """The columns of a search table that hold a start's final ELBO, the first start's first."""
    return [c for c in search.columns if START.match(str(c))]


def with_shortfalls(search: pd.DataFrame) -> pd.DataFrame:
    """``search`` (one row per image, a column per start, the encoder's or the prior's first, and
    ``first_start_deficit``, ``search_uncertainty``) with ``prior_shortfall`` and
    ``perturbed_shortfall``: how far the best start of each kind ends below the first start (nats,
    positive: below; NaN where there is no start of that kind)."""
    starts = start_columns(search)
    out = search.copy()
    for kind in ("prior", "perturbed"):
        columns = [c for c in starts[1:] if c.startswith(kind)]
        out[f"{kind}_shortfall"] = search[starts[0]] - search[columns].max(axis=1) if columns else math.nan
    return out


def search_summary(search: pd.DataFrame, beaten_nats: float, rule: dict[str, float]) -> dict[str, float]:
    """What the multi-start search says of one model on one split (``search``: :func:`with_shortfalls`'s
    table): the share of images whose first start is beaten by more than ``beaten_nats``, the first
    start's deficit (mean, SE, max), the search's remaining uncertainty (mean, max), the mean
    shortfall of the best prior and the best perturbed start, and the cheapest search that ``rule``
    accepts (:func:`cheapest_search`: ``starts_needed``, and its mean shortfall)."""
    n, deficit = len(search), search.first_start_deficit
    needed = cheapest_search(search, **rule)
    return {"images": n, "starts": len(start_columns(search)),
            "share_beaten": float((deficit > beaten_nats).mean()), "beaten_nats": beaten_nats,
            "deficit_mean": float(deficit.mean()), "deficit_se": float(deficit.std() / math.sqrt(n)),
            "deficit_max": float(deficit.max()), "uncertainty_mean": float(search.search_uncertainty.mean()),
            "uncertainty_max": float(search.search_uncertainty.max()),
            "prior_shortfall": float(search.prior_shortfall.mean()),
            "perturbed_shortfall": float(search.perturbed_shortfall.mean()),
            "starts_needed": needed, "needed_shortfall": float(search_shortfalls(search)[needed].mean())}  # fmt: skip


def approximation_gaps(search: pd.DataFrame, errors: pd.DataFrame) -> pd.Series:
    """Per image of a real part: the reference log p(x) (from q*) minus the best start's ELBO
    estimate, the approximation gap in the model's own family (nats, indexed by datapoint)."""
    reference = errors[(errors.start == "qstar") & (errors.estimator == "reference")].set_index("datapoint").log_px
    return reference - search[start_columns(search)].max(axis=1)


def table_half_se(gaps: pd.Series, table_points: int) -> float:
    """Half the standard error of the gap table's mean approximation gap over ``table_points``
    images, from the spread of ``gaps`` (:func:`approximation_gaps`): the largest mean error of
    log p(x) that the table's interval would not notice."""
    return float(gaps.std() / math.sqrt(table_points) / 2)


def ais_verdicts(summary: pd.DataFrame, half_se: float, off_share: float) -> pd.DataFrame:
    """Per AIS setting (rows ``estimator``) of one model, from :func:`amortgap.certify.reference_summary`
    rows (one per part: "train", "test", "simulated"; start "qstar"): ``validated`` when on every
    part the mean error (against the reference, and on simulated images against BDMC too) is within
    ``half_se``, and on the table's own images (training and test) at most ``off_share`` of them
    are off by more than the summary's ``off_nats``; with the largest of each, and the share off on
    simulated images (reported, not ruled on: there the images are the model's, not the table's)."""
    rows = summary[(summary.start == "qstar") & ~summary.estimator.isin(["reference", "bdmc"])]
    found = []
    for estimator, g in rows.groupby("estimator", sort=False):
        worst_mean = max(g.error_nats.abs().max(), g.error_upper_nats.abs().max(skipna=True) if "error_upper_nats" in g else 0.0)
        real = g[g.part.isin(["train", "test"])]
        worst_off = real.share_off.max()
        found.append({"estimator": estimator, "evaluations": int(g.evaluations.iloc[0]), "parts": len(g),
                      "worst_mean_error": float(worst_mean), "worst_share_off": float(worst_off),
                      "simulated_share_off": float(g[g.part == "simulated"].share_off.max()), "half_se": half_se,
                      "validated": bool(worst_mean < half_se and worst_off <= off_share)})  # fmt: skip
    return pd.DataFrame(found).sort_values("evaluations", ignore_index=True)


def settings(search: pd.DataFrame, summary: pd.DataFrame, half_se: pd.Series, off_share: float,
             table: AISConfig) -> pd.DataFrame:
    """The verdict per model (family, protocol): the starts its q* search needs (the most over the
    splits, :func:`cheapest_search`), whether the table's AIS setting ``table`` is validated
    (:func:`ais_verdicts`), and the cheapest validated setting (None if none is). ``search``: per
    (family, protocol, split) :func:`search_summary`; ``summary``: per (family, protocol, part,
    start, estimator) :func:`amortgap.certify.reference_summary`; ``half_se``: per (family,
    protocol) the smallest :func:`table_half_se` over the splits."""
    used = certify.estimator_name(table)
    rows = []
    for (family, protocol), g in search.groupby(["family", "protocol"], sort=False):
        verdicts = ais_verdicts(summary[(summary.family == family) & (summary.protocol == protocol)],
                                half_se[(family, protocol)], off_share).set_index("estimator")
        passed = verdicts.index[verdicts.validated]
        rows.append({"family": family, "protocol": protocol, "starts_needed": int(g.starts_needed.max()),
                     "table_ais": used, "table_ais_validated": bool(verdicts.loc[used, "validated"]),
                     "table_ais_worst_mean_error": verdicts.loc[used, "worst_mean_error"],
                     "table_ais_worst_share_off": verdicts.loc[used, "worst_share_off"],
                     "table_ais_simulated_share_off": verdicts.loc[used, "simulated_share_off"],
                     "half_se": half_se[(family, protocol)],
                     "cheapest_validated_ais": passed[0] if len(passed) else None})  # fmt: skip
    return pd.DataFrame(rows)


def check_table_settings(settings: pd.DataFrame, table: AISConfig, starts: dict[str, int],
                         models: dict[str, list[str]]) -> None:
    """Refuse gap-table settings that the validation did not validate for ``models`` (family -> its
    protocols that must pass): an AIS setting other than the validated ``table`` one, or a q* search
    (per family, ``starts``) with fewer starts than such a model needs."""
    for v in settings.itertuples():
        if v.protocol not in models.get(v.family, []):
            continue
        if not v.table_ais_validated or v.table_ais != certify.estimator_name(table):
            raise ValueError(f"the gap table's AIS ({table.steps} x {table.chains}) is not validated on the {v.family} "
                             f"{v.protocol} model: {v}")  # fmt: skip
        if starts[v.family] < v.starts_needed:
            raise ValueError(f"the {v.family} q* search has {starts[v.family]} starts; the validation needs {v.starts_needed}")


def load(table_dir: str | Path) -> dict[str, pd.DataFrame]:
    """``summary`` (per model, part, start and estimator: :func:`amortgap.certify.reference_summary`'s
    columns), ``search`` (per model and split: :func:`search_summary`) and ``settings``
    (:func:`settings`)."""
    table_dir = Path(table_dir)
    return {name: pd.read_csv(table_dir / f"{name}.csv") for name in ("summary", "search", "settings")}


def starts_needed_words(needed: int, starts: int) -> str:
    """How many starts a q* search needs, in words: "1 start", "8 starts", or, where no fewer than all
    the ``starts`` searched meet the rule, "all 9 starts, perhaps more"."""
    if needed >= starts:
        return f"all {starts} starts, perhaps more"
    return f"{needed} start{'s' if needed > 1 else ''}"


def numbers(tables: dict[str, pd.DataFrame], table: AISConfig, reference: AISConfig, simulated_points: int,
            rules: dict[str, float]) -> dict[str, Value]:
    """The paper's macros of the validation: the AIS settings, the images per part and the starts
    searched; per model (family, protocol), the starts its q* search needs and whether the table's
    AIS setting passed; the numbers the prose quotes, where the validation ran their models (how far the long-trained flow model's encoder
    start falls short, the early-stopped FFG model's error against BDMC, and, for the long-trained
    FFG model, the reference's gap to BDMC and the mean error allowed); and the validation's own
    settings (``rules``: prior_starts, perturbed_starts, perturb_scale, mean_nats, far_nats,
    far_share, off_nats, off_share). The table (:func:`table`) prints the rest."""
    summary, search = tables["summary"], tables["search"].set_index(["family", "protocol", "split"])
    verdict = tables["settings"].set_index(["family", "protocol"])
    used = certify.estimator_name(table)
    macros: dict[str, Value] = {"ValTableSteps": table.steps, "ValTableChains": table.chains,
                                "ValReferenceSteps": reference.steps, "ValReferenceChains": reference.chains,
                                "ValSimulatedPoints": simulated_points, "ValPoints": int(search.images.min()),
                                "ValStarts": int(search.starts.max()),
                                "ValReferenceFactor": REFERENCE_FACTOR, "ValPriorStarts": int(rules["prior_starts"]),
                                "ValPerturbedStarts": int(rules["perturbed_starts"]),
                                "ValPerturbScale": Number(rules["perturb_scale"], digits=0),
                                "ValSearchMeanNats": Number(rules["mean_nats"], digits=2),
                                "ValSearchFarNats": Number(rules["far_nats"], digits=1),
                                "ValSearchFarShare": Number(100 * rules["far_share"], digits=0),
                                "ValOffNats": Number(rules["off_nats"], digits=1),
                                "ValOffShare": Number(100 * rules["off_share"], digits=0)}  # fmt: skip
    for (family, protocol), v in verdict.iterrows():
        key = f"Val{FAMILY_KEYS[family]}{PROTOCOLS[protocol]}"
        macros[f"{key}StartsNeeded"] = starts_needed_words(int(v.starts_needed), macros["ValStarts"])
        macros[f"{key}TableValidated"] = "yes" if v.table_ais_validated else "no"
    macros["ValTableAisPasses"] = f"{int(verdict.table_ais_validated.sum())} of {len(verdict)}"
    for split in ("train", "test") if ("planar", "long_trained") in verdict.index else ():
        s = search.loc[("planar", "long_trained", split)]
        macros[f"ValFlowLong{split.title()}DeficitMean"] = Number(s.deficit_mean, s.deficit_se, 2)

    def simulated(family: str, protocol: str, estimator: str) -> Number:
        r = summary[(summary.family == family) & (summary.protocol == protocol) & (summary.start == "qstar")
                    & (summary.part == "simulated") & (summary.estimator == estimator)].iloc[0]  # fmt: skip
        return Number(r.error_upper_nats, r.error_upper_se, 2)

    if ("diagonal", "early_stopped") in verdict.index:
        macros["ValFfgEarlySimErrorUpper"] = simulated("diagonal", "early_stopped", used)
    if ("diagonal", "long_trained") in verdict.index:
        macros["ValFfgLongSandwich"] = simulated("diagonal", "long_trained", "reference")
        macros["ValFfgLongHalfSe"] = Number(verdict.loc[("diagonal", "long_trained"), "half_se"], digits=3)
    return macros


def table(tables: dict[str, pd.DataFrame], table_ais: AISConfig) -> pd.DataFrame:
    """The paper's validation table, a row per model: the starts its q* search needs on training and
    test images, the table's AIS setting's mean error on each part (against the reference; on
    simulated images against BDMC), its largest share of the table's images off and the share of
    simulated ones, the mean error allowed, and the verdict on the AIS setting."""
    summary, search = tables["summary"], tables["search"].set_index(["family", "protocol", "split"])
    used = certify.estimator_name(table_ais)
    rows = {}
    for v in tables["settings"].itertuples():
        at = summary[(summary.family == v.family) & (summary.protocol == v.protocol) & (summary.start == "qstar")
                     & (summary.estimator == used)].set_index("part")  # fmt: skip
        label = f"{MODEL_NAMES[v.family]}, {PROTOCOL_NAMES[v.protocol]}"
        rows[label] = {
            "starts (train / test)": " / ".join(_needed(search.loc[(v.family, v.protocol, split)]) for split in ("train", "test")),
            "error, train": f"{at.loc['train', 'error_nats']:.3f}", "error, test": f"{at.loc['test', 'error_nats']:.3f}",
            "error, simulated (BDMC)": f"{at.loc['simulated', 'error_upper_nats']:.3f}",
            "off, real (\\%)": f"{100 * v.table_ais_worst_share_off:.0f}",
            "off, simulated (\\%)": f"{100 * v.table_ais_simulated_share_off:.0f}", "allowed": f"{v.half_se:.3f}",
            "AIS validated": "yes" if v.table_ais_validated else "no"}  # fmt: skip
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")


def _needed(row: pd.Series) -> str:
    """The starts a search needs, as the paper shows it: "9+" where only all of them pass the rule,
    so that the need beyond them is unknown."""
    needed = int(row.starts_needed)
    return f"{needed}+" if needed == int(row.starts) else str(needed)
