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
# # 3b. Experiments: do the gaps settle as the model converges?
#
# **Question.** A gap measured on a model that is still improving describes the training budget,
# not the model. The first seed's diagonal reference model was kept at log-spaced epochs
# (1, 3, 10, 30, 100, ... up to where it stopped); here each kept model is decomposed on the same
# random test images, with the same estimators as the gap table. If the gaps settle before the
# model stops, the gap table describes a converged model.

# %% tags=["parameters"]
root = ".."  # the project folder, seen from the kernel's (the pipeline passes its own)
model_dir = "build/tiny/models"
seed = 0
binarization = "static"
num_points = 6
subset_seed = 0
decompose = {"elbo_samples": 100, "iwae_samples": 0, "seed": 0, "ais": {"steps": 20, "chains": 4},
             "qstar": {"max_steps": 200, "num_samples": 10}}
workers = 1
training_summary = "build/tiny/results/training/summary.csv"
published_path = "paper/published/cremer2018_table2.csv"
table_dir = "build/tiny/results/convergence"
figure_dir = "build/tiny/figures/convergence"
generated_dir = "build/tiny/generated"

# %%
import re
from pathlib import Path

import pandas as pd

from amortgap import data, gaps, plots, report
from amortgap.parallel import run_tasks
from amortgap.study import convergence
from amortgap.stats import crossed_interval

root = Path(root)
plots.theme()
out = root / table_dir
out.mkdir(parents=True, exist_ok=True)

# %%
test_x = data.load_binarized("test", binarization)
index = data.random_subset(len(test_x), num_points, subset_seed)
x = test_x[index]
snapshots = {int(re.search(r"_e(\d+)\.pt$", p.name).group(1)): p
             for p in (root / model_dir / "snapshots").glob(f"reference_diagonal_s{seed}_e*.pt")}
training = pd.read_csv(root / training_summary).set_index(["model", "seed"]).loc[("diagonal", seed)]
best_epoch = int(training.best_epoch)
checkpoints = {**{e: snapshots[e] for e in sorted(snapshots) if e < best_epoch},
               best_epoch: root / model_dir / f"reference_diagonal_s{seed}.pt"}
print(f"stopped after {int(training.epochs)} epochs; best (kept) weights from epoch {best_epoch}")
print(f"{len(x)} random test images; models: {list(checkpoints)}")
config = gaps.DecomposeConfig.from_section(decompose)

# %%
tables = run_tasks(gaps.decompose_checkpoint, [(path, x, config) for path in checkpoints.values()], workers,
                   desc="checkpoints")
table = pd.concat([t.assign(epoch=epoch, image=index.numpy()) for epoch, t in zip(checkpoints, tables)],
                  ignore_index=True)
table.to_csv(out / "gaps.csv", index=False, float_format="%.6f")
columns = ["log_px", "elbo_optimal", "elbo_amortized", "approximation_gap", "amortization_gap", "inference_gap"]
summary = pd.DataFrame([{"epoch": epoch, "quantity": c, **vars(crossed_interval(g[[c]].to_numpy().T))}
                        for epoch, g in table.groupby("epoch") for c in columns])
summary.to_csv(out / "summary.csv", index=False, float_format="%.6f")
print(summary.pivot(index="epoch", columns="quantity", values="mean")[columns].round(2).to_string())

# %% [markdown]
# The three gaps against the epoch (log scale), with 95% intervals over the images; the dashed
# lines are Cremer et al.'s Fashion-MNIST gaps for their FFG model (their Table 2; their images
# were dynamically binarized from another split, so only the size of the gaps is comparable).

# %%
published = pd.read_csv(root / published_path).pivot(index="quantity", columns="model", values="nats")["ffg"]
theirs = {"approximation_gap": published.log_px - published.elbo_optimal_ffg,
          "amortization_gap": published.elbo_optimal_ffg - published.elbo_amortized}
fig = plots.gaps_over_training(summary, theirs)
plots.save(fig, root / figure_dir / "gaps_over_training")

# %%
last, before = summary[summary.epoch == best_epoch].set_index("quantity"), summary[summary.epoch < best_epoch]
previous = before[before.epoch == before.epoch.max()].set_index("quantity") if len(before) else last
for gap in ("approximation_gap", "amortization_gap"):
    change = last.loc[gap, "mean"] - previous.loc[gap, "mean"]
    print(f"{gap}: {previous.loc[gap, 'mean']:.2f} at epoch {int(previous.epoch.iloc[0])} -> {last.loc[gap, 'mean']:.2f} "
          f"at epoch {best_epoch} (change {change:+.2f} nats)")

# %% [markdown]
# ## Numbers for the paper
#
# Read back from the tables as written (`results/convergence`).

# %%
numbers = convergence.numbers(**convergence.load(out))
report.write_macros(root / generated_dir / "convergence.tex", numbers)
print(report.macros(report.stable_view(numbers)))

# %% [markdown]
# ## What the numbers say

# %%
# Prose composed from this notebook's numbers, each printed at the precision at which the cells above
# print it for the regression tests (interval bounds to one decimal), so that it is compared too.
epochs_kept = sorted(table.epoch.unique())
previous_epoch = epochs_kept[-2] if len(epochs_kept) > 1 else best_epoch
per_image = table.pivot(index="image", columns="epoch", values="amortization_gap")
change = crossed_interval((per_image[best_epoch] - per_image[previous_epoch]).to_numpy()[None])
first_epoch = epochs_kept[0]
report.conclude(
    f"On the same {len(x)} random test images, the amortization gap is "
    f"{summary.set_index(['epoch', 'quantity']).loc[(first_epoch, 'amortization_gap'), 'mean']:.2f} nats after epoch "
    f"{first_epoch} and {last.loc['amortization_gap', 'mean']:.2f} at the kept epoch {best_epoch}; from epoch "
    f"{previous_epoch} to {best_epoch} it changes by {change.format(2, bound_digits=1)} nats, "
    + ("an interval that excludes zero: the gap was still moving, so a model stopped earlier would report another gap. "
       if change.excludes_zero() else "an interval that includes zero: no resolved change between the last two kept epochs. ")
    + f"Cremer et al.'s FFG model on Fashion-MNIST had an amortization gap of {theirs['amortization_gap']:.2f} and an "
    f"approximation gap of {theirs['approximation_gap']:.2f} nats; ours ends at "
    f"{last.loc['amortization_gap', 'mean']:.2f} and {last.loc['approximation_gap', 'mean']:.2f}.")
