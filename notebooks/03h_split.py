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
# # 3h. Experiments: the amortization gap split into expressivity and optimisation
#
# **Question.** When an encoder leaves an amortization gap, is it because no encoder of its
# architecture could do better (a limit of *expressivity*), or because joint training did not find
# the encoder that could (a failure of *optimisation*)? Cremer et al. (2018) measured the gap; this
# chapter splits it, per image.
#
# Each decoder of the campaign's first FFG run (its snapshots after the KL warm-up and its
# early-stopped model) comes with the encoder trained jointly with it, $q_{\text{joint}}$. Candidate
# encoders of the same architecture are trained against the frozen decoder (campaign entries on
# that decoder):
# - `refit`: $q_{\text{joint}}$ trained on for 1000 more epochs, the rate falling from
#   $10^{-4}$ to $10^{-6}$;
# - `distilled`: $q_{\text{joint}}$ first fitted to the per-image $q^*$ of 10,000 training images
#   (by $\mathrm{KL}(q \,\|\, q^*)$), then trained on the same way;
# - `fresh_*`: the width study's encoders from random weights, where there are some.
#
# $q_{\text{best}}$ is the candidate, $q_{\text{joint}}$ included, of highest mean ELBO on training
# images kept for that choice alone. Per reported image,
# - **expressivity** $= \mathcal{L}[q^*] - \mathcal{L}[q_{\text{best}}]$,
# - **optimisation** $= \mathcal{L}[q_{\text{best}}] - \mathcal{L}[q_{\text{joint}}]$,
#
# and they add up to the amortization gap $\mathcal{L}[q^*] - \mathcal{L}[q_{\text{joint}}]$.
# $q_{\text{best}}$ is only the best encoder *found*, a lower bound on the best of the architecture:
# in the mean, expressivity is an upper bound and optimisation a lower bound.
#
# The training images play three disjoint roles, drawn as one random order: the reported images
# (the gap table's random subset), the images that choose $q_{\text{best}}$, and the distillation's
# targets. The reported test images are the gap table's too. $\mathcal{L}[q^*]$ uses the gap table's
# FFG search and estimator, and every encoder's ELBO on an image is drawn with the same random
# numbers, so that the differences between encoders are not swamped by sampling noise.

# %% tags=["parameters"]
root = ".."  # the project folder, seen from the kernel's (the pipeline passes its own)
run_dir = "tests/fixtures/campaign/models"
run = "diagonal_cremer_s0"  # the campaign run whose decoders are split
decoders = ["train.snapshots/e1.pt", "best.pt", "train.snapshots/e40.pt"]  # its weights files
campaign_params = "tests/fixtures/split/params.yaml"  # whose `campaign` section trained the candidates
candidates = ["diagonal_enc32_joint_on_diagonal_cremer_s0.train.snapshots.e1_refit_s0",
              "diagonal_enc32_distilled_on_diagonal_cremer_s0.train.snapshots.e1_refit_s0",
              "diagonal_enc32_joint_on_diagonal_cremer_s0.best_refit_s0",
              "diagonal_enc32_distilled_on_diagonal_cremer_s0.best_refit_s0",
              "diagonal_enc32_on_diagonal_cremer_s0.best_refit_s0",
              "diagonal_enc32_joint_on_diagonal_cremer_s0.train.snapshots.e40_refit_s0",
              "diagonal_enc32_distilled_on_diagonal_cremer_s0.train.snapshots.e40_refit_s0"]  # campaign runs, finished
images = {"split_seed": 0, "binarization": "static", "subset_seed": 0, "reported": 8, "selection": 16, "targets": 64}
elbo_samples = 100  # per ELBO: of every candidate (the same draws for all) and of q*
qstar = {"max_steps": 200, "num_samples": 10}  # amortgap.qstar.QStarConfig: the gap table's FFG search
seed = 0
workers = 1
parts_dir = "build/tiny/parts/split"  # each finished task's rows (amortgap.parts), so that a rerun resumes
table_dir = "build/tiny/results/split"
figure_dir = "build/tiny/figures/split"
generated_dir = "build/tiny/generated"

# %%
from pathlib import Path

import pandas as pd

from amortgap import campaign, gaps, parts, plots, report, split_rows
from amortgap.distill import dotted
from amortgap.parallel import run_tasks
from amortgap.qstar import QStarConfig
from amortgap.study import split
from amortgap.study.split_targets import SplitImages

root = Path(root)
plots.theme()
out = root / table_dir
out.mkdir(parents=True, exist_ok=True)

# %%
roles = SplitImages.from_section(images)
points = split.images_by_role(roles)
run_path = root / run_dir / run
epochs = split.decoder_epochs(run_path, decoders)
named = split.roles(epochs)
campaign_config = campaign.load_config(root / campaign_params)
found = split.candidates_of(campaign_config, run, decoders, candidates, root)
refit_epochs = split.refit_epochs(campaign_config, candidates)
config = gaps.DecomposeConfig(elbo_samples=elbo_samples, iwae_samples=0, qstar=QStarConfig.from_section(qstar), seed=seed)
for role, found_images in points.items():
    print(f"{role}: {len(found_images.rows)} random images, e.g. rows {found_images.rows[:5].tolist()}")
for decoder in decoders:
    print(f"{split.decoder_label(decoder, epochs[decoder])}: candidates joint, {', '.join(found[decoder])}")
print(f"{elbo_samples} samples per ELBO; the candidates from q_joint train {refit_epochs} epochs; q*: {config.qstar}")

# %% [markdown]
# Each (decoder, set of images) is one task, kept under `parts_dir` when it finishes, so that a run
# cut short goes on from it; `workers` single-thread processes share them. First the candidates'
# ELBOs on the selection images, which choose $q_{\text{best}}$; then, on the reported images, the
# candidates' ELBOs and $\mathcal{L}[q^*]$, searched from $q_{\text{joint}}$ and from
# $q_{\text{best}}$, the better kept per image.

# %%
def evaluate(role: str, starts: dict[str, tuple[str, ...]]) -> pd.DataFrame:
    """Every decoder's rows on one role's images (q* searched from ``starts[decoder]``, if any)."""
    tasks = [(root / parts_dir, f"{dotted(f'{run}/{decoder}')}_{role}", split_rows.evaluate, run_path / decoder,
              found[decoder], points[role].x, config, starts.get(decoder, ())) for decoder in decoders]  # fmt: skip
    tables = run_tasks(parts.kept, tasks, workers, desc=f"decoders, {role} images")
    return pd.concat([t.assign(decoder=decoder, epoch=epochs[decoder], split=role, image=points[role].rows, label=points[role].labels)
                      for decoder, t in zip(decoders, tables)], ignore_index=True)  # fmt: skip


selection = split.selection_table(evaluate("selection", {}), epochs)
selection.to_csv(out / "selection.csv", index=False, float_format="%.6f")
chosen = dict(zip(selection[selection.chosen].decoder, selection[selection.chosen].candidate))
reported = pd.concat([evaluate(role, {d: ("joint", chosen[d]) for d in decoders}) for role in ("train", "test")], ignore_index=True)
table = split.split_rows(reported, chosen)
table.to_csv(out / "rows.csv", index=False, float_format="%.6f")
print("each candidate's mean ELBO on the selection images, and its paired gain over q_joint [95% interval]:")
print(selection.assign(gain=[f"{g:+.2f} [{lo:.1f}, {hi:.1f}]" for g, lo, hi in zip(selection.gain, selection.gain_low, selection.gain_high)])
      [["decoder", "candidate", "elbo", "gain", "chosen"]].round(2).to_string(index=False))  # fmt: skip
print(f"q* searches converged: {int(table.qstar_converged.sum())} of {len(table)}; the better start, per decoder:")
print(table.groupby(["decoder", "qstar_start"]).size().to_string())

# %% [markdown]
# ## The split
#
# Per decoder and split: each part's mean with its 95% interval over the images (one trained run,
# so over images only), its median and its 10% and 90% quantiles.

# %%
summary = split.summary(table, ["decoder", "epoch", "split"])
print(summary.assign(interval=[f"[{lo:.1f}, {hi:.1f}]" for lo, hi in zip(summary.low, summary.high)])
      [["decoder", "split", "quantity", "mean", "interval", "median", "q10", "q90"]].round(2).to_string(index=False))  # fmt: skip
fig = split.figure(summary)
plots.save(fig, root / figure_dir / "split")

# %% [markdown]
# **Which part dominates, and for which images.** Per decoder and split: optimisation minus
# expressivity, paired over the images, and the share of images whose optimisation part is the
# larger; then, on the early-stopped decoder, each part's mean by the image's class.

# %%
dominance = split.dominance(table)
print(dominance.assign(interval=[f"[{lo:.1f}, {hi:.1f}]" for lo, hi in zip(dominance.low, dominance.high)],
                       share=(100 * dominance.share).round(0))[["decoder", "split", "mean", "interval", "share"]].round(2).to_string(index=False))  # fmt: skip
classes = split.by_class(table, named["stopped"])
print("the early-stopped decoder, by class (mean nats; images):")
print(classes.assign(interval=[f"[{lo:.1f}, {hi:.1f}]" for lo, hi in zip(classes.low, classes.high)])
      [["split", "item", "images", "mean", "interval", "expressivity", "optimisation"]].round(2).to_string(index=False))  # fmt: skip

# %% [markdown]
# The early-stopped decoder's training images with the largest amortization gaps, each with its
# expressivity (E) and optimisation (O) parts, in nats.

# %%
stopped_train = table[(table.decoder == named["stopped"]) & (table.split == "train")]
fig = split.worst_images(stopped_train, points["train"])
plots.save(fig, root / figure_dir / "worst_images")

# %% [markdown]
# **Generalisation.** The test images' gap minus the training images', split the same way (the
# images differ, so Welch's interval).

# %%
general = split.generalisation(table)
print(general.assign(interval=[f"[{lo:.1f}, {hi:.1f}]" for lo, hi in zip(general.low, general.high)])
      [["decoder", "quantity", "mean", "interval"]].round(2).to_string(index=False))  # fmt: skip

# %% [markdown]
# ## Numbers for the paper
#
# Read back from the tables as written (`results/split`).

# %%
written = split.load(out)
numbers = {**split.numbers(**written), **split.settings(roles, elbo_samples, refit_epochs)}
report.write_macros(root / generated_dir / "split.tex", numbers)
report.write_table(root / generated_dir / "split_table.tex", split.table(written["rows"]), caption_note="Made by notebooks/03h_split.py.")
report.write_table(root / generated_dir / "split_classes.tex", split.class_table(written["rows"], named["stopped"]),
                   caption_note="Made by notebooks/03h_split.py.")  # fmt: skip
print(report.macros(report.stable_view(numbers)))

# %% [markdown]
# ## What the numbers say

# %%
# Prose composed from this notebook's numbers, each printed at the precision at which the cells above
# print it for the regression tests (interval bounds to one decimal), so that it is compared too.
stopped = dominance.set_index(["decoder", "split"]).loc[(named["stopped"], "train")]
moved = split.change(table, "optimisation", "train", named["first"], named["stopped"])
report.conclude(f"On the early-stopped decoder's {roles.reported} reported training images, optimisation minus expressivity is "
                f"{stopped['mean']:.2f} [{stopped.low:.1f}, {stopped.high:.1f}] nats, and the optimisation part is the larger on "
                f"{100 * stopped.share:.0f}% of the images. From epoch {epochs[named['first']]} to the early-stopped decoder, the "
                f"optimisation part changes by "
                f"{moved.format(2, bound_digits=1)} nats on training images. The best encoder found bounds the architecture's best "
                "from below: expressivity is an upper bound, optimisation a lower bound.")
