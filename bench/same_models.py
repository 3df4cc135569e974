"""Does today's training step train the same models as the step the campaign's runs were trained with?

Trains seeds of one family under a campaign protocol (``params.yaml``) to ``--epochs`` with today's
step (:mod:`amortgap.elbo_gradient`, :mod:`amortgap.adam`), from the campaign's initial weights, data
and settings, and compares each run's validation ELBO at that epoch with a run of the same seed by
the earlier step: one trained here by ``--earlier-lib``, the ``lib`` folder of a checkout from before
the step changed (``git worktree add --detach ../before 1ab29fb``), so that both steps run on the same
machine; without it, the campaign's run, where its ``run.json`` says the earlier step trained it to
that epoch. The two steps differ in the last
bits, so a seed's two runs part ways; what must agree is the statistics: the mean difference against
the spread over seeds. Every run trains in its own single-thread process, as the campaign's workers
do. Writes ``bench/same_models_<family>.json``.

    python bench/same_models.py                     # FFG seeds 0-2 to epoch 100 (about 15 min)
    python bench/same_models.py --family planar --earlier-lib ../before/lib
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd

from amortgap import campaign
from amortgap.train import STEP

ROOT = Path(__file__).resolve().parents[1]

# One seed trained to an epoch by whichever amortgap PYTHONPATH names; only what every version has.
TRAIN = """
import json, sys, time
from dataclasses import replace
import torch
from amortgap import campaign, data
from amortgap.models import VAE
from amortgap.train import train
family, protocol, seed, epochs, params = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
torch.set_num_threads(1)
config = campaign.load_config(params)
train_x = data.load("train", split_seed=config.split_seed).x[: config.num_train]
valid_x = data.load_binarized("valid", config.protocols[protocol].binarization, split_seed=config.split_seed)
entry = campaign.Entry(family=family, seed=seed, protocol=protocol)
torch.manual_seed(seed)  # the campaign's initial weights
model = VAE(config.model_config(entry))
began = time.perf_counter()
history = train(model, train_x, valid_x, replace(config.train_config(entry, epochs), snapshot_epochs=()),
                progress=False).history.set_index("epoch")
import amortgap
print(json.dumps({"valid_elbo": float(history.valid_elbo[epochs]), "seconds": time.perf_counter() - began,
                  "library": amortgap.__file__}))
"""


def train_seed(lib: Path, family: str, protocol: str, seed: int, epochs: int) -> dict[str, float]:
    """{"valid_elbo", "seconds"} of ``seed`` trained to ``epochs`` by the library in ``lib``, with
    that checkout's ``params.yaml``, in a single-thread process."""
    env = {**os.environ, "PYTHONPATH": str(lib.resolve()), "OMP_NUM_THREADS": "1"}
    params = lib.resolve().parent / "params.yaml"
    args = [sys.executable, "-c", TRAIN, family, protocol, str(seed), str(epochs), str(params)]
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    if not Path(result.pop("library")).resolve().is_relative_to(lib.resolve()):
        raise SystemExit(f"the run meant for {lib} imported another amortgap (is it installed over PYTHONPATH?)")
    return result


def earlier_run(config: campaign.CampaignConfig, entry: campaign.Entry, epochs: int) -> float | None:
    """The validation ELBO at ``epochs`` of the campaign's run of ``entry`` if the earlier step
    trained it that far, else None."""
    run_dir = config.run_dir(entry.run, ROOT)
    if not (run_dir / "history.csv").exists():
        return None
    history = pd.read_csv(run_dir / "history.csv").set_index("epoch")
    steps = {s.get("step", campaign.STEP_BEFORE) for s in campaign.read_status(run_dir).get("stretches", [])
             if s.get("from_epoch", 0) < epochs}  # fmt: skip
    if epochs not in history.index or STEP in steps:
        return None
    return float(history.valid_elbo[epochs])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="diagonal")
    parser.add_argument("--protocol", default="cremer")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--earlier-lib", type=Path, help="the lib folder of a checkout that trains with the earlier step")
    args = parser.parse_args(argv)
    config = campaign.load_config(ROOT / "params.yaml")
    rows = []
    for seed in args.seeds:
        entry = campaign.Entry(family=args.family, seed=seed, protocol=args.protocol)
        row = {"seed": seed, "earlier_step": campaign.STEP_BEFORE}
        if args.earlier_lib is not None:
            commit = subprocess.run(["git", "-C", str(args.earlier_lib), "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
            earlier = train_seed(args.earlier_lib, args.family, args.protocol, seed, args.epochs)
            row |= {"earlier_from": f"trained here at {commit}", "valid_elbo_earlier": earlier["valid_elbo"],
                    "seconds_earlier": earlier["seconds"]}  # fmt: skip
        elif (campaign_elbo := earlier_run(config, entry, args.epochs)) is not None:
            row |= {"earlier_from": "campaign run", "valid_elbo_earlier": campaign_elbo}
        else:
            raise SystemExit(f"{entry.run} has no epoch {args.epochs} trained by the earlier step; "
                             "name a checkout that trains with it (--earlier-lib)")  # fmt: skip
        today = train_seed(ROOT / "lib", args.family, args.protocol, seed, args.epochs)
        rows.append(row | {"valid_elbo_today": today["valid_elbo"], "seconds_today": today["seconds"]})
        print(rows[-1], flush=True)
    earlier = [r["valid_elbo_earlier"] for r in rows]
    today = [r["valid_elbo_today"] for r in rows]
    differences = [t - e for t, e in zip(today, earlier)]
    summary = {"family": args.family, "protocol": args.protocol, "epoch": args.epochs, "step_today": STEP,
               "runs": rows, "mean_difference": statistics.mean(differences),
               "spread_earlier_sd": statistics.stdev(earlier) if len(rows) > 1 else None,
               "spread_today_sd": statistics.stdev(today) if len(rows) > 1 else None}  # fmt: skip
    if len(rows) > 1:
        summary["difference_within_spread"] = abs(summary["mean_difference"]) <= max(summary["spread_earlier_sd"],
                                                                                      summary["spread_today_sd"])  # fmt: skip
    out = ROOT / "bench" / f"same_models_{args.family}.json"
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
