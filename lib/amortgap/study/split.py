"""The amortization gap split into its parts (issue 39, item 2), on one campaign run's decoders.

Each decoder comes with its jointly trained encoder, q_joint. The best encoder of that architecture
found, q_best, is the best of the candidates (q_joint itself; encoders trained against the frozen
decoder: fresh, from q_joint, or from q_joint distilled onto per-image q*), chosen by mean ELBO on
training images that no reported number uses (:class:`amortgap.study.split_targets.SplitImages`).
Per reported image,

- expressivity, L[q*] - L[q_best]: what no encoder of this architecture has been shown to reach;
- optimisation, L[q_best] - L[q_joint]: what joint training left that another encoder found;

and the two add up to the amortization gap L[q*] - L[q_joint]. q_best only bounds the best encoder
of the architecture from below, so in the mean expressivity is an upper bound and optimisation a
lower bound, as far as the q* search (from q_joint and from q_best) finds the family's best member.
q_best is chosen on training images, so on test images it is the encoder that did best on training
images. Generalisation, the test gap minus the training gap, splits the same way.

The per-image ELBOs come from :mod:`amortgap.split_rows`; this module chooses, summarizes, words
and draws them. (Its figure is drawn here, not in :mod:`amortgap.plots`, which every stage depends
on: it moves there in the paper's next whole rebuild.)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .. import data
from ..campaign import CampaignConfig, Entry, read_status
from ..report import Number, Value, bounds, number
from ..stats import Interval, crossed_interval, t_quantile
from .gap_table import model_epoch
from .split_targets import SplitImages
from .wording import in_words

PARTS = ("expressivity", "optimisation", "amortization_gap")
SHORT = {"expressivity": "expressivity", "optimisation": "optimisation", "amortization_gap": "amortization gap"}
PART_LABELS = {"expressivity": r"expressivity, $\mathcal{L}[q^*] - \mathcal{L}[q_{\mathrm{best}}]$",
               "optimisation": r"optimisation, $\mathcal{L}[q_{\mathrm{best}}] - \mathcal{L}[q_{\mathrm{joint}}]$",
               "amortization_gap": "amortization gap"}  # fmt: skip
CLASSES = ("T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")  # Fashion-MNIST's labels
CLASS_PERMUTATIONS = 2000  # label shufflings of the test whether the classes' gaps differ
TIE_TOLERANCE = 1e-9  # relative: a shuffled statistic this close to the observed one ties it (as scipy's permutation_test)
ROLES = {"first": "First", "stopped": "Stopped"}  # the decoders the paper's prose names, in macros


def candidate_name(entry: Entry) -> str:
    """A candidate encoder's name in the split's tables: ``refit`` (q_joint trained on against the
    frozen decoder), ``distilled`` (q_joint distilled onto q*, then trained on) or
    ``fresh_<protocol>_s<seed>`` (from random weights)."""
    return {"joint": "refit", "distilled": "distilled"}.get(entry.init, f"fresh_{entry.protocol}_s{entry.seed}")


def candidates_of(config: CampaignConfig, run: str, decoders: list[str], runs: list[str],
                  root: str | os.PathLike = ".") -> dict[str, dict[str, Path]]:  # fmt: skip
    """Decoder file (of ``run``) -> {candidate name: its weights file}, for the campaign ``runs``
    named: each must be an encoder of the run's architecture on one of ``decoders``, trained to its
    protocol's end (its early-stopped ``best.pt``)."""
    entries = {entry.run: entry for entry in config.entries}
    found: dict[str, dict[str, Path]] = {decoder: {} for decoder in decoders}
    for name in runs:
        entry = entries.get(name)
        if entry is None or entry.decoder is None:
            raise ValueError(f"{name} is not a campaign run on a frozen decoder")
        decoder = str(Path(entry.decoder).relative_to(run)) if Path(entry.decoder).parts[0] == run else None
        if decoder not in found:
            raise ValueError(f"{name} trains against {entry.decoder}, not one of {run}'s decoders {decoders}")
        if config.model_config(entry).encoder_hidden != config.architecture.encoder_hidden:
            raise ValueError(f"{name}'s encoder is not of {run}'s architecture ({config.architecture.encoder_hidden})")
        status = read_status(config.run_dir(name, root))
        if status["status"] != "finished" or status["epoch"] < config.last_target(name):
            raise ValueError(f"{name} is not trained to its end yet ({status['status']}, epoch {status.get('epoch', 0)}): "
                             f"python -m amortgap.campaign run --only {name}")  # fmt: skip
        label = candidate_name(entry)
        if label in found[decoder]:
            raise ValueError(f"two candidates on {decoder} are named {label}")
        found[decoder][label] = config.run_dir(name, root) / "best.pt"
    if bare := [decoder for decoder, named in found.items() if not named]:
        raise ValueError(f"no candidate encoder on {bare}: q_best would be q_joint by default")
    return found


def refit_epochs(config: CampaignConfig, runs: list[str]) -> int:
    """How many epochs the candidates that start from q_joint (refit and distilled) train on: one
    number, for them all."""
    found = {config.last_target(e.run) for e in config.entries if e.run in runs and e.init != "fresh"}
    if len(found) != 1:
        raise ValueError(f"the candidates from q_joint must train alike, not for {sorted(found)} epochs")
    return found.pop()


def decoder_epochs(run_dir: str | os.PathLike, decoders: list[str]) -> dict[str, int]:
    """Each decoder file's epoch (a snapshot's from its name, ``best.pt``'s from ``run.json``)."""
    return {decoder: model_epoch(run_dir, decoder) for decoder in decoders}


def roles(epochs: dict[str, int]) -> dict[str, str]:
    """The decoders the prose names: ``first`` (the snapshot of the smallest epoch) and ``stopped``
    (the early-stopped ``best.pt``)."""
    snapshots = sorted((e, d) for d, e in epochs.items() if d != "best.pt")
    if "best.pt" not in epochs or not snapshots:
        raise ValueError(f"the split needs best.pt and a snapshot among its decoders, not {sorted(epochs)}")
    if snapshots[0][0] >= epochs["best.pt"]:
        raise ValueError(f"the first snapshot (epoch {snapshots[0][0]}) must come before best.pt's epoch {epochs['best.pt']}")
    return {"first": snapshots[0][1], "stopped": "best.pt"}


@dataclass(frozen=True)
class RoleImages:
    """One role's images: binarized pixels ``x`` [N, D], class ``labels`` [N] and their ``rows`` in
    their split [N]."""

    x: np.ndarray
    labels: np.ndarray
    rows: np.ndarray


def images_by_role(images: SplitImages) -> dict[str, RoleImages]:
    """The split's images: ``selection`` and ``train`` (the reported training images) from the
    training split's roles, and ``test``, as many random test images, drawn as the gap table draws
    its (:func:`amortgap.data.random_subset` with ``subset_seed``)."""
    train, test = data.load("train", split_seed=images.split_seed), data.load("test")
    pixels = {"train": data.binarize(train.x, images.binarization), "test": data.binarize(test.x, images.binarization)}
    train_rows = images.indices(len(train.x))
    rows = {"selection": ("train", train, train_rows["selection"]), "train": ("train", train, train_rows["reported"]),
            "test": ("test", test, data.random_subset(len(test.x), images.reported, images.subset_seed))}  # fmt: skip
    return {role: RoleImages(pixels[name][index], split.labels[index].numpy(), index.numpy())
            for role, (name, split, index) in rows.items()}  # fmt: skip


def candidate_columns(table: pd.DataFrame) -> pd.DataFrame:
    """The ``elbo_<candidate>`` columns of ``table`` as columns named by candidate (those of no
    candidate on this decoder, all NaN, left out; a partly missing one refused)."""
    elbos = table.filter(regex="^elbo_").rename(columns=lambda c: c.removeprefix("elbo_")).dropna(axis=1, how="all")
    if partly := list(elbos.columns[elbos.isna().any()]):
        raise ValueError(f"candidates {partly} lack an ELBO on some images")
    return elbos


def choose_best(selection: pd.DataFrame, joint: str = "joint") -> str:
    """The candidate (a column of per-image ELBOs on the selection images) of highest mean ELBO;
    ``joint`` wins a tie, so another candidate must do strictly better to replace it."""
    means = selection.mean()
    best = means.idxmax()
    return joint if means[joint] >= means[best] else best


def selection_table(selection: pd.DataFrame, epochs: dict[str, int]) -> pd.DataFrame:
    """Per decoder and candidate, on the selection images (``selection``: rows decoder, image and
    ``elbo_<candidate>``): the mean ELBO and its paired difference from q_joint with its 95%
    interval over the images, and whether it was chosen."""
    found = []
    for decoder, g in selection.groupby("decoder", sort=False):
        elbos = candidate_columns(g)
        best = choose_best(elbos)
        for name in elbos:
            gain = crossed_interval((elbos[name] - elbos.joint).to_numpy()[None]) if name != "joint" else Interval(0.0, 0.0, 0.0, se=0.0)
            found.append({"decoder": decoder, "epoch": epochs[decoder], "candidate": name, "elbo": elbos[name].mean(),
                          "gain": gain.mean, "gain_low": gain.low, "gain_high": gain.high, "gain_se": gain.se,
                          "chosen": name == best, "images": len(elbos)})  # fmt: skip
    return pd.DataFrame(found)


def parts_per_image(qstar: pd.Series, elbos: pd.DataFrame, best: str, joint: str = "joint") -> pd.DataFrame:
    """Per image: L[q*], L[q_best], L[q_joint] and :data:`PARTS` (nats); ``qstar`` and ``elbos``
    share the images' index."""
    table = pd.DataFrame({"qstar_elbo": qstar, "best_elbo": elbos[best], "joint_elbo": elbos[joint]})
    return table.assign(expressivity=table.qstar_elbo - table.best_elbo, optimisation=table.best_elbo - table.joint_elbo,
                        amortization_gap=table.qstar_elbo - table.joint_elbo)  # fmt: skip


def split_rows(reported: pd.DataFrame, chosen: dict[str, str]) -> pd.DataFrame:
    """The reported images' rows (decoder, split, image, ``qstar_elbo``, ``elbo_<candidate>``, ...)
    with each decoder's q_best (``chosen``: decoder -> candidate) and :func:`parts_per_image`."""
    tables = []
    for decoder, g in reported.groupby("decoder", sort=False):
        elbos = candidate_columns(g)
        tables.append(pd.concat([g[["decoder", "epoch", "split", "image", "label", "qstar_start", "qstar_converged"]],
                                 parts_per_image(g.qstar_elbo, elbos, chosen[decoder]).assign(best=chosen[decoder])], axis=1))  # fmt: skip
    return pd.concat(tables, ignore_index=True)


def summary(rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per group of ``by`` and part: the mean with its 95% interval over the images (one seed),
    median, 10% and 90% quantiles."""
    found = []
    for key, g in rows.groupby(by, sort=False):
        for part in PARTS:
            values = g[part].to_numpy()
            found.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))), "quantity": part,
                          **vars(crossed_interval(values[None])), "median": float(np.median(values)),
                          "q10": float(np.quantile(values, 0.1)), "q90": float(np.quantile(values, 0.9)), "images": len(values)})  # fmt: skip
    return pd.DataFrame(found)


def dominance(rows: pd.DataFrame) -> pd.DataFrame:
    """Per decoder and split: the paired difference optimisation - expressivity with its 95%
    interval over the images, the share of images whose optimisation part is the larger, and how
    many images have a negative expressivity part (q_best above the q* found)."""
    found = []
    for (decoder, split), g in rows.groupby(["decoder", "split"], sort=False):
        lead = crossed_interval((g.optimisation - g.expressivity).to_numpy()[None])
        found.append({"decoder": decoder, "epoch": int(g.epoch.iloc[0]), "split": split, **vars(lead),
                      "share": float((g.optimisation > g.expressivity).mean()), "below_zero": int((g.expressivity < 0).sum())})  # fmt: skip
    return pd.DataFrame(found)


def change(rows: pd.DataFrame, part: str, split: str, start: str, end: str) -> Interval:
    """``part`` on decoder ``end`` minus on decoder ``start``, paired over the ``split`` images."""
    per_image = rows[rows.split == split].pivot(index="image", columns="decoder", values=part)
    return crossed_interval((per_image[end] - per_image[start]).to_numpy()[None])


def difference_of_means(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> Interval:
    """mean(a) - mean(b) for two independent samples (other images), with Welch's interval."""
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se > 0 else 1
    mean = float(a.mean() - b.mean())
    half = t_quantile(0.5 + level / 2, max(int(df), 1)) * se
    return Interval(mean, mean - half, mean + half, level, se)


def generalisation(rows: pd.DataFrame, by: str = "decoder") -> pd.DataFrame:
    """Per group of ``by`` and part: the test images' mean minus the training images' (rows'
    ``split``), with Welch's 95% interval. The amortization gap's difference is the sum of its two
    parts' (to rounding)."""
    found = []
    for key, g in rows.groupby(by, sort=False):
        for part in PARTS:
            change = difference_of_means(g[g.split == "test"][part].to_numpy(), g[g.split == "train"][part].to_numpy())
            found.append({by: key, "quantity": part, **vars(change)})
    return pd.DataFrame(found)


def by_class(rows: pd.DataFrame, decoder: str) -> pd.DataFrame:
    """Per split and image class, on ``decoder``: the images, the amortization gap's mean with its
    95% interval over the class's images (NaN for a class of one image), and each part's mean."""
    found = []
    for (split, label), g in rows[rows.decoder == decoder].groupby(["split", "label"], sort=True):
        gap = g.amortization_gap.to_numpy()
        interval = crossed_interval(gap[None]) if len(g) > 1 else Interval(float(gap[0]), math.nan, math.nan)  # one image: no spread
        found.append({"split": split, "item": CLASSES[int(label)], "images": len(g), **vars(interval),
                      "expressivity": g.expressivity.mean(), "optimisation": g.optimisation.mean()})  # fmt: skip
    return pd.DataFrame(found)


def class_difference(rows: pd.DataFrame, decoder: str, split: str = "train", permutations: int = CLASS_PERMUTATIONS,
                     seed: int = 0) -> float:  # fmt: skip
    """Do the classes' mean amortization gaps differ, on ``decoder`` and ``split``'s images? The
    permutation p-value of the between-class sum of squares, sum_k n_k (mean_k - mean)^2, against
    ``permutations`` shufflings of the labels (seeded): (1 + shufflings at least as large) /
    (1 + permutations). A shuffling within ``TIE_TOLERANCE`` (relative) of the observed sum counts as
    at least as large: many shufflings tie it exactly (those that only swap the labels of two
    one-image classes), and rounding must not decide them differently on another CPU."""
    mine = rows[(rows.decoder == decoder) & (rows.split == split)]
    gaps, labels = mine.amortization_gap.to_numpy(), mine.label.to_numpy()
    classes = np.unique(labels)
    if len(classes) < 2:
        raise ValueError(f"one class only on {decoder}'s {split} images: nothing to compare")

    def between(order: np.ndarray) -> float:
        return float(sum((order == k).sum() * (gaps[order == k].mean() - gaps.mean()) ** 2 for k in classes))

    rng = np.random.default_rng(seed)
    observed = between(labels)
    floor = observed - TIE_TOLERANCE * abs(observed)
    larger = sum(between(rng.permutation(labels)) >= floor for _ in range(permutations))
    return (1 + larger) / (1 + permutations)


def class_table(rows: pd.DataFrame, decoder: str) -> pd.DataFrame:
    """The paper's table by class on ``decoder``: per class (in the labels' order) and split, its
    images, the gap's mean +- the half-width of its 95% interval, and the expressivity (E) and
    optimisation (O) means ("-" where a split has no image of the class)."""
    cells = by_class(rows, decoder).set_index(["item", "split"])
    out = {}
    for item in CLASSES:
        row = {}
        for split, where in (("train", "training"), ("test", "test")):
            c = cells.loc[(item, split)] if (item, split) in cells.index else None
            row[f"{where}: images"] = "-" if c is None else str(int(c.images))
            row[f"{where}: gap"] = "-" if c is None else f"{c['mean']:.2f} $\\pm$ {c.high - c['mean']:.2f}"
            row[f"{where}: E, O"] = "-" if c is None else f"{c.expressivity:.2f}, {c.optimisation:.2f}"
        out[item] = row
    return pd.DataFrame.from_dict(out, orient="index").rename_axis("class")


def decoder_label(decoder: str, epoch: int) -> str:
    """A decoder's name in figures and tables: ``epoch 300``, or ``early-stopped (epoch 3166)``."""
    return f"early-stopped (epoch {epoch})" if decoder == "best.pt" else f"epoch {epoch}"


def table(rows: pd.DataFrame) -> pd.DataFrame:
    """The paper's table: per decoder (in order of epoch) and split, q_best and each part's mean
    with its 95% interval's half-width."""
    out = []
    cells = summary(rows, ["decoder", "epoch", "split"]).set_index(["decoder", "split", "quantity"])
    for (decoder, epoch, split), g in rows.sort_values("epoch", kind="stable").groupby(["decoder", "epoch", "split"], sort=False):
        out.append({"decoder": decoder_label(decoder, epoch), "images": {"train": "training", "test": "test"}[split],
                    "$q_{\\mathrm{best}}$": g.best.iloc[0].replace("_", r"\_"),
                    **{SHORT[part]: f"{cells.loc[(decoder, split, part), 'mean']:.2f} $\\pm$ "
                                    f"{cells.loc[(decoder, split, part), 'high'] - cells.loc[(decoder, split, part), 'mean']:.2f}"
                       for part in PARTS}})  # fmt: skip
    return pd.DataFrame(out).set_index("decoder")


def figure(summary_rows: pd.DataFrame) -> plt.Figure:
    """The split per decoder (groups, in order of epoch) on training and on test images (panels):
    the expressivity and optimisation parts and their sum, the amortization gap, as bars with their
    95% intervals over the images (a part can be negative: grouped, not stacked)."""
    splits = [s for s in ("train", "test") if s in set(summary_rows.split)]
    fig, axes = plt.subplots(1, len(splits), figsize=(6.4, 2.9), sharey=True, squeeze=False)
    colors = dict(zip(PARTS, [*sns.color_palette("colorblind", 4)[2:], (0.6, 0.6, 0.6)]))
    width = 0.26
    for ax, split in zip(axes[0], splits):
        rows = summary_rows[summary_rows.split == split]
        order = rows[["decoder", "epoch"]].drop_duplicates().sort_values("epoch", kind="stable")
        x = np.arange(len(order))
        for offset, part in zip((-width, 0.0, width), PARTS):
            cells = rows[rows.quantity == part].set_index("decoder").loc[order.decoder]
            ax.bar(x + offset, cells["mean"], width, color=colors[part], label=PART_LABELS[part],
                   yerr=[cells["mean"] - cells.low, cells.high - cells["mean"]], error_kw={"elinewidth": 1, "capsize": 2})  # fmt: skip
        ax.set_xticks(x, [f"{e}\n(early-stopped)" if d == "best.pt" else f"{e}" for d, e in zip(order.decoder, order.epoch)])
        ax.set_xlabel("the decoder's epoch")
        ax.set_title({"train": "training images", "test": "test images"}[split])
        ax.axhline(0, color="black", linewidth=0.8)
    axes[0][0].set_ylabel("nats per image")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=3, frameon=False, bbox_to_anchor=(0.5, 1.1), fontsize="small")
    fig.tight_layout()
    return fig


def worst_images(rows: pd.DataFrame, images: RoleImages, n: int = 8) -> plt.Figure:
    """The ``n`` images of ``rows`` (one decoder and split, ``image`` naming rows of ``images``)
    with the largest amortization gaps, each titled with its class, its gap and its two parts."""
    worst = rows.nlargest(n, "amortization_gap")
    position = {row: i for i, row in enumerate(images.rows)}
    fig, axes = plt.subplots(1, len(worst), figsize=(1.0 * len(worst), 1.9), squeeze=False)
    for ax, row in zip(axes[0], worst.itertuples()):
        ax.imshow(images.x[position[row.image]].reshape(28, 28), cmap="gray_r", interpolation="nearest")
        ax.set_title(f"{CLASSES[int(row.label)]}\ngap {row.amortization_gap:.1f}\n"
                     f"E {row.expressivity:.1f}, O {row.optimisation:.1f}", fontsize="small")  # fmt: skip
        ax.axis("off")
    fig.tight_layout()
    return fig


def load(table_dir: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """The tables the notebook wrote: ``rows`` (per decoder, split and image) and ``selection`` (per
    decoder and candidate)."""
    return {name: pd.read_csv(Path(table_dir) / f"{name}.csv") for name in ("rows", "selection")}


def dominant(lead: Interval) -> str:
    """How the paired lead of optimisation over expressivity reads at 95%, as a clause."""
    if lead.low > 0:
        return "the optimisation part is the larger"
    return "the expressivity part is the larger" if lead.high < 0 else "neither part is resolved as the larger"


def numbers(rows: pd.DataFrame, selection: pd.DataFrame) -> dict[str, Value]:
    """The paper's numbers. For the first decoder's training images and the early-stopped
    decoder's training and test images (:func:`roles`): each part's mean and interval, the lead of
    optimisation over expressivity, the share of images it leads on, the images of negative
    expressivity; q_best, its gain over q_joint on the selection images, and how far the distilled
    candidate's mean ELBO there lies from the refit one's. Then the parts' change from the first decoder to the early-stopped
    one, whether the classes' mean gaps on its training images differ (a permutation test), the
    classes of largest and smallest mean gap among those of two images or more, its generalisation gap
    split, and the counts of images and of unconverged q*."""
    epochs = dict(zip(rows.decoder, rows.epoch))
    named = roles(epochs)
    means = summary(rows, ["decoder", "split"]).set_index(["decoder", "split", "quantity"])
    leads = dominance(rows).set_index(["decoder", "split"])
    chosen = selection[selection.chosen].set_index("decoder").candidate
    macros: dict[str, Value] = {"SplitImages": int(rows[rows.split == "train"].groupby("decoder").size().min()),
                                "SplitSelection": int(selection.images.min()),
                                "SplitQstarUnconverged": int((~rows.qstar_converged.astype(bool)).sum()), "SplitRows": len(rows),
                                "SplitDecoderList": in_words([decoder_label(d, e) for d, e in sorted(epochs.items(), key=lambda de: de[1])])}  # fmt: skip
    apart = []  # per named decoder: do the distilled and refit candidates end apart?
    for role, decoder in named.items():
        key = f"Split{ROLES[role]}"
        macros[f"{key}Epoch"] = int(epochs[decoder])
        macros[f"{key}Best"] = chosen[decoder].replace("_", r"\_")
        mine = selection[selection.decoder == decoder].set_index("candidate")
        best = mine.loc[chosen[decoder]]
        macros[f"{key}Gain"] = Number(best.gain, best.gain_se)
        macros[f"{key}GainCi"] = bounds(Interval(best.gain, best.gain_low, best.gain_high))
        if {"distilled", "refit"} <= set(mine.index):
            macros[f"{key}DistilledFromRefit"] = Number(abs(mine.elbo["distilled"] - mine.elbo["refit"]), digits=3)
            apart.append(abs(mine.elbo["distilled"] - mine.elbo["refit"]) >= mine.gain_se["refit"])
        for split in ("train", "test") if role == "stopped" else ("train",):  # the prose's
            where = f"{key}{split.title()}"
            for part, short in (("expressivity", "Expr"), ("optimisation", "Opt"), ("amortization_gap", "Amort")):
                cell = means.loc[(decoder, split, part)]
                macros[f"{where}{short}"] = Number(cell["mean"], cell.se)
                macros[f"{where}{short}Ci"] = bounds(Interval(cell["mean"], cell.low, cell.high))
            lead = leads.loc[(decoder, split)]
            macros[f"{where}Lead"] = Number(lead["mean"], lead.se)
            macros[f"{where}LeadCi"] = bounds(Interval(lead["mean"], lead.low, lead.high))
            macros[f"{where}Dominant"] = dominant(Interval(lead["mean"], lead.low, lead.high))
            macros[f"{where}OptShare"] = Number(100 * lead.share, digits=0)
            macros[f"{where}ExprBelowZero"] = int(lead.below_zero)
    macros["SplitDistilledVerdict"] = ("ends apart from where training from $q_{\\text{joint}}$ itself ends" if any(apart) else
                                       "ends where training from $q_{\\text{joint}}$ itself ends, to within the standard error of the "
                                       "refit candidate's gain")  # fmt: skip
    for part, short in (("expressivity", "Expr"), ("optimisation", "Opt")):
        moved = change(rows, part, "train", named["first"], named["stopped"])
        macros[f"SplitChangeTrain{short}"] = number(moved)
        macros[f"SplitChangeTrain{short}Ci"] = bounds(moved)
    classes = by_class(rows, named["stopped"])
    train = classes[(classes.split == "train") & (classes.images > 1)].set_index("item")  # chosen after the fact: said so
    p_value = class_difference(rows, named["stopped"], permutations=CLASS_PERMUTATIONS)
    macros["SplitClassP"] = Number(p_value, digits=4)  # its floor: 1 / (1 + CLASS_PERMUTATIONS)
    macros["SplitClassShufflings"] = CLASS_PERMUTATIONS
    macros["SplitClassVerdict"] = ("the classes' mean gaps differ" if p_value < 0.05 else
                                   "the classes' mean gaps are not shown to differ")  # fmt: skip
    for key, item in (("Largest", train["mean"].idxmax()), ("Smallest", train["mean"].idxmin())):
        cell = train.loc[item]
        macros[f"SplitClass{key}"] = item
        macros[f"SplitClass{key}Gap"] = Number(cell["mean"], cell.se)
        macros[f"SplitClass{key}GapCi"] = bounds(Interval(cell["mean"], cell.low, cell.high))
    general = generalisation(rows[rows.decoder == named["stopped"]]).set_index("quantity")
    for part, short in (("expressivity", "Expr"), ("optimisation", "Opt"), ("amortization_gap", "Amort")):
        cell = general.loc[part]
        macros[f"SplitGeneral{short}"] = Number(cell["mean"], cell.se)
        macros[f"SplitGeneral{short}Ci"] = bounds(Interval(cell["mean"], cell.low, cell.high))
    return macros


def settings(images: SplitImages, samples: int, refit_epochs: int) -> dict[str, Value]:
    """The split's settings as the paper prints them: the distillation's target images, the ELBO's
    samples and how long the candidates from q_joint train on."""
    return {"SplitTargets": images.targets, "SplitSamples": samples, "SplitRefitEpochs": refit_epochs}
