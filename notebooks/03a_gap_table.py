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
# # 3a. Experiments: the gap table, two families, two training protocols, two splits
#
# **Question.** How large are the approximation and amortization gaps of a VAE trained to Cremer et
# al.'s regime on Fashion-MNIST, on the images it was trained on and on new ones; how much does a
# richer encoder family change them; and do they grow or shrink when a model trains on past its
# validation optimum?
#
# **Models.** The training campaign's runs (`amortgap.campaign`) under Cremer et al.'s schedule
# (3280 epochs). Each run gives two models: the **early-stopped** model (the best validation ELBO
# after the KL warm-up, `best.pt`) and the **long-trained** model (the weights at the schedule's
# last epoch), the protocol of Cremer et al.'s Table 2. Two families of encoder: a fully factorised
# Gaussian (FFG) and a planar flow, with the same decoder architecture, data and schedule. The
# headline rows are the long-trained models, beside Cremer et al.'s Table 2.
#
# **Protocol** (the form of Cremer et al. 2018, Table 2). Each model is evaluated under *both*
# families on the same random, seeded training images (the encoder has seen them) and test images
# (it has not), per datapoint:
#
# - $\log p(x)$: AIS with HMC started at the FFG $q^*$ (a planar flow has no closed-form density
#   away from its own samples, so it cannot start AIS);
# - $\mathcal{L}[q^*_{\text{FFG}}]$ and $\mathcal{L}[q^*_{\text{flow}}]$: per-datapoint optima in each
#   family (the flow's, the costliest fit, on a nested random subset of `flow_points` images). The
#   FFG $q^*$ starts from the encoder where its $q$ is an FFG, else from the prior. A flow's ELBO is
#   not concave in its parameters, so the flow $q^*$ is the best of its search from the encoder
#   (with `flow_search` more starts) and of a search from the FFG $q^*$ with identity layers;
# - $\mathcal{L}[q]$: the model's own encoder.
#
# Every setting was validated on these models and images (chapter 3g); the notebook refuses
# settings that were not. The approximation gap of a model is measured in the family of its own
# encoder: $\log p(x) - \mathcal{L}[q^*_{\text{own}}]$, and the amortization gap is
# $\mathcal{L}[q^*_{\text{own}}] - \mathcal{L}[q]$. Every mean comes with a 95% interval over seeds
# *and* images (a two-way random-effects model; `amortgap.stats.crossed_interval`); with one seed,
# over images only, and the table says so. The table also splits each ELBO into its reconstruction
# and KL terms, and scores the decoded posterior mean's pixel accuracy; and it measures how many
# latent units each model uses.

# %% tags=["parameters"]
root = ".."  # the project folder, seen from the kernel's (the pipeline passes its own)
run_dir = "tests/fixtures/campaign/models"
runs = {"diagonal": "diagonal_cremer", "planar": "planar_cremer"}  # each family's runs: <name>_s<seed>
seeds = {"diagonal": [0], "planar": [0]}  # the finished runs, by family
# each model's file in its run (the test fixture's best epoch is its last, so its early model here is epoch 1)
protocols = {"early_stopped": "train.snapshots/e1.pt", "long_trained": "train.snapshots/e40.pt"}
binarization = "static"
split_seed = 0
num_points = 8
flow_points = 4
subset_seed = 0
decompose = {"elbo_samples": 100, "iwae_samples": 100, "seed": 0, "ais": {"steps": 5, "chains": 2},
             "qstar": {"max_steps": 200, "num_samples": 10}}
flow_search = [1, 0]  # the flow model's flow q* search's extra (prior, perturbed) starts
validation_dir = "build/tiny/results/validation"  # the validation's verdict on these settings (settings.csv)
validated = {"diagonal": [], "planar": []}  # family -> the protocols whose models must pass the validation (else it refuses)
whole_test_samples = 10
units_points = 500
workers = 1
recon_images = 6
refine_steps = 20
published_path = "paper/published/cremer2018_table2.csv"
parts_dir = "build/tiny/parts/gap_table"  # each finished task's rows (amortgap.parts), so that a rerun resumes
table_dir = "build/tiny/results/gap_table"
figure_dir = "build/tiny/figures/gap_table"
generated_dir = "build/tiny/generated"

# %%
from pathlib import Path

import pandas as pd
import torch

from amortgap import bounds, data, gap_rows, gaps, latents, models, parts, plots, report
from amortgap.ais import AISConfig
from amortgap.study import gap_table, validation
from amortgap.qstar import optimal_q, refine
from amortgap.parallel import run_tasks
from amortgap.stats import crossed_interval

root = Path(root)
plots.theme()
out = root / table_dir
out.mkdir(parents=True, exist_ok=True)

# %%
splits = {"train": data.binarize(data.load("train", split_seed=split_seed).x, binarization),
          "test": data.load_binarized("test", binarization)}
rows = {split: data.random_subset(len(x), num_points, subset_seed) for split, x in splits.items()}
points = {split: splits[split][rows[split]] for split in splits}
# the flow q* (the costliest fit) on a nested random subset: the same seed's first `flow_points` draws
flow_rows = {split: torch.isin(rows[split], data.random_subset(len(x), flow_points, subset_seed))
             for split, x in splits.items()}
for split, index in rows.items():
    print(f"{split}: {len(index)} random images (flow q* on {int(flow_rows[split].sum())}), e.g. rows {index[:5].tolist()}")
config = gaps.DecomposeConfig.from_section(decompose)
print(config)
paths = {(family, protocol, seed): root / run_dir / f"{runs[family]}_s{seed}" / file
         for family in runs for protocol, file in protocols.items() for seed in seeds[family]}
epochs = {key: gap_table.model_epoch(path.parents[len(Path(protocols[key[1]]).parts) - 1], protocols[key[1]])
          for key, path in paths.items()}
print({f"{f} {p} s{s}": e for (f, p, s), e in epochs.items()})

# %% [markdown]
# Are these the settings the validation chose? Its verdict (`settings.csv` of chapter 3g) names, per
# model, the starts each family's $q^*$ search needs and whether the table's AIS setting passed.

# %%
starts = {"diagonal": 1 + config.qstar_restarts + config.qstar_perturbed, "planar": 1 + sum(flow_search)}
print("the table's starts:", starts, "its AIS:", f"{config.ais.steps} x {config.ais.chains}")
if any(validated.values()):  # at the paper's scale (the test defaults validate nothing: chapter 3g runs after this one)
    verdict = pd.read_csv(root / validation_dir / "settings.csv")
    print(verdict[["family", "protocol", "starts_needed", "table_ais", "table_ais_validated"]].to_string(index=False))
    validation.check_table_settings(verdict, config.ais, starts, validated)

# %% [markdown]
# Each (model, protocol, seed, split) is one task; `workers` single-thread processes share them. A
# finished task's rows are kept under `parts_dir`, committed with the stage's outputs, so that a run
# cut short goes on from them, in this working stretch or the next.

# %%
keys = [(family, protocol, seed, split) for (family, protocol, seed) in paths for split in points]
tables = run_tasks(parts.kept, [(root / parts_dir, f"{f}_{p}_s{s}_{split}", gap_rows.evaluate_checkpoint, paths[f, p, s],
                                 points[split], config, flow_rows[split], refine_steps,
                                 tuple(flow_search) if f == "planar" else (0, 0))  # the flow's own search only
                                for f, p, s, split in keys], workers, desc="gap-table tasks")  # fmt: skip
for (family, protocol, seed, split), table in zip(keys, tables):
    table.insert(0, "image", rows[split].numpy())
    for column, value in (("split", split), ("epoch", epochs[family, protocol, seed]), ("seed", seed),
                          ("protocol", protocol), ("model", family)):
        table.insert(0, column, value)
table = pd.concat(tables, ignore_index=True)
table.to_csv(out / "rows.csv", index=False, float_format="%.6f")

# %% [markdown]
# ## The gap table: means over seeds and images, with 95% intervals

# %%
columns = ["log_px", "elbo_optimal_flow", "elbo_optimal_ffg", "elbo_amortized",
           "approximation_gap", "amortization_gap", "inference_gap"]
intervals = {(protocol, *key): interval for protocol, g in table.groupby("protocol")
             for key, interval in gap_table.intervals(g).items()}
summary = pd.DataFrame([{"protocol": p, "model": m, "split": sp, "quantity": c, "mean": i.mean, "low": i.low, "high": i.high}
                        for (p, m, sp, c), i in intervals.items()])
summary.to_csv(out / "summary.csv", index=False, float_format="%.6f")
means = summary.pivot(index="quantity", columns=["protocol", "model", "split"], values="mean").loc[columns]
for protocol in protocols:
    print(protocol, "\n", means[protocol]["diagonal"].drop(index="elbo_optimal_flow").round(2).to_string())

# %%
# NBVAL_IGNORE_OUTPUT
# The planar-flow models' numbers and the flow q*: at this notebook's defaults (a 40-epoch test model)
# a flow's fit amplifies the last bits in which CPUs differ, so no printed precision would hold on
# another machine; the regression tests skip this cell.
for protocol in protocols:
    print(protocol, "\n", means[protocol]["planar"].round(2).to_string())
print(means.loc["elbo_optimal_flow"].round(2).to_string())

# %% [markdown]
# ## Where the amortization gap comes from: reconstruction or KL
#
# For the FFG models, $\mathcal{L}[q^*] - \mathcal{L}[q]$ splits into what $q^*$ gains in
# reconstruction, $E_{q^*}[\log p(x|z)] - E_q[\log p(x|z)]$, and what it saves in KL,
# $\mathrm{KL}(q\,\|\,p(z)) - \mathrm{KL}(q^*\|\,p(z))$; the pixel accuracy of the decoded
# posterior mean says how much of it a reader would see. The middle rows are for $q$ refined by
# `refine_steps` gradient steps from the encoder.

# %%
ffg = table[table.model == "diagonal"].assign(
    amortization_gap_reconstruction=lambda t: t.reconstruction_optimal - t.reconstruction_amortized,
    amortization_gap_kl=lambda t: t.kl_amortized - t.kl_optimal)
quantities = ["reconstruction_amortized", "kl_amortized", "accuracy_amortized",
              "reconstruction_refined", "kl_refined", "accuracy_refined",
              "reconstruction_optimal", "kl_optimal", "accuracy_optimal_ffg",
              "amortization_gap_reconstruction", "amortization_gap_kl"]
part_intervals = pd.DataFrame([{"protocol": p, "split": split, "quantity": c,
                                **vars(crossed_interval(g.pivot(index="seed", columns="image", values=c).to_numpy()))}
                               for (p, split), g in ffg.groupby(["protocol", "split"]) for c in quantities])
part_intervals.to_csv(out / "parts.csv", index=False, float_format="%.6f")
print(part_intervals.pivot(index="quantity", columns=["protocol", "split"], values="mean").loc[quantities].round(2).to_string())


# %% [markdown]
# ## How many latent units each model uses, and L[q] on the whole test set
#
# (`units_points` test images: all 10,000 at paper scale.)

# %%
def usage(family: str, protocol: str, seed: int) -> dict:
    model = models.load(paths[family, protocol, seed])
    activity = latents.unit_activity(model, units_x)
    whole = bounds.elbo(model, units_x, num_samples=whole_test_samples)
    row = {"model": family, "protocol": protocol, "seed": seed, "encoder_width": model.config.encoder_hidden[-1],
           "active_units": latents.active_units(activity),
           "elbo_amortized_whole_test": whole.value.mean().item()}
    if family == "diagonal":
        kl = latents.kl_per_dimension(model, units_x)
        row["kl_top10_share"] = (kl.sort(descending=True).values[:10].sum() / kl.sum()).item()
    return row


units_x = splits["test"][:units_points]  # the whole test set at paper scale
torch.manual_seed(0)
units = pd.DataFrame([usage(*key) for key in paths])
units.to_csv(out / "units.csv", index=False, float_format="%.6f")
print(units[units.model == "diagonal"].round(2).to_string(index=False))

# %%
# NBVAL_IGNORE_OUTPUT
# The planar-flow models' numbers: not stable across CPUs at the test defaults (see above).
print(units[units.model == "planar"].round(2).to_string(index=False))

# %% [markdown]
# ## What the gaps look like: reconstructions
#
# Random test images (top row) and the decoded posterior mean of the first seed's long-trained FFG
# model under the encoder's $q$, under $q$ refined by `refine_steps` gradient steps, and under $q^*$.

# %%
model = models.load(paths["diagonal", "long_trained", seeds["diagonal"][0]])
shown_x = points["test"][:recon_images]
with torch.no_grad():
    methods = {"encoder q": model.encode(shown_x)}
torch.manual_seed(0)
methods[f"refined, {refine_steps} steps"] = refine(model, shown_x, refine_steps).q
methods["q*"] = optimal_q(model, shown_x, config=config.qstar).q
images = {"image": shown_x.numpy()}
for name, q in methods.items():
    images[name] = model.mean_image(latents.posterior_mean(q)).detach().numpy()
    print(f"{name}: pixel accuracy {latents.pixel_accuracy(model, shown_x, q).mean():.3f}")
fig = plots.reconstructions(images)
plots.save(fig, root / figure_dir / "reconstructions")

# %% [markdown]
# ## The tables and the numbers for the paper
#
# Read back from the tables as written, so that every number in the paper is one a reader can
# recompute from `results/gap_table`. Cremer et al.'s Fashion-MNIST columns stand beside the
# long-trained models' (their bounds as published, their gaps derived from them; their numbers are
# on training images, binarized dynamically, from another split of 50,000 training images, trained
# at batch 20 in one of their scripts).

# %%
written = gap_table.load(out)
published = pd.read_csv(root / published_path)
early = gap_table.table(written["rows"][written["rows"].protocol == "early_stopped"])
report.write_table(root / generated_dir / "decomposition_table_early.tex", early)
paper_table = gap_table.table(written["rows"][written["rows"].protocol == "long_trained"], published)
report.write_table(root / generated_dir / "decomposition_table.tex", paper_table)
numbers = gap_table.numbers(written["rows"], written["parts"], written["units"], published)
numbers["TabFlowStarts"] = starts["planar"] + 1  # the flow model's own search, and one more from the FFG q*
report.write_macros(root / generated_dir / "gap_table.tex", numbers)
# (the flow q* and the planar-flow models' numbers are written for the paper but not printed: see above)
print(paper_table.drop(index=gap_table.QUANTITIES["elbo_optimal_flow"])[["FFG train", "FFG test"]].to_string())
print(report.macros(report.stable_view(numbers, unstable=("Flow", "TabLogPxSe", "Cremer"))))

# %% [markdown]
# ## What the numbers say

# %%
# Prose composed from this notebook's numbers, each printed at the precision at which the cells above
# print it for the regression tests (interval bounds to one decimal), so that it is compared too.
def said(protocol: str, model: str, split: str, quantity: str) -> str:
    return intervals[(protocol, model, split, quantity)].format(2, bound_digits=1)


over = "seeds and images" if len(seeds["diagonal"]) > 1 else "images only (one seed)"
amortization = {split: intervals[("long_trained", "diagonal", split, "amortization_gap")] for split in ("train", "test")}
apart = amortization["train"].high < amortization["test"].low or amortization["test"].high < amortization["train"].low
test_parts = part_intervals[(part_intervals.split == "test") & (part_intervals.protocol == "long_trained")].set_index("quantity")["mean"]
larger_part = ("reconstruction" if test_parts["amortization_gap_reconstruction"] > test_parts["amortization_gap_kl"]
               else "KL")
report.conclude(
    f"On {num_points} random test images ({len(seeds['diagonal'])} seed{'s' if len(seeds['diagonal']) > 1 else ''}; 95% intervals "
    f"over {over}), the long-trained FFG model's **amortization gap is {said('long_trained', 'diagonal', 'test', 'amortization_gap')} "
    f"nats** and its **approximation gap {said('long_trained', 'diagonal', 'test', 'approximation_gap')}**. On as many random training "
    f"images the amortization gap is {said('long_trained', 'diagonal', 'train', 'amortization_gap')}: "
    + (f"{'smaller' if amortization['train'].mean < amortization['test'].mean else 'larger'} than on test images, with "
       "the intervals apart. " if apart else "the intervals overlap, so these images do not separate the splits. ")
    + f"The early-stopped FFG model's amortization gap on test images is {said('early_stopped', 'diagonal', 'test', 'amortization_gap')}. "
    f"Split into its parts, the long-trained FFG model's amortization gap on test images is "
    f"{test_parts['amortization_gap_reconstruction']:.2f} nats of reconstruction that q* gains and "
    f"{test_parts['amortization_gap_kl']:.2f} nats of KL that it saves: the encoder's q loses mainly in {larger_part}.")

# %%
# NBVAL_IGNORE_OUTPUT
# The planar-flow model's sentence: its numbers at the test defaults are not stable across CPUs.
report.conclude(f"With a planar-flow encoder, the long-trained model's approximation gap is "
                f"{said('long_trained', 'planar', 'test', 'approximation_gap')} and its amortization gap "
                f"{said('long_trained', 'planar', 'test', 'amortization_gap')}.")
