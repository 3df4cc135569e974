"""Experiment 5, an exact oracle on real images: a VAE with a 2-dimensional latent space, whose
log p(x), best diagonal Gaussian q* and gaps quadrature gives exactly
(:mod:`amortgap.quadrature`), referees the study's estimators image by image, with the study's q*
search and with restarts. This module summarizes the tables the notebook wrote."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..report import Number, Value

QUADRATURE_CHECK = 1e-3  # nats: the largest change of log p(x) between the last two grid passes that passes


def load(table_dir: str | Path) -> dict[str, pd.DataFrame]:
    """``errors`` (per quantity and q* restarts: the error's mean, SE, 95th percentile and images
    off), ``estimates`` (per image) and ``ais_repeats`` (AIS run again on the image where it lands
    furthest above the exact log p(x): per repeat, its error, ESS and largest chain's share)."""
    table_dir = Path(table_dir)
    return {name: pd.read_csv(table_dir / f"{name}.csv") for name in ("errors", "estimates", "ais_repeats")}


def numbers(errors: pd.DataFrame, estimates: pd.DataFrame, ais_repeats: pd.DataFrame) -> dict[str, Value]:
    """Each estimator's error against the exact value (mean and 95th percentile of its absolute
    value), the images off by more than ``off_nats``, with and without q* restarts, and the images
    where AIS misses log p(x) although the q* it starts from is right; the images whose quadrature
    passes its own check (the last two grid passes within :data:`QUADRATURE_CHECK`), whose exact q*
    passes its checks, and whose exact q* came from a searched start; and, on the image where AIS
    from the restarted q* lands furthest above the exact log p(x), that error with its reported SE,
    and over AIS's repeats there, the median ESS and the repeats above the exact value."""
    restarts = int(errors.qstar_restarts.max())
    study = errors[errors.qstar_restarts == 0].set_index("quantity")
    macros: dict[str, Value] = {}
    for q, name in (("log_px", "LogPx"), ("elbo_optimal", "Qstar"), ("approximation_gap", "Approx"),
                    ("amortization_gap", "Amort"), ("log_px_iwae", "Iwae")):
        macros[f"Oracle{name}Error"] = Number(study.loc[q, "mean"], study.loc[q, "se"], 3)
        macros[f"Oracle{name}PNinetyFive"] = Number(study.loc[q, "p95_abs_error"], digits=2)
    restarted = errors[errors.qstar_restarts == restarts].set_index("quantity")
    macros["OracleLogPxErrorRestarts"] = Number(restarted.loc["log_px", "mean"], restarted.loc["log_px", "se"], 3)
    macros["OracleLogPxPNinetyFiveRestarts"] = Number(restarted.loc["log_px", "p95_abs_error"], digits=2)
    for q, name in (("log_px", "LogPx"), ("elbo_optimal", "Qstar")):
        macros[f"Oracle{name}Off"] = int(study.loc[q, "images_off"])
        macros[f"Oracle{name}OffRestarts"] = int(restarted.loc[q, "images_off"])
    macros["OracleRestarts"] = restarts
    off = float(errors.off_nats.iloc[0])
    for r, suffix in ((0, ""), (restarts, "Restarts")):
        rows = estimates[estimates.qstar_restarts == r]
        macros[f"OracleLogPxOnlyOff{suffix}"] = int(((rows.error_log_px.abs() > off) & (rows.error_elbo_optimal.abs() <= off)).sum())
    macros["OracleQuadratureChecked"] = int((estimates[estimates.qstar_restarts == 0].quadrature_error < QUADRATURE_CHECK).sum())
    single = estimates[estimates.qstar_restarts == 0]
    macros["OracleExactQstarChecked"] = int(single.exact_qstar_checked.sum())
    macros["OracleExactQstarFromSearch"] = int(single.exact_qstar_start.str.startswith("search").sum())
    over = estimates[(estimates.qstar_restarts == restarts) & (estimates.image == ais_repeats.image.iloc[0])].iloc[0]
    macros["OracleAisOverImage"] = int(over.image)
    macros["OracleAisOverError"] = Number(over.error_log_px, over.log_px_se, 2)
    macros["OracleAisOverSe"] = Number(over.log_px_se, digits=2)
    macros["OracleAisRepeats"] = len(ais_repeats)
    macros["OracleAisChains"] = int(over.ais_chains)
    macros["OracleAisRepeatsEss"] = Number(ais_repeats.ess.median(), digits=1)
    macros["OracleAisRepeatsAbove"] = int((ais_repeats.error_log_px > 0).sum())
    macros["OracleAisRepeatsFarAbove"] = int((ais_repeats.error_log_px > off).sum())
    macros["OracleAisRepeatsFarBelow"] = int((ais_repeats.error_log_px < -off).sum())
    macros["OracleOffNats"] = Number(off, digits=1)
    macros["OraclePoints"] = estimates.image.nunique()
    return macros
