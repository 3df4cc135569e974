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
# # 3c. Experiments: encoder width, decoder accommodation and posterior collapse
#
# **Question.** Does a wider encoder close the amortization gap, and is what changes with width the
# encoder's capacity, or the decoder adapting to the encoder it was trained with?
#
# **Part 1: joint training.** For each encoder hidden width $w$ (`depth` layers) and seed we train a
# whole VAE, encoder and decoder together, with the reference models' schedule, to convergence. On a
# random, seeded set of test images (a subset of the gap table's), `amortgap.gaps.decompose` gives
# $\log p(x)$ (AIS from $q^*$), $\mathcal{L}[q^*]$ and $\mathcal{L}[q]$ per image. We also count
# each model's active latent units (Burda et al. 2016) and its KL per dimension: a narrow encoder
# may train a decoder that uses fewer latent dimensions (posterior collapse), which shrinks the
# posterior the encoder has to match.
#
# **Part 2: encoder x decoder.** To separate the encoder's capacity from the decoder's
# accommodation, fresh encoders of each width in `frozen_widths` are trained against *frozen*
# decoders: the reference model's and those of the jointly trained models of the widths in
# `frozen_decoder_widths` (seed $s$'s encoder against seed $s$'s decoder, for the seeds in
# `frozen_seeds`). With a decoder fixed,
# $\mathcal{L}[q^*]$ of every image is fixed too, and the amortization gap of each encoder is
# $\mathcal{L}[q^*] - \mathcal{L}[q]$ against that decoder's $q^*$ (the reference decoder's from
# a search from its own encoder on these images, the joint decoders' from part 1).
#
# Members sharing an architecture (the seeds of one width) train as one stack; stacks, and the
# per-model evaluations, run in `workers` single-thread processes. Checkpoints are fingerprinted:
# an interrupted run resumes and a finished member is reloaded.

# %% tags=["parameters"]
root = ".."  # the project folder, seen from the kernel's (the pipeline passes its own)
model_dir = "build/tiny/models"
widths = [16, 64]
seeds = [0, 1]
depth = 2
frozen_widths = [16, 64]
frozen_decoder_widths = [16]
frozen_seeds = [0]
latent_dim = 50
decoder_hidden = [200, 200]
split_seed = 0
num_train = 2000
training = {"epochs": 3, "batch_size": 100, "lr": 0.001, "lr_schedule": "plateau", "lr_decay": 0.3, "plateau_patience": 1,
            "max_decays": 1, "patience": 2, "min_delta": 0.05, "warmup_epochs": 1, "binarization": "static"}
frozen_lr = 0.003
eval_points = 6
subset_seed = 0
decompose = {"elbo_samples": 100, "iwae_samples": 0, "seed": 0, "ais": {"steps": 20, "chains": 4},
             "qstar": {"max_steps": 200, "num_samples": 10}}
workers = 1
max_stack = 3
table_dir = "build/tiny/results/sweep"
figure_dir = "build/tiny/figures/width_sweep"
generated_dir = "build/tiny/generated"
checkpoint_dir = "build/tiny/checkpoints/sweep"

# %%
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from amortgap import bounds, data, gaps, latents, models, plots, report, sweep, train
from amortgap.families import DiagonalGaussian
from amortgap.parallel import run_tasks
from amortgap.rng import seeded
from amortgap.study import width_sweep

root = Path(root)
plots.theme()
out = root / table_dir
out.mkdir(parents=True, exist_ok=True)

# %%
decompose_config = gaps.DecomposeConfig.from_section(decompose)
joint_config = train.TrainConfig.from_section(training)
train_x = data.load("train", split_seed=split_seed).x[:num_train]
valid_x = data.load_binarized("valid", joint_config.binarization, split_seed=split_seed)
test_x = data.load_binarized("test", joint_config.binarization)
index = data.random_subset(len(test_x), eval_points, subset_seed)
x = test_x[index]
frozen_config = replace(joint_config, lr=frozen_lr, warmup_epochs=0)
base = models.VAEConfig(latent_dim=latent_dim, decoder_hidden=tuple(decoder_hidden))
print(f"{len(x)} random test images; joint training: {joint_config}")

# %% [markdown]
# ## Part 1: jointly trained VAEs of every width

# %%
joint = [sweep.Member(sweep.member_config(base, w, depth), s) for w in widths for s in seeds]
joint_results = sweep.train_members(joint, train_x, valid_x, joint_config, root / checkpoint_dir,
                                    workers=workers, max_stack=max_stack)
tables = run_tasks(gaps.decompose, [(r.model, x, decompose_config) for r in joint_results], workers,
                   desc="joint decompositions")
rows = []
for member, result, table in zip(joint, joint_results, tables):
    model, history = result.model, result.history
    with torch.no_grad():
        q = model.encode(x)
    activity = latents.unit_activity(model, test_x)
    kl = latents.kl_per_dimension(model, test_x)
    rows.append(table.assign(
        width=member.config.encoder_hidden[0], seed=member.seed, image=index.numpy(),
        accuracy_amortized=latents.pixel_accuracy(model, x, q).numpy(),
        active_units=latents.active_units(activity), kl_top10_share=(kl.sort(descending=True).values[:10].sum() / kl.sum()).item(),
        epochs=len(history), stopped="cap" if len(history) == joint_config.epochs else "converged",
        best_valid_elbo=history.valid_elbo.max(), train_seconds=history.seconds.sum()))
joint_table = pd.concat(rows, ignore_index=True)
joint_table.to_csv(out / "joint.csv", index=False, float_format="%.6f")
per_model = joint_table.groupby(["width", "seed"]).agg(
    active_units=("active_units", "first"), epochs=("epochs", "first"), best_valid_elbo=("best_valid_elbo", "first"),
    **{c: (c, "mean") for c in ["log_px", "approximation_gap", "amortization_gap", "inference_gap"]})
print(per_model.round(2).to_string())
fig = plots.sweep_gaps(width_sweep.width_gaps(joint_table))
plots.save(fig, root / figure_dir / "width_sweep")

# %% [markdown]
# ## Part 2: encoders trained against frozen decoders

# %%
decoders = {f"reference_s{s}": models.load(root / model_dir / f"reference_diagonal_s{s}.pt") for s in seeds}
decoders |= {f"joint_w{m.config.encoder_hidden[0]}_s{m.seed}": r.model for m, r in zip(joint, joint_results)
             if m.config.encoder_hidden[0] in frozen_decoder_widths}
decoder_kinds = ["reference"] + [f"joint_w{w}" for w in frozen_decoder_widths]
frozen = [sweep.Member(sweep.member_config(base, w, depth), s, f"{kind}_s{s}")
          for kind in decoder_kinds for w in frozen_widths for s in frozen_seeds]
frozen_results = sweep.train_members(frozen, train_x, valid_x, frozen_config, root / checkpoint_dir, decoders,
                                     workers=workers, max_stack=max_stack)

# %%
# L[q*] of each reference decoder on these images (the FFG q*, searched from its own encoder)
reference_qstar = pd.concat([gaps.optimal_elbo(decoders[f"reference_s{s}"], x, DiagonalGaussian(), decompose_config).assign(
    seed=s, image=index.numpy()) for s in frozen_seeds]).set_index(["seed", "image"]).elbo_optimal
joint_qstar = joint_table.set_index(["width", "seed", "image"]).elbo_optimal
rows = []
for member, result in zip(frozen, frozen_results):
    with seeded(decompose_config.seed):
        amortized = bounds.elbo(result.model, x, num_samples=decompose_config.elbo_samples)
    kind = member.decoder.rsplit("_s", 1)[0]
    if kind == "reference":
        optimal = reference_qstar.loc[[(member.seed, i) for i in index.tolist()]].to_numpy()
    else:
        optimal = joint_qstar.loc[[(int(kind[len("joint_w"):]), member.seed, i) for i in index.tolist()]].to_numpy()
    rows.append(pd.DataFrame({
        "decoder": kind, "encoder_width": member.config.encoder_hidden[0], "seed": member.seed, "image": index.numpy(),
        "elbo_amortized": amortized.value.numpy(), "elbo_optimal": optimal,
        "amortization_gap": optimal - amortized.value.numpy(), "epochs": len(result.history),
        "stopped": "cap" if len(result.history) == frozen_config.epochs else "converged"}))
design = pd.concat(rows, ignore_index=True)
design.to_csv(out / "encoder_decoder.csv", index=False, float_format="%.6f")
print(design.groupby(["decoder", "encoder_width"]).agg(amortization_gap=("amortization_gap", "mean"),
                                                      epochs=("epochs", "mean")).round(2).to_string())
design_summary = width_sweep.encoder_decoder(design)
fig = plots.encoder_decoder(design_summary)
plots.save(fig, root / figure_dir / "encoder_decoder")

# %% [markdown]
# ## The tables and the numbers for the paper
#
# Read back from the tables as written (`results/sweep`). The trend words come from the 95%
# intervals over seeds and images on each step between widths (`amortgap.stats.trend`).

# %%
written = width_sweep.load(out)
print(report.write_table(root / generated_dir / "sweep_table.tex", width_sweep.sweep_table(written["joint"])))
print(report.write_table(root / generated_dir / "design_table.tex", width_sweep.design_table(written["design"])))
numbers = width_sweep.numbers(written["joint"], written["design"])
report.write_macros(root / generated_dir / "width_sweep.tex", numbers)
print(report.macros(report.stable_view(numbers)))

# %% [markdown]
# ## What the numbers say

# %%
# Prose composed from this notebook's numbers, each printed at the precision at which the cells above
# print it for the regression tests (interval bounds to one decimal), so that it is compared too.
gap_words = width_sweep.trends(joint_table)
units = per_model.groupby("width").active_units.mean()
cells = design_summary.set_index(["decoder", "encoder_width"])["mean"]
narrow, wide = min(frozen_widths), max(frozen_widths)
report.conclude(
    f"Trained jointly, from width {widths[0]} to {widths[-1]} the amortization gap {gap_words['amortization_gap']}, "
    f"the approximation gap {gap_words['approximation_gap']} and the inference gap {gap_words['inference_gap']} "
    f"(trend words from 95% intervals over seeds and images on each step between widths). The decoders use "
    f"{units.iloc[0]:.1f} active units at width {widths[0]} and {units.iloc[-1]:.1f} at width {widths[-1]}. "
    f"Against frozen decoders, a width-{narrow} encoder's amortization gap is {cells[('reference', narrow)]:.2f} nats on "
    f"the reference decoder against {cells[('reference', wide)]:.2f} for width {wide}"
    + "".join(f"; on the joint width-{w} decoder, {cells[(f'joint_w{w}', narrow)]:.2f} against "
              f"{cells[(f'joint_w{w}', wide)]:.2f}" for w in frozen_decoder_widths)
    + ". ")
handicap = {d: cells[(d, narrow)] - cells[(d, wide)] for d in design_summary.decoder.unique()}
smallest = min(handicap, key=handicap.get)
report.conclude(
    f"The narrow encoder's handicap (its gap minus the wide encoder's) is smallest, {handicap[smallest]:.2f} nats, on "
    f"the {smallest.replace('joint_w', 'joint width-')} decoder, against {handicap['reference']:.2f} on the reference "
    "decoder: what width buys depends on the decoder the encoder must serve, so the joint sweep's gaps mix the "
    "encoder's capacity with the decoder's accommodation to it.")
