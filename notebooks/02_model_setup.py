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
# # 2. Model setup: data, architecture and the reference VAEs
#
# **Data.** Fashion-MNIST (Xiao et al., 2017): 28x28 grey images of clothing, 60,000 for training
# and 10,000 for testing, read from Debian's `dataset-fashion-mnist` package (nothing is downloaded).
# We hold out a seeded 10,000 of the training images for validation and early stopping. Pixels are
# binarized *statically* at 0.5, as in Cremer et al. (2018); binarization moves log-likelihoods by
# a nat or two, so numbers from dynamically binarized data are not comparable with ours.
#
# **Model.** A VAE with a standard normal prior over $z \in \mathbb{R}^{d}$, a Bernoulli decoder
# $p(x \mid z)$ and a diagonal-Gaussian encoder $q(z \mid x)$, both MLPs with ELU activations; by
# default Cremer et al.'s architecture, encoder 784-200-200-(2x50) and decoder 50-200-200-784.
#
# **Training to convergence.** Adam on the single-sample ELBO with the analytic KL and a linear KL
# warm-up. The learning rate falls by `lr_decay` whenever the validation ELBO has not improved for
# `plateau_patience` epochs, at most `max_decays` times, and a model stops once its smallest rate
# has gone `patience` epochs without improving: it stops because its validation ELBO stopped
# improving, not because a budget ran out (`epochs` is only a cap, and the table below says which
# models reached it). The best weights are kept. Each reference model is trained from three seeds,
# so that every number about it carries the spread between training runs; the weights of the first
# seed's diagonal model are also kept at log-spaced epochs, for the convergence experiment.
#
# **A second reference model with a richer encoder.** For the gap table in the form of Cremer et
# al.'s Table 2 we train the same architecture a second time, with an encoder that outputs a
# *planar flow* (Rezende & Mohamed, 2015): a diagonal Gaussian pushed through `flow_length` layers
# $z \leftarrow z + u \tanh(w^\top z + b)$, all of whose parameters the encoder predicts per image.
# Its KL term has no closed form and is estimated on the same sample.

# %% tags=["parameters"]
root = ".."  # the project folder, seen from the kernel's (the pipeline passes its own)
split_seed = 0
num_train = 2000
latent_dim = 50
encoder_hidden = [200, 200]
decoder_hidden = [200, 200]
activation = "elu"
training = {"epochs": 4, "batch_size": 100, "lr": 0.001, "lr_schedule": "plateau", "lr_decay": 0.3, "plateau_patience": 1,
            "max_decays": 1, "patience": 2, "min_delta": 0.05, "warmup_epochs": 1, "binarization": "static",
            "snapshot_epochs": [1, 3]}
seeds = [0, 1]
flow_length = 10
workers = 1
max_stack = 3
model_dir = "build/tiny/models"
history_dir = "build/tiny/results/training"
checkpoint_dir = "build/tiny/checkpoints/model_setup"
device = "auto"
figure_dir = "build/tiny/figures/model_setup"
generated_dir = "build/tiny/generated"

# %%
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from amortgap import data, models, plots, report, sweep, train
from amortgap.device import resolve_device

root = Path(root)
plots.theme()

# %% [markdown]
# ## The data

# %%
train_config = train.TrainConfig.from_section(training)
binarization = train_config.binarization
train_images = data.load("train", split_seed=split_seed)
valid_x = data.load_binarized("valid", binarization, split_seed=split_seed)
test_x = data.load_binarized("test", binarization)
train_x = train_images.x[:num_train]
print(f"training images   {len(train_x):6d} (of {len(train_images)})")
print(f"validation images {len(valid_x):6d}")
print(f"test images       {len(test_x):6d}")
print(f"fraction of pixels on after {binarization} binarization: {data.binarize(train_x).mean():.3f}")

# %% [markdown]
# Twenty test images drawn at random (seed 0), as the models see them after binarization:

# %%
fig, axes = plt.subplots(2, 10, figsize=(8, 1.8))
for ax, image in zip(axes.flat, test_x[data.random_subset(len(test_x), 20, seed=0)]):
    ax.imshow(image.view(28, 28), cmap="gray_r")
    ax.axis("off")
plots.save(fig, root / figure_dir / "data_examples")

# %% [markdown]
# ## The reference VAEs: two encoder families, three seeds each

# %%
device = resolve_device(device)
config = models.VAEConfig(latent_dim=latent_dim, encoder_hidden=tuple(encoder_hidden),
                          decoder_hidden=tuple(decoder_hidden), activation=activation)
families = {"diagonal": config, "planar": replace(config, family="planar", flow_length=flow_length)}
print(train_config)
print(models.VAE(config))
print(f"{sum(p.numel() for p in models.VAE(config).parameters()):,} parameters (diagonal encoder)")
members = [sweep.Member(c, seed) for c in families.values() for seed in seeds]
results = sweep.train_members(members, train_x, valid_x, train_config, root / checkpoint_dir,
                              device=device, workers=workers, max_stack=max_stack)

# %%
histories, rows = [], []
for member, result in zip(members, results):
    name = f"reference_{member.config.family}_s{member.seed}"
    models.save(result.model, root / model_dir / f"{name}.pt")
    history = result.history.assign(model=member.config.family, seed=member.seed)
    (root / history_dir).mkdir(parents=True, exist_ok=True)
    history.to_csv(root / history_dir / f"{name}.csv", index=False, float_format="%.6f")
    histories.append(history)
    best = history.loc[history.valid_elbo.idxmax()]
    rows.append({"model": member.config.family, "seed": member.seed, "encoder_width": member.config.encoder_hidden[-1],
                 "epochs": len(history),
                 "best_epoch": int(best.epoch), "best_valid_elbo": best.valid_elbo,
                 "stopped": "cap" if len(history) == train_config.epochs else "converged",
                 "final_lr": history.lr.iloc[-1], "training_minutes": history.seconds.sum() / 60})
summary = pd.DataFrame(rows)
summary.to_csv(root / history_dir / "summary.csv", index=False, float_format="%.6f")
shown = summary.drop(columns="training_minutes").round(2)
print(shown[shown.model == "diagonal"].to_string(index=False))

# %%
# NBVAL_IGNORE_OUTPUT
# The planar-flow model's numbers: at this notebook's defaults (4 epochs) its training amplifies the
# last bits in which CPUs differ, and they moved by up to 2 nats across numeric modes (`make modes`),
# so no printed precision would hold on another machine; the regression tests skip this cell.
print(shown[shown.model == "planar"].to_string(index=False))

# %% [markdown]
# The validation ELBO of every model and seed, on a log scale of epochs: each curve flattens,
# steps up where the learning rate falls, and ends where a further fall no longer helps.

# %%
fig = plots.learning_curves(pd.concat(histories))
plots.save(fig, root / figure_dir / "learning_curves")

# %% [markdown]
# The first seed's diagonal model at log-spaced epochs, for the convergence experiment:

# %%
first = members.index(sweep.Member(families["diagonal"], seeds[0]))
snapshot_model = models.VAE(config)
for epoch, state in results[first].snapshots.items():
    snapshot_model.load_state_dict(state)
    models.save(snapshot_model, root / model_dir / "snapshots" / f"reference_diagonal_s{seeds[0]}_e{epoch}.pt")
print("kept epochs:", sorted(results[first].snapshots))

# %% [markdown]
# ## Numbers for the paper

# %%
by_model = summary.groupby("model")
numbers = {
    "SetupNumTrain": len(train_x),
    "SetupNumValid": len(valid_x),
    "SetupBinarization": binarization,
    "SetupLatentDim": latent_dim,
    "SetupEncoder": "-".join(map(str, [config.data_dim, *encoder_hidden])) + f"-(2$\\times${latent_dim})",
    "SetupDecoder": "-".join(map(str, [latent_dim, *decoder_hidden, config.data_dim])),
    "SetupSeeds": len(seeds),
    "SetupMaxEpochs": train_config.epochs,
    "SetupPlateauPatience": train_config.plateau_patience,
    "SetupPatience": train_config.patience,
    "SetupMaxDecays": train_config.max_decays,
    "SetupLrDecay": f"{train_config.lr_decay:g}",
    "SetupWarmup": train_config.warmup_epochs,
    "SetupLr": f"{train_config.lr:g}",
    "SetupBatch": train_config.batch_size,
    "SetupEpochsMin": int(by_model.epochs.min()["diagonal"]),
    "SetupEpochsMax": int(by_model.epochs.max()["diagonal"]),
    "SetupFlowEpochsMin": int(by_model.epochs.min()["planar"]),
    "SetupFlowEpochsMax": int(by_model.epochs.max()["planar"]),
    "SetupAtCap": int((summary.stopped == "cap").sum()),
    "SetupValidElbo": by_model.best_valid_elbo.mean()["diagonal"],
    "SetupFlowValidElbo": by_model.best_valid_elbo.mean()["planar"],
    "SetupFlowLength": flow_length,
    "TrainModels": len(summary),
    "TrainMinutesTotal": report.Number(summary.training_minutes.sum(), digits=0),
}
report.write_macros(root / generated_dir / "model_setup.tex", numbers)
# planar: see above; the training minutes belong to the machine
print(report.macros({k: v for k, v in numbers.items() if k not in ("SetupFlowValidElbo", "TrainMinutesTotal")}))

# %% [markdown]
# ## What the numbers say

# %%
# Prose composed from this notebook's numbers, each printed at the precision at which the cells above
# print it for the regression tests (interval bounds to one decimal), so that it is compared too.
at_cap = int((summary.stopped == "cap").sum())
epochs_of = {m: f"{g.epochs.min()} to {g.epochs.max()}" for m, g in summary.groupby("model")}
report.conclude(
    f"**{len(summary) - at_cap} of {len(summary)} reference models stopped on their own**, once the validation ELBO had "
    f"not improved by {train_config.min_delta} nats for {train_config.patience} epochs after the learning-rate "
    f"decays; {at_cap} reached the cap of {train_config.epochs} epochs. The FFG models trained for "
    f"{epochs_of['diagonal']} epochs, and their best validation ELBOs average "
    f"{by_model.best_valid_elbo.mean()['diagonal']:.2f} nats. "
    + ("The experiments that follow therefore measure converged models, not a training budget." if at_cap == 0 else
       "A model at the cap may still be improving: its gaps describe the training budget as well as the model."))

# %%
# NBVAL_IGNORE_OUTPUT
# The planar-flow models' sentence: their numbers at the test defaults are not stable across CPUs.
report.conclude(f"The flow models trained for {epochs_of['planar']} epochs, and their best validation ELBOs average "
                f"{by_model.best_valid_elbo.mean()['planar']:.2f} nats.")
