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
# This notebook only reads the per-datapoint tables that the experiments wrote, one per
# (encoder width, seed), and turns them into the paper's figures, table and numbers. Confidence
# bands are over seeds (each seed's gap first averaged over its datapoints); with a single seed
# they are over datapoints.

# %% tags=["parameters"]
widths = [16, 64]
seeds = [0]
table_dir = "build/tiny/results/gaps"
figure_dir = "build/tiny/figures/results"
generated_dir = "build/tiny/generated"

# %%
import pandas as pd

from amortgap import gaps, plots, report
from amortgap.pipeline import project_root

root = project_root()
plots.theme()
paths = [root / table_dir / f"w{w}_s{s}.csv" for w in widths for s in seeds]
missing = [str(p) for p in paths if not p.exists()]
if missing:
    raise FileNotFoundError(f"run the experiments first; missing tables: {missing}")
table = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
print(f"{len(table)} rows: widths {sorted(table.width.unique().tolist())}, "
      f"seeds {sorted(table.seed.unique().tolist())}, splits {sorted(table.split.unique().tolist())}")

# %% [markdown]
# ## Gaps against encoder width

# %%
headline = gaps.COLUMNS[:6]
by_seed = table.groupby(["split", "width", "seed"])[headline].mean().reset_index()
band_rows = by_seed if by_seed.seed.nunique() > 1 else table
long = band_rows.melt(id_vars=["split", "width"], value_vars=list(plots.GAP_LABELS), var_name="gap", value_name="nats")
long["gap"] = long.gap.map(plots.GAP_LABELS)
fig = plots.gaps_vs_width(long[long.split == "test"])
plots.save(fig, root / figure_dir / "gaps_vs_width");

# %%
summary = by_seed.groupby(["split", "width"])[headline].mean()
print(summary.round(2).to_string())

# %% [markdown]
# ## Per-datapoint distributions
#
# Means hide the spread: the amortization gap of individual images varies by an order of magnitude.

# %%
fig = plots.gap_distributions(table)
plots.save(fig, root / figure_dir / "gap_distributions");

# %%
fig = plots.elbo_scatter(table[table.split == "test"])
plots.save(fig, root / figure_dir / "elbo_scatter");

# %% [markdown]
# ## What closing the gap costs
#
# The encoder spends one forward pass per datapoint. Finding $q^*$ spends `qstar_steps` gradient
# steps of `qstar_samples` decoder evaluations each.

# %%
fig = plots.cost_vs_gap(table[table.split == "test"])
plots.save(fig, root / figure_dir / "cost_vs_gap");
cost = table.groupby("width")[["qstar_evaluations", "amortization_gap"]].mean()
print(cost.round(1).to_string())

# %% [markdown]
# ## Table and numbers for the paper

# %%
test = summary.loc["test"]
paper_table = pd.DataFrame({
    r"$\log p(x)$": test.log_px,
    r"$\mathcal{L}[q^*]$": test.elbo_optimal,
    r"$\mathcal{L}[q]$": test.elbo_amortized,
    "approx.": test.approximation_gap,
    "amort.": test.amortization_gap,
    "inference": test.inference_gap,
})
paper_table.index.name = "width"
print(report.write_table(root / generated_dir / "gap_table.tex", paper_table))

# %%
narrow, wide = min(widths), max(widths)
train_gap = summary.loc["train"].amortization_gap
print(report.write_macros(root / generated_dir / "results.tex", {
    "ResNumWidths": len(widths),
    "ResNumSeeds": len(seeds),
    "ResNarrowWidth": narrow,
    "ResWideWidth": wide,
    "ResPointsPerSplit": int(table.groupby(["width", "seed", "split"]).size().min()),
    "ResTrend": "shrinks" if test.amortization_gap[wide] < test.amortization_gap[narrow] else "does not shrink",
    "ResAmortGapNarrow": test.amortization_gap[narrow],
    "ResAmortGapWide": test.amortization_gap[wide],
    "ResApproxGapNarrow": test.approximation_gap[narrow],
    "ResApproxGapWide": test.approximation_gap[wide],
    "ResTrainAmortGapWide": train_gap[wide],
    "ResLogPxWide": test.log_px[wide],
    "ResQstarEvaluations": int(table.qstar_evaluations.mean()),
    "ResAisSteps": int(table.ais_steps.iloc[0]),
    "ResAisChains": int(table.ais_chains.iloc[0]),
}))
