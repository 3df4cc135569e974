"""The width study (issue 39, item 1): encoders of several widths trained from random weights
against one fixed decoder (a campaign run's early-stopped one), each width with its seeds.

The decoder is fixed, so the widths differ in nothing but the encoder: its capacity, isolated from
how the decoder adapts to it. Every encoder's ELBO is drawn with the same random numbers as the
split's (:mod:`amortgap.split_rows`), on the split's reported images, and every amortization gap
uses the split's L[q*] on that decoder (q* found once per decoder and set of images, reused by every
encoder).

- The **pilot** gates the study: a fresh encoder of the joint encoder's width must reach the joint
  encoder's mean ELBO less a margin (one-sided), or the encoders' schedule is too short for any
  width to be reported.
- Per width, the amortization gap with its interval over seeds *and* images
  (:func:`amortgap.stats.crossed_interval`), its median and quantiles; the differences between
  neighbouring widths; the ratio of the narrowest width's gap to the widest's (Fieller's interval).
- **Does the schedule suffice?** Runs taken on past the schedule (its last rate continues) give the
  validation ELBO the longer schedule gains, against half the smallest width difference claimed.

The decoder was trained with a width-200 encoder: every claim holds for this fixed decoder, and the
gain from a wider encoder may be understated. (Its figure is drawn here, not in
:mod:`amortgap.plots`, which every stage depends on: it moves there in the paper's next whole
rebuild.)
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ..campaign import CampaignConfig, Entry, longer_schedule_check, read_status
from ..report import Number, Value, bounds, number
from ..stats import Interval, by_seed_and_image, crossed_interval, mean_se, t_quantile, trend
from .split import CLASSES
from .wording import in_words

PILOT_MARGIN = 0.3  # nats of mean ELBO a fresh encoder may fall short of the joint one (one-sided)
SPLITS = {"train": "training images", "test": "test images"}
SHORT_SPLITS = {"train": "training", "test": "test"}
# Macros that the last bits of a CPU move at the test defaults: Fieller's bounds, where the wide
# width's gap is barely resolved from zero (one bound moved from 45.9 to 49.3 between vector units).
UNSTABLE = ("RatioCi",)


def pilot(fresh: np.ndarray, joint: np.ndarray, margin: float = PILOT_MARGIN, level: float = 0.95) -> dict[str, float | bool]:
    """Does a fresh encoder (trained against the joint model's frozen decoder) reach the mean ELBO
    of the joint model's own encoder less ``margin``? From per-image ELBOs [N] of both, drawn with
    the same random numbers: the paired difference fresh - joint, its mean, standard error and
    one-sided lower bound at ``level``. The pilot ``passes`` when that bound lies above -margin."""
    fresh, joint = np.asarray(fresh, dtype=float), np.asarray(joint, dtype=float)
    if fresh.shape != joint.shape or fresh.ndim != 1 or len(fresh) < 2:
        raise ValueError(f"the pilot pairs two ELBOs per image, not arrays of shapes {fresh.shape} and {joint.shape}")
    difference = fresh - joint
    mean, se = mean_se(difference)
    lower = mean - t_quantile(level, len(difference) - 1) * se
    return {"images": len(difference), "joint_elbo": float(joint.mean()), "fresh_elbo": float(fresh.mean()),
            "difference": mean, "difference_se": se, "lower_bound": lower, "level": level, "margin": margin,
            "passes": bool(lower > -margin)}  # fmt: skip


def fresh_encoder(config: CampaignConfig, name: str, decoder: str, root: str | os.PathLike = ".",
                  family: str | None = None) -> tuple[Entry, dict, int]:  # fmt: skip
    """Campaign run ``name``'s entry, its ``run.json`` status and its schedule's epochs, refused
    unless it is a fresh encoder (of ``family``, if given) on ``decoder`` that has reached its
    schedule's last epoch, where its ``best.pt`` is final."""
    entry = next((e for e in config.entries if e.run == name), None)
    if entry is None or entry.decoder != decoder or entry.init != "fresh" or family not in (None, entry.family):
        raise ValueError(f"{name} is not a campaign run of a fresh {family + ' ' if family else ''}encoder on {decoder}")
    status = read_status(config.run_dir(name, root))
    schedule = config.protocols[entry.protocol].epochs
    if status.get("epoch", 0) < schedule:
        raise ValueError(f"{name} has not reached its schedule's end yet (epoch {status.get('epoch', 0)} of {schedule}): "
                         f"python -m amortgap.campaign run --only {name}")  # fmt: skip
    return entry, status, schedule

def encoders(config: CampaignConfig, decoder: str, runs: list[str], root: str | os.PathLike = ".",
             one_schedule: bool = True) -> pd.DataFrame:  # fmt: skip
    """The campaign ``runs`` named, one row each: ``run``, ``width`` (the encoder's last hidden
    width), ``seed``, ``protocol``, the schedule's ``epochs``, the ``longer`` epochs the run is
    taken on to (or the schedule's), the epoch it has reached (``trained``) and its ``weights``
    (``best.pt``). Each must be a fresh encoder on ``decoder`` whose best weights are final: it has
    trained past its schedule's last epoch (its protocol's). With ``one_schedule``, all must share
    one protocol (the study's; the pilots each try one)."""
    rows = []
    for name in runs:
        entry, status, schedule = fresh_encoder(config, name, decoder, root)
        rows.append({"run": name, "width": int(entry.encoder_hidden[-1]), "seed": entry.seed, "protocol": entry.protocol,
                     "epochs": schedule, "longer": config.last_target(name), "trained": int(status["epoch"]),
                     "weights": config.run_dir(name, root) / "best.pt"})  # fmt: skip
    found = pd.DataFrame(rows)
    if found.empty:
        raise ValueError(f"no encoder on {decoder} is named")
    if one_schedule and found.protocol.nunique() > 1:
        raise ValueError(f"the study's encoders must share one schedule, not {sorted(found.protocol.unique())}")
    if found.duplicated(["protocol", "width", "seed"]).any():
        raise ValueError("two runs share a protocol, width and seed")
    return found


def gap_rows(elbos: pd.DataFrame, split_rows: pd.DataFrame, decoder: str) -> pd.DataFrame:
    """Per encoder (``elbos``: run, width, seed, split, image, label, ``elbo``) and image: L[q*] and
    L[q_joint] from the split's rows of ``decoder`` (the same images, the same random numbers), and
    the ``amortization_gap`` L[q*] - L[q]. Refuses an image the split has no q* for."""
    split = split_rows[split_rows.decoder == decoder][["split", "image", "qstar_elbo", "joint_elbo"]]
    rows = elbos.merge(split, on=["split", "image"], how="left", validate="many_to_one")
    if rows.qstar_elbo.isna().any():
        missing = rows[rows.qstar_elbo.isna()][["split", "image"]].drop_duplicates()
        raise ValueError(f"the split has no q* of decoder {decoder} on {len(missing)} of these images, e.g. {missing.iloc[0].to_dict()}")
    return rows.assign(amortization_gap=rows.qstar_elbo - rows.elbo)


def same_draws(joint: pd.DataFrame, split_rows: pd.DataFrame, decoder: str, tolerance: float = 1e-3) -> None:
    """Refuse ELBOs drawn otherwise than the split's: the joint encoder's per-image ELBO here
    (``joint``: split, image, ``elbo``) must be the split's ``joint_elbo`` on ``decoder``, to within
    ``tolerance`` nats (rounding and thread counts; other random numbers differ by far more)."""
    theirs = split_rows[split_rows.decoder == decoder].set_index(["split", "image"]).joint_elbo
    ours = joint.set_index(["split", "image"]).elbo
    worst = (ours - theirs.reindex(ours.index)).abs().max()
    if not worst <= tolerance:  # NaN too: an image the split does not have
        raise ValueError(f"the joint encoder's ELBO differs from the split's by {worst} nats: other images, samples or seed")


def pilot_table(found: pd.DataFrame, rows: pd.DataFrame, joint_width: int, study: str,
                margin: float = PILOT_MARGIN) -> pd.DataFrame:  # fmt: skip
    """Per pilot encoder (``found``, from :func:`encoders`): :func:`pilot` on the training images of
    ``rows`` (its per-image ``elbo`` beside ``joint_elbo``), with its run, schedule, whether that is
    the ``study``'s (a protocol), and its width, which must be the joint encoder's."""
    if study not in set(found.protocol):
        raise ValueError(f"no pilot was trained under the study's schedule {study}: no width can be reported")
    if wrong := sorted(set(found.width) - {joint_width}):
        raise ValueError(f"a pilot has the joint encoder's width {joint_width}, not {wrong}")
    out = []
    for run in found.itertuples():
        mine = rows[(rows.run == run.run) & (rows.split == "train")]
        out.append({"run": run.run, "protocol": run.protocol, "study": run.protocol == study, "epochs": run.epochs, "width": run.width,
                    **pilot(mine.elbo.to_numpy(), mine.joint_elbo.to_numpy(), margin)})  # fmt: skip
    return pd.DataFrame(out)


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per split and width: the amortization gap's mean with its 95% interval over seeds and images
    (over images only where a width has one seed), its median, 10% and 90% quantiles over every
    (seed, image), and the seeds and images."""
    found = []
    for (split, width), g in rows.groupby(["split", "width"], sort=True):
        values = g.amortization_gap.to_numpy()
        found.append({"split": split, "width": width, **vars(crossed_interval(by_seed_and_image(g, "amortization_gap"))),
                      "median": float(np.median(values)), "q10": float(np.quantile(values, 0.1)),
                      "q90": float(np.quantile(values, 0.9)), "seeds": g.seed.nunique(), "images": g.image.nunique()})  # fmt: skip
    return pd.DataFrame(found)


def paired(rows: pd.DataFrame, narrow: int, wide: int) -> tuple[np.ndarray, np.ndarray]:
    """The gaps [S, N] of widths ``narrow`` and ``wide`` on one split, over the seeds both have
    (seed s of one width beside seed s of the other: independent runs, so any pairing of seeds is
    as good) and the same images."""
    a, b = (rows[rows.width == w].pivot(index="seed", columns="image", values="amortization_gap") for w in (narrow, wide))
    seeds = a.index.intersection(b.index)
    if seeds.empty:
        raise ValueError(f"widths {narrow} and {wide} share no seed")
    return a.loc[seeds, b.columns].to_numpy(), b.loc[seeds].to_numpy()


def differences(rows: pd.DataFrame) -> pd.DataFrame:
    """Per split and pair of neighbouring widths: the narrower width's gap minus the wider's, with
    its 95% interval over their common seeds and the images, and how many seeds that is."""
    found = []
    for split, g in rows.groupby("split", sort=True):
        widths = sorted(g.width.unique())
        for narrow, wide in zip(widths[:-1], widths[1:]):
            a, b = paired(g, narrow, wide)
            found.append({"split": split, "narrow": narrow, "wide": wide, "seeds": len(a), **vars(crossed_interval(a - b))})
    return pd.DataFrame(found)


def ratio(narrow: np.ndarray, wide: np.ndarray, level: float = 0.95, limit: float = 1e6) -> Interval:
    """mean(narrow) / mean(wide) for gaps [S, N] of two widths on the same images and seeds, with
    Fieller's interval: the ratios r for which the interval of narrow - r wide (over seeds and
    images, :func:`amortgap.stats.crossed_interval`) covers 0. The set need not be one interval
    (the seed term's degrees of freedom change with r), so each side is scanned outward on a
    doubling grid and the interval is the hull of the ratios found covered; a bound is infinite
    when the scan still covers at ``limit`` (the wide width's gap not resolved from zero)."""
    if narrow.shape != wide.shape:
        raise ValueError(f"the ratio pairs gaps of one shape, not {narrow.shape} and {wide.shape}")
    if wide.mean() == 0:
        raise ValueError("the wide width's mean gap is 0: no ratio")
    point = float(narrow.mean() / wide.mean())

    def covers(r: float) -> bool:
        interval = crossed_interval(narrow - r * wide, level)
        return interval.low <= 0 <= interval.high

    def edge(direction: float) -> float:
        base = max(abs(point), 1e-3) * 1e-3
        last, step, k = point, base, 0
        while base * 2**k <= limit:  # the outermost grid ratio still covered
            if covers(point + direction * base * 2**k):
                last, step = point + direction * base * 2**k, base * 2**k
            k += 1
        if covers(point + direction * limit):
            return direction * math.inf
        inside, outside = last, last + direction * step  # refine between it and the next grid point out
        for _ in range(60):
            middle = (inside + outside) / 2
            inside, outside = (middle, outside) if covers(middle) else (inside, middle)
        return (inside + outside) / 2

    return Interval(point, edge(-1.0), edge(1.0), level)


def schedule_check(config: CampaignConfig, found: pd.DataFrame, root: str | os.PathLike = ".") -> pd.DataFrame:
    """Per run taken past its schedule (``longer`` > ``epochs``, which must be twice as long): the
    best validation ELBO within the schedule and within the longer run, and the ``gain`` (None until
    the run reaches ``longer``) (:func:`amortgap.campaign.longer_schedule_check`)."""
    rows = []
    for run in found[found.longer > found.epochs].itertuples():
        if run.longer != 2 * run.epochs:
            raise ValueError(f"{run.run} is taken on to {run.longer} epochs: the check takes a schedule twice as long, {2 * run.epochs}")
        history = pd.read_csv(config.run_dir(run.run, root) / "history.csv")
        check = longer_schedule_check(history, config.protocols[run.protocol], run.longer)
        rows.append({"run": run.run, "width": run.width, "seed": run.seed, "epochs": run.epochs, "longer": run.longer,
                     "trained": run.trained, "best_valid_elbo": check["best_valid_elbo"],
                     "longer_best_valid_elbo": check["longer_best_valid_elbo"], "gain": check["gain"]})  # fmt: skip
    return pd.DataFrame(rows, columns=["run", "width", "seed", "epochs", "longer", "trained", "best_valid_elbo",
                                       "longer_best_valid_elbo", "gain"])  # fmt: skip


def smallest_claim(steps: pd.DataFrame, min_seeds: int = 2) -> float | None:
    """The smallest width difference the study claims: the least |mean| among the neighbouring
    widths' differences whose interval, over at least ``min_seeds`` common seeds and the images,
    excludes zero (None if none does: with one seed the interval is over images only, and the
    seeds' spread, unknown, could undo it)."""
    resolved = steps[((steps.low > 0) | (steps.high < 0)) & (steps.seeds >= min_seeds)]
    return None if resolved.empty else float(resolved["mean"].abs().min())


def schedule_verdict(checks: pd.DataFrame, claim: float | None) -> str:
    """Whether the schedule suffices, as a clause with its numbers: every run taken twice as long
    gains, in validation ELBO, less than half the smallest claimed width difference."""
    done = checks.dropna(subset=["gain"])
    if done.empty:
        return "no encoder has been trained to twice the schedule"
    widths = sorted(done.width.unique())
    runs = f"the longer run{'s' if len(done) > 1 else ''} (width{'s' if len(widths) > 1 else ''} {in_words([str(w) for w in widths])})"
    gained = f"{runs} gain{' at most' if len(done) > 1 else 's'} {done.gain.max():.2f} nats"
    if claim is None:
        return f"{gained}, and no width difference is resolved over seeds and images, so {'they test' if len(done) > 1 else 'it tests'} no claim"
    verdict = "the schedule suffices" if (done.gain < claim / 2).all() else "the schedule does not suffice"
    relation = "less than" if verdict == "the schedule suffices" else "not less than"
    return f"{verdict}: {gained}, {relation} half the smallest width difference claimed, {claim:.2f} nats"


def by_class(rows: pd.DataFrame, split: str = "train") -> pd.DataFrame:
    """The mean amortization gap per image class (rows) and width (columns) on ``split``'s images,
    over seeds and images."""
    mine = rows[rows.split == split].assign(item=lambda r: r.label.map(dict(enumerate(CLASSES))))
    return mine.pivot_table(index="item", columns="width", values="amortization_gap", aggfunc="mean")


def table(cells: pd.DataFrame) -> pd.DataFrame:
    """The paper's table: per width, its seeds and, per split, the gap's mean +- the half-width of
    its 95% interval and its median [10%, 90% quantiles]."""
    out = {}
    for width, g in cells.groupby("width", sort=True):
        row = {"seeds": int(g.seeds.max())}
        for split in ("train", "test"):
            c = g[g.split == split].iloc[0]
            row[f"{SHORT_SPLITS[split]}: mean"] = f"{c['mean']:.2f} $\\pm$ {c.high - c['mean']:.2f}"
            row[f"{SHORT_SPLITS[split]}: median [10\\%, 90\\%]"] = f"{c['median']:.2f} [{c.q10:.2f}, {c.q90:.2f}]"
        out[width] = row
    return pd.DataFrame.from_dict(out, orient="index").rename_axis("encoder width")


def figure(rows: pd.DataFrame, cells: pd.DataFrame) -> plt.Figure:
    """The amortization gap against encoder width (log scale), on training and on test images
    (panels): each encoder's mean over the images (dots) and each width's mean with its 95%
    interval over seeds and images (line and bars); the jointly trained encoder's gap dashed."""
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 2.8), sharey=True)
    color = sns.color_palette("colorblind")[0]
    for ax, split in zip(axes, ("train", "test")):
        mine, c = rows[rows.split == split], cells[cells.split == split].sort_values("width")
        per_encoder = mine.groupby(["width", "seed"]).amortization_gap.mean().reset_index()
        ax.scatter(per_encoder.width, per_encoder.amortization_gap, s=14, color=color, alpha=0.5, label="one encoder (seed)")
        ax.errorbar(c.width, c["mean"], yerr=[c["mean"] - c.low, c.high - c["mean"]], color=color, marker="o",
                    markersize=4, capsize=3, label="mean, 95% interval")  # fmt: skip
        joint = mine.drop_duplicates("image").eval("qstar_elbo - joint_elbo").mean()
        ax.axhline(joint, color="black", linestyle="--", linewidth=1, label="the jointly trained encoder")
        ax.set_xscale("log", base=2)
        ax.set_xticks(c.width, [str(w) for w in c.width])
        ax.minorticks_off()
        ax.set_title(SPLITS[split])
        if (c.low >= 0).all():
            ax.set_ylim(bottom=0)
    axes[0].set_ylabel("amortization gap (nats)")
    fig.supxlabel("encoder width (units per hidden layer)", fontsize="medium")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=3, frameon=False, bbox_to_anchor=(0.5, 1.08), fontsize="small")
    fig.tight_layout()
    return fig


def width_verdict(difference: Interval, seeds: int) -> str:
    """How the narrowest minus the widest width's gap reads at 95%, over ``seeds`` common seeds."""
    if difference.low <= 0 <= difference.high:
        return "unresolved at 95\\%"
    way = "larger" if difference.low > 0 else "smaller"
    if seeds < 2:
        return f"the narrow encoder's gap is the {way} over the images, with one seed per width, so the interval leaves out the spread between training seeds"
    return f"the narrow encoder's gap is the {way}, at 95\\% over seeds and images"


def seed_words(fewest: int, most: int) -> str:
    """How many seeds each width has, as prose says it: "one seed each", "two to three seeds each"."""
    names = ("no", "one", "two", "three", "four", "five")
    low, high = (names[n] if n < len(names) else str(n) for n in (fewest, most))
    return f"{high} seed{'s' if most > 1 else ''} each" if fewest == most else f"{low} to {high} seeds each"


def load(table_dir: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """The tables the notebook wrote: ``rows`` (per encoder, split and image), ``pilot`` (per
    pilot encoder) and ``schedule`` (per run taken past the schedule)."""
    return {name: pd.read_csv(Path(table_dir) / f"{name}.csv") for name in ("rows", "pilot", "schedule")}


ORDINALS = ("First", "Second", "Third", "Fourth")  # the pilots' macros, in order of their schedules' length


def numbers(rows: pd.DataFrame, pilot: pd.DataFrame, schedule: pd.DataFrame) -> dict[str, Value]:
    """The paper's numbers, refused while the pilot of the study's schedule fails (no width is
    reported until it passes): the widths and seeds; per split, the narrowest and widest widths'
    gaps, their difference and ratio with intervals, all over the seeds both have, and a sentence
    with the gap's trend over the widths on each split (over the seeds every width has: with fewer
    than two, it words no trend); the pilots' differences from the joint encoder; the schedule check."""
    if not pilot.study.any() or not pilot[pilot.study].passes.all():
        raise ValueError("the pilot under the study's schedule fails: the schedule is too short, and no width is reported")
    if len(pilot) > len(ORDINALS):
        raise ValueError(f"at most {len(ORDINALS)} pilots, not {len(pilot)}")
    widths = sorted(rows.width.unique())
    if len(widths) < 2:
        raise ValueError(f"the study compares widths: it has only {widths}")
    narrow, wide = widths[0], widths[-1]
    seeds = rows.groupby("width").seed.nunique()
    shared = set.intersection(*(set(g.seed) for _, g in rows.groupby("width")))  # the seeds every width has
    compared = set(rows[rows.width == narrow].seed) & set(rows[rows.width == wide].seed)
    macros: dict[str, Value] = {"CapacityWidthList": in_words([str(w) for w in widths]), "CapacityNarrowWidth": int(narrow),
                                "CapacityWideWidth": int(wide), "CapacitySeedWords": seed_words(int(seeds.min()), int(seeds.max())),
                                "CapacityComparedSeeds": seed_words(len(compared), len(compared)).removesuffix(" each"),
                                "CapacityIntervalOver": "seeds and images" if len(compared) > 1 else "images only (one seed)",
                                "CapacityImages": int(rows[rows.split == "train"].image.nunique()),
                                "CapacityMargin": Number(float(pilot.margin.iloc[0]), digits=1)}  # fmt: skip
    steps, trends = differences(rows), {}
    for split in ("train", "test"):
        key = f"Capacity{split.title()}"
        mine = rows[rows.split == split]
        a, b = paired(mine, narrow, wide)
        for label, values in (("Narrow", a), ("Wide", b)):
            cell = crossed_interval(values)
            macros[f"{key}{label}"], macros[f"{key}{label}Ci"] = number(cell), bounds(cell)
        gain = crossed_interval(a - b)
        macros[f"{key}Difference"], macros[f"{key}DifferenceCi"] = number(gain), bounds(gain)
        macros[f"{key}Verdict"] = width_verdict(gain, len(a))
        r = ratio(a, b)
        macros[f"{key}Ratio"] = Number(r.mean, digits=2)
        macros[f"{key}RatioCi"] = bounds(r) if math.isfinite(r.low) and math.isfinite(r.high) else "unbounded"
        common = mine[mine.seed.isin(shared)]
        trends[split] = trend([by_seed_and_image(common[common.width == w], "amortization_gap") for w in widths]) if len(shared) > 1 else None
        macros[f"{key}Joint"] = Number(float(mine.drop_duplicates("image").eval("qstar_elbo - joint_elbo").mean()))
    macros["CapacityTrends"] = (f"Over all the widths, on training images the gap {trends['train']}; on test images it {trends['test']}."
                                if len(shared) > 1 else "The widths share only one seed, so no trend over all of them is worded.")  # fmt: skip
    for name, row in zip(ORDINALS, pilot.sort_values("epochs").itertuples()):
        key = f"CapacityPilot{name}"
        macros[f"{key}Epochs"] = int(row.epochs)
        macros[f"{key}Difference"] = Number(row.difference, row.difference_se)
        macros[f"{key}Bound"] = Number(row.lower_bound, digits=2)
        macros[f"{key}Verdict"] = "passes" if row.passes else "fails"
    macros["CapacityScheduleVerdict"] = schedule_verdict(schedule, smallest_claim(steps))
    return macros
