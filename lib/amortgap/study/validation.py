"""Experiment 4b, q* and log p(x) validated at the gap table's own settings. On real test images the
diagonal q* is searched from several starts (how often, and by how much, is the encoder's start
beaten?) and AIS at each candidate setting runs against a reference at least 10x longer, from q* and
from the prior; on images simulated from the model the same runs meet a BDMC bracket. The runs are
:func:`amortgap.certify.validate_real` and :func:`amortgap.certify.validate_simulated`, each kept as a
part (:mod:`amortgap.parts`); this module summarizes the tables the notebook wrote and names the
paper's numbers."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from .. import certify
from ..ais import AISConfig
from ..report import Number, Value

FAMILIES = {"diagonal": "Ffg", "planar": "Flow"}
START = re.compile(r"^(encoder|prior|(prior|perturbed)_\d+)$")  # a search table's start columns (qstar.QStarSearch.starts)


def check_reference(reference: AISConfig, table: AISConfig) -> None:
    """Refuse a reference that is not at least 10x the table's steps with at least its chains."""
    if reference.steps < 10 * table.steps or reference.chains < table.chains:
        raise ValueError(f"the reference AIS ({reference.steps} x {reference.chains}) must have at least 10x the "
                         f"table's steps and at least its chains ({table.steps} x {table.chains})")  # fmt: skip


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


def search_summary(search: pd.DataFrame, beaten_nats: float) -> dict[str, float]:
    """What the multi-start search says of one model (``search``: :func:`with_shortfalls`'s table):
    the share of images whose first start is beaten by more than ``beaten_nats``, the first start's
    deficit (mean, SE, max), the search's remaining uncertainty (mean, max), and the mean shortfall
    of the best prior and the best perturbed start."""
    n, deficit = len(search), search.first_start_deficit
    return {"images": n, "starts": len(start_columns(search)),
            "share_beaten": float((deficit > beaten_nats).mean()), "beaten_nats": beaten_nats,
            "deficit_mean": float(deficit.mean()), "deficit_se": float(deficit.std() / math.sqrt(n)),
            "deficit_max": float(deficit.max()), "uncertainty_mean": float(search.search_uncertainty.mean()),
            "uncertainty_max": float(search.search_uncertainty.max()),
            "prior_shortfall": float(search.prior_shortfall.mean()),
            "perturbed_shortfall": float(search.perturbed_shortfall.mean())}  # fmt: skip


def validated_setting(summary: pd.DataFrame, model: str, start: str = "qstar") -> str | None:
    """The cheapest candidate AIS setting of ``model`` from ``start`` whose error is within its
    reported SE (``within_se`` of :func:`amortgap.certify.reference_summary`) on the real *and* on the
    simulated images; None if no candidate is."""
    rows = summary[(summary.model == model) & (summary.start == start) & ~summary.estimator.isin(["reference", "bdmc"])]
    ok = [e for e, g in rows.groupby("estimator") if set(g.part) == {"real", "simulated"} and g.within_se.all()]
    return None if not ok else rows[rows.estimator.isin(ok)].sort_values("evaluations").estimator.iloc[0]


def load(table_dir: str | Path) -> dict[str, pd.DataFrame]:
    """``summary`` (per model, part, start and estimator: :func:`amortgap.certify.reference_summary`'s
    columns) and ``search`` (per model: :func:`search_summary`)."""
    table_dir = Path(table_dir)
    return {name: pd.read_csv(table_dir / f"{name}.csv") for name in ("summary", "search")}


def numbers(tables: dict[str, pd.DataFrame], table: AISConfig, reference: AISConfig) -> dict[str, Value]:
    """Per model: the search's numbers (images, starts, images whose first start is beaten, its
    largest deficit, the remaining uncertainty, the prior starts' shortfall); AIS at the gap
    table's setting ``table`` from q* and from the prior against the reference on real images, and
    from q* against BDMC on simulated ones (mean, 95th percentile and largest error over images),
    with the reported SE; whether that setting is validated,
    and the cheapest validated setting's steps and chains ("none" if there is none)."""
    summary, search = tables["summary"], tables["search"].set_index("model")
    used = certify.estimator_name(table)
    macros: dict[str, Value] = {"ValTableSteps": table.steps, "ValTableChains": table.chains,
                                "ValReferenceSteps": reference.steps, "ValReferenceChains": reference.chains}
    for model, name in FAMILIES.items():
        if model not in search.index:
            continue
        s = search.loc[model]
        macros |= {f"Val{name}Points": int(s.images), f"Val{name}Starts": int(s.starts),
                   f"Val{name}Beaten": int(round(s.share_beaten * s.images)), f"Val{name}BeatenNats": Number(s.beaten_nats, digits=1),
                   f"Val{name}DeficitMax": Number(s.deficit_max, digits=2),
                   f"Val{name}SearchUncertainty": Number(s.uncertainty_mean, digits=3),
                   f"Val{name}PriorShortfall": Number(s.prior_shortfall, digits=2)}  # fmt: skip
        rows = summary[summary.model == model].set_index(["part", "start", "estimator"])
        for part, start, key in (("real", "qstar", "Real"), ("real", "prior", "RealPrior"), ("simulated", "qstar", "Sim")):
            r = rows.loc[(part, start, used)]
            macros[f"Val{name}{key}Error"] = Number(r.error_nats, r.error_se, 2)
            macros[f"Val{name}{key}ErrorMax"] = Number(r.error_max, digits=2)
            macros[f"Val{name}{key}ErrorPNinetyFive"] = Number(r.error_p95, digits=2)
            macros[f"Val{name}{key}ReportedSe"] = Number(r.reported_se, digits=2)
        r = rows.loc[("simulated", "qstar", used)]
        macros[f"Val{name}SimErrorUpper"] = Number(r.error_upper_nats, r.error_upper_se, 2)
        sandwich = rows.loc[("simulated", "qstar", "reference")]
        macros[f"Val{name}Sandwich"] = Number(sandwich.error_upper_nats, sandwich.error_upper_se, 2)
        chosen = validated_setting(summary, model)
        macros[f"Val{name}TableValidated"] = "yes" if validated_setting(summary[summary.estimator == used], model) else "no"
        macros[f"Val{name}Validated"] = chosen.removeprefix("ais_").replace("x", r" $\times$ ") if chosen else "none"
    return macros
