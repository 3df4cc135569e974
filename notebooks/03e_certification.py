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
# # 3e. Experiments: is our $\log p(x)$ trustworthy?
#
# Every gap is measured against an estimate of $\log p(x)$; if that estimate were loose, part of
# every "approximation gap" would be estimator bias. On images *simulated* from the reference
# decoder ($z \sim p(z)$, $x \sim p(x \mid z)$) the generating $z$ is an exact posterior sample, so
# BDMC (Grosse et al. 2015; Wu et al. 2017) runs AIS backwards from it and gives a stochastic upper
# bound. A long AIS run from $q^*$ below and BDMC above sandwich $\log p(x)$; the narrower the
# sandwich, the better certified the long run. Against it we measure the error of the cheaper
# estimators: AIS at several lengths (the results notebook picks out the one our decompositions use)
# and IWAE with $q^*$ as proposal, each with its cost in decoder evaluations and seconds per datapoint.

# %% tags=["parameters"]
model_path = "build/tiny/models/reference.pt"
num_points = 8
reference_steps = 50
reference_chains = 4
ais_candidates = [[10, 2], [20, 4]]
iwae_candidates = [100]
tolerance = 0.1
qstar_max_steps = 200
seed = 0
table_dir = "build/tiny/results/certification"
device = "auto"

# %%
import torch

from amortgap import certify, local, models
from amortgap.bounds import AISConfig
from amortgap.device import resolve_device
from amortgap.pipeline import project_root

root = project_root()

# %%
device = resolve_device(device)
model = models.load(root / model_path, map_location=device)
x, z = model.sample(num_points, torch.Generator(device).manual_seed(seed))
torch.manual_seed(seed)
qstar = local.optimal_q(model, x, config=local.QStarConfig(max_steps=qstar_max_steps))
candidates = [AISConfig(steps=s, chains=c) for s, c in ais_candidates] + list(iwae_candidates)
result = certify.certify(model, x, z, qstar.q, AISConfig(steps=reference_steps, chains=reference_chains),
                         candidates, seed=seed)  # fmt: skip
summary = result.summary()
summary["reference"] = certify.estimator_name(AISConfig(steps=reference_steps, chains=reference_chains))
candidates_only = summary.index != "sandwich"
summary.loc[candidates_only, "within_tolerance"] = (summary.error_nats.abs() + 2 * summary.error_se <= tolerance)[candidates_only]
(root / table_dir).mkdir(parents=True, exist_ok=True)
result.estimates.to_csv(root / table_dir / "estimates.csv", float_format="%.6f")
summary.to_csv(root / table_dir / "summary.csv", float_format="%.6g")

# %%
print(summary[["error_nats", "error_se", "evaluations", "within_tolerance"]].round(3).to_string())
print(f"cheapest estimator within {tolerance} nats: {certify.cheapest_within(summary, tolerance)}")
