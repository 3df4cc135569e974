"""The family matrix (issue 40, item 1; chapter 3j): which variational family closes the gaps, with
the decoder fixed and every family trained the same way.

On each of two frozen decoders (the campaign's early-stopped FFG and planar-flow models), each
family (the FFG, a planar flow, a Sylvester flow) has a fresh amortized encoder of one width, trained
under one schedule, and its q* searched on the same images (:mod:`amortgap.family_rows`). Per
decoder and family:

- L[q*] and L[q], the approximation gap log p(x) - L[q*] (log p(x) from the gap table's rows of that
  decoder, the same images) and the amortization gap L[q*] - L[q];
- each flow's gaps minus the FFG's, paired per image on the same decoder;
- the cost: the q* search's seconds per image, and the encoder's training hours.

One encoder per cell, so every interval is over images only: the spread between training seeds is
not in it, and the text says so. (Its figure is drawn here, not in :mod:`amortgap.plots`, which
every stage depends on: it moves there in the paper's next whole rebuild.)
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ..campaign import CampaignConfig
from ..report import Value, bounds, number, with_interval
from ..stats import Interval, by_seed_and_image, crossed_interval
from .encoder_width import fresh_encoder
from .gap_table import paired_difference

FAMILIES = ("diagonal", "planar", "sylvester")
NAMES = {"diagonal": "FFG", "planar": "planar flow", "sylvester": "Sylvester flow"}  # one name per family, in every cell
DECODER_NAMES = {"diagonal": "FFG-trained decoder", "planar": "planar-flow-trained decoder"}
MACRO_KEYS = {"diagonal": "Ffg", "planar": "Planar", "sylvester": "Sylvester"}
UNSTABLE = ("Planar", "Sylvester", "Seconds")  # macros that a test-scale flow fit or a clock moves across CPUs
LEVEL = 0.95  # every interval's
GAPS = {"approximation_gap": "approximation gap", "amortization_gap": "amortization gap"}


def encoders(config: CampaignConfig, decoders: dict[str, str], runs: dict[str, dict[str, str]],
             root: str | os.PathLike = ".") -> pd.DataFrame:  # fmt: skip
    """The matrix's encoders, one row per cell: ``decoder`` (a key of ``decoders``, {key: decoder
    file in the campaign}), ``family``, ``run``, ``seed``, ``protocol``, ``width`` (the last hidden
    layer's), the schedule's ``epochs``, ``train_hours`` and ``weights`` (``best.pt``). ``runs`` is
    {decoder key: {family: campaign run}}. Each run must be a fresh encoder of that family on that
    decoder, trained to its schedule's end, and all must share one protocol and hidden layers
    (trained the same way); each decoder needs an FFG encoder (the flows' q* start from its q*)."""
    rows = []
    for key, by_family in runs.items():
        if key not in decoders:
            raise ValueError(f"encoders are named for decoder {key!r}, which is not among {sorted(decoders)}")
        if "diagonal" not in by_family:
            raise ValueError(f"decoder {key!r} needs an FFG ('diagonal') encoder: the flows' q* start from its q*")
        for family, name in by_family.items():
            entry, status, schedule = fresh_encoder(config, name, decoders[key], root, family)
            rows.append({"decoder": key, "family": family, "run": name, "seed": entry.seed, "protocol": entry.protocol,
                         "hidden": "x".join(map(str, entry.encoder_hidden)), "width": int(entry.encoder_hidden[-1]), "epochs": schedule,
                         "train_hours": status.get("train_seconds", float("nan")) / 3600,
                         "weights": config.run_dir(name, root) / "best.pt"})  # fmt: skip
    found = pd.DataFrame(rows)
    if found.empty:
        raise ValueError("no encoder is named")
    if found.protocol.nunique() > 1 or found.hidden.nunique() > 1:
        raise ValueError(f"the matrix's encoders must be trained the same way: protocols {sorted(found.protocol.unique())}, "
                         f"hidden layers {sorted(found.hidden.unique())}")  # fmt: skip
    return found


def log_px(gap_rows: pd.DataFrame, model: str, protocol: str, seed: int, split: str, images: np.ndarray) -> pd.DataFrame:
    """log p(x) and its standard error per image (``images``: dataset rows) from the gap table's
    rows of one model (its ``model`` family, ``protocol``, ``seed``) on ``split``; refuses an image
    the gap table did not evaluate."""
    mine = gap_rows[(gap_rows.model == model) & (gap_rows.protocol == protocol) & (gap_rows.seed == seed) & (gap_rows.split == split)]
    found = mine.set_index("image")[["log_px", "log_px_se"]].reindex(images)
    if found.log_px.isna().any():
        missing = found.index[found.log_px.isna()]
        raise ValueError(f"the gap table has no log p(x) of {model} ({protocol}, seed {seed}) on {len(missing)} of these "
                         f"{split} images, e.g. image {missing[0]}")  # fmt: skip
    return found.rename_axis("image").reset_index()


def same_decoders(rows: pd.DataFrame, gap_rows: pd.DataFrame, protocol: str, seed: int, tolerance: float) -> pd.DataFrame:
    """Per decoder: the FFG L[q*] of ``rows`` (searched from the fresh FFG encoder) minus the gap
    table's (``elbo_optimal_ffg``, from its model's own encoder) on the same test images: the mean,
    mean absolute and largest absolute difference. Refuses a decoder whose mean difference exceeds
    ``tolerance`` nats in size (another decoder, or other images, would differ by far more)."""
    found = []
    for decoder, g in rows[rows.family == "diagonal"].groupby("decoder", sort=False):
        theirs = gap_rows[(gap_rows.model == decoder) & (gap_rows.protocol == protocol) & (gap_rows.seed == seed)
                          & (gap_rows.split == "test")].set_index("image").elbo_optimal_ffg  # fmt: skip
        difference = (g.set_index("image").qstar_elbo - theirs.reindex(g.image.to_numpy())).to_numpy()
        if np.isnan(difference).any() or not abs(difference.mean()) <= tolerance:
            raise ValueError(f"decoder {decoder}'s FFG L[q*] differs from the gap table's by {difference.mean():.3f} nats in the "
                             f"mean (tolerance {tolerance}): not the gap table's decoder ({protocol}, seed {seed}) or images")  # fmt: skip
        found.append({"decoder": decoder, "mean": float(difference.mean()), "mean_abs": float(np.abs(difference).mean()),
                      "largest_abs": float(np.abs(difference).max())})  # fmt: skip
    return pd.DataFrame(found)


def gap_rows(per_family: pd.DataFrame, log_px_rows: pd.DataFrame) -> pd.DataFrame:
    """The matrix's rows, one per decoder, family and image: ``per_family`` (decoder, family, seed
    (the encoder's), image and :mod:`amortgap.family_rows`' columns: elbo, qstar_elbo,
    qstar_elbo_se, qstar_seconds and a flow's ``start``) with log p(x) from ``log_px_rows``
    (decoder, image, log_px, log_px_se),
    the ``approximation_gap`` log p(x) - L[q*] and the ``amortization_gap`` L[q*] - L[q]. The FFG's
    ``start`` is "encoder". Sorted by decoder, then family (FFG, planar, Sylvester). Refuses an
    image without log p(x)."""
    rows = per_family.merge(log_px_rows, on=["decoder", "image"], how="left", validate="many_to_one")
    if rows.log_px.isna().any():
        missing = rows[rows.log_px.isna()].iloc[0]
        raise ValueError(f"no log p(x) of decoder {missing.decoder} on image {missing.image}")
    order = {family: i for i, family in enumerate(FAMILIES)}
    rows = rows.sort_values(["decoder", "family"], key=lambda c: c.map(order) if c.name == "family" else c, kind="stable")
    start = rows.start if "start" in rows else pd.Series(np.nan, index=rows.index)
    return rows.assign(start=start.where(rows.family != "diagonal", "encoder"), approximation_gap=rows.log_px - rows.qstar_elbo,
                       amortization_gap=rows.qstar_elbo - rows.elbo).reset_index(drop=True)  # fmt: skip


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per decoder and family: the mean of L[q*], L[q] and both gaps with 95% intervals over the
    images (``<quantity>``, ``<quantity>_low``, ``<quantity>_high``), the amortization gap's median,
    the q* search's mean seconds per image, the share of images whose flow q* came from the FFG
    q*'s start, and the images."""
    found = []
    for (decoder, family), g in rows.groupby(["decoder", "family"], sort=False):
        cell: dict[str, object] = {"decoder": decoder, "family": family, "images": g.image.nunique()}
        for column in ("qstar_elbo", "elbo", *GAPS):
            interval = crossed_interval(by_seed_and_image(g, column), LEVEL)
            cell |= {column: interval.mean, f"{column}_low": interval.low, f"{column}_high": interval.high, f"{column}_se": interval.se}
        cell |= {"amortization_gap_median": float(g.amortization_gap.median()), "qstar_seconds": float(g.qstar_seconds.mean()),
                 "from_ffg_qstar": float((g.start == "ffg_qstar").mean())}  # fmt: skip
        found.append(cell)
    return pd.DataFrame(found)


def cell_interval(cell, column: str) -> Interval:
    """A :func:`summary` row's ``column`` as the interval it summarizes."""
    return Interval(getattr(cell, column), getattr(cell, f"{column}_low"), getattr(cell, f"{column}_high"), LEVEL,
                    getattr(cell, f"{column}_se"))  # fmt: skip


def differences(rows: pd.DataFrame) -> pd.DataFrame:
    """Per decoder, flow family and gap: the flow's gap minus the FFG's on the same images (paired,
    :func:`amortgap.study.gap_table.paired_difference`), with its 95% interval (over the images:
    one encoder per cell); no rows while no flow's cell is trained."""
    found = []
    for decoder, g in rows.groupby("decoder", sort=False):
        ffg = g[g.family == "diagonal"]
        for family in (f for f in g.family.unique() if f != "diagonal"):
            for gap in GAPS:
                found.append({"decoder": decoder, "family": family, "gap": gap, **vars(paired_difference(g[g.family == family], ffg, gap))})
    return pd.DataFrame(found, columns=["decoder", "family", "gap", "mean", "low", "high", "level", "se"])


def table(cells: pd.DataFrame, found: pd.DataFrame) -> pd.DataFrame:
    """The paper's table: per decoder and family, L[q*], L[q] and both gaps as mean +- the
    half-width of the interval over images, the q* search's seconds per image and the encoder's
    training hours (``found``: :func:`encoders`' rows)."""
    hours = found.set_index(["decoder", "family"]).train_hours
    out = []
    for c in cells.itertuples():
        row = {"decoder": DECODER_NAMES.get(c.decoder, c.decoder), "family": NAMES[c.family]}
        for column, name in (("qstar_elbo", "$\\mathcal{L}[q^*]$"), ("elbo", "$\\mathcal{L}[q]$"),
                             ("approximation_gap", "approximation gap"), ("amortization_gap", "amortization gap")):  # fmt: skip
            row[name] = with_interval(cell_interval(c, column))
        row["$q^*$ s/image"] = f"{c.qstar_seconds:.2f}"
        row["encoder hours"] = f"{hours[c.decoder, c.family]:.2f}"
        out.append(row)
    return pd.DataFrame(out).set_index(["decoder", "family"])


def figure(cells: pd.DataFrame) -> plt.Figure:
    """The gaps by family (bars stacked: the approximation gap below, the amortization gap above,
    each with its 95% interval over images), one panel per decoder."""
    decoders = list(dict.fromkeys(cells.decoder))
    fig, axes = plt.subplots(1, len(decoders), figsize=(3.3 * len(decoders), 2.9), sharey=True, squeeze=False)
    colors = dict(zip(GAPS, sns.color_palette("colorblind", 2)))
    for ax, decoder in zip(axes[0], decoders):
        mine = cells[cells.decoder == decoder]
        x = np.arange(len(mine))
        bottom = np.zeros(len(mine))
        for gap, label in GAPS.items():
            mean = mine[gap].to_numpy()
            ax.bar(x, mean, bottom=bottom, color=colors[gap], width=0.6, label=label)
            ax.errorbar(x, bottom + mean, yerr=[mean - mine[f"{gap}_low"], mine[f"{gap}_high"] - mean], fmt="none",
                        ecolor="black", capsize=3, linewidth=1)  # fmt: skip
            bottom = bottom + mean
        ax.set_xticks(x, [NAMES[f].replace(" ", "\n") for f in mine.family])
        ax.set_title(DECODER_NAMES.get(decoder, decoder))
    axes[0, 0].set_ylabel("gap (nats)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=2, frameon=False, bbox_to_anchor=(0.5, 1.06))
    fig.tight_layout()
    return fig


def load(table_dir: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """The tables the notebook wrote: ``rows`` (per decoder, family and image) and ``encoders``
    (per cell)."""
    return {name: pd.read_csv(Path(table_dir) / f"{name}.csv") for name in ("rows", "encoders")}


def numbers(rows: pd.DataFrame, encoders: pd.DataFrame) -> dict[str, Value]:
    """The paper's numbers: per decoder and family, both gaps with their intervals and the q*
    seconds per image; per decoder and flow, each gap's difference from the FFG's; the images, and
    the encoders' width and schedule."""
    cells, steps = summary(rows), differences(rows)
    macros: dict[str, Value] = {"FamilyImages": int(rows.image.nunique()), "FamilyWidth": int(encoders.width.iloc[0]),
                                "FamilyEpochs": int(encoders.epochs.iloc[0])}  # fmt: skip
    for c in cells.itertuples():
        key = f"Family{MACRO_KEYS[c.decoder]}Dec{MACRO_KEYS[c.family]}"
        for gap, short in (("approximation_gap", "Approx"), ("amortization_gap", "Amort")):
            interval = cell_interval(c, gap)
            macros[f"{key}{short}"], macros[f"{key}{short}Ci"] = number(interval), bounds(interval)
        macros[f"{key}Seconds"] = float(c.qstar_seconds)
    for s in steps.itertuples():
        key = f"Family{MACRO_KEYS[s.decoder]}Dec{MACRO_KEYS[s.family]}Minus{'Approx' if s.gap == 'approximation_gap' else 'Amort'}"
        macros[key] = with_interval(s)
    return macros
