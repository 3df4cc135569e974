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
# # 2. Model setup: data, architecture and the reference VAE
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
# **Training.** Adam on the single-sample ELBO with the analytic KL, a linear KL warm-up, a cosine
# learning-rate schedule, and early stopping on the validation ELBO (the best weights are kept).
#
# **A second reference model with a richer encoder.** For the gap table in the form of Cremer et
# al.'s Table 2 we train the same architecture a second time, with an encoder that outputs a
# *planar flow* (Rezende & Mohamed, 2015): a diagonal Gaussian pushed through `flow_length` layers
# $z \leftarrow z + u \tanh(w^\top z + b)$, all of whose parameters the encoder predicts per image.
# Its KL term has no closed form and is estimated on the same sample.

# %% tags=["parameters"]
binarization = "static"
split_seed = 0
num_train = 2000
latent_dim = 50
encoder_hidden = [200, 200]
decoder_hidden = [200, 200]
activation = "elu"
epochs = 3
batch_size = 100
lr = 0.001
lr_schedule = "cosine"
lr_decay = 0.1
warmup_epochs = 1
patience = 50
seed = 0
flow_length = 10
model_path = "build/tiny/models/reference.pt"
flow_model_path = "build/tiny/models/reference_planar.pt"
history_path = "build/tiny/results/reference_history.csv"
flow_history_path = "build/tiny/results/reference_planar_history.csv"
checkpoint_dir = "build/tiny/checkpoints/model_setup"
device = "auto"
figure_dir = "build/tiny/figures/model_setup"
generated_dir = "build/tiny/generated"

# %%
from dataclasses import replace

import matplotlib.pyplot as plt
import torch

from amortgap import data, models, plots, report, train
from amortgap.device import resolve_device
from amortgap.pipeline import project_root

root = project_root()
plots.theme()

# %% [markdown]
# ## The data

# %%
train_images = data.load("train", split_seed=split_seed)
valid_x = data.load_binarized("valid", binarization, split_seed=split_seed)
test_x = data.load_binarized("test", binarization)
train_x = train_images.x[:num_train]
print(f"training images   {len(train_x):6d} (of {len(train_images)})")
print(f"validation images {len(valid_x):6d}")
print(f"test images       {len(test_x):6d}")
print(f"fraction of pixels on after {binarization} binarization: {data.binarize(train_x).mean():.3f}")

# %%
fig, axes = plt.subplots(2, 10, figsize=(8, 1.8))
for ax, image in zip(axes.flat, test_x[:20]):
    ax.imshow(image.view(28, 28), cmap="gray_r")
    ax.axis("off")
plots.save(fig, root / figure_dir / "data_examples")

# %% [markdown]
# ## The reference VAE

# %%
config = models.VAEConfig(latent_dim=latent_dim, encoder_hidden=tuple(encoder_hidden),
                          decoder_hidden=tuple(decoder_hidden), activation=activation)
train_config = train.TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, lr_schedule=lr_schedule,
                                 lr_decay=lr_decay, warmup_epochs=warmup_epochs, patience=patience,
                                 binarization=binarization, seed=seed)
device = resolve_device(device)
torch.manual_seed(seed)
model = models.VAE(config).to(device)
print(model)
print(f"{sum(p.numel() for p in model.parameters()):,} parameters")


# %%
def train_reference(model: models.VAE, path: str, history_path: str) -> train.TrainResult:
    """Train (or reload the finished checkpoint of) one reference model and save weights + history."""
    result = train.train_cached(model, train_x, valid_x, train_config, root / checkpoint_dir, f"reference_{model.config.family}")
    models.save(result.model, root / path)
    (root / history_path).parent.mkdir(parents=True, exist_ok=True)
    result.history.to_csv(root / history_path, index=False, float_format="%.6f")
    return result


result = train_reference(model, model_path, history_path)

# %%
history = result.history
best = history.loc[history.valid_elbo.idxmax()]
print(f"epochs run: {len(history)}; best validation ELBO {best.valid_elbo:.2f} nats at epoch {int(best.epoch)}")
print(f"final training ELBO {history.train_elbo.iloc[-1]:.2f} nats")
fig = plots.learning_curves(history)
plots.save(fig, root / figure_dir / "learning_curves")

# %% [markdown]
# The planar-flow reference model: same decoder, same data and schedule, a flow encoder.

# %%
flow_config = replace(config, family="planar", flow_length=flow_length)
torch.manual_seed(seed)
flow_result = train_reference(models.VAE(flow_config).to(device), flow_model_path, flow_history_path)
flow_history = flow_result.history
flow_best = flow_history.loc[flow_history.valid_elbo.idxmax()]
print(f"planar flow ({flow_length} layers): best validation ELBO {flow_best.valid_elbo:.2f} nats "
      f"at epoch {int(flow_best.epoch)} (diagonal Gaussian: {best.valid_elbo:.2f})")

# %% [markdown]
# ## Numbers for the paper

# %%
print(report.write_macros(root / generated_dir / "model_setup.tex", {
    "SetupNumTrain": len(train_x),
    "SetupNumValid": len(valid_x),
    "SetupBinarization": binarization,
    "SetupLatentDim": latent_dim,
    "SetupEncoder": "-".join(map(str, [config.data_dim, *encoder_hidden])) + f"-(2$\\times${latent_dim})",
    "SetupDecoder": "-".join(map(str, [latent_dim, *decoder_hidden, config.data_dim])),
    "SetupEpochs": len(history),
    "SetupMaxEpochs": epochs,
    "SetupWarmup": warmup_epochs,
    "SetupLr": f"{lr:g}",
    "SetupBatch": batch_size,
    "SetupBestEpoch": int(best.epoch),
    "SetupValidElbo": best.valid_elbo,
    "SetupTrainElbo": history.train_elbo.iloc[-1],
    "SetupFlowLength": flow_length,
    "SetupFlowValidElbo": flow_best.valid_elbo,
    "SetupFlowBestEpoch": int(flow_best.epoch),
}))
