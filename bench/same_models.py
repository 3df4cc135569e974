"""Does today's training step train the same models as the step the campaign's runs were trained with?

Trains seeds of one family under a campaign protocol (``params.yaml``) to ``--epochs`` with today's
step (:mod:`amortgap.elbo_gradient`, :mod:`amortgap.adam`), from the campaign's initial weights, data
and settings, and compares each run's validation ELBO at that epoch with the campaign run of the same
seed, which its ``run.json`` says was trained by the earlier step. The two steps differ in the last
bits, so a seed's two runs part ways; what must agree is the statistics: the mean difference against
the spread over seeds. Writes ``bench/same_models_<family>.json``.

    python bench/same_models.py                     # FFG seeds 0-2 to epoch 100 (about 15 min, 1 thread)
    python bench/same_models.py --family planar --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from amortgap import campaign, data
from amortgap.models import VAE
from amortgap.train import STEP, train

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="diagonal")
    parser.add_argument("--protocol", default="cremer")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as the campaign's workers train
    config = campaign.load_config(args.params)
    protocol = config.protocols[args.protocol]
    train_x = data.load("train", split_seed=config.split_seed).x[: config.num_train]
    valid_x = data.load_binarized("valid", protocol.binarization, split_seed=config.split_seed)
    rows = []
    for seed in args.seeds:
        entry = campaign.Entry(family=args.family, seed=seed, protocol=args.protocol)
        run_dir = config.run_dir(entry.run, ROOT)
        earlier = pd.read_csv(run_dir / "history.csv").set_index("epoch")
        steps = {s.get("step", campaign.STEP_BEFORE) for s in campaign.read_status(run_dir).get("stretches", [])
                 if s.get("from_epoch", 0) < args.epochs}  # fmt: skip
        if args.epochs not in earlier.index or STEP in steps:
            raise SystemExit(f"{entry.run} has no epoch {args.epochs} trained by an earlier step (steps: {sorted(steps)})")
        torch.manual_seed(seed)  # the campaign's initial weights
        model = VAE(config.model_config(entry))
        settings = replace(config.train_config(entry, args.epochs), snapshot_epochs=())
        began = time.perf_counter()
        history = train(model, train_x, valid_x, settings, progress=False).history.set_index("epoch")
        rows.append({"seed": seed, "earlier_step": "+".join(sorted(steps)), "valid_elbo_earlier": float(earlier.valid_elbo[args.epochs]),
                     "valid_elbo_today": float(history.valid_elbo[args.epochs]),
                     "seconds_today": time.perf_counter() - began})  # fmt: skip
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
