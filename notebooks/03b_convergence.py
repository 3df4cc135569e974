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
# # 3b. Experiments: do the gaps settle as the model trains on?
#
# **Question.** Does the amortization gap grow or shrink as a model trains past its validation
# optimum, on training and on test images? A gap measured on a model that is still changing
# describes the training budget, not the model. The campaign's first FFG run under Cremer et al.'s
# schedule kept its weights at log-spaced epochs; here each snapshot after the KL warm-up is
# decomposed on the same random training and test images, with the gap table's estimators and
# settings. Cremer et al. (2018, Fig. 4) followed the gaps over training on 20 images; these are
# more images, and both splits.
#
# The settings were validated on the run's epoch-3280 model (chapter 3g); on the earlier snapshots
# they were not, and their $\log \hat p(x)$ may be off by what the validation found for the
# early-stopped model. The longer check's end (epoch 5467) is not among the snapshots: its weights
# were not kept.

# %% tags=["parameters"]
root = ".."  # the project folder, seen from the kernel's (the pipeline passes its own)
run_dir = "tests/fixtures/campaign/models"
run = "diagonal_cremer_s0"  # the campaign run whose snapshots are decomposed
epochs = [1, 40]  # its snapshots (train.snapshots/e<epoch>.pt)
binarization = "static"
split_seed = 0
num_points = 6
subset_seed = 0
decompose = {"elbo_samples": 100, "iwae_samples": 0, "seed": 0, "ais": {"steps": 20, "chains": 4},
             "qstar": {"max_steps": 200, "num_samples": 10}}
workers = 1
published_path = "paper/published/cremer2018_table2.csv"
parts_dir = "build/tiny/parts/convergence"  # each finished task's rows (amortgap.parts), so that a rerun resumes
table_dir = "build/tiny/results/convergence"
figure_dir = "build/tiny/figures/convergence"
generated_dir = "build/tiny/generated"

# %%
from pathlib import Path

import pandas as pd

from amortgap import data, gaps, parts, plots, report
from amortgap.parallel import run_tasks
from amortgap.study import convergence

root = Path(root)
plots.theme()
out = root / table_dir
out.mkdir(parents=True, exist_ok=True)

# %%
splits = {"train": data.binarize(data.load("train", split_seed=split_seed).x, binarization),
          "test": data.load_binarized("test", binarization)}
rows = {split: data.random_subset(len(x), num_points, subset_seed) for split, x in splits.items()}
points = {split: splits[split][rows[split]] for split in splits}
paths = {epoch: root / run_dir / run / "train.snapshots" / f"e{epoch}.pt" for epoch in epochs}
missing = [str(p) for p in paths.values() if not p.is_file()]
if missing:
    raise FileNotFoundError(f"snapshots not found: {missing}")
config = gaps.DecomposeConfig.from_section(decompose)
for split, index in rows.items():
    print(f"{split}: {len(index)} random images, e.g. rows {index[:5].tolist()}")
print(f"{run}, epochs {epochs}; {config}")

# %% [markdown]
# Each (epoch, split) is one task; `workers` single-thread processes share them, and a finished
# task's rows are kept under `parts_dir`, so that a run cut short goes on from them.

# %%
keys = [(epoch, split) for epoch in epochs for split in points]
tables = run_tasks(parts.kept, [(root / parts_dir, f"e{epoch}_{split}", gaps.decompose_checkpoint, paths[epoch],
                                 points[split], config) for epoch, split in keys], workers, desc="snapshots")
table = pd.concat([t.assign(split=split, epoch=epoch, image=rows[split].numpy()) for (epoch, split), t in zip(keys, tables)],
                  ignore_index=True)
table.to_csv(out / "gaps.csv", index=False, float_format="%.6f")
summary = convergence.summary(table)
print(summary.pivot(index="epoch", columns=["split", "quantity"], values="mean").round(2).to_string())

# %% [markdown]
# The three gaps against the epoch (log scale), with 95% intervals over the images, on each split;
# on training images the dashed lines are Cremer et al.'s Fashion-MNIST gaps for their FFG model
# (their Table 2, on training images).

# %%
published = pd.read_csv(root / published_path).pivot(index="quantity", columns="model", values="nats")["ffg"]
theirs = {"approximation_gap": published.log_px - published.elbo_optimal_ffg,
          "amortization_gap": published.elbo_optimal_ffg - published.elbo_amortized}
for split in ("train", "test"):
    fig = plots.gaps_over_training(summary[summary.split == split], theirs if split == "train" else None)
    fig.axes[0].set_title(f"{split}ing images" if split == "train" else "test images")
    plots.save(fig, root / figure_dir / f"gaps_over_training_{split}")

# %% [markdown]
# ## Numbers for the paper
#
# Read back from the table as written (`results/convergence`).

# %%
numbers = convergence.numbers(**convergence.load(out))
report.write_macros(root / generated_dir / "convergence.tex", numbers)
print(report.macros(report.stable_view(numbers)))

# %% [markdown]
# ## What the numbers say

# %%
# Prose composed from this notebook's numbers, each printed at the precision at which the cells above
# print it for the regression tests (interval bounds to one decimal), so that it is compared too.
first, last = epochs[0], epochs[-1]
sentences = []
for split in ("train", "test"):
    moved = convergence.change(table, split, "amortization_gap", first, last)
    sentences.append(f"on {split} images it {convergence.direction(moved)} from epoch {first} to {last} "
                     f"(paired change {moved.format(2, bound_digits=1)} nats)")
report.conclude(f"On the same {num_points} random images of each split, the amortization gap: " + "; ".join(sentences) + ".")
