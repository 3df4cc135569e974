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
from matplotlib import ticker
from matplotlib.patches import Ellipse

from .rng import numpy_seeded

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
    # A square window (equal aspect, the larger of the two ranges) keeps the panel square when the
    # centres lie far apart along one axis.
    middle = (centres.min(0) + centres.max(0)) / 2
    half = (centres.max(0) - centres.min(0)).max() / 2 + spread
    ax.set_xlim(middle[0] - half, middle[0] + half)
    ax.set_ylim(middle[1] - half, middle[1] + half)
    ax.set_aspect("equal")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.legend(loc="best", fontsize="small")
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


def learning_curves(histories: pd.DataFrame) -> plt.Figure:
    """Training and validation ELBO per epoch, one panel per model and one line per seed: rows of
    ``histories`` carry ``model``, ``seed``, ``epoch``, ``train_elbo`` and ``valid_elbo``."""
    long = histories.melt(id_vars=["model", "seed", "epoch"], value_vars=["train_elbo", "valid_elbo"],
                          var_name="set", value_name="elbo")  # fmt: skip
    long["set"] = long["set"].map({"train_elbo": "training", "valid_elbo": "validation"})
    grid = sns.relplot(data=long, x="epoch", y="elbo", hue="set", units="seed", estimator=None, col="model",
                       kind="line", height=3, aspect=1.2, facet_kws={"sharey": True}, linewidth=1)  # fmt: skip
    low = long.elbo.quantile(0.05) if len(long) > 20 else long.elbo.min()
    grid.set(ylim=(low - 2, long.elbo.max() + 2), xscale="log")
    grid.set_axis_labels("epoch", "ELBO (nats per image)")
    return grid.figure


def protocol_curves(histories: dict[str, pd.DataFrame], protocol_epochs: int, chosen: dict[str, dict[str, int]],
                    plateau: dict[str, pd.DataFrame] | None = None) -> plt.Figure:
    """Training and validation ELBO per epoch of each campaign run (one panel per run, log epochs),
    with the epochs whose weights each protocol keeps marked (``chosen[run]``: label -> epoch, e.g.
    the early-stopped model's best epoch, the patience rule's and ``protocol_epochs``), and, dashed,
    the plateau protocol's curves of the same family (``plateau[run]``) for contrast."""
    fig, axes = plt.subplots(1, len(histories), figsize=(4.2 * len(histories), 3.4), sharey=True, squeeze=False)
    colors = {"training": "C0", "validation": "C1"}
    for ax, (run, history) in zip(axes[0], histories.items()):
        for column, label in (("train_elbo", "training"), ("valid_elbo", "validation")):
            ax.plot(history.epoch, history[column], color=colors[label], lw=1, label=label)
            if plateau and run in plateau:
                ax.plot(plateau[run].epoch, plateau[run][column], color=colors[label], lw=1, ls="--",
                        label=f"{label}, plateau protocol")  # fmt: skip
        for i, (label, epoch) in enumerate(chosen.get(run, {}).items()):
            ax.axvline(epoch, color=f"C{i + 2}", lw=0.8, ls=":", label=f"{label} (epoch {epoch})")
        ax.axvspan(protocol_epochs, max(history.epoch.max(), protocol_epochs), color="0.92", lw=0)
        ax.set(xscale="log", title=run, xlabel="epoch")
        top = max(history.train_elbo.max(), history.valid_elbo.max())
        ax.set_ylim(top - 25, top + 2)
        ax.legend(fontsize=6.5, loc="lower right")  # each panel's own kept epochs
    axes[0][0].set_ylabel("ELBO (nats per image)")
    fig.tight_layout()
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
    _log_axis(ax)
    ax.set_xlabel("decoder evaluations per datapoint")
    ax.set_ylabel("reference - estimate (nats)")
    ax.legend(fontsize="small")
    return fig


def gaps_over_training(summary: pd.DataFrame, published: dict[str, float] | None = None) -> plt.Figure:
    """The gaps (rows of ``summary``: ``epoch``, ``quantity``, ``mean``, ``low``, ``high``) against the
    epoch on a log axis, with their intervals as bands; ``published`` gaps as dashed lines."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for (quantity, label), color in zip(GAP_LABELS.items(), sns.color_palette()):
        rows = summary[summary.quantity == quantity].sort_values("epoch")
        ax.plot(rows.epoch, rows["mean"], "o-", color=color, label=label)
        ax.fill_between(rows.epoch, rows.low, rows.high, color=color, alpha=0.2)
        if published and quantity in published:
            ax.axhline(published[quantity], color=color, linestyle="--", linewidth=1,
                       label=f"{label}, Cremer et al. (2018)")
    _log_axis(ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel("gap (nats per image)")
    ax.legend(frameon=False, fontsize="small", loc="upper right")
    return fig


ESTIMATE_LABELS = {
    "log_px": "$\\log p(x)$, AIS",
    "log_px_iwae": "$\\log p(x)$, IWAE",
    "elbo_optimal": "$\\mathcal{L}[q^*]$",
    "elbo_amortized": "$\\mathcal{L}[q]$",
    **GAP_LABELS,
}


def oracle_errors(table: pd.DataFrame, quantities: list[str]) -> plt.Figure:
    """Each estimator's per-image error against the exact value (columns ``error_<quantity>``), one
    strip per quantity and per q* search (column ``qstar_restarts``: 0 is the encoder's start only),
    on a symmetric log axis (linear within 1 nat) with the +-0.1-nat band."""
    long = table.melt(id_vars=["qstar_restarts"], value_vars=[f"error_{q}" for q in quantities], var_name="quantity",
                      value_name="error")  # fmt: skip
    long["quantity"] = long.quantity.str.removeprefix("error_").map(lambda q: ESTIMATE_LABELS.get(q, q))
    long["q* search"] = ["encoder start" if r == 0 else f"+ {r} random restarts" for r in long.qstar_restarts]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.axvspan(-0.1, 0.1, color="0.88", zorder=0, label="within 0.1 nats")
    with numpy_seeded(0):  # the jitter is random: seeded, the figure is the same bytes on every run
        sns.stripplot(data=long, y="quantity", x="error", hue="q* search", dodge=True, ax=ax, size=3, alpha=0.7,
                      jitter=0.2, palette="colorblind")  # fmt: skip
    ax.axvline(0, color="0.3", linewidth=0.8)
    ax.set_xscale("symlog", linthresh=1)
    ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    ax.set_xlabel("estimate $-$ exact (nats per image)")
    ax.set_ylabel("")
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
    return fig


def encoder_decoder(summary: pd.DataFrame) -> plt.Figure:
    """The amortization gap of encoders trained against frozen decoders: one line per ``decoder``,
    against ``encoder_width`` (log axis), with ``mean`` and interval half-width ``ci``."""
    fig, ax = plt.subplots(figsize=(4.6, 3.3))
    groups = summary.groupby("decoder", sort=False)
    # Lines sit side by side around each width (a dodge of a few percent on the log axis), so that
    # equal means do not hide one another's interval.
    dodges = 2.0 ** (0.12 * (np.arange(groups.ngroups) - (groups.ngroups - 1) / 2))
    for (decoder, rows), color, dodge in zip(groups, sns.color_palette("colorblind"), dodges):
        rows = rows.sort_values("encoder_width")
        ax.errorbar(rows.encoder_width * dodge, rows["mean"], yerr=rows.ci, marker="o", ms=4, capsize=3, color=color,
                    label=decoder.replace("_", " ").replace("joint w", "decoder of joint width "))  # fmt: skip
    widths = sorted(summary.encoder_width.unique())
    ax.set_xscale("log", base=2)
    ax.set_xticks(widths, [str(w) for w in widths])
    ax.minorticks_off()
    ax.set_xlabel("encoder hidden width (decoder frozen)")
    ax.set_ylabel("amortization gap (nats)")
    ax.legend(fontsize="small", title="frozen decoder", title_fontsize="small")
    return fig


def gaps_against_units(models: pd.DataFrame) -> plt.Figure:
    """Each model's mean approximation and amortization gap against its active latent units, and its
    amortization gap against the encoder's last hidden width per active unit (rows: ``active_units``,
    ``encoder_width``, ``approximation_gap``, ``amortization_gap``, ``label``)."""
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
    models = models.assign(width_per_unit=models.encoder_width / models.active_units)
    panels = (("active_units", "approximation_gap"), ("active_units", "amortization_gap"),
              ("width_per_unit", "amortization_gap"))
    for ax, (x, gap) in zip(axes, panels):
        sns.scatterplot(data=models, x=x, y=gap, hue="label", style="label", ax=ax, s=40, legend=ax is axes[-1])
        ax.set_xlabel("active latent units" if x == "active_units" else "encoder width / active units")
        ax.set_ylabel(f"{GAP_LABELS[gap]} (nats)")
    _log_axis(axes[-1], "x", base=2)
    axes[-1].legend(fontsize="x-small", bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    return fig


def _log_axis(ax: plt.Axes, axis: str = "x", base: int = 10) -> None:
    """Put ``axis`` on a log scale labelled as plain numbers at a few round values: powers of ``base``,
    and also 2x and 5x them when base 10 spans under two decades. Call it after plotting (it reads the
    limits). Matplotlib's default labels the minor ticks of a short range, and they overlap."""
    getattr(ax, f"set_{axis}scale")("log", base=base)
    scale = getattr(ax, f"{axis}axis")
    low, high = np.log10(getattr(ax, f"get_{axis}lim")())
    subs = (1.0, 2.0, 5.0) if base == 10 and high - low < 2 else (1.0,)
    scale.set_major_locator(ticker.LogLocator(base=base, subs=subs))
    scale.set_major_formatter(ticker.FormatStrFormatter("%g"))
    scale.set_minor_formatter(ticker.NullFormatter())


def frontier(curves: pd.DataFrame, qstar: pd.DataFrame) -> plt.Figure:
    """The gap left to L[q*] after tuned per-image optimisation, against decoder gradient evaluations
    and against seconds per image, one line per start (rows of ``curves``: init, evaluations,
    seconds, mean, low, high); full q* (``qstar``: evaluations, seconds) as a star at zero gap."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.3), sharey=True)
    labels = {"encoder": "refinement from the encoder", "prior": "VI from the prior"}
    for (init, rows), color in zip(curves.groupby("init", sort=False), sns.color_palette("colorblind")):
        rows = rows.sort_values("evaluations")
        for ax, x in zip(axes, ("evaluations", "seconds")):
            ax.plot(rows[x], rows["mean"], marker="o", ms=4, color=color, label=labels.get(init, init))
            ax.fill_between(rows[x], rows.low, rows.high, color=color, alpha=0.2)
    for ax, x in zip(axes, ("evaluations", "seconds")):
        ax.scatter(qstar[x], [0] * len(qstar), marker="*", s=120, color="0.2", zorder=3, label="q* (stopping rule)")
        _log_axis(ax)
        ax.set_yscale("symlog", linthresh=0.1)
        ax.axhline(0, color="0.4", lw=0.8)
    axes[0].set_xlabel("decoder gradient evaluations per image")
    axes[1].set_xlabel("seconds per image (batched, this machine)")
    axes[0].set_ylabel("$\\mathcal{L}[q^*] - \\mathcal{L}[q_k]$ (nats)")
    axes[0].legend(fontsize="x-small")
    fig.tight_layout()
    return fig


def hmc_accuracy(table: pd.DataFrame) -> plt.Figure:
    """HMC's error in the posterior mean of z against gradient evaluations per image, with the
    encoder's and q*'s errors as horizontal lines (rows: method, evaluations, mean_z_error)."""
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    hmc = table[table.method == "hmc"].sort_values("evaluations")
    ax.plot(hmc.evaluations, hmc.mean_z_error, marker="o", ms=4, color="0.2", label="HMC from the prior")
    for (method, style), color in zip((("encoder", "--"), ("q*", ":")), sns.color_palette("colorblind")):
        ax.axhline(table.loc[table.method == method, "mean_z_error"].item(), linestyle=style, color=color,
                   label=f"{method} (one pass)" if method == "encoder" else method)  # fmt: skip
    _log_axis(ax, "x")
    _log_axis(ax, "y")
    ax.set_xlabel("gradient evaluations per image")
    ax.set_ylabel("error of E[z|x] (Euclidean)")
    ax.legend(fontsize="small")
    return fig


def ais_lengths(curves: pd.DataFrame) -> plt.Figure:
    """How far AIS on real images lies below its longest run, against its gradient evaluations, one
    line per model (rows: model, evaluations, mean, low, high)."""
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    for (model, rows), color in zip(curves.groupby("model", sort=False), sns.color_palette("colorblind")):
        rows = rows.sort_values("evaluations")
        ax.plot(rows.evaluations, rows["mean"], marker="o", ms=4, color=color, label=f"{model} model")
        ax.fill_between(rows.evaluations, rows.low, rows.high, color=color, alpha=0.2)
    ax.axhspan(-0.1, 0.1, color="0.9", zorder=0, label="within 0.1 nats")
    _log_axis(ax)
    ax.set_xlabel("AIS gradient evaluations per image")
    ax.set_ylabel("longest run - estimate (nats)")
    ax.legend(fontsize="small")
    return fig


MODEL_NAMES = {"diagonal": "FFG", "planar": "flow"}  # an encoder family's one name in every figure and table
PROTOCOL_NAMES = {"early_stopped": "early-stopped", "long_trained": "long-trained"}


def model_label(family: str, protocol: str) -> str:
    """A campaign model's name in a figure: its family and training protocol ("FFG, long-trained")."""
    return f"{MODEL_NAMES[family]}, {PROTOCOL_NAMES[protocol]}"


def validation_errors(errors: pd.DataFrame, half_se: float) -> plt.Figure:
    """Per-image error of each AIS setting, one box per model and setting: against the reference on
    real training and test images, and against the BDMC bound on simulated ones (``error_upper``),
    a panel each, from q* only. The grey band is +- ``half_se``, the largest mean error allowed on
    every model. ``errors``: rows family, protocol, part ("train", "test" or "simulated"), start,
    estimator, evaluations, error, error_upper."""
    titles = {"train": "training images,\nagainst the reference", "test": "test images,\nagainst the reference",
              "simulated": "simulated images,\nagainst BDMC"}  # fmt: skip
    parts = [p for p in titles if p in set(errors.part)]
    fig, axes = plt.subplots(1, len(parts), figsize=(2.3 * len(parts) + 1.2, 3.0), squeeze=False, sharey=True,
                             sharex=True)  # fmt: skip
    shown = errors[(errors.start == "qstar") & ~errors.estimator.isin(["reference", "bdmc"])].copy()
    order = [o.removeprefix("ais_") for o in shown.sort_values("evaluations").estimator.unique()]
    shown["setting"] = shown.estimator.str.removeprefix("ais_")
    shown["model"] = [model_label(f, p) for f, p in zip(shown.family, shown.protocol)]
    models = list(dict.fromkeys(shown.model))
    for ax, part in zip(axes[0], parts):
        rows = shown[shown.part == part].assign(value=lambda r: r.error if part != "simulated" else r.error_upper)
        sns.boxplot(data=rows, y="model", x="value", hue="setting", order=models, hue_order=order, ax=ax,
                    fliersize=2, linewidth=0.8, legend=ax is axes[0][0])  # fmt: skip
        ax.axvspan(-half_se, half_se, color="0.85", zorder=0)
        ax.axvline(0, color="0.4", lw=0.8)
        ax.set_xscale("symlog", linthresh=0.1)
        ax.set_xticks([-1, 0, 0.1, 1, 10], ["-1", "0", "0.1", "1", "10"])
        ax.set_xlabel("error per image (nats)")
        ax.set_ylabel("")
        ax.set_title(titles[part], fontsize="medium")
    handles, labels = axes[0][0].get_legend_handles_labels()
    axes[0][0].get_legend().remove()
    fig.legend(handles, labels, title="AIS steps x chains", loc="upper center", ncol=len(labels), frameon=False,
               bbox_to_anchor=(0.5, 1.0))  # fmt: skip
    fig.tight_layout(rect=(0, 0, 1, 0.88))
    return fig


def search_shortfalls(shortfalls: pd.DataFrame, mean_nats: float) -> plt.Figure:
    """What a q* search with only its first k starts loses against all of them: the mean over images
    per k, one line per model, a panel per split, the dashed line at the allowed mean ``mean_nats``.
    ``shortfalls``: rows family, protocol, split, starts (k), shortfall (nats)."""
    splits = list(dict.fromkeys(shortfalls.split))
    fig, axes = plt.subplots(1, len(splits), figsize=(3.4 * len(splits), 2.9), squeeze=False, sharey=True)
    means = shortfalls.groupby(["family", "protocol", "split", "starts"], sort=False).shortfall.mean().reset_index()
    means["model"] = [model_label(f, p) for f, p in zip(means.family, means.protocol)]
    for ax, split in zip(axes[0], splits):
        sns.lineplot(data=means[means.split == split], x="starts", y="shortfall", hue="model", style="model",
                     markers=True, dashes=False, ax=ax)  # fmt: skip
        ax.axhline(mean_nats, color="0.3", lw=0.8, ls="--")
        ax.set_yscale("symlog", linthresh=0.01)
        ax.set_xlabel("starts of the q* search")
        ax.set_title("training images" if split == "train" else f"{split} images")
        ax.legend(fontsize="small")
    axes[0][0].set_ylabel("mean shortfall (nats)")
    for ax in axes[0][1:]:
        ax.get_legend().remove()
    fig.tight_layout()
    return fig


def reconstructions(images: dict[str, np.ndarray]) -> plt.Figure:
    """Rows of 28x28 images, one row per entry of ``images`` ([n, 784] each): originals and the
    decoded posterior means under several inference methods."""
    rows, n = len(images), len(next(iter(images.values())))
    fig, axes = plt.subplots(rows, n, figsize=(0.9 * n + 1.2, 0.95 * rows))
    for r, (label, batch) in enumerate(images.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(np.asarray(batch[c]).reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize="small")
    fig.subplots_adjust(wspace=0.05, hspace=0.05, left=0.2)
    return fig

