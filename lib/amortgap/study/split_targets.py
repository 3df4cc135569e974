"""The distillation's targets for the split of the amortization gap (issue 39, item 2): q* of one
decoder on training images that the split never reports on.

The split (expressivity, L[q*] - L[q_best], and optimisation, L[q_best] - L[q_joint]) needs the best
encoder of the architecture that can be found, q_best. One candidate is an encoder distilled onto
per-image q* (:mod:`amortgap.distill`), then trained on by the ELBO: a campaign entry with
``init: distilled``, which reads the targets this module's command writes.

The training images are drawn once, as one random order of the training split: its first images are
the reported ones (the gap table's random subset), the next ones choose q_best, and the next ones are
the targets, so that no image plays two parts. q* is computed in chunks kept in the repository
(:mod:`amortgap.parts`), whose fingerprints cover this module's code: it holds the targets alone.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import torch
import yaml
from torch import Tensor

from .. import data
from ..config import FromSection
from ..distill import dotted, targets_file
from ..models import VAE, atomic_write, load
from ..parallel import run_tasks
from ..parts import kept
from ..qstar import QStarConfig, optimal_q
from ..rng import seeded

@dataclass(frozen=True)
class SplitImages(FromSection):
    """The split's training images (split ``split_seed`` of the training set, ``binarization``), by
    role: ``reported`` (the gap table's random subset of that size and ``subset_seed``), then
    ``selection`` (they choose q_best), then ``targets`` (the distillation's)."""

    split_seed: int = 0
    binarization: str = "static"
    subset_seed: int = 0
    reported: int = 500
    selection: int = 1000
    targets: int = 10000

    def __post_init__(self) -> None:
        if min(self.reported, self.selection, self.targets) < 1:
            raise ValueError("every role needs images")

    def indices(self, size: int) -> dict[str, Tensor]:
        """Each role's rows of a training split of ``size`` rows (:func:`training_images`)."""
        return training_images(size, {"reported": self.reported, "selection": self.selection, "targets": self.targets},
                               self.subset_seed)  # fmt: skip

    def training_split(self) -> Tensor:
        """The whole training split, binarized [N, D]: the rows :meth:`indices` picks from."""
        return data.binarize(data.load("train", split_seed=self.split_seed).x, self.binarization)


@dataclass(frozen=True)
class TargetsConfig(FromSection):
    """The ``split_targets`` section: the decoders (weights files in ``run_dir``), the images, q*'s
    settings, how many images a kept part holds, and where the parts and targets go."""

    run_dir: str = "models/campaign"
    decoders: tuple[str, ...] = ()
    images: SplitImages = SplitImages()
    qstar: QStarConfig = QStarConfig()
    chunk: int = 1000
    workers: int = 2
    parts_dir: str = "results/parts/split"
    targets_dir: str = "results/split/targets"

    def __post_init__(self) -> None:
        if min(self.chunk, self.workers) < 1:
            raise ValueError("chunk and workers must be positive")


def training_images(size: int, counts: dict[str, int], seed: int) -> dict[str, Tensor]:
    """Disjoint sets of row indices of a split of ``size`` rows, one per role of ``counts`` (in its
    order), each sorted: consecutive stretches of one random order drawn with ``seed``. The first
    is :func:`amortgap.data.random_subset` of its size and seed (the gap table's images)."""
    if sum(counts.values()) > size:
        raise ValueError(f"{sum(counts.values())} images asked of a split of {size}")
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))
    sets, start = {}, 0
    for role, n in counts.items():
        sets[role] = order[start : start + n].sort().values
        start += n
    return sets


def qstar_params(model: VAE, x: Tensor, config: QStarConfig) -> dict[str, Tensor]:
    """q* of each image of x [B, D] (diagonal Gaussian, searched from the model's encoder, which the
    validation found enough for the FFG models): ``loc``, ``log_scale`` [B, d], and whether each
    search ``converged`` [B] (or stopped at ``max_steps``)."""
    with seeded(0):
        found = optimal_q(model, x, config=config)
    return {**{k: v.detach() for k, v in found.params.items()}, "converged": found.converged}


def targets(config: TargetsConfig, decoder: str, root: str | Path = ".", progress: bool = False) -> dict:
    """The distillation's targets for ``decoder`` (a weights file in ``run_dir``): q* on the target
    images, computed in chunks of ``chunk`` images kept as parts. A dict of ``indices`` [N] (rows of
    the training split), ``loc``, ``log_scale`` [N, d], ``converged`` [N], and the ``decoder``,
    ``binarization`` and ``split_seed``."""
    root = Path(root)
    model = load(root / config.run_dir / decoder)
    images = config.images.training_split()
    indices = config.images.indices(len(images))["targets"]
    chunks = indices.split(config.chunk)
    parts = root / config.parts_dir
    tasks = [(parts, f"{dotted(decoder)}_targets{i}", qstar_params, model, images[rows], config.qstar)
             for i, rows in enumerate(chunks)]  # fmt: skip
    found = run_tasks(kept, tasks, workers=config.workers, desc=f"q* of {decoder}", progress=progress)
    return {"indices": indices, **{k: torch.cat([f[k] for f in found]) for k in ("loc", "log_scale", "converged")},
            "decoder": decoder, "binarization": config.images.binarization, "split_seed": config.images.split_seed}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m amortgap.study.split_targets <decoder>``: write the decoder's q* targets to
    :func:`amortgap.distill.targets_file` (DVC stage ``split_targets``, one command per decoder)."""
    parser = argparse.ArgumentParser(prog="python -m amortgap.study.split_targets", description=__doc__.split("\n")[0])
    parser.add_argument("decoder", help="a weights file in the section's run_dir: diagonal_cremer_s0/best.pt")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--workers", type=int, help="worker processes (default: the section's)")
    args = parser.parse_args(argv)
    config = TargetsConfig.from_section(yaml.safe_load(Path(args.params).read_text())["split_targets"])
    if args.workers is not None:
        config = replace(config, workers=args.workers)
    if args.decoder not in config.decoders:
        print(f"error: {args.decoder} is not one of the split_targets section's decoders {list(config.decoders)}", file=sys.stderr)
        return 2
    if not (Path(config.run_dir) / args.decoder).exists():
        print(f"error: {Path(config.run_dir) / args.decoder} is not trained yet (python -m amortgap.campaign run)", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    found = targets(config, args.decoder, progress=True)
    out = targets_file(config.targets_dir, args.decoder)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: torch.save(found, tmp))
    print(f"{out}: q* of {len(found['indices'])} training images, {int(found['converged'].sum())} converged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
