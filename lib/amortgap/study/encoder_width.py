"""The width study's encoders on a fixed decoder (issue 39): fresh encoders, trained by the campaign
against a frozen copy of a campaign run's decoder (seed 0's early-stopped one), compared with the
encoder trained jointly with it.

The pilot gates the study: with the decoder fixed, a fresh encoder of the joint encoder's width must
do as well as the joint one, or the encoders' schedule is too short for any width to be reported. It
runs as a command (DVC stage ``encoder_width``); the study's notebook comes with its first widths."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch
import yaml
from torch import Tensor

from .. import data
from ..bounds import elbo
from ..models import VAE, load
from ..split_rows import shares_decoder
from ..stats import mean_se, t_quantile

PILOT_MARGIN = 0.3  # nats of mean ELBO a fresh encoder may fall short of the joint one (one-sided)


@torch.no_grad()
def pilot(joint: VAE, fresh: VAE, x: Tensor, samples: int = 1000, margin: float = PILOT_MARGIN,
          level: float = 0.95, seed: int = 0) -> dict[str, float | bool]:  # fmt: skip
    """Does ``fresh`` (an encoder trained against ``joint``'s frozen decoder) reach the mean ELBO of
    ``joint``'s own encoder less ``margin``? Per image of x [N, D], L[q] with ``samples`` samples
    under both encoders, and the paired difference fresh - joint: its mean, standard error and
    one-sided lower bound at ``level``. The pilot ``passes`` when that bound lies above -margin."""
    shares_decoder(joint, {"fresh": fresh})
    torch.manual_seed(seed)
    joint_elbo = elbo(joint, x, num_samples=samples).value
    torch.manual_seed(seed)
    fresh_elbo = elbo(fresh, x, num_samples=samples).value
    mean, se = mean_se((fresh_elbo - joint_elbo).double().numpy())
    lower = mean - t_quantile(level, len(x) - 1) * se
    return {"images": len(x), "samples": samples, "joint_elbo": float(joint_elbo.mean()),
            "fresh_elbo": float(fresh_elbo.mean()), "difference": mean, "difference_se": se,
            "lower_bound": lower, "level": level, "margin": margin, "passes": bool(lower > -margin)}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m amortgap.study.encoder_width``: the pilot of ``params.yaml``'s ``encoder_width``
    section for each schedule it names, on the gap table's random training images: one CSV row per
    schedule."""
    parser = argparse.ArgumentParser(prog="python -m amortgap.study.encoder_width", description=pilot.__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    section = yaml.safe_load(Path(args.params).read_text())["encoder_width"]
    run_dir = Path(section["run_dir"])
    missing = [str(run_dir / path) for path in section["pilots"].values() if not (run_dir / path).exists()]
    if missing:
        print(f"error: not trained yet (python -m amortgap.campaign run): {missing}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    train_x = data.binarize(data.load("train", split_seed=section["split_seed"]).x, section["binarization"])
    x = train_x[data.random_subset(len(train_x), section["num_points"], section["subset_seed"])]  # the gap table's
    joint = load(run_dir / section["joint"])
    rows = [{"schedule": schedule, "pilot": path, **pilot(joint, load(run_dir / path), x, section["samples"], section["margin"])}
            for schedule, path in section["pilots"].items()]  # fmt: skip
    table = pd.DataFrame(rows)
    out = Path(section["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False, float_format="%.6f")
    print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
