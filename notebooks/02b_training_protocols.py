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
# # 2b. Training protocols: Cremer et al.'s schedule, two models from each run
#
# The models of the model-setup chapter stop early: the plateau rule makes its rate cuts a few
# stalled epochs apart, so the rate is at its smallest soon after the first plateau. The training
# campaign (`python -m amortgap.campaign`, `make retrain`) trains the paper-scale models instead
# under **Cremer et al.'s schedule**: stage $i = 0, \dots, 7$ lasts $3^i$ epochs at learning rate
# $10^{-3} \cdot 10^{-i/7}$, each stage with a fresh Adam, 3280 epochs in all, with the KL weight
# rising over the first 100 (the settings in force are printed below). **One run gives both protocols' models**:
# the *early-stopped* model is the best validation weights after the warm-up over the whole
# schedule, and *Cremer's long-trained* model is the weights at its last epoch. No patience rule
# stops a run; the table shows the epoch at which one (`patience` epochs without a gain of
# `min_delta` nats, printed below) would have stopped, and how many nats of validation ELBO that
# would have cost.
#
# **The longer-schedule check.** A protocol has reached the validation optimum only if a longer
# schedule does not beat it by more than 0.3 nats. For Cremer's schedule the longer one is one more
# stage at the final rate (2187 more epochs, to epoch 5467): the same run goes on, and `longer_gain`
# is what the extra stage adds to the best validation ELBO. A run that has not got there yet shows
# no gain.

# %% tags=["parameters"]
root = ".."  # the project folder, seen from the kernel's (the pipeline passes its own)
campaign_params = "tests/fixtures/campaign/params.yaml"  # whose `campaign` section names the campaign's runs
history_dir = "build/tiny/results/training"  # the plateau protocol's histories (the model-setup chapter's)
seed = 0  # the seed whose runs the figure and the paper's numbers show
figure_dir = "build/tiny/figures/training_protocols"
generated_dir = "build/tiny/generated"

# %%
from pathlib import Path

import pandas as pd

from amortgap import campaign, plots, report

root = Path(root)
plots.theme()
plateau = [pd.read_csv(path) for path in sorted((root / history_dir).glob("reference_*_s*.csv"))]

# %% [markdown]
# ## Every run of the campaign: where it stands, its two models, the patience rule, the check

# %%
campaign_config = campaign.load_config(root / campaign_params)
cremer = campaign_config.protocols["cremer"]
full = {entry.run for entry in campaign_config.entries if entry.images is None}  # trained on the whole training split
runs = {run: found for run, found in campaign.read_runs(campaign_config, root).items() if run in full}
protocols = campaign.protocol_table(campaign_config, runs)
print(f"Cremer's schedule here: {cremer.stages} stages of {cremer.stage_base}**i epochs ({cremer.epochs} in all) from lr "
      f"{cremer.lr:g} down to {cremer.lr * cremer.lr_decay:g}, KL warm-up over {cremer.warmup_epochs} epochs, batches of "
      f"{cremer.batch_size}; patience rule (recorded only): {cremer.patience} epochs without a {cremer.min_delta:g}-nat gain")
print(protocols.drop(columns=["family", "seed", "protocol"]).round(2).to_string(index=False))

# %% [markdown]
# ## Both protocols' curves

# %%
plateau_runs = {f"{h.model.iloc[0]}_cremer_s{h.seed.iloc[0]}": h for h in plateau}
chosen = {row.run: {"early-stopped": row.best_epoch, "patience rule": row.patience_epoch,
                    "Cremer": cremer.epochs if row.epoch >= cremer.epochs else None}
          for row in protocols.itertuples() if pd.notna(row.best_epoch)}  # fmt: skip
chosen = {run: {label: int(epoch) for label, epoch in marks.items() if pd.notna(epoch)} for run, marks in chosen.items()}
fig = plots.protocol_curves({run: history for run, (history, _) in runs.items() if run.endswith(f"cremer_s{seed}")},
                            cremer.epochs, chosen, plateau_runs)  # fmt: skip
plots.save(fig, root / figure_dir / "protocol_curves")

# %% [markdown]
# Training (blue) and validation (orange) ELBO of each campaign run of the seed on a log scale of
# epochs, with the epochs whose weights each protocol keeps marked; dashed, the plateau protocol's
# curves of the same model (from the model-setup chapter); shaded, the longer schedule's extra stage.

# %% [markdown]
# ## What the runs say

# %%
checked = protocols[protocols.longer_gain.notna()]
pending = protocols[protocols.longer_gain.isna() & (protocols.last_epoch > cremer.epochs)]
report.conclude(" ".join(
    [f"**{row.run}**: one more stage at the final rate (to epoch {int(row.longer_epochs)}) "
     f"{'adds' if row.longer_gain >= 0 else 'loses'} {abs(row.longer_gain):.2f} nats of validation ELBO, so the "
     f"longer-schedule check {'holds' if row.longer_holds else 'fails'} (tolerance {campaign.LONGER_TOLERANCE} nats)."
     for row in checked.itertuples()]
    + [f"**{row.run}**: at epoch {row.epoch} of {row.last_epoch}, the check is pending." for row in pending.itertuples()]
    + [f"**{row.run}**: the patience rule would have kept epoch {int(row.patience_epoch)}, "
       f"{row.patience_shortfall:.2f} nats of validation ELBO short of the early-stopped model (epoch {int(row.best_epoch)})."
       for row in protocols.itertuples() if pd.notna(row.patience_shortfall)]))  # fmt: skip

# %% [markdown]
# ## Numbers for the paper

# %%
numbers = {
    "CampaignEpochs": cremer.epochs,
    "CampaignStages": cremer.stages,
    "CampaignStageBase": cremer.stage_base,
    "CampaignWarmup": cremer.warmup_epochs,
    "CampaignBatch": cremer.batch_size,
    "CampaignLongerEpochs": campaign_config.last_target(f"diagonal_cremer_s{seed}"),
    "CampaignPatience": cremer.patience,
    "CampaignMinDelta": f"{cremer.min_delta:g}",
}
cremer_runs = protocols[(protocols.seed == seed) & (protocols.protocol == "cremer") & protocols.best_epoch.notna()
                        & protocols.run.isin(full)]  # fmt: skip
for family, name in (("diagonal", "Ffg"), ("planar", "Flow")):
    if family not in set(cremer_runs.family):  # not yet past its warm-up: the paper says so
        numbers |= {f"Campaign{name}{macro}": "(not yet trained)" for macro in
                    ("BestEpoch", "BestValid", "BestTrain", "Progress", "LongerCheck", "PatienceRule")}  # fmt: skip
        continue
    row = next(cremer_runs[cremer_runs.family == family].itertuples())
    if pd.isna(row.longer_gain):
        check = "not measured in this version"  # (the paper describes no run still training)
    else:
        check = (f"{row.longer_gain:+.2f} nats, {'within' if row.longer_holds else 'beyond'} the "
                 f"{campaign.LONGER_TOLERANCE}-nat tolerance")
    patience = ("never fires" if pd.isna(row.patience_shortfall) else
                f"would keep epoch {int(row.patience_epoch)}, {row.patience_shortfall:.2f} nats below the best")
    progress = "" if row.epoch >= cremer.epochs else f", so far: the run is at epoch {row.epoch} of {cremer.epochs}"
    numbers |= {f"Campaign{name}BestEpoch": int(row.best_epoch), f"Campaign{name}Progress": progress,
                f"Campaign{name}BestValid": row.best_valid_elbo, f"Campaign{name}BestTrain": row.best_train_elbo,
                f"Campaign{name}LongerCheck": check, f"Campaign{name}PatienceRule": patience}  # fmt: skip
print(report.write_macros(root / generated_dir / "training_protocols.tex", numbers))
