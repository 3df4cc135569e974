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
# # 3b. Experiments: the gaps as the encoder grows, encoder and decoder trained jointly
#
# **Protocol.** For every encoder hidden width $w$ and seed $s$ we train a VAE whose encoder has
# `depth` hidden layers of width $w$ and whose decoder has the reference decoder's architecture,
# jointly, on statically binarized Fashion-MNIST. Then, for fixed training and test images, we decompose the
# inference gap of every datapoint with `amortgap.gaps.decompose`:
#
# - $\mathcal{L}[q]$: the encoder's ELBO, a Monte Carlo average;
# - $\mathcal{L}[q^*]$: the ELBO of the best diagonal Gaussian for that datapoint, found by
#   stochastic-gradient ascent from the encoder's output (all datapoints at once, each stopping on
#   its own rule), evaluated with the same random numbers as $\mathcal{L}[q]$;
# - $\log p(x)$: annealed importance sampling with HMC, started from $q^*$.
#
# The seeds of one width share every shape, so they train together as one stacked computation
# (`amortgap.train.train_stack`), each with its own seed, data order, optimizer state and early
# stopping. Each (width, seed) pair writes one per-datapoint table; the DVC pipeline runs one width
# per branch, so changing one width reruns one branch. Every member's checkpoint goes to a scratch
# folder under a name that fingerprints the settings and the training code: an interrupted run
# resumes, a finished member is loaded instead of retrained (when only the evaluation settings
# change), and any other change trains afresh.

# %% tags=["parameters"]
widths = [16, 64]
seeds = [0]
depth = 2
latent_dim = 50
decoder_hidden = [200, 200]
binarization = "static"
num_train = 2000
epochs = 2
batch_size = 100
lr = 0.001
warmup_epochs = 1
eval_train_points = 20
eval_test_points = 20
elbo_samples = 100
iwae_samples = 100
ais_steps = 20
ais_chains = 4
qstar_max_steps = 300
qstar_samples = 50
decompose_seed = 0
table_dir = "build/tiny/results/gaps"
checkpoint_dir = "build/tiny/checkpoints/sweep"
device = "auto"

# %%
import pandas as pd
import torch

from amortgap import data, gaps, models, sweep, train
from amortgap.bounds import AISConfig
from amortgap.device import resolve_device
from amortgap.local import QStarConfig
from amortgap.pipeline import project_root

root = project_root()

# %%
train_x = data.load("train").x[:num_train]
valid_x = data.load_binarized("valid", binarization)
eval_x = {
    "train": data.binarize(train_x[:eval_train_points], binarization, torch.Generator().manual_seed(0)),
    "test": data.load_binarized("test", binarization)[:eval_test_points],
}
device = resolve_device(device)
eval_x = {split: x.to(device) for split, x in eval_x.items()}
decompose_config = gaps.DecomposeConfig(
    elbo_samples=elbo_samples,
    iwae_samples=iwae_samples,
    ais=AISConfig(steps=ais_steps, chains=ais_chains),
    qstar=QStarConfig(max_steps=qstar_max_steps, num_samples=qstar_samples),
    seed=decompose_seed,
)
train_config = train.TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, warmup_epochs=warmup_epochs,
                                 lr_schedule="cosine", lr_decay=0.1, binarization=binarization)
print(decompose_config)

# %%
base = models.VAEConfig(latent_dim=latent_dim, decoder_hidden=tuple(decoder_hidden))


members = [(width, depth, seed) for width in widths for seed in seeds]
trained = sweep.train_members(base, members, train_x, valid_x, train_config, root / checkpoint_dir, device=device)


def decompose(width: int, seed: int, result: train.TrainResult) -> pd.DataFrame:
    """The gaps of one trained (width, seed) member on both evaluation splits, one row per datapoint."""
    tables = []
    for split, x in eval_x.items():
        table = gaps.decompose(result.model, x, decompose_config)
        table.insert(0, "split", split)
        tables.append(table)
    table = pd.concat(tables).reset_index()
    table.insert(0, "seed", seed)
    table.insert(0, "width", width)
    table["qstar_evaluations"] = table.qstar_steps * qstar_samples
    table["valid_elbo"] = result.history.valid_elbo.max()
    table["train_seconds"] = result.history.seconds.sum()
    table["epochs"] = len(result.history)
    return table


summaries = []
for (width, _, seed), result in zip(members, trained):
    table = decompose(width, seed, result)
    path = root / table_dir / f"w{width}" / f"s{seed}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False, float_format="%.6f")
    summaries.append(table.groupby(["width", "seed", "split"])[gaps.COLUMNS[:6]].mean())
print(pd.concat(summaries).round(2).T.to_string())
