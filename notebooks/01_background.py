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
# # 1. Background: variational inference and its two gaps
#
# A latent-variable model $p(x, z) = p(z)\,p(x \mid z)$ explains each datapoint $x$ by a hidden
# cause $z$. Bayesian inference asks for the posterior $p(z \mid x) = p(x, z) / p(x)$, whose
# normaliser, the evidence $\log p(x) = \log \int p(x, z)\,dz$, is intractable for a neural decoder.
#
# **Variational inference** picks a tractable $q(z)$ and maximises the evidence lower bound
#
# $$\mathcal{L}[q] = \mathbb{E}_{q(z)}\big[\log p(x, z) - \log q(z)\big] = \log p(x) - \mathrm{KL}\big(q(z) \,\|\, p(z \mid x)\big) \le \log p(x).$$
#
# Its gradient with respect to the parameters of $q$ comes from the **reparameterization trick**:
# write $z = \mu + \sigma \odot \epsilon$ with $\epsilon \sim \mathcal{N}(0, I)$, so that
# $\nabla \mathcal{L} = \mathbb{E}_\epsilon[\nabla (\log p(x, z) - \log q(z))]$ is a plain average.
#
# **Amortized** VI trains an encoder that maps every $x$ to its $q(z \mid x)$ in one forward pass.
# Against $\log p(x)$ it pays two costs (Cremer et al., 2018), with $q^*$ the best member of the
# family for this one datapoint:
#
# $$\underbrace{\log p(x) - \mathcal{L}[q]}_{\text{inference gap}} = \underbrace{\log p(x) - \mathcal{L}[q^*]}_{\text{approximation gap}} + \underbrace{\mathcal{L}[q^*] - \mathcal{L}[q]}_{\text{amortization gap}}.$$
#
# This notebook shows both on a model where every term has a closed form: a linear-Gaussian model
# $p(z) = \mathcal{N}(0, I)$, $p(x \mid z) = \mathcal{N}(Wz + b, \operatorname{diag}\psi)$. Its posterior is
# Gaussian with a full covariance, so the best *diagonal* Gaussian $q^*$ leaves an approximation gap,
# and an encoder of limited capacity leaves an amortization gap. The same model is the oracle that
# `amortgap`'s tests check every estimator against.

# %% tags=["parameters"]
root = ".."  # the project folder, seen from the kernel's (the pipeline passes its own)
data_dim = 20
latent_dim = 5
noise_scale = 1.0
model_seed = 0
num_train = 300
num_test = 300
encoder_widths = [2, 8, 32]
encoder_steps = 1000
encoder_lr = 0.03
check_points = 20
timing_points = 50
figure_dir = "build/tiny/figures/background"
generated_dir = "build/tiny/generated"

# %%
import time
from pathlib import Path

import pandas as pd
import torch

from amortgap import gaps, plots, report
from amortgap.linear_gaussian import LinearGaussian, fit_encoder
from amortgap.qstar import optimal_q

torch.manual_seed(model_seed)
root = Path(root)
plots.theme()

# %% [markdown]
# ## The model and its exact answers
#
# We draw a random model and simulate training and test data from it. For every datapoint we know
# $\log p(x)$, the posterior, $q^*$ (posterior mean, variances $1/\operatorname{diag}\Lambda$ with
# $\Lambda$ the posterior precision) and so the approximation gap exactly.

# %%
model = LinearGaussian.random(data_dim, latent_dim, seed=model_seed, noise_scale=noise_scale)
x_train, _ = model.sample(num_train, torch.Generator().manual_seed(model_seed + 1))
x_test, _ = model.sample(num_test, torch.Generator().manual_seed(model_seed + 2))
exact = LinearGaussian(model.W, model.b, model.psi).exact_gaps(x_test)
print(f"mean log p(x)          {exact['log_px'].mean():9.3f} nats")
print(f"mean L[q*]             {exact['elbo_optimal'].mean():9.3f} nats")
print(f"mean approximation gap {exact['approximation_gap'].mean():9.3f} nats")

# %% [markdown]
# The approximation gap is the price of ignoring posterior correlations. For one test point, the
# 2-sigma contours of the posterior and of $q^*$ in the first two latent dimensions show why: $q^*$
# matches the mean and the *conditional* widths, so it is too narrow along the correlated direction.

# %%
posterior = model.exact_posterior(x_test[:1])
qstar = model.exact_qstar(x_test[:1])
fig = plots.posterior_contours(
    (posterior.mean[0, :2].numpy(), posterior.covariance_matrix[0, :2, :2].numpy()),
    {"best diagonal q*": (qstar.mean[0, :2].numpy(), qstar.variance[0, :2].numpy())},
)
plots.save(fig, root / figure_dir / "posterior_contours")

# %% [markdown]
# ## Amortized encoders of growing capacity
#
# Now the amortization gap. We train MLP encoders of growing hidden width on the training points,
# each by maximising the *exact* mean ELBO, and measure their amortization gap exactly on training
# and on unseen test points. The approximation gap does not depend on the encoder.

# %%
rows = []
for width in encoder_widths:
    encoder = fit_encoder(model, x_train, hidden=(width,), steps=encoder_steps, lr=encoder_lr, seed=model_seed)
    amortized = LinearGaussian(model.W, model.b, model.psi, encoder)
    for split, x in (("train", x_train), ("test", x_test)):
        g = amortized.exact_gaps(x)
        for gap in ("approximation_gap", "amortization_gap"):
            rows.append({"width": width, "split": split, "gap": plots.GAP_LABELS[gap], "nats": g[gap].mean().item()})
capacity = pd.DataFrame(rows)
print(capacity.pivot_table(index="width", columns=["gap", "split"], values="nats").round(2).to_string())

# %%
fig = plots.gaps_vs_width(capacity, style="split", log_gaps=True)
plots.save(fig, root / figure_dir / "gaps_vs_capacity")

# %% [markdown]
# ## The estimators recover the exact gaps
#
# On real data nothing is in closed form: `amortgap.gaps.decompose` estimates $\log p(x)$ by AIS,
# finds each $q^*$ by stochastic optimisation and estimates both ELBOs by Monte Carlo. Here we run
# it, with its default settings, on test points of the model with the widest encoder and compare
# with the exact values.

# %%
few = x_test[:check_points]
estimated = gaps.decompose(amortized, few)
truth = amortized.exact_gaps(few)
check = pd.DataFrame({
    "exact": {k: truth[k].mean().item() for k in gaps.COLUMNS[:6]},
    "estimated": estimated[gaps.COLUMNS[:6]].mean(),
})
check["error"] = check.estimated - check.exact
print(check.round(2).to_string())

# %% [markdown]
# ## A first look at the compute trade-off
#
# The encoder answers in one forward pass; $q^*$ costs hundreds of gradient steps per datapoint.
# Times depend on the machine, so they are shown here and not used in the paper.

# %%
# NBVAL_IGNORE_OUTPUT
x = x_test[:timing_points]
start = time.perf_counter()
with torch.no_grad():
    amortized.encode(x)
encode_seconds = (time.perf_counter() - start) / len(x)
start = time.perf_counter()
optimised = optimal_q(amortized, x)
optimise_seconds = (time.perf_counter() - start) / len(x)
print(f"encoder: {encode_seconds * 1e6:.1f} µs per datapoint")
print(f"q*:      {optimise_seconds * 1e6:.1f} µs per datapoint ({optimised.steps.float().mean():.0f} steps on average)")
print(f"ratio:   {optimise_seconds / encode_seconds:.0f}x")

# %% [markdown]
# ## Numbers for the paper

# %%
test = capacity[capacity.split == "test"].set_index(["gap", "width"]).nats
print(report.write_macros(root / generated_dir / "background.tex", {
    "BgDataDim": data_dim,
    "BgLatentDim": latent_dim,
    "BgApproxGap": exact["approximation_gap"].mean().item(),
    "BgLogPx": exact["log_px"].mean().item(),
    "BgNarrowWidth": min(encoder_widths),
    "BgWideWidth": max(encoder_widths),
    "BgAmortGapNarrow": test["amortization gap", min(encoder_widths)],
    "BgAmortGapWide": test["amortization gap", max(encoder_widths)],
    # a round bound: the largest error is a few thousandths of a nat, which two decimals print as 0.00
    "BgEstimateErrorBelow": next(f"{b:g}" for b in (0.001, 0.01, 0.1, 1.0, 10.0) if check.error.abs().max() < b),
}, digits=2))
