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
# # 3a. Experiments: the gap table, two families, two splits
#
# **Question.** How large are the approximation and amortization gaps of a converged VAE on
# Fashion-MNIST, on the images it was trained on and on new ones, and how much does a richer
# encoder family change them?
#
# **Protocol** (the form of Cremer et al. 2018, Table 2). Two reference models from the model-setup
# notebook share architecture, data and schedule and differ only in the encoder's family: a fully
# factorised Gaussian (FFG) and a planar flow; each was trained from three seeds. Each model is
# evaluated under *both* families on a random, seeded subset of training images (the encoder has
# seen them) and of test images (it has not), the same images for every seed, per datapoint:
#
# - $\log p(x)$: AIS with HMC started at the FFG $q^*$ (a planar flow has no closed-form density
#   away from its own samples, so it cannot start AIS);
# - $\mathcal{L}[q^*_{\text{FFG}}]$ and $\mathcal{L}[q^*_{\text{flow}}]$: per-datapoint optima in each
#   family (the flow's, the costliest fit, on a nested random subset of `flow_points` images). The
#   FFG $q^*$ starts from the encoder where its $q$ is an FFG, else from the prior. A
#   flow's ELBO is not concave in its parameters, so the flow $q^*$ is the better of two starts:
#   the encoder's $q$ (an FFG is a flow with $u = 0$) and the FFG $q^*$ with identity layers;
# - $\mathcal{L}[q]$: the model's own encoder.
#
# The approximation gap of a model is measured in the family of its own encoder:
# $\log p(x) - \mathcal{L}[q^*_{\text{own}}]$, and the amortization gap is
# $\mathcal{L}[q^*_{\text{own}}] - \mathcal{L}[q]$. Every mean comes with a 95% interval over seeds
# *and* images (a two-way random-effects model; `amortgap.stats.crossed_interval`). The table also
# splits each ELBO into its reconstruction and KL terms, and scores the decoded posterior mean's
# pixel accuracy; and it measures how many latent units each model uses.

# %% tags=["parameters"]
root = ".."  # the project folder, seen from the kernel's (the pipeline passes its own)
model_dir = "build/tiny/models"
seeds = [0, 1]
binarization = "static"
split_seed = 0
num_points = 8
flow_points = 4
subset_seed = 0
decompose = {"elbo_samples": 100, "iwae_samples": 100, "seed": 0, "ais": {"steps": 20, "chains": 4},
             "qstar": {"max_steps": 200, "num_samples": 10}}
whole_test_samples = 10
units_points = 500
workers = 1
recon_images = 6
refine_steps = 20
published_path = "paper/published/cremer2018_table2.csv"
parts_dir = "build/tiny/parts/gap_table"  # each finished task's rows (amortgap.parts), so that a rerun resumes
table_dir = "build/tiny/results/gap_table"
figure_dir = "build/tiny/figures/gap_table"
generated_dir = "build/tiny/generated"

# %%
from pathlib import Path

import pandas as pd
import torch

from amortgap import bounds, data, gaps, latents, models, parts, plots, report
from amortgap.study import gap_table
from amortgap.qstar import optimal_q, refine
from amortgap.parallel import run_tasks
from amortgap.stats import crossed_interval

root = Path(root)
plots.theme()
out = root / table_dir
out.mkdir(parents=True, exist_ok=True)

# %%
splits = {"train": data.binarize(data.load("train", split_seed=split_seed).x, binarization),
          "test": data.load_binarized("test", binarization)}
rows = {split: data.random_subset(len(x), num_points, subset_seed) for split, x in splits.items()}
points = {split: splits[split][rows[split]] for split in splits}
# the flow q* (the costliest fit) on a nested random subset: the same seed's first `flow_points` draws
flow_rows = {split: torch.isin(rows[split], data.random_subset(len(x), flow_points, subset_seed))
             for split, x in splits.items()}
for split, index in rows.items():
    print(f"{split}: {len(index)} random images (flow q* on {int(flow_rows[split].sum())}), e.g. rows {index[:5].tolist()}")
config = gaps.DecomposeConfig.from_section(decompose)
print(config)
paths = {(family, seed): root / model_dir / f"reference_{family}_s{seed}.pt" for family in ("diagonal", "planar")
         for seed in seeds}

# %% [markdown]
# Each (model, seed, split) is one task; `workers` single-thread processes share them. A finished
# task's rows are kept under `parts_dir`, committed with the stage's outputs, so that a run cut short
# goes on from them, in this working stretch or the next.

# %%
keys = [(family, seed, split) for (family, seed) in paths for split in points]
tables = run_tasks(parts.kept, [(root / parts_dir, f"{f}_s{s}_{split}", gap_table.evaluate_checkpoint, paths[f, s],
                                 points[split], config, flow_rows[split], refine_steps) for f, s, split in keys],
                   workers, desc="gap-table tasks")  # fmt: skip
for (family, seed, split), table in zip(keys, tables):
    table.insert(0, "image", rows[split].numpy())
    table.insert(0, "split", split)
    table.insert(0, "seed", seed)
    table.insert(0, "model", family)
    table.to_csv(out / f"{family}_s{seed}_{split}.csv", index=False, float_format="%.6f")
table = pd.concat(tables, ignore_index=True)

# %% [markdown]
# ## The gap table: means over seeds and images, with 95% intervals

# %%
columns = ["log_px", "elbo_optimal_flow", "elbo_optimal_ffg", "elbo_amortized",
           "approximation_gap", "amortization_gap", "inference_gap"]
intervals = {(model, split, column): crossed_interval(group.dropna(subset=[column]).pivot(
                 index="seed", columns="image", values=column).to_numpy())
             for (model, split), group in table.groupby(["model", "split"]) for column in columns}
summary = pd.DataFrame([{"model": m, "split": sp, "quantity": c, "mean": i.mean, "low": i.low, "high": i.high}
                        for (m, sp, c), i in intervals.items()])
summary.to_csv(out / "summary.csv", index=False, float_format="%.6f")
means = summary.pivot(index="quantity", columns=["model", "split"], values="mean").loc[columns]
# (the FFG model's flow q*, a non-concave fit on a few images at this notebook's defaults, moved by a
# last digit across numeric modes: it is printed with the planar model's numbers below)
print(means["diagonal"].drop(index="elbo_optimal_flow").round(2).to_string())

# %%
# NBVAL_IGNORE_OUTPUT
# The planar-flow model's numbers: at this notebook's defaults (4 epochs) its training amplifies the
# last bits in which CPUs differ, and they moved by up to 2 nats across numeric modes (`make modes`),
# so no printed precision would hold on another machine; the regression tests skip this cell.
print(means["planar"].round(2).to_string())
print(means.loc["elbo_optimal_flow"].round(2).to_string())

# %% [markdown]
# ## Where the amortization gap comes from: reconstruction or KL
#
# For the diagonal model, $\mathcal{L}[q^*] - \mathcal{L}[q]$ splits into what $q^*$ gains in
# reconstruction, $E_{q^*}[\log p(x|z)] - E_q[\log p(x|z)]$, and what it saves in KL,
# $\mathrm{KL}(q\,\|\,p(z)) - \mathrm{KL}(q^*\|\,p(z))$; the pixel accuracy of the decoded
# posterior mean says how much of it a reader would see. The middle rows are for $q$ refined by
# `refine_steps` gradient steps from the encoder.

# %%
ffg = table[table.model == "diagonal"].assign(
    amortization_gap_reconstruction=lambda t: t.reconstruction_optimal - t.reconstruction_amortized,
    amortization_gap_kl=lambda t: t.kl_amortized - t.kl_optimal)
parts = ["reconstruction_amortized", "kl_amortized", "accuracy_amortized",
         "reconstruction_refined", "kl_refined", "accuracy_refined",
         "reconstruction_optimal", "kl_optimal", "accuracy_optimal_ffg",
         "amortization_gap_reconstruction", "amortization_gap_kl"]
part_intervals = pd.DataFrame([{"split": split, "quantity": c,
                                **vars(crossed_interval(g.pivot(index="seed", columns="image", values=c).to_numpy()))}
                               for split, g in ffg.groupby("split") for c in parts])
part_intervals.to_csv(out / "parts.csv", index=False, float_format="%.6f")
print(part_intervals.pivot(index="quantity", columns="split", values="mean").loc[parts].round(2).to_string())


# %% [markdown]
# ## How many latent units each model uses, and L[q] on the whole test set
#
# (`units_points` test images: all 10,000 at paper scale.)

# %%
def usage(family: str, seed: int) -> dict:
    model = models.load(paths[family, seed])
    activity = latents.unit_activity(model, units_x)
    whole = bounds.elbo(model, units_x, num_samples=whole_test_samples)
    row = {"model": family, "seed": seed, "active_units": latents.active_units(activity),
           "elbo_amortized_whole_test": whole.value.mean().item()}
    if family == "diagonal":
        kl = latents.kl_per_dimension(model, units_x)
        row["kl_top10_share"] = (kl.sort(descending=True).values[:10].sum() / kl.sum()).item()
        pd.DataFrame({"seed": seed, "dimension": range(len(kl)), "kl": kl.numpy(), "activity": activity.numpy()}
                     ).to_csv(out / f"latents_{family}_s{seed}.csv", index=False, float_format="%.6f")
    return row


units_x = splits["test"][:units_points]  # the whole test set at paper scale
torch.manual_seed(0)
units = pd.DataFrame([usage(family, seed) for family, seed in paths])
units.to_csv(out / "units.csv", index=False, float_format="%.6f")
print(units[units.model == "diagonal"].round(2).to_string(index=False))

# %%
# NBVAL_IGNORE_OUTPUT
# The planar-flow model's numbers: at this notebook's defaults (4 epochs) its training amplifies the
# last bits in which CPUs differ, and they moved by up to 2 nats across numeric modes (`make modes`),
# so no printed precision would hold on another machine; the regression tests skip this cell.
print(units[units.model == "planar"].round(2).to_string(index=False))

# %% [markdown]
# ## What the gaps look like: reconstructions
#
# Random test images (top row) and the decoded posterior mean of the first seed's diagonal model
# under the encoder's $q$, under $q$ refined by `refine_steps` gradient steps, and under $q^*$.

# %%
model = models.load(paths["diagonal", seeds[0]])
shown_x = points["test"][:recon_images]
with torch.no_grad():
    methods = {"encoder q": model.encode(shown_x)}
torch.manual_seed(0)
methods[f"refined, {refine_steps} steps"] = refine(model, shown_x, refine_steps).q
methods["q*"] = optimal_q(model, shown_x, config=config.qstar).q
images = {"image": shown_x.numpy()}
for name, q in methods.items():
    images[name] = model.mean_image(latents.posterior_mean(q)).detach().numpy()
    print(f"{name}: pixel accuracy {latents.pixel_accuracy(model, shown_x, q).mean():.3f}")
fig = plots.reconstructions(images)
plots.save(fig, root / figure_dir / "reconstructions")

# %% [markdown]
# ## The table and the numbers for the paper
#
# Read back from the tables as written, so that every number in the paper is one a reader can
# recompute from `results/gap_table`. Cremer et al.'s Fashion-MNIST columns stand beside ours (their
# bounds as published, their gaps derived from them; their numbers are on training images, binarized
# dynamically, from another split, and their models trained longer).

# %%
written = gap_table.load(out, seeds)
published = pd.read_csv(root / published_path)
paper_table = gap_table.table(written["rows"], published)
report.write_table(root / generated_dir / "decomposition_table.tex", paper_table)
numbers = gap_table.numbers(written["rows"], written["parts"], written["units"], published)
report.write_macros(root / generated_dir / "gap_table.tex", numbers)
# (the FFG model's flow q*, a non-concave fit on a few images at this notebook's defaults, moved by a
# last digit across numeric modes; the table written for the paper keeps it)
print(paper_table.drop(index=gap_table.QUANTITIES["elbo_optimal_flow"])[
    ["FFG train", "FFG test", "Cremer FFG train", "Cremer flow train"]].to_string())
# the planar-flow model's numbers are written for the paper but not printed: see the cells above
print(report.macros(report.stable_view(numbers, unstable=("Flow", "TabLogPxSe"))))

# %% [markdown]
# ## What the numbers say

# %%
# Prose composed from this notebook's numbers, each printed at the precision at which the cells above
# print it for the regression tests (interval bounds to one decimal), so that it is compared too.
def said(model: str, split: str, quantity: str) -> str:
    return intervals[(model, split, quantity)].format(2, bound_digits=1)


amortization = {split: intervals[("diagonal", split, "amortization_gap")] for split in ("train", "test")}
apart = amortization["train"].high < amortization["test"].low or amortization["test"].high < amortization["train"].low
test_parts = part_intervals[part_intervals.split == "test"].set_index("quantity")["mean"]
larger_part = ("reconstruction" if test_parts["amortization_gap_reconstruction"] > test_parts["amortization_gap_kl"]
               else "KL")
report.conclude(
    f"On {num_points} random test images and {len(seeds)} seeds (95% intervals over both), the FFG model's "
    f"**amortization gap is {said('diagonal', 'test', 'amortization_gap')} nats** and its **approximation gap "
    f"{said('diagonal', 'test', 'approximation_gap')}**. On as many random training images the amortization gap is "
    f"{said('diagonal', 'train', 'amortization_gap')}: "
    + (f"{'smaller' if amortization['train'].mean < amortization['test'].mean else 'larger'} than on test images, with "
       "the intervals apart. " if apart else "the intervals overlap, so these images do not separate the splits. ")
    + f"Split into its parts, the FFG model's amortization gap on test images is {test_parts['amortization_gap_reconstruction']:.2f} nats of reconstruction that q* gains "
    f"and {test_parts['amortization_gap_kl']:.2f} nats of KL that it saves: the encoder's q loses mainly in "
    f"{larger_part}.")

# %%
# NBVAL_IGNORE_OUTPUT
# The planar-flow model's sentence: its numbers at the test defaults are not stable across CPUs.
report.conclude(f"With a planar-flow encoder the approximation gap is {said('planar', 'test', 'approximation_gap')} and "
                f"the amortization gap {said('planar', 'test', 'amortization_gap')}.")
