"""The paper's figures: one seaborn theme, one function per figure, byte-reproducible files.

Each figure function takes tidy data (pandas) and returns a matplotlib Figure; :func:`save` writes
it as PDF (for LaTeX; no creation date, so the same data gives the same bytes) and PNG.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Ellipse

GAP_LABELS = {
    "approximation_gap": "approximation gap",
    "amortization_gap": "amortization gap",
    "inference_gap": "inference gap",
}
PALETTE = dict(zip(GAP_LABELS.values(), sns.color_palette("colorblind", 3)))


def theme() -> None:
    """The look of every figure: seaborn's paper context, white grid, colour-blind palette."""
    sns.set_theme(context="paper", style="whitegrid", palette="colorblind", font_scale=1.1)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 200, "pdf.fonttype": 42,
                         "svg.hashsalt": "amortgap", "axes.titlesize": "medium"})  # fmt: skip


def save(fig: plt.Figure, path: str | Path) -> None:
    """Write ``path`` with suffixes .pdf and .png (the folder is created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path.with_suffix(".pdf"), bbox_inches="tight", metadata={"CreationDate": None, "ModDate": None})
    fig.savefig(path.with_suffix(".png"), bbox_inches="tight", metadata={"Software": None})


def _ellipse(ax: plt.Axes, mean: np.ndarray, cov: np.ndarray, label: str, color, style: str = "-") -> None:
    """The 2-sigma contour of N(mean, cov) in 2-d."""
    values, vectors = np.linalg.eigh(cov)
    angle = np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1]))
    width, height = 2 * 2 * np.sqrt(values[::-1])
    ax.add_patch(Ellipse(mean, width, height, angle=angle, fill=False, lw=2, ls=style, color=color, label=label))


def posterior_contours(
    posterior: tuple[np.ndarray, np.ndarray], approximations: dict[str, tuple[np.ndarray, np.ndarray]]
) -> plt.Figure:
    """2-sigma contours in two latent dimensions: the exact posterior (mean [2], cov [2, 2]) and
    diagonal approximations (mean [2], variances [2]) such as q* and an encoder's q."""
    fig, ax = plt.subplots(figsize=(4.2, 4))
    colors = sns.color_palette("colorblind", len(approximations) + 1)
    _ellipse(ax, *posterior, "exact posterior", colors[0])
    for (label, (mean, var)), color, style in zip(approximations.items(), colors[1:], ["--", ":", "-."]):
        _ellipse(ax, mean, np.diag(var), label, color, style)
    centres = np.stack([posterior[0], *(m for m, _ in approximations.values())])
    spread = 2.5 * np.sqrt(max(np.diag(posterior[1]).max(), *(v.max() for _, v in approximations.values())))
    ax.set_xlim(centres[:, 0].min() - spread, centres[:, 0].max() + spread)
    ax.set_ylim(centres[:, 1].min() - spread, centres[:, 1].max() + spread)
    ax.set_aspect("equal")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.legend(loc="upper left", fontsize="small")
    return fig


def gaps_vs_width(gaps: pd.DataFrame, style: str | None = None, log_gaps: bool = False) -> plt.Figure:
    """Mean gap (column ``nats``) against encoder ``width`` on a log axis, one line per ``gap`` (and
    ``style``), with a 95% bootstrap confidence band over the rows that share a width."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    sns.lineplot(data=gaps, x="width", y="nats", hue="gap", style=style, marker="o", errorbar=("ci", 95),
                 palette=PALETTE, ax=ax, seed=0, n_boot=1000)  # fmt: skip
    ax.set_xscale("log", base=2)
    widths = sorted(gaps.width.unique())
    ax.set_xticks(widths, [str(w) for w in widths])
    ax.minorticks_off()
    if log_gaps:
        ax.set_yscale("log")
    ax.set_xlabel("encoder hidden width")
    ax.set_ylabel("gap (nats)")
    ax.legend(fontsize="small")
    return fig


def learning_curves(history: pd.DataFrame) -> plt.Figure:
    """Training and validation ELBO per epoch."""
    long = history.melt(id_vars="epoch", value_vars=["train_elbo", "valid_elbo"], var_name="set", value_name="elbo")
    long["set"] = long["set"].map({"train_elbo": "training", "valid_elbo": "validation"})
    fig, ax = plt.subplots(figsize=(5, 3.2))
    sns.lineplot(data=long, x="epoch", y="elbo", hue="set", ax=ax)
    low = long.elbo.quantile(0.05) if len(history) > 5 else long.elbo.min()
    ax.set_ylim(low - 2, long.elbo.max() + 2)
    ax.set_ylabel("ELBO (nats per image)")
    return fig


def gap_distributions(table: pd.DataFrame) -> plt.Figure:
    """Per-datapoint amortization and approximation gaps by encoder width (box plots)."""
    long = table.melt(id_vars=["width", "split"], value_vars=["approximation_gap", "amortization_gap"],
                      var_name="gap", value_name="nats")  # fmt: skip
    long["gap"] = long["gap"].map(GAP_LABELS)
    grid = sns.catplot(data=long, x="width", y="nats", hue="split", col="gap", kind="box", height=3.2, aspect=1.1,
                       fliersize=1.5, linewidth=0.8, sharey=False)  # fmt: skip
    grid.set_axis_labels("encoder hidden width", "gap (nats)")
    grid.set_titles("{col_name}")
    return grid.figure


def elbo_scatter(table: pd.DataFrame) -> plt.Figure:
    """L[q] against L[q*] per datapoint; the distance below the diagonal is the amortization gap."""
    fig, ax = plt.subplots(figsize=(4.2, 4))
    sns.scatterplot(data=table, x="elbo_optimal", y="elbo_amortized", hue="width", palette="viridis", s=12,
                    linewidth=0, ax=ax, hue_norm=matplotlib.colors.LogNorm())  # fmt: skip
    lo, hi = table[["elbo_optimal", "elbo_amortized"]].min().min(), table.elbo_optimal.max()
    ax.plot([lo, hi], [lo, hi], color="0.3", lw=1, ls="--", label="L[q] = L[q*]")
    ax.set_xlabel("L[q*] (nats)")
    ax.set_ylabel("L[q], amortized (nats)")
    ax.legend(title="width", fontsize="small")
    return fig


def sweep_gaps(summary: pd.DataFrame) -> plt.Figure:
    """One panel per gap: mean gap against encoder width (log axis) with its confidence interval,
    one line per ``variant``. ``summary`` has columns variant, gap, width, mean, ci (half-width)."""
    panels = list(dict.fromkeys(summary.gap))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.2), sharex=True)
    variants = list(dict.fromkeys(summary.variant))
    colors = dict(zip(variants, sns.color_palette("colorblind", len(variants))))
    for ax, gap in zip(np.atleast_1d(axes), panels):
        for variant in variants:
            rows = summary[(summary.gap == gap) & (summary.variant == variant)].sort_values("width")
            ax.errorbar(rows.width, rows["mean"], yerr=rows.ci.fillna(0), marker="o", ms=4, capsize=3,
                        color=colors[variant], label=variant)  # fmt: skip
        ax.set_xscale("log", base=2)
        widths = sorted(summary.width.unique())
        ax.set_xticks(widths, [str(w) for w in widths], fontsize="small")
        ax.minorticks_off()
        ax.set_title(gap)
        ax.set_xlabel("encoder hidden width")
    np.atleast_1d(axes)[0].set_ylabel("gap (nats)")
    np.atleast_1d(axes)[0].legend(fontsize="small")
    fig.tight_layout()
    return fig


def depth_gaps(summary: pd.DataFrame) -> plt.Figure:
    """Amortization gap against the number of hidden layers, one line per ``split``: columns split,
    depth, mean, ci."""
    fig, ax = plt.subplots(figsize=(3.6, 3.0))
    for (split, rows), color in zip(summary.groupby("split", sort=False), sns.color_palette("colorblind")):
        ax.errorbar(rows.depth, rows["mean"], yerr=rows.ci.fillna(0), marker="o", capsize=3, color=color, label=split)
    ax.set_xticks(sorted(summary.depth.unique()))
    ax.set_xlabel("encoder hidden layers")
    ax.set_ylabel("amortization gap (nats)")
    ax.legend(title="images", fontsize="small")
    return fig


def refinement(curves: pd.DataFrame, optimum: pd.DataFrame) -> plt.Figure:
    """The amortization gap left after k gradient steps, against k and against seconds per
    datapoint, one line per start (``init``); full optimisation to q* as separate markers.
    ``curves``: init, steps, gap, seconds; ``optimum``: init, gap, seconds."""
    fig, (by_steps, by_time) = plt.subplots(1, 2, figsize=(8, 3.3))
    for (init, rows), color in zip(curves.groupby("init", sort=False), sns.color_palette("colorblind")):
        label = {"encoder": "from the encoder (semi-amortized)", "prior": "from the prior (plain VI)"}.get(init, init)
        by_steps.plot(rows.steps, rows.gap, marker="o", ms=4, color=color, label=label)
        shown = rows[rows.steps > 0]
        by_time.plot(shown.seconds, shown.gap, marker="o", ms=4, color=color, label=label)
        best = optimum[optimum.init == init]
        by_time.scatter(best.seconds, best.gap, marker="*", s=120, color=color, zorder=3,
                        label=f"q* by the stopping rule, {init} start")  # fmt: skip
    by_steps.set_xscale("symlog", linthresh=1)
    by_steps.set_xlabel("gradient steps per datapoint, k")
    by_time.set_xscale("log")
    by_time.set_xlabel("seconds per datapoint (batched)")
    for ax in (by_steps, by_time):
        ax.set_yscale("symlog", linthresh=0.1)
        ax.set_ylim(bottom=-0.02)
        ax.axhline(0, color="0.4", lw=0.8)
        ax.set_ylabel("L[q*] - L[q_k] (nats)")
    by_time.legend(fontsize="x-small")
    fig.tight_layout()
    return fig


def certification(summary: pd.DataFrame, tolerance: float) -> plt.Figure:
    """Each estimator's error against the certified reference (error bars: 2 standard errors)
    against its decoder evaluations per datapoint, with the tolerance band shaded. ``summary``:
    index = estimator name (``ais_*`` or ``iwae_*``), columns error_nats, error_se, evaluations."""
    fig, ax = plt.subplots(figsize=(4.6, 3.3))
    ax.axhspan(-tolerance, tolerance, color="0.9", label=f"within {tolerance} nats")
    colors = sns.color_palette("colorblind", 2)
    for kind, color, marker in (("ais", colors[0], "o"), ("iwae", colors[1], "s")):
        rows = summary[summary.index.str.startswith(kind)]
        ax.errorbar(rows.evaluations, rows.error_nats, yerr=2 * rows.error_se, fmt=marker, color=color, capsize=3,
                    label=kind.upper() + (" (q* proposal)" if kind == "iwae" else " from q*"))  # fmt: skip
    ax.axhline(0, color="0.4", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("decoder evaluations per datapoint")
    ax.set_ylabel("reference - estimate (nats)")
    ax.legend(fontsize="small")
    return fig
