"""The paper's appendix tables: where every table and figure comes from, every setting of the
experiments, and what training cost.

Run by the DVC stage ``appendix`` after the experiments: the settings come from ``params.yaml``
(the sections the experiment stages ran with), the epochs and training minutes from the models'
own training records (the campaign's ``run.json``), so the appendix can neither drift from the run
nor be typed by hand.

    python paper/appendix.py --params params.yaml --results results --out paper/generated
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import yaml

from amortgap import campaign, report
from amortgap.ais import AISConfig
from amortgap.qstar import QStarConfig

FAMILY_NAMES = {"diagonal": "FFG", "planar": "flow"}
STATUS_WORDS = {"finished": "trained", "paused": "in training", "training": "in training", "not started": "not started"}


def _list(values) -> str:
    return ", ".join(str(v) for v in values)


def encoder_widths(params: dict) -> tuple[dict[int, int], str]:
    """The width study's encoders (``encoder_width.encoders``): seeds per width, and their schedule."""
    entries = {e.run: e for e in campaign.CampaignConfig.from_section(dict(params["campaign"])).entries}
    chosen = [entries[run] for run in params["encoder_width"]["encoders"]]
    widths = pd.Series([e.encoder_hidden[-1] for e in chosen]).value_counts().sort_index()
    return {int(w): int(n) for w, n in widths.items()}, chosen[0].protocol


def settings(params: dict) -> pd.DataFrame:
    """One row per setting: the stage it belongs to, what it is, and its value (as text)."""
    m, g, c, w, r, e, v, o = (params[s] for s in ("model_setup", "gap_table", "convergence", "width_sweep",
                                                  "refinement", "certification", "validation", "oracle"))  # fmt: skip
    q = QStarConfig()  # the library's defaults; the stages set only its samples and step cap
    a = AISConfig()  # the library's defaults; the stages set only its steps and chains
    sp, ew, pc = params["split"], params["encoder_width"], params["campaign"]["protocols"]
    si = sp["images"]
    widths, ew_protocol = encoder_widths(params)
    t, gd, cd, od = m["training"], g["decompose"], c["decompose"], o["decompose"]
    rows = [
        ("model setup", "latent dimensions; encoder and decoder hidden layers",
         f"{m['latent_dim']}; [{_list(m['encoder_hidden'])}] and [{_list(m['decoder_hidden'])}], {m['activation']}"),
        ("model setup", "seeds; planar flow length", f"{_list(m['seeds'])}; {m['flow_length']}"),
        ("model setup", "Adam lr; batch; KL warm-up epochs", f"{t['lr']:g}; {t['batch_size']}; {t['warmup_epochs']}"),
        ("model setup", "lr x decay after plateau epochs (at most decays)",
         f"x {t['lr_decay']:g} after {t['plateau_patience']} (at most {t['max_decays']})"),
        ("model setup", "early stopping: patience, min. improvement; epoch cap",
         f"{t['patience']} epochs, {t['min_delta']:g} nats; {t['epochs']}"),
        ("gap table", "models: runs; seeds; protocols",
         f"{_list(g['runs'].values())}; "
         f"{'; '.join(f'{_list(s)} ({f})' for f, s in g['seeds'].items())}; {_list(g['protocols'])}".replace("_", " ")),
        ("gap table", "random images per split (flow q*)", f"{g['num_points']} ({g['flow_points']})"),
        ("gap table", "q* starts: FFG; the flow model's flow q* (besides the FFG q*)",
         f"{1 + gd.get('qstar_restarts', 0) + gd.get('qstar_perturbed', 0)}; {1 + sum(g['flow_search'])}"),
        ("gap table", "ELBO / IWAE samples; AIS steps x chains",
         f"{gd['elbo_samples']} / {gd['iwae_samples']}; {gd['ais']['steps']} x {gd['ais']['chains']}"),
        ("gap table", "q*: samples per step, step cap; refinement steps",
         f"{gd['qstar']['num_samples']}, {gd['qstar']['max_steps']}; {g['refine_steps']}"),
        ("every stage", "q* search: Adam lr; ELBO window, patience; lr x decay; stop below lr",
         f"{q.lr:g}; {q.window} steps, {q.patience} windows; x {q.lr_decay:g}; {q.min_lr:g}"),
        ("every stage", "AIS transitions: HMC leapfrog steps; step size, adapted per image towards an acceptance "
         "rate (x factor per transition); schedule of the inverse temperatures",
         f"{a.leapfrog_steps}; {a.step_size:g} towards {a.target_acceptance:g} (x {a.adapt_factor:g}); "
         f"{a.schedule} (delta {a.sigmoid_delta:g})"),
        ("convergence", "epochs; images per split; AIS steps x chains",
         f"{_list(c['epochs'])}; {c['num_points']}; {cd['ais']['steps']} x {cd['ais']['chains']}"),
        ("convergence", "control run; its epoch", f"{c['control_run']}; {c['control_epoch']}".replace("_", " ")),
        ("width sweep", "encoder widths (depth); seeds; images",
         f"{_list(w['widths'])} ({w['depth']}); {_list(w['seeds'])}; {w['eval_points']}"),
        ("width sweep", "frozen design: encoder widths; joint decoders; seeds",
         f"{_list(w['frozen_widths'])}; {_list(w['frozen_decoder_widths'])}; {_list(w['frozen_seeds'])}"),
        ("width sweep", "frozen design: Adam lr", f"{w['frozen_lr']:g}"),
        ("split", "decoders of the run; candidate encoders; refit epochs (rate)",
         f"{_list(sp['decoders'])}; {len(sp['candidates'])}; {pc['refit']['epochs']} ({pc['refit']['lr']:g} to "
         f"{pc['refit']['lr'] * pc['refit']['lr_decay']:g}, {pc['refit']['lr_schedule']})".replace("_", " ")),
        ("split", "training images: reported, choosing the best candidate, distillation targets; test images",
         f"{si['reported']}, {si['selection']}, {si['targets']}; {si['reported']}"),
        ("split", "ELBO samples; q* starts; q*: samples per step, step cap",
         f"{sp['elbo_samples']}; the joint encoder and the best candidate; {sp['qstar']['num_samples']}, {sp['qstar']['max_steps']}"),
        ("encoder width", "decoder; encoders (width x seeds); schedule; pilot margin",
         f"{ew['decoder']}; {_list(f'{w} x {n}' for w, n in widths.items())}; {ew_protocol} ({pc[ew_protocol]['epochs']} epochs); "
         f"{ew['margin']:g} nats".replace("_", " ")),
        ("encoder width", "images; ELBO samples; q*", f"the split's {ew['images']['reported']} per split; {ew['elbo_samples']}; the split's"),
        ("refinement", "test / tuning images; step budgets",
         f"{r['num_points']} / {r['tune_points']}; {_list(r['steps'])}"),
        ("refinement", "step sizes; schedules; timing repeats",
         f"{_list(r['lrs'])}; {_list(r['schedules'])}; {r['timing_repeats']}"),
        ("refinement", "HMC: images, chains, reference transitions (from q*); its chains' agreement",
         f"{r['hmc_points']}, {r['hmc_chains']}, {r['hmc_reference']}; {r['hmc_agreement']:g} nats"),
        ("certification", "simulated images; reference AIS steps x chains",
         f"{e['num_points']}; {e['reference']['steps']} x {e['reference']['chains']}"),
        ("certification", "candidate AIS (steps x chains); IWAE samples",
         f"{_list(f'{s} x {k}' for s, k in e['ais_candidates'])}; {_list(e['iwae_candidates'])}"),
        ("certification", "real images; AIS lengths", f"{e['real_points']}; {_list(e['real_steps'])}"),
        ("validation", "models: runs; protocols", f"{_list(v['runs'].values())}; {_list(v['protocols'])}".replace("_", " ")),
        ("validation", "real images per split and simulated; q* starts: encoder, prior, perturbed (x encoder SD)",
         f"{v['num_points']} and {v['simulated_points']}; 1, {v['prior_starts']}, {v['perturbed_starts']} (x {v['perturb_scale']:g})"),
        ("validation", "search rule: mean within; at most a share of images more than",
         f"{v['search_rule']['mean_nats']:g} nats; {100 * v['search_rule']['far_share']:.0f}\\% below by {v['search_rule']['far_nats']:g} nats"),
        ("validation", "AIS rule: mean error below half the table's SE; at most a share off by",
         f"{100 * v['ais_rule']['off_share']:.0f}\\% by {v['ais_rule']['off_nats']:g} nats"),
        ("validation", "reference AIS; candidates (steps x chains)",
         f"{v['reference']['steps']} x {v['reference']['chains']}; "
         f"{_list(f'{s} x {k}' for s, k in [[v['table_ais']['steps'], v['table_ais']['chains']], *v['ais_candidates']])}"),
        ("oracle", "latent dimensions; grid points per axis; images",
         f"{o['latent_dim']}; {o['grid_points']}; {o['num_points']}"),
        ("oracle", "AIS steps x chains; IWAE samples; q* restarts",
         f"{od['ais']['steps']} x {od['ais']['chains']}; {od['iwae_samples']}; {o['qstar_restarts']}"),
        ("oracle", "AIS repeats on the image furthest above the exact log p(x)", f"{o['ais_repeats']}"),
    ]
    return pd.DataFrame(rows, columns=["stage", "setting", "value"]).set_index("stage")


def provenance(params: dict, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per table and figure group: the models it uses (runs, protocols, epochs, seeds), its
    images and settings, and whether its numbers are final or wait on runs still training
    (``runs``: :func:`amortgap.campaign.status_table`)."""
    g, v, c, w, r, e, o = (params[s] for s in ("gap_table", "validation", "convergence", "width_sweep", "refinement",
                                               "certification", "oracle"))  # fmt: skip
    status = runs.set_index("run").status
    entries = campaign.CampaignConfig.from_section(dict(params["campaign"])).entries
    waiting = [f"{FAMILY_NAMES[x.family]} seed {x.seed} ({STATUS_WORDS[status.get(x.run, 'not started')]})" for x in entries
               if x.protocol == "cremer" and x.epochs is None and x.family in g["runs"]
               and x.seed not in g["seeds"][x.family]]  # fmt: skip
    seeds = "; ".join(f"{FAMILY_NAMES[f]} {_list(s)}" for f, s in g["seeds"].items() if s)
    widths, protocol = encoder_widths(params)
    width_waiting = {x.run for x in entries if x.decoder == params["encoder_width"]["decoder"] and x.init == "fresh"
                     and x.protocol == protocol and x.run not in params["encoder_width"]["encoders"]}  # fmt: skip
    gd, cd = g["decompose"], c["decompose"]
    plateau = "the plateau protocol's reference models"
    rows = [
        ("gap tables, reconstructions (3a)", f"campaign runs, Cremer's schedule: {_list(g['protocols'])} "
         f"({_list(g['protocols'].values())}); seeds: {seeds}".replace("_", " "),
         f"{g['num_points']} random training and {g['num_points']} test images (flow q* on {g['flow_points']}); AIS "
         f"{gd['ais']['steps']} x {gd['ais']['chains']} from the FFG q*",
         "final for the seeds shown" + (f"; waits on {', '.join(waiting)}" if waiting else "")),
        ("validation (3g)", f"campaign runs {_list(v['runs'].values())}, both protocols".replace("_", " "),
         f"the first {v['num_points']} of the gap table's images per split, {v['simulated_points']} simulated; "
         f"{1 + v['prior_starts'] + v['perturbed_starts']} q* starts; reference AIS {v['reference']['steps']} x "
         f"{v['reference']['chains']}", "final"),
        ("training protocols (2b)", "campaign runs of seed 0, and the plateau models for comparison", "validation ELBO",
         "final" if all(status.get(f"{f}_cremer_s0") == "finished" for f in ("diagonal", "planar"))
         else "final but the flow run's longer-schedule check, in training"),
        ("convergence (3b)", f"campaign run {c['run']}, snapshots at epochs {_list(c['epochs'])}; the control run "
         f"{c['control_run']} at epoch {c['control_epoch']}".replace("_", " "),
         f"the gap table's first {c['num_points']} training and {c['num_points']} test images; AIS "
         f"{cd['ais']['steps']} x {cd['ais']['chains']} from the FFG q*", "final"),
        ("width sweep and encoder x decoder design (3c)", f"jointly trained models (plateau protocol), widths "
         f"{_list(w['widths'])}; {plateau}' decoders", f"{w['eval_points']} test images", "final for the plateau models"),
        ("the split of the amortization gap (3h)", f"campaign run {params['split']['run']}: decoders "
         f"{_list(params['split']['decoders'])}, each with its candidate encoders trained against it".replace("_", " "),
         f"{params['split']['images']['reported']} random training and {params['split']['images']['reported']} test images (the gap "
         f"table's); {params['split']['images']['selection']} more training images choose the best candidate", "final"),
        ("encoder width, fixed decoder (3i)", f"fresh encoders on {params['encoder_width']['decoder']}: "
         f"{_list(f'width {w} x {n}' for w, n in widths.items())} seeds".replace("_", " "),
         "the split's images, q* and random numbers", "final for the widths and seeds shown"
         + (f"; waits on {len(width_waiting)} more encoders, in training or not started" if width_waiting else "")),
        ("compute frontier, HMC, break-even (3d)", f"campaign run {r['run']}, {r['model_file']}".replace("_", " "),
         f"{r['num_points']} test images; HMC on the first {r['hmc_points']}; break-even on the run's recorded training time",
         "final"),
        ("certification (3e)", f"{plateau}, seed {e['seed']}", f"{e['num_points']} simulated, {e['real_points']} real images",
         "final"),
        ("oracle (3f)", f"a VAE with a {o['latent_dim']}-dimensional latent space (plateau protocol)",
         f"{o['num_points']} test images; AIS repeated {o['ais_repeats']} times on one", "final"),
    ]
    return pd.DataFrame(rows, columns=["tables and figures", "models", "images and settings", "status"]).set_index(
        "tables and figures")


def compute(results: Path, runs: pd.DataFrame) -> pd.DataFrame:
    """Per group of trained models: how many, the epochs each trained, and the minutes of training
    its records hold (members of one stack trained together, so their minutes overlap); and each
    campaign run (``runs``: :func:`amortgap.campaign.status_table`)."""
    training = pd.read_csv(results / "training" / "summary.csv")
    joint = pd.read_csv(results / "sweep" / "joint.csv").groupby(["width", "seed"]).first().reset_index()
    design = pd.read_csv(results / "sweep" / "encoder_decoder.csv").groupby(["decoder", "encoder_width", "seed"]).first()
    rows = []
    for family, label in (("diagonal", "reference, FFG encoder"), ("planar", "reference, planar-flow encoder")):
        t = training[training.model == family]
        rows.append((label, len(t), f"{t.epochs.min()}-{t.epochs.max()}", f"{t.training_minutes.sum():.1f}"))
    for width, t in joint.groupby("width"):
        rows.append((f"joint sweep, width {width}", len(t), f"{t.epochs.min()}-{t.epochs.max()}",
                     f"{t.train_seconds.sum() / 60:.1f}"))
    rows.append(("encoders on frozen decoders", len(design), f"{design.epochs.min()}-{design.epochs.max()}", "n/a"))
    for run in runs.itertuples():
        rows.append((f"run {run.run.replace('_', ' ')} ({STATUS_WORDS[run.status]})", 1, f"{run.epoch} of {run.last_epoch}",
                     f"{60 * run.hours:.0f}"))
    return pd.DataFrame(rows, columns=["models", "count", "epochs", "minutes"]).set_index("models")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--out", type=Path, default=Path("paper/generated"))
    args = parser.parse_args()
    params = yaml.safe_load(args.params.read_text())
    runs = campaign.status_table(campaign.load_config(args.params), str(args.params.resolve().parent))
    path = args.out / "provenance_table.tex"
    table = provenance(params, runs)
    table.to_csv(args.out / "provenance.csv")  # the site's provenance page
    text = report.write_table(path, table).replace(" x ", r" $\times$ ")
    column = r">{\raggedright\arraybackslash}p{%.2f\linewidth}"
    path.write_text(text.replace(r"\begin{tabular}{lrrr}", r"\begin{tabular}{" + "".join(column % w for w in (0.15, 0.29, 0.27, 0.2)) + "}"))
    path = args.out / "settings_table.tex"
    text = report.write_table(path, settings(params)).replace(" x ", r" $\times$ ")
    path.write_text(text.replace(r"\begin{tabular}{lrr}", r"\begin{tabular}{lp{0.5\linewidth}p{0.3\linewidth}}"))
    path = args.out / "compute_table.tex"
    text = report.write_table(path, compute(args.results, runs))  # a run's long name wraps in its column
    path.write_text(text.replace(r"\begin{tabular}{lrrr}", r"\begin{tabular}{" + column % 0.68 + "rrr}"))


if __name__ == "__main__":
    main()
