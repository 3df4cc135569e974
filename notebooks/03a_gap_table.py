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
# **Protocol** (the form of Cremer et al. 2018, Table 2). Two reference models from the model-setup
# notebook share architecture, data and schedule and differ only in the encoder's family: a fully
# factorised Gaussian (FFG) and a planar flow. Each model is evaluated under *both* families, on
# training images (the first of the 50k training split: the encoder has seen them) and on test
# images (it has not), per datapoint:
#
# - $\log p(x)$: AIS with HMC started at the FFG $q^*$ (a planar flow has no closed-form density
#   away from its own samples, so it cannot start AIS);
# - $\mathcal{L}[q^*_{\text{FFG}}]$ and $\mathcal{L}[q^*_{\text{flow}}]$: per-datapoint optima in each
#   family. The FFG $q^*$ starts from the encoder where its $q$ is an FFG, else from the prior. A
#   flow's ELBO is not concave in its parameters, so the flow $q^*$ is the better of two starts:
#   the encoder's $q$ (an FFG is a flow with $u = 0$) and the FFG $q^*$ with identity layers;
# - $\mathcal{L}[q]$: the model's own encoder.
#
# The approximation gap of a model is measured in the family of its own encoder:
# $\log p(x) - \mathcal{L}[q^*_{\text{own}}]$, and the amortization gap is
# $\mathcal{L}[q^*_{\text{own}}] - \mathcal{L}[q]$.

# %% tags=["parameters"]
model_path = "build/tiny/models/reference.pt"
flow_model_path = "build/tiny/models/reference_planar.pt"
binarization = "static"
split_seed = 0
num_points = 8
elbo_samples = 100
iwae_samples = 100
ais_steps = 20
ais_chains = 4
qstar_max_steps = 200
decompose_seed = 0
table_dir = "build/tiny/results/gap_table"
device = "auto"

# %%
from dataclasses import replace

import pandas as pd
import torch

from amortgap import data, gaps, models
from amortgap.bounds import AISConfig
from amortgap.device import resolve_device
from amortgap.families import DiagonalGaussian, PlanarFlow
from amortgap.local import QStarConfig
from amortgap.pipeline import project_root

root = project_root()

# %%
device = resolve_device(device)
reference = {"diagonal": models.load(root / model_path, map_location=device),
             "planar": models.load(root / flow_model_path, map_location=device)}
flow_family = PlanarFlow(reference["planar"].config.flow_length)
points = {
    "train": data.binarize(data.load("train", split_seed=split_seed).x[:num_points], binarization),
    "test": data.load_binarized("test", binarization)[:num_points],
}
points = {split: x.to(device) for split, x in points.items()}
config = gaps.DecomposeConfig(elbo_samples=elbo_samples, iwae_samples=iwae_samples,
                              ais=AISConfig(steps=ais_steps, chains=ais_chains),
                              qstar=QStarConfig(max_steps=qstar_max_steps), seed=decompose_seed)
print(config)


# %%
def evaluate(name: str, model: models.VAE, split: str, x: torch.Tensor) -> pd.DataFrame:
    """Per-datapoint log p(x), L[q] and q* in both families for one model and one split."""
    own_is_ffg = model.config.family == "diagonal"
    ffg_init = "encoder" if own_is_ffg else "prior"
    ffg, ffg_star = gaps.decompose_with_qstar(model, x, replace(config, qstar_init=ffg_init))
    starts = {"encoder": "encoder", "ffg_qstar": flow_family.params_from(DiagonalGaussian().distribution(ffg_star))}
    flows = {name: gaps.optimal_elbo(model, x, flow_family, config, init=start) for name, start in starts.items()}
    from_encoder = flows["encoder"].elbo_optimal >= flows["ffg_qstar"].elbo_optimal
    flow = flows["ffg_qstar"].copy()
    flow.loc[from_encoder] = flows["encoder"].loc[from_encoder]
    table = ffg[["log_px", "log_px_iwae", "elbo_amortized", "elbo_amortized_se"]].copy()
    table["elbo_optimal_ffg"], table["elbo_optimal_ffg_se"] = ffg.elbo_optimal, ffg.elbo_optimal_se
    table["elbo_optimal_flow"], table["elbo_optimal_flow_se"] = flow.elbo_optimal, flow.elbo_optimal_se
    table["flow_start"] = from_encoder.map({True: "encoder", False: "ffg_qstar"})
    table["elbo_optimal_flow_from_encoder"] = flows["encoder"].elbo_optimal
    table["qstar_steps_ffg"], table["qstar_steps_flow"] = ffg.qstar_steps, flow.qstar_steps
    own = table.elbo_optimal_ffg if own_is_ffg else table.elbo_optimal_flow
    table["approximation_gap"] = table.log_px - own
    table["amortization_gap"] = own - table.elbo_amortized
    table["inference_gap"] = table.log_px - table.elbo_amortized
    table[["elbo_samples", "iwae_samples", "ais_steps", "ais_chains"]] = ffg[["elbo_samples", "iwae_samples", "ais_steps", "ais_chains"]]
    table.insert(0, "split", split)
    table.insert(0, "model", name)
    return table.reset_index()


tables = []
for name, model in reference.items():
    for split, x in points.items():
        table = evaluate(name, model, split, x)
        path = root / table_dir / f"{name}_{split}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(path, index=False, float_format="%.6f")
        tables.append(table)

# %%
columns = ["log_px", "elbo_optimal_flow", "elbo_optimal_ffg", "elbo_amortized",
           "approximation_gap", "amortization_gap", "inference_gap"]
table = pd.concat(tables)
# The planar-flow model's numbers, and every model's flow q*, move by up to 0.06 nats across numeric
# modes at this notebook's defaults (training and the non-convex per-image flow fits amplify the last
# bits in which CPUs differ; `python -m amortgap.numeric_modes spread`), so they are shown to the nat;
# the rest to 0.01.
means = table.groupby(["model", "split"])[columns].mean().round(2)
means.loc["planar"] = means.loc["planar"].round(0).to_numpy()
means["elbo_optimal_flow"] = means["elbo_optimal_flow"].round(0)
print(means.T.to_string())
# What the encoder start loses is a difference of two non-convex fits, which moved by more than a nat
# across numeric modes at the defaults: only the share of images it won is shown.
print("flow q*: share of images where the encoder start won")
print((table.flow_start == "encoder").groupby([table.model, table.split]).mean().round(2).to_string())
