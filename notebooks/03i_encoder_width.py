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
# # 3i. Experiments: encoder width with the decoder fixed
#
# **Question.** How does the amortization gap change with the encoder's width when nothing else
# changes? Jointly trained VAEs of different widths also have different decoders (chapter 3c), so
# their gaps compare different models. Here one decoder is fixed, the campaign's early-stopped FFG
# decoder of seed 0, and encoders of each width, the reference's depth, are trained against it from
# random weights, several seeds per width, under one schedule with a decaying rate (campaign
# entries on that decoder).
#
# Every encoder is evaluated on the split's reported images (chapter 3h: the gap table's random
# training and test images), with its ELBO drawn from the same random numbers as the split's
# encoders, and its amortization gap $\mathcal{L}[q^*] - \mathcal{L}[q]$ uses the split's
# $\mathcal{L}[q^*]$ on this decoder: $q^*$ is searched once per image and reused by every encoder.
#
# Three checks come with the widths:
# - **the pilot**: a fresh encoder of the joint encoder's width must reach the joint encoder's mean
#   ELBO less a margin (one-sided, on the training images), or the schedule is too short for any
#   width to be reported;
# - **the schedule suffices** when an encoder taken on to twice the schedule gains, in validation
#   ELBO, less than half the smallest width difference claimed;
# - the decoder adapted to a width-200 encoder, so a wider encoder's gain may be understated: every
#   claim holds for this fixed decoder.

# %% tags=["parameters"]
root = ".."  # the project folder, seen from the kernel's (the pipeline passes its own)
run_dir = "tests/fixtures/campaign/models"
decoder = "diagonal_cremer_s0/best.pt"  # the fixed decoder: <campaign run>/<weights file>
campaign_params = "tests/fixtures/encoder_width/params.yaml"  # whose `campaign` section trained the encoders
pilots = ["diagonal_enc32_on_diagonal_cremer_s0.best_refit_s0",
          "diagonal_enc32_on_diagonal_cremer_s0.best_encoder_cremer_s0"]  # fresh encoders of the joint width, one per schedule tried
encoders = ["diagonal_enc4_on_diagonal_cremer_s0.best_encoder_cremer_s0", "diagonal_enc4_on_diagonal_cremer_s0.best_encoder_cremer_s1",
            "diagonal_enc16_on_diagonal_cremer_s0.best_encoder_cremer_s0", "diagonal_enc32_on_diagonal_cremer_s0.best_encoder_cremer_s0",
            "diagonal_enc64_on_diagonal_cremer_s0.best_encoder_cremer_s0",
            "diagonal_enc64_on_diagonal_cremer_s0.best_encoder_cremer_s1"]  # the study's: every width and seed past its schedule
images = {"split_seed": 0, "binarization": "static", "subset_seed": 0, "reported": 8, "selection": 16, "targets": 64}  # the split's
elbo_samples = 100  # per ELBO, as the split draws them (its seed too)
seed = 0
margin = 6.0  # nats of mean ELBO the pilot may fall short of the joint encoder (one-sided, 95%; the test scale's tiny encoders train 13 epochs)
split_rows_path = "build/tiny/results/split/rows.csv"  # the split's rows: L[q*] and L[q_joint] per image
workers = 1
parts_dir = "build/tiny/parts/encoder_width"  # each finished task's rows (amortgap.parts), so that a rerun resumes
table_dir = "build/tiny/results/encoder_width"
figure_dir = "build/tiny/figures/encoder_width"
generated_dir = "build/tiny/generated"

# %%
from pathlib import Path

import pandas as pd

from amortgap import campaign, models, parts, plots, report, split_rows
from amortgap.parallel import run_tasks
from amortgap.study import encoder_width, split
from amortgap.study.split_targets import SplitImages

root = Path(root)
plots.theme()
out = root / table_dir
out.mkdir(parents=True, exist_ok=True)

# %%
points = split.images_by_role(SplitImages.from_section(images))
config = campaign.load_config(root / campaign_params)
found = encoder_width.encoders(config, decoder, encoders, root)
tried = encoder_width.encoders(config, decoder, pilots, root, one_schedule=False)
joint = models.load(root / run_dir / decoder)
split_decoder = str(Path(*Path(decoder).parts[1:]))  # the decoder's name in the split's rows (its file in the run)
print(f"decoder {decoder}; the study's schedule {found.protocol.iloc[0]} ({found.epochs.iloc[0]} epochs); its encoders:")
print(found.groupby("width").agg(seeds=("seed", lambda s: ", ".join(map(str, sorted(s)))), trained_to=("trained", "max")).to_string())
print(f"the pilots: {', '.join(tried.run)}; {elbo_samples} samples per ELBO; images: {len(points['train'].rows)} training and "
      f"{len(points['test'].rows)} test")

# %% [markdown]
# Each (encoder, set of images) is one task, kept under `parts_dir` when it finishes, so that a run
# cut short goes on from it, and a seed that finishes later adds its own tasks only. The joint
# encoder's ELBO is drawn again and must equal the split's (the same images and random numbers).

# %%
every = pd.concat([found, tried]).drop_duplicates("run")  # the study's encoders and the pilots, each once
named = dict(zip(every.run, every.weights))
models_by_run = {"joint": joint, **{run: models.load(path) for run, path in named.items()}}
split_rows.shares_decoder(joint, models_by_run)
roles = ("train", "test")
tasks = [(root / parts_dir, f"{run}_{role}", split_rows.candidate_elbos, {run: model}, points[role].x, elbo_samples, seed)
         for run, model in models_by_run.items() for role in roles]  # fmt: skip
tables = iter(run_tasks(parts.kept, tasks, workers, desc="encoders x images"))
elbos = pd.concat([next(tables).set_axis(["elbo"], axis=1).assign(run=run, split=role, image=points[role].rows, label=points[role].labels)
                   for run in models_by_run for role in roles], ignore_index=True)  # fmt: skip
theirs = pd.read_csv(root / split_rows_path)
encoder_width.same_draws(elbos[elbos.run == "joint"], theirs, split_decoder)
described = every[["run", "width", "seed"]]
rows = encoder_width.gap_rows(elbos.merge(described, on="run"), theirs, split_decoder)
study = rows[rows.run.isin(found.run)]
study.drop(columns="run").to_csv(out / "rows.csv", index=False, float_format="%.6f")
pilot = encoder_width.pilot_table(tried, rows, joint.config.encoder_hidden[-1], found.protocol.iloc[0], margin)
pilot.to_csv(out / "pilot.csv", index=False, float_format="%.6f")
print("the pilots: a fresh encoder of the joint width against the joint encoder, paired over the training images")
print(pilot[["protocol", "epochs", "fresh_elbo", "joint_elbo", "difference", "lower_bound", "passes"]].round(3).to_string(index=False))

# %% [markdown]
# ## The amortization gap by width
#
# Per split and width: the mean with its 95% interval over seeds and images (over images only
# where a width has one seed), the median and the 10% and 90% quantiles; then each pair of
# neighbouring widths, the narrower one's gap minus the wider one's, over their common seeds.

# %%
cells = encoder_width.summary(study)
print(cells.assign(interval=[f"[{lo:.1f}, {hi:.1f}]" for lo, hi in zip(cells.low, cells.high)])
      [["split", "width", "seeds", "mean", "interval", "median", "q10", "q90"]].round(2).to_string(index=False))  # fmt: skip
steps = encoder_width.differences(study)
print(steps.assign(interval=[f"[{lo:.1f}, {hi:.1f}]" for lo, hi in zip(steps.low, steps.high)])
      [["split", "narrow", "wide", "seeds", "mean", "interval"]].round(2).to_string(index=False))  # fmt: skip
fig = encoder_width.figure(study, cells)
plots.save(fig, root / figure_dir / "encoder_width")

# %% [markdown]
# By image class, on the training images: each width's mean gap (nats) over its seeds and the
# images of that class.

# %%
print(encoder_width.by_class(study).round(1).to_string())

# %% [markdown]
# **Does the schedule suffice?** Each encoder taken on past the schedule (its last rate continues):
# its best validation ELBO within the schedule and within the longer run.

# %%
schedule = encoder_width.schedule_check(config, found, root)
schedule.to_csv(out / "schedule.csv", index=False, float_format="%.6f")
print(schedule[["width", "seed", "epochs", "longer", "trained", "best_valid_elbo", "longer_best_valid_elbo", "gain"]]
      .round(3).to_string(index=False))  # fmt: skip

# %% [markdown]
# ## Numbers for the paper
#
# Read back from the tables as written (`table_dir`).

# %%
written = encoder_width.load(out)
numbers = encoder_width.numbers(**written)
report.write_macros(root / generated_dir / "encoder_width.tex", numbers)
report.write_table(root / generated_dir / "encoder_width_table.tex", encoder_width.table(encoder_width.summary(written["rows"])),
                   caption_note="Made by notebooks/03i_encoder_width.py.")  # fmt: skip
print(report.macros(report.stable_view(numbers, unstable=encoder_width.UNSTABLE)))

# %% [markdown]
# ## What the numbers say

# %%
# Prose composed from this notebook's numbers, at the precision at which the cells above print them.
report.conclude(f"The pilot under the study's schedule passes (no width is reported otherwise). With the decoder fixed, width "
                f"{numbers['CapacityNarrowWidth']}'s training-image amortization gap minus width {numbers['CapacityWideWidth']}'s is "
                f"{numbers['CapacityTrainDifference'].value:.2f} nats over {numbers['CapacityIntervalOver']}, a ratio of "
                f"{numbers['CapacityTrainRatio'].value:.2f}. {numbers['CapacityTrends']} "
                f"Schedule: {numbers['CapacityScheduleVerdict']}. The decoder adapted to a width-200 encoder: these claims "
                "hold for this fixed decoder.")
