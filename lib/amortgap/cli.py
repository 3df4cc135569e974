"""Command line: ``python -m amortgap train ...`` and ``python -m amortgap evaluate ...``.

Every field of :class:`VAEConfig`, :class:`TrainConfig`, :class:`AISConfig` and
:class:`DecomposeConfig` is a flag of the same name (``--encoder-hidden 200 200``), so the command
line never drifts from the library's defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

from . import data, gaps, models, train
from .ais import AISConfig
from .device import resolve_device
from .qstar import QStarConfig


def _optional(kind: type):
    def parse(text: str):
        return None if text.lower() == "none" else kind(text)

    parse.__name__ = kind.__name__
    return parse


def add_config_args(parser: argparse.ArgumentParser, cls: type, prefix: str = "", skip: Sequence[str] = ()) -> None:
    """One ``--[prefix-]field-name`` flag per scalar or tuple field of the dataclass ``cls``."""
    group = parser.add_argument_group(f"{cls.__name__} fields (see amortgap's docstrings)")
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.name in skip or dataclasses.is_dataclass(default) or f.default is dataclasses.MISSING:
            continue
        flag = "--" + (prefix + f.name).replace("_", "-")
        dest = prefix + f.name
        if isinstance(default, tuple):
            kind = type(default[0]) if default else int
            group.add_argument(flag, dest=dest, type=kind, nargs="+", default=default, metavar="N", help="default: %(default)s")
        elif isinstance(default, bool):
            group.add_argument(flag, dest=dest, type=lambda s: s.lower() in ("1", "true", "yes"),
                               default=default, help="default: %(default)s")
        else:
            kind = _optional(type(default)) if "None" in str(f.type) else type(default)
            group.add_argument(flag, dest=dest, type=kind, default=default, help="default: %(default)s")


def config_from_args(args: argparse.Namespace, cls: type, prefix: str = "", **extra):
    values = {f.name: getattr(args, prefix + f.name) for f in dataclasses.fields(cls) if hasattr(args, prefix + f.name)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**values, **extra)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m amortgap", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a VAE on Fashion-MNIST, with checkpoints and resume",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, required=True,
                   help="run folder: model.pt (best weights), checkpoint.pt, history.csv, config.json")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if it exists")
    p.add_argument("--num-train", type=int, default=None, help="use only the first N training images")
    p.add_argument("--num-valid", type=int, default=data.NUM_VALID,
                   help="training images held out for validation (seeded split)")
    _common_args(p)
    add_config_args(p, models.VAEConfig, skip=("data_dim", "table_images"))
    add_config_args(p, train.TrainConfig)

    e = sub.add_parser("evaluate", help="decompose the inference gap of a trained VAE, per datapoint",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    e.add_argument("model", type=Path, help="a model.pt written by `train`")
    e.add_argument("--split", choices=("train", "valid", "test"), default="test")
    e.add_argument("--num-points", type=int, default=100,
                   help="evaluate N images of the split, drawn at random (the first ones are easier than the rest)")
    e.add_argument("--image-seed", type=int, default=0, help="seed of the random draw of images")
    e.add_argument("--binarization", choices=("static", "dynamic"), default="static")
    e.add_argument("--out", type=Path, default=None, help="write the per-datapoint table to this CSV")
    e.add_argument("--no-ais", action="store_true", help="estimate log p(x) by IWAE only")
    _common_args(e)
    add_config_args(e, gaps.DecomposeConfig, skip=("max_pairs",))
    add_config_args(e, AISConfig, prefix="ais_")
    add_config_args(e, QStarConfig, prefix="qstar_", skip=("adam_betas", "adam_eps"))
    return parser


def _common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--data-dir", default=None, help=f"Fashion-MNIST folder (default: ${data.DATA_DIR_ENV} "
                   f"or {data.DEFAULT_DATA_DIR})")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run_train(args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    model_config = config_from_args(args, models.VAEConfig)
    train_config = config_from_args(args, train.TrainConfig)
    train_images = data.load("train", args.data_dir, num_valid=args.num_valid)
    train_x = train_images.x[: args.num_train] if args.num_train else train_images.x
    valid_x = data.load_binarized("valid", train_config.binarization, args.data_dir, num_valid=args.num_valid)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "config.json").write_text(json.dumps(
        {"model": model_config.to_dict(), "train": dataclasses.asdict(train_config),
         "num_train": len(train_x)}, indent=2) + "\n")  # fmt: skip
    torch.manual_seed(train_config.seed)
    model = models.VAE(model_config).to(device)
    start = time.perf_counter()
    result = train.train(model, train_x, valid_x, train_config, checkpoint=args.out / "checkpoint.pt",
                         resume=args.resume, progress=not args.quiet)
    models.save(result.model, args.out / "model.pt")
    result.history.to_csv(args.out / "history.csv", index=False)
    best = result.history.loc[result.history.valid_elbo.idxmax()]
    print(f"trained {len(result.history)} epochs in {time.perf_counter() - start:.0f} s this run; "
          f"best validation ELBO {best.valid_elbo:.2f} nats at epoch {int(best.epoch)}; "
          f"weights in {args.out / 'model.pt'}")


def run_evaluate(args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    model = models.load(args.model, map_location=device)
    images = data.load_binarized(args.split, args.binarization, args.data_dir)
    if not 1 <= args.num_points <= len(images):
        raise ValueError(f"--num-points must be between 1 and {len(images)}, the number of {args.split} "
                         f"images, not {args.num_points}")
    index = data.random_subset(len(images), args.num_points, args.image_seed)
    x = images[index].to(device)
    ais = None if args.no_ais else config_from_args(args, AISConfig, prefix="ais_")
    config = config_from_args(args, gaps.DecomposeConfig, ais=ais,
                              qstar=config_from_args(args, QStarConfig, prefix="qstar_"))
    start = time.perf_counter()
    table = gaps.decompose(model, x, config, progress=not args.quiet).assign(image=index.numpy())
    seconds = time.perf_counter() - start
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out)
    print(f"{len(table)} {args.split} points of {args.model}, {seconds:.0f} s "
          f"({seconds / len(table):.2f} s per point); mean q* steps {table.qstar_steps.mean():.0f}, "
          f"AIS acceptance {table.ais_acceptance.mean():.2f}")
    print(gaps.summarize(table).astype(float).round(3).to_string())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        {"train": run_train, "evaluate": run_evaluate}[args.command](args)
    except (data.DataError, models.CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
