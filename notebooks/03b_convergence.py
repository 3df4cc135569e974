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
#
# **A control.** Cremer et al. trained at batch size 20 in one of their scripts, we at 100. A control
# run trains the same schedule at batch 20 for its first `control_epoch` epochs; it is decomposed on
# the same images at that epoch and compared, image by image, with the run's snapshot there.

# %% tags=["parameters"]
root = ".."  # the project folder, seen from the kernel's (the pipeline passes its own)
run_dir = "tests/fixtures/campaign/models"
run = "diagonal_cremer_s0"  # the campaign run whose snapshots are decomposed
epochs = [1, 40]  # its snapshots (train.snapshots/e<epoch>.pt)
campaign_params = "tests/fixtures/campaign/params.yaml"  # whose `campaign` section says how each run trained
control_run = "diagonal_batch20_s0"  # a run that differs from `run` in one training setting
control_epoch = 40  # its snapshot, compared with `run`'s at the same epoch (one of `epochs`)
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

from amortgap import campaign, data, gaps, parts, plots, report
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
paths = {(run, epoch): root / run_dir / run / "train.snapshots" / f"e{epoch}.pt" for epoch in epochs}
paths[control_run, control_epoch] = root / run_dir / control_run / "train.snapshots" / f"e{control_epoch}.pt"
missing = [str(p) for p in paths.values() if not p.is_file()]
if missing:
    raise FileNotFoundError(f"snapshots not found: {missing}")
if control_epoch not in epochs:
    raise ValueError(f"control_epoch {control_epoch} must be one of the run's epochs {epochs}, to pair with it")
config = gaps.DecomposeConfig.from_section(decompose)
for split, index in rows.items():
    print(f"{split}: {len(index)} random images, e.g. rows {index[:5].tolist()}")
print(f"{run}, epochs {epochs}; {config}")
differences = convergence.protocol_differences(campaign.load_config(root / campaign_params), run, control_run)
print(f"the control {control_run} at epoch {control_epoch} differs from {run} in", differences)
if "batch_size" not in differences or set(differences) - {"batch_size", "epochs", "snapshot_epochs"}:
    raise ValueError(f"{control_run} is to be the batch-size control of {run}: it must differ in the batch size and in "
                     f"nothing else but its length and snapshots, not in {sorted(differences)}")

# %% [markdown]
# Each (snapshot, split) is one task; `workers` single-thread processes share them, and a finished
# task's rows are kept under `parts_dir`, so that a run cut short goes on from them.

# %%
keys = [(name, epoch, split) for name, epoch in paths for split in points]
tables = run_tasks(parts.kept, [(root / parts_dir, f"e{epoch}_{split}" if name == run else f"{name}_e{epoch}_{split}",
                                 gaps.decompose_checkpoint, paths[name, epoch], points[split], config)
                                for name, epoch, split in keys], workers, desc="snapshots")  # fmt: skip
found = pd.concat([t.assign(run=name, split=split, epoch=epoch, image=rows[split].numpy())
                   for (name, epoch, split), t in zip(keys, tables)], ignore_index=True)
table = found[found.run == run].drop(columns="run")
table.to_csv(out / "gaps.csv", index=False, float_format="%.6f")
control = found[found.run == control_run].assign(batch_size=differences["batch_size"][1])
control.to_csv(out / "control.csv", index=False, float_format="%.6f")
print(f"at epoch {control_epoch}, batch {differences['batch_size'][1]} (control) against {differences['batch_size'][0]}:")
print(pd.concat({name: t[t.epoch == control_epoch].groupby("split")[["log_px", "approximation_gap", "amortization_gap"]].mean()
                 for name, t in (("run", table), ("control", control))}).round(2).to_string())
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
for split, title in (("train", "training images"), ("test", "test images")):
    fig = plots.gaps_over_training(summary[summary.split == split], theirs if split == "train" else None)
    fig.axes[0].set_title(title)
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
control_amort = convergence.control_change(table, control, "train", "amortization_gap")
report.conclude(f"On the same {num_points} random images of each split, the amortization gap: " + "; ".join(sentences) + ". "
                f"At epoch {control_epoch}, training at batch {differences['batch_size'][1]} instead of "
                f"{differences['batch_size'][0]} changes it on training images by {control_amort.format(2, bound_digits=1)} nats.")
