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
# # 3d. Experiments: closing the amortization gap by refinement, and what it costs
#
# **Protocol.** On test images and the reference model, start from the encoder's $q$ and take $k$
# stochastic-gradient steps on each image's ELBO (semi-amortized inference, Kim et al. 2018, here at
# test time only), for a grid of $k$; and, as the other end, start from the prior $\mathcal{N}(0, I)$
# (plain per-datapoint VI, "F-VI"). Every run is one vectorized problem over all images, timed on
# this machine; seconds per datapoint are the batch's wall time divided by the number of images, so
# they are throughput figures. Full optimisation to $q^*$ (our stopping rule) is timed from both
# starts. The gap that remains after $k$ steps is measured against $\mathcal{L}[q^*]$ from the
# encoder, with common random numbers for every $k$.

# %% tags=["parameters"]
model_path = "build/tiny/models/reference.pt"
binarization = "static"
num_points = 8
steps = [0, 1, 5, 20]
elbo_samples = 100
qstar_max_steps = 200
seed = 0
table_dir = "build/tiny/results/refinement"
device = "auto"

# %%
import time

import pandas as pd
import torch

from amortgap import data, local, models
from amortgap.bounds import elbo
from amortgap.device import resolve_device
from amortgap.pipeline import project_root
from amortgap.rng import seeded

torch.manual_seed(seed)
root = project_root()

# %%
device = resolve_device(device)
model = models.load(root / model_path, map_location=device)
x = data.load_binarized("test", binarization)[:num_points].to(device)
qstar_config = local.QStarConfig(max_steps=qstar_max_steps)
curves = pd.concat([local.refinement_curve(model, x, steps, init=init, config=qstar_config, elbo_samples=elbo_samples,
                                           seed=seed) for init in ("encoder", "prior")], ignore_index=True)  # fmt: skip


# %%
def full_optimisation(init: str) -> pd.DataFrame:
    """q* by the stopping rule from ``init``, timed, with its ELBO on the curves' evaluation noise."""
    with seeded(seed, device):
        start = time.perf_counter()
        result = local.optimal_q(model, x, config=qstar_config, init=init)
        seconds = (time.perf_counter() - start) / len(x)
        torch.manual_seed(seed + 1)
        estimate = elbo(model, x, result.q, elbo_samples)
    return pd.DataFrame({"init": init, "datapoint": range(len(x)), "elbo": estimate.value.cpu().numpy(),
                         "elbo_se": estimate.stderr.cpu().numpy(), "steps": result.steps.cpu().numpy(),
                         "seconds_per_point": seconds})  # fmt: skip


optimum = pd.concat([full_optimisation(init) for init in ("encoder", "prior")], ignore_index=True)
for name, table in (("curves", curves), ("optimum", optimum)):
    path = root / table_dir / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False, float_format="%.6g")

# %%
qstar_elbo = optimum[optimum.init == "encoder"].set_index("datapoint").elbo
curves["gap_remaining"] = curves.datapoint.map(qstar_elbo) - curves.elbo
print(curves.groupby(["init", "steps"]).gap_remaining.mean().unstack(0).round(2).to_string())
print(optimum.groupby("init")[["elbo", "steps"]].mean().round(2).to_string())

# %% [markdown]
# Seconds per datapoint depend on the machine; they go to the tables and the paper's figure, and are
# shown here without being compared by the regression tests.

# %%
# NBVAL_IGNORE_OUTPUT
print(curves.groupby(["init", "steps"]).seconds_per_point.first().unstack(0).to_string(float_format="%.3g"))
print(optimum.groupby("init").seconds_per_point.first().to_string(float_format="%.3g"))
