"""The trainer's epoch, before and after a change of the training code, on the same machine in one run.

Each ``--lib`` is the ``lib`` folder of a checkout (for the code before a change, check out its commit
beside this one: ``git worktree add --detach ../before <commit>``). Every checkout trains, in its own
single-thread process, the reference FFG VAE, the planar VAE and the FFG encoder on a frozen decoder
for two epochs of the 50,000 training images (batch 100, checkpointed as the campaign trains) and
reports the second epoch's seconds as its history records them (validation included, the
checkpoint's write not); the checkouts take turns, ``--rounds`` times, and each keeps its fastest
round.

    python bench/epoch_seconds.py --lib ../before/lib lib
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ONE = """
import json, sys, tempfile
from pathlib import Path
import torch
from amortgap import data, models, train
torch.set_num_threads(1)
train_x, valid_x = data.load("train").x, data.load_binarized("valid")
seconds = {}
for case, family, frozen in (("ffg", "diagonal", False), ("planar", "planar", False), ("frozen", "diagonal", True)):
    config = models.VAEConfig(family=family)
    torch.manual_seed(0)
    model = models.VAE(config)
    if frozen:
        model = model.with_frozen_decoder(config)
    with tempfile.TemporaryDirectory() as tmp:
        history = train.train(model, train_x, valid_x, train.TrainConfig(epochs=2, batch_size=100, patience=None),
                              Path(tmp) / "train.pt", progress=False).history
    seconds[case] = float(history.seconds.iloc[-1])
print(json.dumps(seconds))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lib", nargs="+", type=Path, required=True, help="the lib folders to compare")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    best: dict[str, dict[str, float]] = {}
    for _ in range(args.rounds):
        for lib in args.lib:
            env = {**os.environ, "PYTHONPATH": str(lib.resolve()), "OMP_NUM_THREADS": "1"}
            out = subprocess.run([sys.executable, "-c", ONE], env=env, capture_output=True, text=True, check=True).stdout
            seconds = json.loads(out.strip().splitlines()[-1])
            key = str(lib)
            best[key] = {case: min(s, best.get(key, {}).get(case, s)) for case, s in seconds.items()}
            print(key, seconds, flush=True)
    print(json.dumps(best, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
