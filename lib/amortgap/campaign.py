"""The training campaign: every paper-scale model, trained once, resumably, in priority order.

A *run* is one model (a family and a seed) under one protocol of ``params.yaml``'s ``campaign``
section. Its directory ``<model_dir>/<run>/`` holds what it has produced so far:

- ``train.pt``: the full training state (weights, Adam, schedule position, RNG, history), while the
  run is unfinished; deleted when it finishes, so that only weights stay in the repository;
- ``train.snapshots/e<N>.pt``: the weights after the protocol's snapshot epochs (the last one is the
  long-trained model of Cremer et al.'s protocol);
- ``early.pt``: the early-stopped model, the best validation weights after the KL warm-up at the
  moment the patience rule fired;
- ``history.csv`` (one row per epoch) and ``run.json`` (status, epochs, timings, machine).

The campaign's entries ask for a run ``until`` its early-stopped model exists (``early``) or until
its last epoch (``end``); one run may appear twice, early first and extended later. Entries run in
the order given, in single-thread worker processes, never one run in two at once, and all stop
cleanly at a wall-clock deadline, leaving checkpoints that the next call continues from, on this
machine or another. ``python -m amortgap.campaign status`` shows where each run stands.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Mapping, Sequence

import pandas as pd
import torch
import yaml

from . import data
from .config import FromSection
from .models import VAE, VAEConfig, CheckpointError
from .models import save as save_model
from .train import TrainConfig, snapshot_path, train

Until = Literal["early", "end"]


@dataclass(frozen=True)
class Entry(FromSection):
    """One line of the campaign's priority list: train ``family``'s model of ``seed`` under
    ``protocol`` until its early-stopped model exists, or to the protocol's last epoch."""

    family: str
    seed: int
    protocol: str = "cremer"
    until: Until = "end"

    def __post_init__(self) -> None:
        if self.until not in ("early", "end"):
            raise ValueError(f"until must be 'early' or 'end', not {self.until!r}")

    @property
    def run(self) -> str:
        """The run's name, e.g. ``diagonal_cremer_s0``."""
        return f"{self.family}_{self.protocol}_s{self.seed}"


@dataclass(frozen=True)
class CampaignConfig(FromSection):
    """The ``campaign`` section: where runs live, the data, the architecture, the named protocols and
    the priority list."""

    model_dir: str = "models/campaign"
    split_seed: int = 0
    num_train: int = 50000
    architecture: VAEConfig = VAEConfig()
    protocols: Mapping[str, TrainConfig] = field(default_factory=dict)
    entries: tuple[Entry, ...] = ()

    @classmethod
    def from_section(cls, section: Mapping) -> "CampaignConfig":
        section = dict(section)
        protocols = {name: TrainConfig.from_section(p) for name, p in section.pop("protocols", {}).items()}
        entries = tuple(Entry.from_section(e) for e in section.pop("entries", ()))
        config = super().from_section(section)
        config = replace(config, protocols=protocols, entries=entries)
        for entry in entries:
            if entry.protocol not in protocols:
                raise ValueError(f"entry {entry} names protocol {entry.protocol!r}; the protocols are {sorted(protocols)}")
        return config

    def run_dir(self, run: str, root: str | os.PathLike = ".") -> Path:
        return Path(root) / self.model_dir / run

    def model_config(self, entry: Entry) -> VAEConfig:
        return replace(self.architecture, family=entry.family)

    def train_config(self, entry: Entry) -> TrainConfig:
        """The protocol, seeded; an ``early`` entry stops when the patience rule fires."""
        config = replace(self.protocols[entry.protocol], seed=entry.seed)
        return replace(config, after_patience="stop") if entry.until == "early" else config


def load_config(params: str | os.PathLike = "params.yaml") -> CampaignConfig:
    return CampaignConfig.from_section(yaml.safe_load(Path(params).read_text())["campaign"])


def read_status(run_dir: Path) -> dict:
    """``run.json`` of a run (``{"status": "not started"}`` if it has none)."""
    path = run_dir / "run.json"
    return json.loads(path.read_text()) if path.exists() else {"status": "not started", "epoch": 0}


def reached(entry: Entry, status: Mapping) -> bool:
    """Whether a run with ``status`` already satisfies ``entry``."""
    return status.get("status") == "finished" or (entry.until == "early" and status.get("early_epoch") is not None)


def train_entry(config: CampaignConfig, entry: Entry, deadline: float, root: str = ".") -> dict:
    """Train (resume) ``entry``'s run until it reaches its target or the wall clock reaches
    ``deadline`` (``time.time()``), write its files, and return its ``run.json``."""
    run_dir = config.run_dir(entry.run, root)
    run_dir.mkdir(parents=True, exist_ok=True)
    status = read_status(run_dir)
    if reached(entry, status):
        return status
    train_config = config.train_config(entry)
    images = data.load("train", split_seed=config.split_seed)
    train_x = images.x[: config.num_train]
    valid_x = data.load_binarized("valid", train_config.binarization, split_seed=config.split_seed)
    torch.manual_seed(entry.seed)  # the initial weights, as in amortgap.sweep
    model = VAE(config.model_config(entry))
    checkpoint = run_dir / "train.pt"
    seconds_before = status.get("train_seconds", 0.0) if checkpoint.exists() else 0.0  # else it starts afresh
    began = time.monotonic()
    result = train(model, train_x, valid_x, train_config, checkpoint, resume=True, progress=False,
                   callback=_progress_printer(entry, train_config), budget_seconds=max(deadline - time.time(), 0))  # fmt: skip
    history = result.history
    history.to_csv(run_dir / "history.csv", index=False, float_format="%.6f")
    if result.early_state is not None:
        early = VAE(config.model_config(entry))
        early.load_state_dict(result.early_state)
        save_model(early, run_dir / "early.pt")
    epoch = int(history.epoch.iloc[-1]) if len(history) else 0
    state = "finished" if epoch >= train_config.epochs else ("early" if result.early_epoch is not None else "paused")
    status = {
        "run": entry.run,
        "status": state,
        "epoch": epoch,
        "epochs": train_config.epochs,
        "early_epoch": result.early_epoch,
        "best_epoch": result.best_epoch,
        "best_valid_elbo": float(history.valid_elbo.max()) if len(history) else None,
        "train_seconds": seconds_before + (time.monotonic() - began),
        "epoch_seconds_median": float(history.seconds.median()) if len(history) else None,
        "machine": f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} thread(s), "
                   f"torch {torch.__version__}".strip(),  # fmt: skip
    }
    extended = any(e.run == entry.run and e.until == "end" for e in config.entries)
    if state == "finished" or (state == "early" and not extended):  # weights only from here on
        checkpoint.unlink(missing_ok=True)
        if state == "early":  # nor snapshots of a run that goes no further
            for epoch_ in result.snapshots:
                snapshot_path(checkpoint, epoch_).unlink(missing_ok=True)
            if snapshot_path(checkpoint, 1).parent.exists():
                snapshot_path(checkpoint, 1).parent.rmdir()
    (run_dir / "run.json").write_text(json.dumps(status, indent=1) + "\n")
    return status


def _progress_printer(entry: Entry, config: TrainConfig, every: float = 60.0):
    """A training callback that prints a run's epoch, ELBOs, rate and time left about once a minute."""
    last = [0.0]

    def show(row: dict) -> None:
        now = time.monotonic()
        if now - last[0] < every and row["epoch"] != config.epochs:
            return
        last[0] = now
        left = (config.epochs - row["epoch"]) * row["seconds"] / 3600
        print(f"{entry.run}: epoch {row['epoch']}/{config.epochs}  train {row['train_elbo']:.2f}  "
              f"valid {row['valid_elbo']:.2f}  lr {row['lr']:.2g}  {row['seconds']:.2f} s/epoch  "
              f"~{left:.1f} h to epoch {config.epochs}", flush=True)  # fmt: skip

    return show


def _worker_init() -> None:
    torch.set_num_threads(1)


def run_campaign(config: CampaignConfig, deadline: float, workers: int = 2, only: Sequence[str] = (),
                 root: str = ".") -> list[dict]:  # fmt: skip
    """Work through the entries (those of runs named in ``only``, if given) in order, ``workers`` at a
    time in single-thread processes, until all are reached or ``deadline``. A worker that dies (out of
    memory, killed) fails the campaign with the entry's name; its run resumes from its last epoch."""
    pending = [e for e in config.entries if not only or e.run in only]
    if only and not pending:
        raise ValueError(f"no entry of the campaign is a run named {list(only)}; runs: {sorted({e.run for e in config.entries})}")
    results: list[dict] = []
    context = torch.multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool:
        busy: dict[Future, Entry] = {}
        while pending or busy:
            for entry in list(pending):
                if len(busy) >= workers or time.time() >= deadline:
                    break
                if entry.run in {e.run for e in busy.values()}:
                    continue  # never one run in two processes
                if any(e.run == entry.run for e in pending[: pending.index(entry)]):
                    continue  # an earlier entry of the same run goes first
                pending.remove(entry)
                if reached(entry, read_status(config.run_dir(entry.run, root))):
                    continue
                print(f"campaign: starting {entry.run} until {entry.until}", flush=True)
                busy[pool.submit(train_entry, config, entry, deadline, root)] = entry
            if not busy:
                break
            done, _ = wait(busy, return_when=FIRST_COMPLETED)
            for future in done:
                entry = busy.pop(future)
                try:
                    status = future.result()
                except BrokenProcessPool as err:
                    raise RuntimeError(f"the worker training {entry.run} died (killed, or out of memory?); "
                                       f"rerun to resume it from its last checkpoint") from err  # fmt: skip
                print(f"campaign: {entry.run} {status['status']} at epoch {status['epoch']}", flush=True)
                results.append(status)
    return results


def status_table(config: CampaignConfig, root: str = ".") -> pd.DataFrame:
    """One row per run: its status, epoch, early and best epochs, best validation ELBO, hours."""
    rows = []
    for run in dict.fromkeys(e.run for e in config.entries):
        s = read_status(config.run_dir(run, root))
        rows.append({"run": run, "status": s["status"], "epoch": s.get("epoch", 0), "early_epoch": s.get("early_epoch"),
                     "best_valid_elbo": s.get("best_valid_elbo"), "hours": round(s.get("train_seconds", 0) / 3600, 2)})  # fmt: skip
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m amortgap.campaign", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["run", "status"])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--only", nargs="*", default=(), help="train only these runs (by name)")
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help="stop cleanly after this many minutes (default: no limit)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.params)
        if args.command == "status":
            print(status_table(config).to_string(index=False))
            return 0
        if args.workers < 1:
            raise ValueError(f"--workers must be positive, not {args.workers}")
        deadline = time.time() + (args.budget_minutes * 60 if args.budget_minutes is not None else 1e12)
        run_campaign(config, deadline, args.workers, args.only)
        print(status_table(config).to_string(index=False))
    except (ValueError, CheckpointError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
