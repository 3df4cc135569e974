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
# Both reference models are certified: the diagonal one and the planar-flow one (its AIS, too,
# starts from the diagonal $q^*$, which has a density everywhere).
#
# **Scope.** Simulated images are not the real ones (they are blurrier draws from the model, and
# their $\log p(x)$ is lower), so the certificate covers the estimator on this model, not the real
# images directly. For real images there is no exact posterior sample; the second part shows that
# AIS's estimate stops moving as its runs get longer, and the oracle notebook (3f) checks every
# estimator against exact values on real images for a model with a 2-dimensional latent space.

# %% tags=["parameters"]
root = ".."  # the project folder, seen from the kernel's (the pipeline passes its own)
model_dir = "build/tiny/models"
seed = 0
num_points = 4
reference = {"steps": 50, "chains": 4}
ais_candidates = [[10, 2], [20, 4]]
iwae_candidates = [100]
tolerance = 0.1
qstar = {"max_steps": 100}
binarization = "static"
real_points = 4
subset_seed = 0
real_steps = [10, 20]
real_chains = 4
workers = 1
table_dir = "build/tiny/results/certification"
figure_dir = "build/tiny/figures/certification"
generated_dir = "build/tiny/generated"

# %%
from pathlib import Path

import pandas as pd

from amortgap import certify, data, models, plots, report
from amortgap.ais import AISConfig
from amortgap.qstar import QStarConfig
from amortgap.parallel import run_tasks
from amortgap.study import certification

root = Path(root)
plots.theme()
out = root / table_dir
out.mkdir(parents=True, exist_ok=True)

# %%
families = ["diagonal", "planar"]
reference_models = {f: models.load(root / model_dir / f"reference_{f}_s{seed}.pt") for f in families}
reference = AISConfig.from_section(reference)
candidates = [AISConfig(steps=s, chains=c) for s, c in ais_candidates] + list(iwae_candidates)
qstar_config = QStarConfig.from_section(qstar)
results = run_tasks(certify.certify_simulated,
                    [(reference_models[f], num_points, reference, candidates, qstar_config, seed) for f in families],
                    workers, desc="certified models")
per_model = []
for family, result in zip(families, results):
    summary = result.summary()
    summary["reference"] = certify.estimator_name(reference)
    candidates_only = summary.index != "sandwich"
    summary.loc[candidates_only, "within_tolerance"] = (summary.error_nats.abs() + 2 * summary.error_se <= tolerance)[candidates_only]
    result.estimates.assign(model=family).to_csv(out / f"estimates_{family}.csv", float_format="%.6f")
    per_model.append(summary.assign(model=family).rename_axis("estimator").reset_index())
summary = pd.concat(per_model, ignore_index=True)
summary.to_csv(out / "summary.csv", index=False, float_format="%.6g")

# %%
shown = summary.set_index(["model", "estimator"])[["error_nats", "error_se", "evaluations", "within_tolerance"]].round(3)
print(shown.loc["diagonal"].to_string())
print(f"cheapest estimator within {tolerance} nats: {certify.cheapest_within(results[0].summary(), tolerance)}")
fig = plots.certification(summary[(summary.model == "diagonal") & (summary.estimator != "sandwich")].set_index("estimator"),
                          tolerance)
plots.save(fig, root / figure_dir / "certification")

# %%
# NBVAL_IGNORE_OUTPUT
# The planar-flow model's numbers: at this notebook's defaults (4 epochs) its training amplifies the
# last bits in which CPUs differ, and they moved by up to 2 nats across numeric modes (`make modes`),
# so no printed precision would hold on another machine; the regression tests skip this cell.
print(shown.loc["planar"].to_string())
print(f"cheapest estimator within {tolerance} nats: {certify.cheapest_within(results[1].summary(), tolerance)}")

# %% [markdown]
# ## AIS on real test images: does the estimate stop moving?

# %%
test_x = data.load_binarized("test", binarization)
x = test_x[data.random_subset(len(test_x), real_points, subset_seed)]
curves = run_tasks(certify.ais_convergence, [(reference_models[f], x, real_steps, real_chains, qstar_config, seed)
                                             for f in families], workers, desc="AIS lengths")
curves = pd.concat([c.assign(model=f) for f, c in zip(families, curves)], ignore_index=True)
longest = curves[curves.steps == max(real_steps)].set_index(["model", "datapoint"]).log_px
curves["below_longest"] = longest.loc[list(zip(curves.model, curves.datapoint))].to_numpy() - curves.log_px
curves.to_csv(out / "real_convergence.csv", index=False, float_format="%.6f")
lengths = curves.groupby(["model", "steps"])[["log_px", "log_px_se", "below_longest"]].mean().round(2)
print(lengths.loc["diagonal"].to_string())
real_lengths = certification.ais_lengths(curves)
fig = plots.ais_lengths(real_lengths[real_lengths.evaluations < real_lengths.evaluations.max()])
plots.save(fig, root / figure_dir / "ais_lengths")

# %%
# NBVAL_IGNORE_OUTPUT
# The planar-flow model's numbers: at this notebook's defaults (4 epochs) its training amplifies the
# last bits in which CPUs differ, and they moved by up to 2 nats across numeric modes (`make modes`),
# so no printed precision would hold on another machine; the regression tests skip this cell.
print(lengths.loc["planar"].to_string())

# %% [markdown]
# ## Numbers for the paper
#
# Read back from the tables as written (`results/certification`); the planar-flow model's are
# written but not printed (see above).

# %%
written = certification.load(out)
numbers = certification.numbers(written)
report.write_macros(root / generated_dir / "certification.tex", numbers)
print(report.macros(report.stable_view(numbers, unstable=("Flow",))))
print(certification.ais_lengths(written["real"]).query("model == 'diagonal'").round(2).to_string(index=False))

# %% [markdown]
# ## What the numbers say

# %%
# Prose composed from this notebook's numbers, each printed at the precision at which the cells above
# print it for the regression tests (interval bounds to one decimal), so that it is compared too.
by_model = summary.set_index(["model", "estimator"])
report.conclude(
    f"On {num_points} images simulated from the FFG reference model, AIS from q* and BDMC from the generating z enclose "
    f"log p(x) within {by_model.loc[('diagonal', 'sandwich'), 'error_nats']:.3f} nats on average. The cheapest estimator "
    f"within {tolerance} nats of the long reference run is {certify.cheapest_within(results[0].summary(), tolerance) or 'none of the candidates'} "
    f"for the FFG model. On {real_points} real test images, the FFG model's shortest AIS run ({min(real_steps)} steps) lies "
    f"{real_lengths[real_lengths.model == 'diagonal']['mean'].iloc[0]:.2f} nats below the longest run "
    f"({max(real_steps)} steps); this certifies the estimator on simulated images and shows where it stops moving on "
    "real ones, not its exact error there (the oracle notebook measures that).")

# %%
# NBVAL_IGNORE_OUTPUT
# The planar-flow model's sentence: its numbers at the test defaults are not stable across CPUs.
report.conclude(f"For the flow model the sandwich encloses log p(x) within "
                f"{by_model.loc[('planar', 'sandwich'), 'error_nats']:.3f} nats on average.")
