# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 4. Results
#
# This notebook only reads the per-datapoint tables that the experiment notebooks wrote and turns
# them into the paper's figures, tables and numbers. Intervals over seeds are 95% Student-t
# confidence intervals of the mean over seeds, each seed's gap first averaged over its datapoints;
# single-model numbers carry the standard error over datapoints. Every number handed to the paper
# carries its uncertainty (a `Number` with its standard error), which the reproduction report
# (`python -m amortgap.compare`) uses to judge a rebuild.

# %% tags=["parameters"]
widths = [16, 64]
seeds = [0]
frozen_seeds = [0]
gap_table_dir = "build/tiny/results/gap_table"
sweep_dir = "build/tiny/results/gaps"
frozen_dir = "build/tiny/results/frozen"
refinement_dir = "build/tiny/results/refinement"
certification_dir = "build/tiny/results/certification"
published_path = "paper/published/cremer2018_table2.csv"
figure_dir = "build/tiny/figures/results"
generated_dir = "build/tiny/generated"

# %%
import pandas as pd

from amortgap import certify, plots, report
from amortgap.bounds import AISConfig
from amortgap.pipeline import project_root
from amortgap.report import Number
from amortgap.stats import mean_ci, mean_se

root = project_root()
plots.theme()
GAPS = list(plots.GAP_LABELS)


def read(paths: list) -> pd.DataFrame:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"run the experiments first; missing tables: {missing}")
    return pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)


def paired(a: pd.Series, b: pd.Series, digits: int | None = None) -> Number:
    """The mean per-image difference a - b, with its standard error over images."""
    difference = a.to_numpy() - b.to_numpy()
    return Number(difference.mean(), pd.Series(difference).sem(), digits)


gap_table = read([root / gap_table_dir / f"{m}_{s}.csv" for m in ("diagonal", "planar") for s in ("train", "test")])
sweep = read([root / sweep_dir / f"w{w}" / f"s{s}.csv" for w in widths for s in seeds])
frozen = read([root / frozen_dir / f"s{s}.csv" for s in frozen_seeds])
curves = read([root / refinement_dir / "curves.csv"])
optimum = read([root / refinement_dir / "optimum.csv"])
certification = pd.read_csv(root / certification_dir / "summary.csv", index_col=0)
certified_points = len(pd.read_csv(root / certification_dir / "estimates.csv"))
published = pd.read_csv(root / published_path)
macros: dict[str, float | int | str] = {}

# %% [markdown]
# ## Experiment 1: the gap table (the form of Cremer et al.'s Table 2)
#
# Each model's approximation gap is taken in the family of its own encoder. Cremer et al.'s
# Fashion-MNIST columns stand beside ours (their bounds as published, their gaps derived from them).

# %%
QUANTITIES = {
    "log_px": r"$\log \hat p(x)$",
    "elbo_optimal_flow": r"$\mathcal{L}[q^*_{\mathrm{flow}}]$",
    "elbo_optimal_ffg": r"$\mathcal{L}[q^*_{\mathrm{FFG}}]$",
    "elbo_amortized": r"$\mathcal{L}[q]$",
    "approximation_gap": "approximation gap",
    "amortization_gap": "amortization gap",
    "inference_gap": "inference gap",
}
ours = gap_table.groupby(["model", "split"])[list(QUANTITIES)].agg(["mean", "sem"])
# The planar-flow model's numbers and every flow q* move by up to 0.06 nats across numeric modes at
# this notebook's defaults (see 03a): shown to the nat, the rest to 0.01 (the paper has them all to 0.01).
shown = ours.xs("mean", axis=1, level=1).round(2)
shown.loc["planar"] = shown.loc["planar"].round(0).to_numpy()
shown["elbo_optimal_flow"] = shown["elbo_optimal_flow"].round(0)
print(shown.T.to_string())
gap_sem = ours.xs("sem", axis=1, level=1)[GAPS]
print("largest standard error of a mean gap:", round(gap_sem.max().max(), 2))

# %%
theirs = published.pivot(index="quantity", columns="model", values="nats")
own_bound = {"ffg": "elbo_optimal_ffg", "planar": "elbo_optimal_flow"}
for model, bound in own_bound.items():
    theirs.loc["approximation_gap", model] = theirs.loc["log_px", model] - theirs.loc[bound, model]
    theirs.loc["amortization_gap", model] = theirs.loc[bound, model] - theirs.loc["elbo_amortized", model]
    theirs.loc["inference_gap", model] = theirs.loc["log_px", model] - theirs.loc["elbo_amortized", model]
means = ours.xs("mean", axis=1, level=1)
columns = {f"{family} {split}": means.loc[(model, split)]
           for split in ("train", "test") for model, family in (("diagonal", "FFG"), ("planar", "flow"))}
columns.update({"Cremer FFG": theirs["ffg"], "Cremer flow": theirs["planar"]})
table = pd.DataFrame(columns).reindex(list(QUANTITIES))
table.index = [QUANTITIES[q] for q in table.index]
table.index.name = ""
gap_table_file = root / generated_dir / "gap_table.tex"
report.write_table(gap_table_file, table.astype(object).where(table.notna(), "--"))
print("wrote", gap_table_file.relative_to(root))

# %%
sems = ours.xs("sem", axis=1, level=1)
for model, name in (("diagonal", "Ffg"), ("planar", "Flow")):
    for split in ("train", "test"):
        row, se = means.loc[(model, split)], sems.loc[(model, split)]
        for gap, short in (("approximation_gap", "Approx"), ("amortization_gap", "Amort"), ("inference_gap", "Inference")):
            macros[f"Tab{name}{split.title()}{short}"] = Number(row[gap], se[gap])
        macros[f"Tab{name}{split.title()}LogPx"] = Number(row.log_px, se.log_px)
    macros[f"Cremer{name}Approx"] = theirs.loc["approximation_gap", "ffg" if model == "diagonal" else "planar"]
    macros[f"Cremer{name}Amort"] = theirs.loc["amortization_gap", "ffg" if model == "diagonal" else "planar"]
macros["TabPoints"] = int(gap_table.groupby(["model", "split"]).size().min())
macros["TabAisSteps"], macros["TabAisChains"] = int(gap_table.ais_steps.iloc[0]), int(gap_table.ais_chains.iloc[0])
macros["TabElboSamples"], macros["TabIwaeSamples"] = int(gap_table.elbo_samples.iloc[0]), int(gap_table.iwae_samples.iloc[0])
macros["TabMaxSe"] = gap_sem.max().max()
flow_model = gap_table[gap_table.model == "planar"]
ffg_start_won = 100.0 * (flow_model.flow_start == "ffg_qstar")
macros["TabFlowStartFfgShare"] = Number(ffg_start_won.mean(), ffg_start_won.sem(), digits=0)
# Which start wins a non-convex fit, and by how much, is chaotic in the last bits (0.07 nats of spread
# across numeric modes at the notebook's default size): shown to the nat.
macros["TabFlowEncoderStartLoss"] = paired(flow_model.elbo_optimal_flow, flow_model.elbo_optimal_flow_from_encoder, digits=0)
test = gap_table[gap_table.split == "test"]
for model, name in (("diagonal", "TabFlowGainFfgModel"), ("planar", "TabFfgLossFlowModel")):
    macros[name] = paired(test[test.model == model].elbo_optimal_flow, test[test.model == model].elbo_optimal_ffg)
macros["TabAisMinusIwae"] = paired(gap_table.log_px, gap_table.log_px_iwae)

# %% [markdown]
# ## Experiment 2: encoder width and depth, jointly trained and against a frozen decoder
#
# For the frozen decoder, $\log p(x)$ and $\mathcal{L}[q^*]$ of every image are the reference
# model's (from the gap table, FFG family), so only $\mathcal{L}[q]$ varies with the encoder.

# %%
reference = gap_table[gap_table.model == "diagonal"][["split", "datapoint", "log_px", "elbo_optimal_ffg"]]
frozen = frozen.merge(reference, on=["split", "datapoint"], how="left", validate="many_to_one")
if frozen.log_px.isna().any():
    raise ValueError("frozen-decoder images without a reference decomposition: evaluate as many points as the gap table")
frozen["approximation_gap"] = frozen.log_px - frozen.elbo_optimal_ffg
frozen["amortization_gap"] = frozen.elbo_optimal_ffg - frozen.elbo_amortized
frozen["inference_gap"] = frozen.log_px - frozen.elbo_amortized
depth_width = frozen.groupby("width").depth.nunique().idxmax()
sweep_depth = 2


def seed_summary(rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean, CI half-width and standard error over seeds of each seed's mean gap, per ``by`` group and gap."""
    per_seed = rows.groupby(by + ["seed"])[GAPS].mean().reset_index()
    long = per_seed.melt(id_vars=by + ["seed"], value_vars=GAPS, var_name="gap", value_name="nats")
    out = long.groupby(by + ["gap"]).nats.apply(
        lambda v: pd.Series([*mean_ci(v), mean_se(v)[1]], index=["mean", "ci", "se"])).unstack()
    return out.reset_index()


widths_summary = pd.concat([
    seed_summary(sweep, ["split", "width"]).assign(variant="joint training"),
    seed_summary(frozen[frozen.depth == sweep_depth], ["split", "width"]).assign(variant="frozen decoder"),
])  # fmt: skip
widths_summary["gap"] = widths_summary.gap.map(plots.GAP_LABELS)
fig = plots.sweep_gaps(widths_summary[widths_summary.split == "test"])
plots.save(fig, root / figure_dir / "width_sweeps")
print(widths_summary.pivot_table(index=["split", "width"], columns=["variant", "gap"], values="mean").round(2).to_string())

# %%
depth_summary = seed_summary(frozen[frozen.width == depth_width], ["split", "depth"])
depth_summary = depth_summary[depth_summary.gap == "amortization_gap"]
fig = plots.depth_gaps(depth_summary)
plots.save(fig, root / figure_dir / "depth_sweep")
print(depth_summary.round(2).to_string(index=False))


# %%
def cell(rows: pd.DataFrame, variant: str, gap: str, width: int) -> str:
    row = rows[(rows.variant == variant) & (rows.gap == plots.GAP_LABELS[gap]) & (rows.width == width)].iloc[0]
    return f"{row['mean']:.2f}" if pd.isna(row.ci) else f"{row['mean']:.2f} $\\pm$ {row.ci:.2f}"


test_rows = widths_summary[widths_summary.split == "test"]
all_widths = sorted(test_rows.width.unique())
sweep_table = pd.DataFrame({
    "joint: approx.": [cell(test_rows, "joint training", "approximation_gap", w) if w in widths else "--" for w in all_widths],
    "joint: amort.": [cell(test_rows, "joint training", "amortization_gap", w) if w in widths else "--" for w in all_widths],
    "joint: inference": [cell(test_rows, "joint training", "inference_gap", w) if w in widths else "--" for w in all_widths],
    "frozen: amort.": [cell(test_rows, "frozen decoder", "amortization_gap", w) for w in all_widths],
}, index=pd.Index(all_widths, name="width"))  # fmt: skip
print(report.write_table(root / generated_dir / "sweep_table.tex", sweep_table))


# %%
def endpoint(variant: str, split: str, gap: str, width: int) -> pd.Series:
    rows = widths_summary
    return rows[(rows.variant == variant) & (rows.split == split) & (rows.gap == plots.GAP_LABELS[gap])
                & (rows.width == width)].iloc[0]  # fmt: skip


def trend(narrow: pd.Series, wide: pd.Series) -> str:
    """'shrinks' only when the confidence intervals separate; otherwise say what the means do."""
    separated = wide["mean"] + wide.ci < narrow["mean"] - narrow.ci if not pd.isna(wide.ci) else False
    if separated:
        return "shrinks"
    return "does not shrink significantly" if wide["mean"] < narrow["mean"] else "does not shrink"


frozen_widths = sorted(int(w) for w in frozen.width[frozen.depth == sweep_depth].unique())
reported = [("test", "amortization_gap", True), ("train", "amortization_gap", False),
            ("test", "approximation_gap", False), ("test", "inference_gap", False)]  # (split, gap, with CI)
short = {"amortization_gap": "Amort", "approximation_gap": "Approx", "inference_gap": "Inference"}
for variant, name, ws in (("joint training", "Joint", widths), ("frozen decoder", "Frozen", frozen_widths)):
    narrow, wide = min(ws), max(ws)
    for split, gap, with_ci in reported[: 4 if name == "Joint" else 2]:
        for label, w in (("Narrow", narrow), ("Wide", wide)):
            row = endpoint(variant, split, gap, w)
            macros[f"{name}{split.title()}{short[gap]}{label}"] = Number(row["mean"], row.se)
            if with_ci:
                macros[f"{name}{split.title()}{short[gap]}{label}Ci"] = row.ci if not pd.isna(row.ci) else "n/a"
    macros[f"{name}NarrowWidth"], macros[f"{name}WideWidth"] = narrow, wide
    macros[f"{name}NumWidths"] = len(ws)
    macros[f"{name}Trend"] = trend(endpoint(variant, "test", "amortization_gap", narrow),
                                   endpoint(variant, "test", "amortization_gap", wide))
joint_log_px = sweep[sweep.split == "test"].groupby(["width", "seed"]).log_px.mean().groupby("width").apply(mean_se)
macros["JointTestLogPxNarrow"], macros["JointTestLogPxWide"] = (Number(*joint_log_px[w]) for w in (min(widths), max(widths)))
macros["JointNumSeeds"], macros["FrozenNumSeeds"] = len(seeds), len(frozen_seeds)
macros["JointPointsPerSplit"] = int(sweep.groupby(["width", "seed", "split"]).size().min())
macros["JointEpochs"], macros["FrozenEpochs"] = int(sweep.epochs.iloc[0]), int(frozen.epochs.iloc[0])
depth_test = depth_summary[depth_summary.split == "test"].set_index("depth")
macros["DepthTestAmortShallow"] = Number(depth_test["mean"].iloc[0], depth_test.se.iloc[0])
macros["DepthTestAmortDeep"] = Number(depth_test["mean"].iloc[-1], depth_test.se.iloc[-1])
macros["DepthWidth"] = int(depth_width)
macros["DepthShallow"], macros["DepthDeep"] = int(depth_summary.depth.min()), int(depth_summary.depth.max())

# %% [markdown]
# Per-datapoint distributions of the jointly trained sweep: means hide the spread.

# %%
fig = plots.gap_distributions(sweep)
plots.save(fig, root / figure_dir / "gap_distributions")

# %%
fig = plots.elbo_scatter(sweep[sweep.split == "test"])
plots.save(fig, root / figure_dir / "elbo_scatter")

# %% [markdown]
# ## Experiment 3: refinement, plain VI, and what each costs

# %%
qstar = optimum[optimum.init == "encoder"].set_index("datapoint").elbo
curves["gap"] = curves.datapoint.map(qstar) - curves.elbo
optimum["gap"] = optimum.datapoint.map(qstar) - optimum.elbo
curve = curves.groupby(["init", "steps"]).agg(gap=("gap", "mean"), gap_sem=("gap", "sem"),
                                              seconds=("seconds_per_point", "first")).reset_index()  # fmt: skip
best = optimum.groupby("init").agg(gap=("gap", "mean"), gap_sem=("gap", "sem"), seconds=("seconds_per_point", "first"),
                                   steps=("steps", "mean"), steps_sem=("steps", "sem")).reset_index()  # fmt: skip
fig = plots.refinement(curve, best)
plots.save(fig, root / figure_dir / "refinement")
print(curve.pivot(index="steps", columns="init", values="gap").round(2).to_string())

# %%
encoder = curve[curve.init == "encoder"].set_index("steps")
prior = curve[curve.init == "prior"].set_index("steps")
start_gap = encoder.gap.loc[0]
halved = encoder[encoder.gap <= start_gap / 2]
matched = prior[prior.gap <= start_gap]
macros.update({
    "RefPoints": int(curves.datapoint.nunique()),
    "RefMaxSteps": int(curve.steps.max()),
    "RefStartGap": Number(start_gap, encoder.gap_sem.loc[0]),
    "RefHalfSteps": int(halved.index.min()) if len(halved) else "more than the largest k",
    "RefGapAfterMax": Number(encoder.gap.iloc[-1], encoder.gap_sem.iloc[-1]),
    "RefPriorStepsToMatch": int(matched.index.min()) if len(matched) else f"more than {int(prior.index.max())}",
    **{name: Number(best.set_index("init").steps[init], best.set_index("init").steps_sem[init], digits=0)
       for name, init in (("RefQstarSteps", "encoder"), ("RefPriorQstarSteps", "prior"))},
    "RefPriorQstarGap": Number(best.set_index("init").gap["prior"], best.set_index("init").gap_sem["prior"]),
})
print(report.macros({k: v for k, v in macros.items() if k.startswith("Ref")}))

# %% [markdown]
# Seconds per datapoint depend on the machine; they go into the paper's figure and text as measured
# by this run, and are not compared by the regression tests.

# %%
# NBVAL_IGNORE_OUTPUT
seconds = {
    "RefEncoderMs": encoder.seconds.loc[0] * 1e3,
    "RefHalfMs": encoder.seconds.loc[halved.index.min()] * 1e3 if len(halved) else float("nan"),
    "RefQstarMs": best.set_index("init").seconds["encoder"] * 1e3,
    "RefPriorQstarMs": best.set_index("init").seconds["prior"] * 1e3,
}
macros.update({k: Number(v, digits=report.significant_digits(v, 3)) for k, v in seconds.items()})
print(seconds)

# %% [markdown]
# ## Experiment 4: is $\log p(x)$ trustworthy?

# %%
tolerance = 0.1
candidates = certification.drop(index="sandwich")
fig = plots.certification(candidates, tolerance)
plots.save(fig, root / figure_dir / "certification")
print(certification[["error_nats", "error_se", "evaluations"]].round(3).to_string())

# %%
used = certify.estimator_name(AISConfig(steps=int(sweep.ais_steps.iloc[0]), chains=int(sweep.ais_chains.iloc[0])))
cheapest = certify.cheapest_within(certification, tolerance)
macros.update({
    "CertPoints": certified_points,
    "CertReference": certification.reference.iloc[0].replace("_", " ").replace("ais", "AIS"),
    "CertSandwich": Number(certification.loc["sandwich", "error_nats"], certification.loc["sandwich", "error_se"], digits=3),
    "CertSandwichSe": Number(certification.loc["sandwich", "error_se"], digits=3),
    "CertSandwichBound": abs(certification.loc["sandwich", "error_nats"]) + 2 * certification.loc["sandwich", "error_se"],
    "CertUsed": used.replace("_", " ").replace("ais", "AIS"),
    "CertUsedError": Number(*certification.loc[used, ["error_nats", "error_se"]]) if used in certification.index else "n/a",
    "CertUsedErrorSe": certification.loc[used, "error_se"] if used in certification.index else "n/a",
    "CertUsedEvaluations": int(certification.loc[used, "evaluations"]) if used in certification.index else "n/a",
    "CertCheapest": cheapest.replace("_", " ").replace("ais", "AIS").replace("iwae", "IWAE") if cheapest else "none",
    "CertCheapestEvaluations": int(certification.loc[cheapest, "evaluations"]) if cheapest else "n/a",
    "CertFewerThanCremer": int(100 * 10_000 * 10 / certification.loc[cheapest, "evaluations"]) if cheapest else "n/a",
    "CertIwaeError": Number(*candidates[candidates.index.str.startswith("iwae")][["error_nats", "error_se"]].iloc[-1]),
    "CertIwaeName": candidates[candidates.index.str.startswith("iwae")].index[-1].replace("iwae_", "IWAE "),
})

# %% [markdown]
# ## Numbers for the paper

# %%
report.write_macros(root / generated_dir / "results.tex", macros)
# Shown as written, except the numbers of the planar-flow model and its fits (a name with "Flow"),
# which are shown to the nat for the reason given under the gap table, and TabFlowEncoderStartLoss,
# an average of differences between two non-convex fits that moved from 1.4 to 1.7 nats across
# numeric modes at these defaults, astride a rounding boundary even to the nat (03a shows how often
# the encoder start won).
print(report.macros({k: report.with_digits(v, 0) if "Flow" in k else v for k, v in macros.items()
                     if k != "TabFlowEncoderStartLoss"}))
