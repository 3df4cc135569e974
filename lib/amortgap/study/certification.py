"""Experiment 4, is log p(x) trustworthy? BDMC sandwiches on images simulated from each reference
model certify the candidate estimators (AIS of several lengths, IWAE), and AIS of growing length on
real images shows where the estimate stops moving. The run is
:func:`amortgap.certify.certify_simulated` and :func:`amortgap.certify.ais_convergence`; this module
summarizes the tables the notebook wrote."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..report import Number, Value
from ..stats import crossed_interval
from .wording import FAMILY_KEYS

def load(table_dir: str | Path) -> dict[str, pd.DataFrame]:
    """``summary`` (per model and estimator: error against the reference and its SE),
    ``real`` (AIS of each length on real images) and ``estimates`` (the FFG model's, per image)."""
    table_dir = Path(table_dir)
    return {"summary": pd.read_csv(table_dir / "summary.csv"), "real": pd.read_csv(table_dir / "real_convergence.csv"),
            "estimates": pd.read_csv(table_dir / "estimates_diagonal.csv")}


def ais_lengths(real: pd.DataFrame) -> pd.DataFrame:
    """How far AIS of each length lies below the longest run, per model, on real images: columns
    model, evaluations, and the interval over images of ``below_longest``."""
    return pd.DataFrame([{"model": m, "evaluations": int(g.evaluations.iloc[0]),
                          **vars(crossed_interval(g[["below_longest"]].to_numpy().T))}
                         for (m, k), g in real.groupby(["model", "steps"])])  # fmt: skip


def numbers(tables: dict[str, pd.DataFrame]) -> dict[str, Value]:
    """Each model's sandwich width (how tightly BDMC encloses log p(x)) and the number of simulated images."""
    summary = tables["summary"]
    macros: dict[str, Value] = {}
    for model, name in FAMILY_KEYS.items():
        rows = summary[summary.model == model].set_index("estimator")
        macros[f"Cert{name}Sandwich"] = Number(rows.loc["sandwich", "error_nats"], rows.loc["sandwich", "error_se"], 3)
        macros[f"Cert{name}SandwichSe"] = Number(rows.loc["sandwich", "error_se"], digits=3)
    macros["CertPoints"] = len(tables["estimates"])
    return macros


def at_settings(summary: pd.DataFrame, steps: int, chains: int) -> dict[str, Value]:
    """Each model's certified error of AIS at ``steps`` x ``chains`` (another experiment's
    settings: the gap table's), or "n/a" where those settings were not among the candidates."""
    macros: dict[str, Value] = {}
    used = f"ais_{steps}x{chains}"
    for model, name in FAMILY_KEYS.items():
        rows = summary[summary.model == model].set_index("estimator")
        # (+ 0.0 after rounding: an error that rounds to zero prints as 0.000, not -0.000)
        macros[f"Cert{name}UsedError"] = (Number(round(rows.loc[used, "error_nats"], 3) + 0.0, rows.loc[used, "error_se"], 3)
                                          if used in rows.index else "n/a")
        macros[f"Cert{name}UsedErrorSe"] = Number(rows.loc[used, "error_se"], digits=3) if used in rows.index else "n/a"
    return macros
