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
# # 3c. Experiments: encoders of every width and depth against one frozen decoder
#
# **Why.** When encoder and decoder are trained together, the decoder adapts to what its encoder can
# do (Cremer et al. 2018), so a width sweep of jointly trained VAEs changes two things at once. Here
# the decoder is the reference model's, frozen, and only the encoder is trained: its width $w$ (with
# two hidden layers) and its depth (1 to 3 hidden layers of `depth_width` units) vary, and nothing
# else. With the decoder fixed, $\log p(x)$ and $\mathcal{L}[q^*]$ of every image are fixed too: they
# are the reference model's, computed once in the gap-table notebook on the same images. Each encoder
# contributes only $\mathcal{L}[q]$, and its amortization gap is
# $\mathcal{L}[q^*] - \mathcal{L}[q]$ against that shared $q^*$.
#
# The seeds of one encoder shape train together as one stack, and the frozen decoder runs once, as one
# matmul, on all of their latents; with `workers` > 1 the stacks train in that many single-thread
# processes at once. Each member is checkpointed and fingerprinted like the joint sweep's (decoder
# weights included); each seed writes one table.

# %% tags=["parameters"]
model_path = "build/tiny/models/reference.pt"
widths = [16, 64]
depths = [1, 2]
depth_width = 16
frozen_seeds = [0]
binarization = "static"
split_seed = 0
num_train = 2000
epochs = 2
batch_size = 100
lr = 0.001
eval_points = 8
elbo_samples = 100
eval_seed = 0
table_dir = "build/tiny/results/frozen"
checkpoint_dir = "build/tiny/checkpoints/frozen"
workers = 1
device = "auto"

# %%
import pandas as pd
import torch

from amortgap import data, models, sweep, train
from amortgap.bounds import elbo
from amortgap.device import resolve_device
from amortgap.pipeline import project_root
from amortgap.rng import seeded

root = project_root()

# %%
device = resolve_device(device)
reference = models.load(root / model_path, map_location=device)
train_x = data.load("train", split_seed=split_seed).x[:num_train]
valid_x = data.load_binarized("valid", binarization, split_seed=split_seed)
eval_x = {
    "train": data.binarize(train_x[:eval_points], binarization),
    "test": data.load_binarized("test", binarization)[:eval_points],
}
eval_x = {split: x.to(device) for split, x in eval_x.items()}
train_config = train.TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, lr_schedule="cosine", lr_decay=0.1,
                                 binarization=binarization)
encoders = sorted({(w, 2) for w in widths} | {(depth_width, d) for d in depths})
print(f"reference decoder: {reference.config.decoder_hidden}; encoders (width, depth): {encoders}")


# %%
def amortized_elbo(model: models.VAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """L[q] per datapoint with a fixed seed (the same random numbers for every encoder)."""
    with seeded(eval_seed, device):
        estimate = elbo(model, x, num_samples=elbo_samples)
    return estimate.value, estimate.stderr


members = [(width, depth, seed) for seed in frozen_seeds for width, depth in encoders]
trained = sweep.train_members(reference.config, members, train_x, valid_x, train_config, root / checkpoint_dir,
                              frozen_decoder=reference, workers=workers)
rows = []
for (width, depth, seed), result in zip(members, trained):
    for split, x in eval_x.items():
        value, stderr = amortized_elbo(result.model, x)
        rows.append(pd.DataFrame({
            "seed": seed, "width": width, "depth": depth, "split": split, "datapoint": range(len(x)),
            "elbo_amortized": value.cpu().numpy(), "elbo_amortized_se": stderr.cpu().numpy(),
            "valid_elbo": result.history.valid_elbo.max(),
            "train_seconds": result.history.seconds.sum(), "epochs": len(result.history),
            "encoder_parameters": sum(p.numel() for p in result.model.encoder.parameters()),
        }))  # fmt: skip
table = pd.concat(rows, ignore_index=True)
for seed in frozen_seeds:
    path = root / table_dir / f"s{seed}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    table[table.seed == seed].to_csv(path, index=False, float_format="%.6f")

# %%
print(table.groupby(["split", "depth", "width"])[["elbo_amortized", "valid_elbo"]].mean().round(2).to_string())
