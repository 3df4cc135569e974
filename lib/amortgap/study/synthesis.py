"""What compares experiments: the results chapter's material. Each experiment's own numbers are its
study module's; this module joins them: the gap table's FFG models beside the sweep's models (gaps
against active units), the certification at the gap table's AIS settings (via
:func:`.certification.at_settings`), and the headline metrics for ``dvc metrics``."""

from __future__ import annotations

from typing import Mapping

import pandas as pd

from ..plots import PROTOCOL_NAMES
from ..report import Number, Value
from .width_sweep import GAPS, per_model

HEADLINE = ("TabFfgTestApprox", "TabFfgTestAmort", "TabFfgTestInference", "TabFlowTestApprox", "TabFlowTestAmort",
            "TabFfgTestLogPx", "JointAmortNarrow", "JointAmortWide", "RefGapAfterMax")
"""The numbers ``metrics.json`` carries, so that ``dvc metrics diff`` compares two runs."""


def models_and_units(units: pd.DataFrame, gap_rows: pd.DataFrame, joint: pd.DataFrame) -> pd.DataFrame:
    """One row per model, the gap table's FFG models (each protocol and seed, test images) and the
    sweep's joint models: its label, encoder width, active units and mean gaps (for
    :func:`amortgap.plots.gaps_against_units`)."""
    test = gap_rows[(gap_rows.model == "diagonal") & (gap_rows.split == "test")]
    table = units[units.model == "diagonal"].merge(test.groupby(["protocol", "seed"])[GAPS].mean().reset_index(),
                                                   on=["protocol", "seed"])  # fmt: skip
    sweep = per_model(joint).rename(columns={"width": "encoder_width"})
    return pd.concat([sweep.assign(label=lambda t: [f"joint, width {w}" for w in t.encoder_width]),
                      table.assign(label=lambda t: [f"{PROTOCOL_NAMES[p]} (width {w})" for p, w in
                                                    zip(t.protocol, t.encoder_width)])],
                     ignore_index=True)  # fmt: skip


def headline(numbers: Mapping[str, Value]) -> dict[str, float]:
    """The headline metrics, to four decimals, from the experiments' numbers."""
    return {name: round(float(_value(numbers[name])), 4) for name in HEADLINE}


def _value(value: Value) -> float:
    return value.value if isinstance(value, Number) else float(value)
