"""The training campaign: every paper-scale model, trained once, resumably, in priority order.

A *run* is one model (a family and a seed) under one protocol of ``params.yaml``'s ``campaign``
section. One run gives both of the paper's models: the best validation weights after the KL warm-up
over the protocol's whole schedule (the early-stopped model) and the weights at its last epoch
(Cremer et al.'s long-trained model). Its directory ``<model_dir>/<run>/`` holds what it has
produced so far:

- ``train.pt``: the full training state (weights, Adam, schedule position, RNG, history), while the
  run has epochs left; deleted when it has none, so that only weights stay in the repository;
- ``train.snapshots/e<N>.pt``: the weights after the protocol's snapshot epochs;
- ``best.pt``: the early-stopped model, written when the run reaches the protocol's last epoch;
- ``history.csv`` (one row per epoch) and ``run.json`` (status, epochs, timings; the epoch whose
  weights a patience rule would have chosen, kept to show what such a rule costs; and one record per
  stretch that trained it: epochs, host, CPU, kernels, threads, torch, and the training step; a
  stretch without a step was trained by the autograd step that came before the hand-written one).

An entry may ask for more epochs than its protocol (``epochs``): the same run goes on past the
protocol's end, at its final rate, for the longer-schedule check; ``best.pt`` stays the protocol's.
An entry that names a ``decoder`` (a weights file of another run, ``diagonal_cremer_s0/best.pt``)
trains an encoder of its own widths (``encoder_hidden``) against a frozen copy of that decoder: the
width study's fresh encoders, or (``init``) the file's own encoder trained on, or that encoder
first distilled onto per-image q* (:mod:`amortgap.distill`): the candidates for the best encoder of
the split of the amortization gap. It waits until its decoder's file (and q* targets) exist. An
entry with ``images`` trains on a random subset of that many training images (drawn with the
campaign's ``subset_seed``, the same subset for every entry of that size); with ``table`` too, its
model has no encoder but a lookup table of per-image q (:class:`amortgap.models.VAEConfig`): the
decoder trained by per-image VI, beside a VAE trained on the same images.
Entries run in the order given, in single-thread worker processes, never one run in two at once,
and all stop cleanly at a wall-clock deadline, leaving checkpoints that the next call continues
from, on this machine or another. No run starts that could not train a worthwhile stretch before
the deadline (:func:`start_need`), so that a stretch never ends with a fresh checkpoint of one epoch
to commit. ``python -m amortgap.campaign status`` shows where each run stands.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import multiprocessing
import os
import platform
import signal
import socket
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import pandas as pd
import torch
import yaml

from . import data
from .config import FromSection
from .distill import DistillConfig, distill, dotted, targets_file
from .models import VAE, VAEConfig, CheckpointError, atomic_write
from .models import load as load_model
from .models import save as save_model
from .lease import LeaseHeld, lease
from .parallel import worker_pool
from .train import STEP, TrainConfig, train

STARTUP_SECONDS = 60.0  # a worker's start, the data's loading and a resume, with room to spare
MIN_START_MINUTES = 10.0  # the least training worth a new checkpoint in the repository (7-10 MB)
STEP_BEFORE = "autograd"  # the step of the stretches recorded before run.json named it
INITS = ("fresh", "joint", "distilled")  # where an encoder on a frozen decoder starts


@dataclass(frozen=True)
class Entry(FromSection):
    """One line of the campaign's priority list: train ``family``'s model of ``seed`` under
    ``protocol`` to its last epoch, or on to ``epochs`` (more than the protocol's: its final rate
    continues); ``snapshot_epochs``, if given, replaces the protocol's (fewer weight files to commit
    for a run that only needs its end). With ``decoder`` (``<run>/<weights file>`` in the campaign's
    folder), the model is an encoder of widths ``encoder_hidden`` on a frozen copy of that decoder,
    which starts (``init``) ``fresh`` from the entry's seed, from the file's own encoder (``joint``),
    or from that encoder distilled onto the decoder's q* targets (``distilled``). ``flow_length``,
    if given, replaces the architecture's number of flow layers (and names the run: ``sylvester4``).
    ``images``: train on a random subset of that many training images; ``table``: with a lookup
    table of per-image q in the encoder's place (per-image VI; needs ``images``), its one-hot input
    scaled by ``table_scale`` (:class:`amortgap.models.VAEConfig`)."""

    family: str
    seed: int
    protocol: str = "cremer"
    epochs: int | None = None
    snapshot_epochs: tuple[int, ...] | None = None
    decoder: str | None = None
    encoder_hidden: tuple[int, ...] | None = None
    init: str = "fresh"
    flow_length: int | None = None
    images: int | None = None
    table: bool = False
    table_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise ValueError(f"an entry's init is one of {INITS}, not {self.init!r}")
        if self.flow_length is not None and (self.family == "diagonal" or self.flow_length < 1):
            raise ValueError(f"an entry's flow_length is a flow's number of layers (at least 1), not {self.flow_length} "
                             f"for a {self.family} encoder")  # fmt: skip
        if self.images is not None and self.images < 1:
            raise ValueError(f"an entry's images is the size of its training subset, not {self.images}")
        if self.table_scale != 1.0 and not self.table:
            raise ValueError(f"table_scale scales a table's input: an entry without a table has none, not {self.table_scale}")
        if self.table and (self.images is None or self.decoder is not None):
            raise ValueError("a table entry trains its own decoder with per-image q on a subset: it names images, "
                             "and no decoder")  # fmt: skip
        if self.init != "fresh" and self.decoder is None:
            raise ValueError(f"an entry that starts from a {self.init} encoder names the decoder file it comes from")
        if self.decoder is not None and (self.encoder_hidden is None or len(Path(self.decoder).parts) < 2):
            raise ValueError(f"an entry on a frozen decoder names the decoder as '<run>/<weights file>' and its encoder's "
                             f"widths (encoder_hidden), not decoder={self.decoder!r}, encoder_hidden={self.encoder_hidden}")  # fmt: skip

    @property
    def run(self) -> str:
        """The run's name: ``diagonal_cremer_s0``, or for an encoder on a frozen decoder
        ``diagonal_enc200x200_on_diagonal_cremer_s0.best_encoder_s0`` (a fresh one) or
        ``diagonal_enc200x200_distilled_on_diagonal_cremer_s0.best_refit_s0``; on a subset
        ``diagonal_n1000_cremer_s0``, and a table model ``diagonal_table30_n1000_cremer_s0`` (its scale)."""
        family = self.family if self.flow_length is None else f"{self.family}{self.flow_length}"
        if self.images is not None:
            family += f"{f'_table{self.table_scale:g}' * self.table}_n{self.images}"
        if self.decoder is None:
            return f"{family}_{self.protocol}_s{self.seed}"
        widths = "x".join(map(str, self.encoder_hidden)) + ("" if self.init == "fresh" else f"_{self.init}")
        return f"{family}_enc{widths}_on_{dotted(self.decoder)}_{self.protocol}_s{self.seed}"


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
    targets_dir: str = "results/split/targets"
    distill: DistillConfig = DistillConfig()
    subset_seed: int = 0  # the training subsets of entries that name ``images``

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
            if entry.images is not None and entry.images > config.num_train:
                raise ValueError(f"entry {entry} asks for a subset of {entry.images} images of the {config.num_train} it trains from")
            if entry.epochs is not None and entry.epochs < protocols[entry.protocol].epochs:
                raise ValueError(f"entry {entry} asks for {entry.epochs} epochs, fewer than its protocol's "
                                 f"{protocols[entry.protocol].epochs}: the early-stopped model needs the whole schedule")  # fmt: skip
        return config

    @property
    def runs(self) -> list[str]:
        """The campaign's runs, each once, in the order of their first entries."""
        return list(dict.fromkeys(e.run for e in self.entries))

    def run_dir(self, run: str, root: str | os.PathLike = ".") -> Path:
        return Path(root) / self.model_dir / run

    def model_config(self, entry: Entry) -> VAEConfig:
        """The architecture with the entry's family (and encoder widths, flow length and table, if it names them)."""
        return replace(self.architecture, family=entry.family,
                       encoder_hidden=entry.encoder_hidden or self.architecture.encoder_hidden,
                       flow_length=self.architecture.flow_length if entry.flow_length is None else entry.flow_length,
                       table_images=entry.images if entry.table else 0, table_scale=entry.table_scale)  # fmt: skip

    def train_images(self, entry: Entry) -> torch.Tensor:
        """The rows of the training split that ``entry`` trains on: the first ``num_train``, or a
        random subset of ``images`` of them (sorted; the table's row i is the subset's i-th image).
        The subset is ``subset_seed``'s, which the run's name does not carry: a finished run stands
        for the subset it trained on (a resume under another seed is refused: its data differ)."""
        rows = torch.arange(self.num_train)
        return rows if entry.images is None else rows[data.random_subset(self.num_train, entry.images, self.subset_seed)]

    def decoder_path(self, entry: Entry, root: str | os.PathLike = ".") -> Path | None:
        """The weights file whose decoder ``entry`` trains against (None: it trains its own)."""
        return None if entry.decoder is None else Path(root) / self.model_dir / entry.decoder

    def targets_path(self, entry: Entry, root: str | os.PathLike = ".") -> Path | None:
        """The q* targets a ``distilled`` entry's encoder is fitted to (None for the others):
        ``<targets_dir>/<decoder, dotted>.pt``, written by ``python -m amortgap.study.split_targets``."""
        return targets_file(Path(root) / self.targets_dir, entry.decoder) if entry.init == "distilled" else None

    def initial_model(self, entry: Entry, root: str | os.PathLike = ".", resuming: bool = False) -> VAE:
        """The run's model at epoch 0, from the entry's seed: a fresh VAE, or an encoder on a frozen
        copy of the entry's decoder (fresh, the decoder file's own, or that one distilled onto the
        decoder's q* targets). ``resuming``: a distilled run starts from the fit it saved
        (``distilled.pt``), not from a new one."""
        decoder = self.decoder_path(entry, root)
        if decoder is not None and not decoder.exists():
            raise ValueError(f"{entry.run} trains against the decoder of {decoder}, which does not exist (yet)")
        source = None if decoder is None else load_model(decoder)
        torch.manual_seed(entry.seed)  # the initial weights, as in amortgap.sweep
        if source is None:
            return VAE(self.model_config(entry))
        model = source.with_frozen_decoder(self.model_config(entry))
        if entry.init == "fresh":
            return model
        if model.config.encoder_hidden != source.config.encoder_hidden or model.family.__class__ is not source.family.__class__:
            raise ValueError(f"{entry.run} starts from the encoder of {decoder}, which has widths "
                             f"{source.config.encoder_hidden} and family {source.config.family}, not the entry's")  # fmt: skip
        if source.config.table_images:
            raise ValueError(f"{entry.run} starts from the encoder of {decoder}, a table model, which has none")
        model.encoder.load_state_dict(source.encoder.state_dict())
        if entry.init == "joint":
            return model
        if resuming:  # the checkpoint was made from the fit: train() checks its initial weights' fingerprint
            fitted = self.run_dir(entry.run, root) / "distilled.pt"
            if not fitted.exists():
                raise ValueError(f"{entry.run} has a checkpoint but no {fitted}: remove its train.pt to start it again")
            start = load_model(fitted)
            start.decoder.requires_grad_(False)
            return start
        return self.distilled(entry, model, root)

    def distilled(self, entry: Entry, model: VAE, root: str | os.PathLike) -> VAE:
        """``model``'s encoder distilled onto the q* targets of ``entry``'s decoder
        (:func:`amortgap.distill.distill`); the fit's history goes to the run's ``distill.csv`` and the
        distilled model, before any ELBO training, to its ``distilled.pt``."""
        path = self.targets_path(entry, root)
        if not path.exists():
            raise ValueError(f"{entry.run} distils its encoder onto {path}, which does not exist (yet): "
                             f"python -m amortgap.study.split_targets")  # fmt: skip
        targets = torch.load(path, weights_only=True)
        binarization = self.protocols[entry.protocol].binarization
        ours = {"decoder": entry.decoder, "binarization": binarization, "split_seed": self.split_seed}
        if differ := {k: (targets[k], v) for k, v in ours.items() if targets[k] != v}:
            raise ValueError(f"{path}'s q* is not of {entry.run}'s images and decoder: (targets', run's) {differ}")
        images = data.load("train", split_seed=self.split_seed).x  # the targets' rows: any of the training split
        x = data.binarize(images[targets["indices"]], binarization)
        student, history = distill(model, x, {"loc": targets["loc"], "log_scale": targets["log_scale"]}, self.distill)
        run_dir = self.run_dir(entry.run, root)
        run_dir.mkdir(parents=True, exist_ok=True)
        history.to_csv(run_dir / "distill.csv", index=False, float_format="%.6f")
        save_model(student, run_dir / "distilled.pt")
        return student  # its decoder frozen, as distill() leaves it

    def target(self, entry: Entry) -> int:
        """The epoch ``entry`` trains its run to."""
        return entry.epochs or self.protocols[entry.protocol].epochs

    def last_target(self, run: str) -> int:
        """The furthest epoch any entry asks of ``run``: its checkpoint is kept until then."""
        return max(self.target(e) for e in self.entries if e.run == run)

    def train_config(self, entry: Entry, epochs: int) -> TrainConfig:
        """The protocol, seeded, to ``epochs`` (with the entry's snapshots, if it names them)."""
        config = replace(self.protocols[entry.protocol], seed=entry.seed, epochs=epochs)
        return config if entry.snapshot_epochs is None else replace(config, snapshot_epochs=entry.snapshot_epochs)


def load_config(params: str | os.PathLike = "params.yaml") -> CampaignConfig:
    return CampaignConfig.from_section(yaml.safe_load(Path(params).read_text())["campaign"])


def read_status(run_dir: Path) -> dict:
    """``run.json`` of a run (``{"status": "not started"}`` if it has none)."""
    path = run_dir / "run.json"
    return json.loads(path.read_text()) if path.exists() else {"status": "not started", "epoch": 0}


def reached(config: CampaignConfig, entry: Entry, status: Mapping) -> bool:
    """Whether a run with ``status`` already satisfies ``entry``."""
    return status.get("epoch", 0) >= config.target(entry)


def train_entry(config: CampaignConfig, entry: Entry, deadline: float, root: str = ".") -> dict:
    """Train (resume) ``entry``'s run until it reaches its target epoch or the wall clock reaches
    ``deadline`` (``time.time()``), write its files, and return its ``run.json``. A run always
    stops at its protocol's last epoch first, where ``best.pt`` is written. It trains with one
    thread whoever calls it (the campaign's rule: a run resumes bit for bit only on the code path it
    trained on), and restores the caller's thread count after. It holds the run's lease
    (:mod:`amortgap.lease`) meanwhile: a run another job trains raises :class:`LeaseHeld`, and a
    lease lost to another job stops the training after the epoch in flight (:class:`LeaseLost`). A
    SIGTERM stops it at once, with its lease released (:func:`stopped_by_sigterm`)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    die_with_parent()
    try:
        with stopped_by_sigterm(), lease(config.run_dir(entry.run, root)) as held:
            return _train_entry(config, entry, deadline, root, held.check)
    finally:
        torch.set_num_threads(threads)


class Terminated(BaseException):
    """A SIGTERM (a scheduler's time limit, ``scancel``, ``kill``) stopped the training: the run
    resumes from the checkpoint of its last finished epoch. Like KeyboardInterrupt, no ``except
    Exception`` on the way (a checkpoint's load, say) mistakes it for an error of its own."""


@contextmanager
def stopped_by_sigterm() -> Iterator[None]:
    """For the block, in the main thread: a SIGTERM raises :class:`Terminated`, so that the lease
    and files are let go in order before the process ends, and the next job need not wait out the
    lease's limit. A worker process ignores SIGTERM after the block (after one, for good), so that
    the copy its campaign passes on (:func:`sigterm_to_workers`), or a SIGTERM while it waits for its
    next run, cannot kill it and break the campaign's pool. Outside the main thread nothing changes."""
    received: list[int] = []

    def stop(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        received.append(signum)
        raise Terminated("stopped by SIGTERM; it resumes from its last checkpoint")

    worker = multiprocessing.parent_process() is not None
    with on_sigterm(stop, lambda before: signal.SIG_IGN if received or worker else before):
        yield


@contextmanager
def on_sigterm(handler: Callable[[int, object], None], after: Callable[[object], object] = lambda before: before) -> Iterator[None]:
    """For the block, in the main thread (where Python runs signal handlers), ``handler`` for
    SIGTERM; after it, ``after(the handler before)``. Outside the main thread nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, after(before))


def die_with_parent() -> None:
    """In a worker process: end it when the process that started it dies (Linux), so that a killed
    campaign leaves no worker training on, beside the next campaign, into the same run's files (the
    checkpoint of its last finished epoch stays: checkpoints are written atomically)."""
    if sys.platform != "linux" or multiprocessing.parent_process() is None:
        return
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if not multiprocessing.parent_process().is_alive():  # it died before prctl took effect
        os._exit(1)


def _train_entry(config: CampaignConfig, entry: Entry, deadline: float, root: str, check: Callable[[], None]) -> dict:
    run_dir = config.run_dir(entry.run, root)
    run_dir.mkdir(parents=True, exist_ok=True)
    status = read_status(run_dir)
    if 0 < status.get("epoch", 0) < config.target(entry) and not (run_dir / "train.pt").exists():
        raise ValueError(f"{entry.run} stopped at epoch {status['epoch']} and kept its weights only (no train.pt), so it "
                         f"cannot go on to epoch {config.target(entry)}; remove {run_dir} to retrain it from scratch")  # fmt: skip
    protocol = config.protocols[entry.protocol]
    images = data.load("train", split_seed=config.split_seed)
    train_x = images.x[: config.num_train] if entry.images is None else images.x[config.train_images(entry)]
    valid_x = data.load_binarized("valid", protocol.binarization, split_seed=config.split_seed)
    stretch = stretch_record()
    for epochs in sorted({protocol.epochs, config.target(entry)}):
        if status.get("epoch", 0) < epochs:
            status = _train_to(config, entry, epochs, deadline, root, status, stretch, train_x, valid_x, check)
            if status["epoch"] < epochs:
                break  # the deadline
    return status


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    info = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in info.read_text().splitlines()
             if line.startswith("model name")] if info.exists() else []  # fmt: skip
    return names[0] if names else platform.processor() or platform.machine()


def stretch_record() -> dict:
    """Where and how a stretch of training runs: its start (UTC), host, CPU, the kernels torch
    picked for it (``ATEN_CPU_CAPABILITY``), threads, torch version, training step and scheduler. Its first epoch adds the
    epoch it began from (:func:`_on_epoch`), and :func:`_train_to` the epoch it reached and its
    training seconds."""
    return {"started": datetime.now(timezone.utc).isoformat(timespec="microseconds"), "host": socket.gethostname(),
            "cpu": cpu_name(), "kernels": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "step": STEP, "scheduler": scheduler()}  # fmt: skip


def slurm_minutes(left: str) -> int:
    """Whole minutes in Slurm's time format (``squeue -o %L``: ``[days-]hours:minutes:seconds``,
    ``minutes:seconds``), e.g. ``1-02:03:04`` -> 1563."""
    days, _, clock = left.strip().rpartition("-")
    parts = clock.split(":")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts) or not (days.isdigit() or days == ""):
        raise ValueError(f"not a Slurm time: {left!r}")  # UNLIMITED, INVALID, NOT_SET
    parts = [int(p) for p in parts]
    hours, minutes, seconds = [0] * (3 - len(parts)) + parts
    return (int(days or 0) * 24 + hours) * 60 + minutes + seconds // 60


def scheduler() -> str:
    """The batch job this process runs in (``slurm <job>[ task <array task>]``), or ``none``."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return "none"
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"slurm {job}" + (f" task {task}" if task else "")


def _with_stretch(status: Mapping, stretch: dict) -> list[dict]:
    """``status``'s stretches with ``stretch`` in place of its earlier record (the same ``started``),
    if it trained an epoch."""
    earlier = [s for s in status.get("stretches", []) if s.get("started") != stretch["started"]]
    return earlier + [stretch] if stretch["to_epoch"] > stretch["from_epoch"] else earlier


def _train_to(config: CampaignConfig, entry: Entry, epochs: int, deadline: float, root: str, status: Mapping,
              stretch: dict, train_x: torch.Tensor, valid_x: torch.Tensor, check: Callable[[], None]) -> dict:  # fmt: skip
    run_dir = config.run_dir(entry.run, root)
    train_config = config.train_config(entry, epochs)
    checkpoint = run_dir / "train.pt"
    model = config.initial_model(entry, root, resuming=checkpoint.exists())
    result = train(model, train_x, valid_x, train_config, checkpoint, resume=True, progress=False,
                   callback=_on_epoch(entry, train_config, run_dir, status, stretch, check),
                   budget_seconds=max(deadline - time.time(), 0))  # fmt: skip
    history = result.history
    history.to_csv(run_dir / "history.csv", index=False, float_format="%.6f")
    epoch = int(history.epoch.iloc[-1]) if len(history) else 0
    protocol = config.protocols[entry.protocol]
    if epoch == protocol.epochs and result.finished:
        save_model(result.model, run_dir / "best.pt")  # the best weights of the protocol's schedule (a table model's last)
    chosen = protocol_window(history, protocol)
    last = config.last_target(entry.run)
    if "from_epoch" not in stretch:  # no epoch trained: the stretch begins and ends at the checkpoint
        stretch["from_epoch"] = epoch
    done = history[history.epoch > stretch["from_epoch"]] if len(history) else history
    stretch |= {"to_epoch": epoch, "seconds": round(float(done.seconds.sum()), 1) if len(done) else 0.0}
    status = {
        "run": entry.run,
        "status": "finished" if epoch >= last else "paused",
        "epoch": epoch,
        "epochs": protocol.epochs,
        "last_epoch": last,
        "best_epoch": int(chosen.epoch[chosen.valid_elbo.idxmax()]) if len(chosen) else None,
        "best_valid_elbo": float(chosen.valid_elbo.max()) if len(chosen) else None,
        "patience_epoch": result.early_epoch,
        "train_seconds": float(history.seconds.sum()) if len(history) else 0.0,  # every epoch's, kills included
        "epoch_seconds_median": float(history.seconds.median()) if len(history) else None,
        "stretches": _with_stretch(status, stretch),
    }
    if epoch >= last:  # weights only from here on
        checkpoint.unlink(missing_ok=True)
    write_status(run_dir, status)
    return status


def write_status(run_dir: Path, status: Mapping) -> None:
    """Write ``run.json`` atomically (a commit may read it at any moment)."""
    atomic_write(run_dir / "run.json", lambda tmp: tmp.write_text(json.dumps(status, indent=1) + "\n"))


def protocol_window(history: pd.DataFrame, protocol: TrainConfig, last: int | None = None) -> pd.DataFrame:
    """The epochs of ``history`` among which the protocol chooses its best validation weights: after
    the KL warm-up (if ``best_after_warmup``), up to the protocol's last epoch (or ``last``); none for
    a table model, which has no validation ELBO."""
    if history.empty:
        return history
    first = protocol.warmup_epochs if protocol.best_after_warmup else 0
    return history[(history.epoch > first) & (history.epoch <= (protocol.epochs if last is None else last))
                   & history.valid_elbo.notna()]  # fmt: skip


LONGER_TOLERANCE = 0.3  # nats of validation ELBO a longer schedule may add to a protocol that has converged


def longer_schedule_check(history: pd.DataFrame, protocol: TrainConfig, longer_epochs: int,
                          patience_epoch: int | None = None, tolerance: float = LONGER_TOLERANCE) -> dict:  # fmt: skip
    """Whether the protocol reached its validation optimum: the best validation ELBO after the
    warm-up within the protocol's epochs, against the best after the warm-up of the same run taken
    on to ``longer_epochs``. ``gain`` is what the longer schedule adds; the check ``holds`` when it is
    at most ``tolerance`` nats (both None until the history reaches ``longer_epochs``). With
    ``patience_epoch`` (the epoch whose weights a patience rule chose), if within the protocol's
    epochs, also its shortfall."""
    within = protocol_window(history, protocol)
    if within.empty:
        first = protocol.warmup_epochs if protocol.best_after_warmup else 0
        raise ValueError(f"the history has no epoch after the warm-up ({first}) within the protocol's {protocol.epochs}")
    longer = longer_epochs > protocol.epochs and int(history.epoch.max()) >= longer_epochs
    best, longest = within.valid_elbo.max(), protocol_window(history, protocol, longer_epochs).valid_elbo.max()
    check = {"best_epoch": int(within.epoch[within.valid_elbo.idxmax()]), "best_valid_elbo": float(best),
             "longer_epochs": longer_epochs if longer else None,
             "longer_best_valid_elbo": float(longest) if longer else None,
             "gain": float(longest - best) if longer else None,
             "holds": bool(longest - best <= tolerance) if longer else None}  # fmt: skip
    if patience_epoch is not None and patience_epoch <= protocol.epochs:  # fired within the protocol
        chosen = protocol_window(history, protocol, patience_epoch)
        check["patience_valid_elbo"] = float(chosen.valid_elbo.max())
        check["patience_shortfall"] = float(best - chosen.valid_elbo.max())
    return check


def read_runs(config: CampaignConfig, root: str | os.PathLike = ".") -> dict[str, tuple[pd.DataFrame, dict]]:
    """The ``history.csv`` and ``run.json`` of every run of the campaign that has trained an epoch,
    in the entries' order."""
    runs = {}
    for entry in config.entries:
        run_dir = config.run_dir(entry.run, root)
        status = read_status(run_dir)
        if entry.run not in runs and status.get("epoch", 0) > 0:
            runs[entry.run] = (pd.read_csv(run_dir / "history.csv"), status)
    return runs


def protocol_table(config: CampaignConfig, runs: Mapping[str, tuple[pd.DataFrame, dict]]) -> pd.DataFrame:
    """One row per run of ``runs`` (:func:`read_runs`): where it stands, both protocols' models (the
    early-stopped model's epoch and ELBOs, the ELBOs at the protocol's last epoch), what the patience
    rule would have kept, and the longer-schedule check (:func:`longer_schedule_check` against the
    run's furthest entry; empty until the run gets there)."""
    rows = []
    for entry in {e.run: e for e in config.entries}.values():
        if entry.run not in runs:
            continue
        history, status = runs[entry.run]
        protocol = config.protocols[entry.protocol]
        by_epoch = history.set_index("epoch")
        window = protocol_window(history, protocol)
        row = {"run": entry.run, "family": entry.family, "seed": entry.seed, "protocol": entry.protocol,
               "epoch": int(history.epoch.max()), "last_epoch": config.last_target(entry.run)}  # fmt: skip
        check = longer_schedule_check(history, protocol, row["last_epoch"], status.get("patience_epoch")) if len(window) else {}
        best = check.get("best_epoch")
        row |= {"best_epoch": best, "best_valid_elbo": check.get("best_valid_elbo"),
                "best_train_elbo": by_epoch.train_elbo.get(best) if best else None,
                "final_valid_elbo": by_epoch.valid_elbo.get(protocol.epochs),
                "final_train_elbo": by_epoch.train_elbo.get(protocol.epochs),
                "patience_epoch": status.get("patience_epoch"), "patience_shortfall": check.get("patience_shortfall"),
                "longer_epochs": check.get("longer_epochs"), "longer_gain": check.get("gain"),
                "longer_holds": check.get("holds")}  # fmt: skip
        rows.append(row)
    table = pd.DataFrame(rows)
    # a run with no longer entry has no check: keep the column's epochs whole numbers beside its NA
    return table.astype({"longer_epochs": "Int64"}) if len(table) else table


RECORD_SECONDS = 300.0  # how often run.json says where a run in training is


def _on_epoch(entry: Entry, config: TrainConfig, run_dir: Path, status: Mapping, stretch: dict,
              check: Callable[[], None] = lambda: None, every: float = 60.0, record_every: float = RECORD_SECONDS):  # fmt: skip
    """A training callback that prints a run's epoch, ELBOs, rate and time left about once a minute,
    and every ``record_every`` seconds writes its ``run.json`` as it stands: status "training",
    ``training_epoch`` (where its checkpoint was at most ``record_every`` seconds ago) and this
    stretch so far, so that a state committed in the middle of a stretch says where it is. ``epoch``
    stays the last pause's, whose ``history.csv`` and ``best.pt`` are complete: a run killed in
    training is resumed, never taken for reached. Each epoch first calls ``check`` (the lease's:
    it raises when another job took the run over)."""
    last, recorded = [0.0], [time.monotonic()]
    seconds = [status.get("train_seconds", 0.0), stretch.get("seconds", 0.0)]  # the run's, this stretch's

    def record(row: dict) -> None:
        check()
        if "from_epoch" not in stretch:  # its first epoch: it began where the checkpoint was (run.json may lag)
            stretch["from_epoch"] = row["epoch"] - 1
        seconds[0] += row["seconds"]
        seconds[1] += row["seconds"]
        if time.monotonic() - recorded[0] < record_every:
            return
        recorded[0] = time.monotonic()
        now = {**stretch, "to_epoch": row["epoch"], "seconds": round(seconds[1], 1)}
        write_status(run_dir, {**status, "run": entry.run, "status": "training", "training_epoch": row["epoch"],
                               "train_seconds": seconds[0], "stretches": _with_stretch(status, now)})  # fmt: skip

    def show(row: dict) -> None:
        record(row)
        now = time.monotonic()
        if now - last[0] < every and row["epoch"] != config.epochs:
            return
        last[0] = now
        left = (config.epochs - row["epoch"]) * row["seconds"] / 3600
        print(f"{entry.run}: epoch {row['epoch']}/{config.epochs}  train {row['train_elbo']:.2f}  "
              f"valid {row['valid_elbo']:.2f}  lr {row['lr']:.2g}  {row['seconds']:.2f} s/epoch  "
              f"~{left:.1f} h to epoch {config.epochs}", flush=True)  # fmt: skip

    return show


def epoch_seconds(config: CampaignConfig, root: str | os.PathLike = ".") -> dict[str, float | None]:
    """Each run's seconds per epoch: measured with today's training step (:func:`step_epoch_seconds`)
    if any run of its family and protocol has trained with it, else its median over every epoch
    (``run.json``); each the run's own, else the median of the runs of its kind; None where nothing
    of its kind has trained yet."""
    runs = {run: read_status(config.run_dir(run, root)) for run in config.runs}
    kind = {run: run.rsplit("_", 1)[0] for run in runs}  # family_protocol

    def with_kind(own: dict[str, float | None]) -> dict[str, float | None]:
        known = pd.Series({run: s for run, s in own.items() if s is not None}, dtype=float)
        by_kind = known.groupby(lambda run: kind[run]).median().to_dict() if len(known) else {}
        return {run: s if s is not None else by_kind.get(kind[run]) for run, s in own.items()}

    now = with_kind({run: step_epoch_seconds(s) for run, s in runs.items()})
    ever = with_kind({run: s.get("epoch_seconds_median") for run, s in runs.items()})
    return {run: now[run] if now[run] is not None else ever[run] for run in runs}


def step_epoch_seconds(status: Mapping, step: str = STEP) -> float | None:
    """A run's measured seconds per epoch with training step ``step``: over its stretches with that
    step, their seconds over their epochs (None if it has none)."""
    stretches = [s for s in status.get("stretches", []) if s.get("step", STEP_BEFORE) == step
                 and s.get("to_epoch", 0) > s.get("from_epoch", 0)]  # fmt: skip
    epochs = sum(s["to_epoch"] - s["from_epoch"] for s in stretches)
    return sum(s["seconds"] for s in stretches) / epochs if epochs else None


def start_need(epoch_seconds: float | None, min_minutes: float = MIN_START_MINUTES) -> float:
    """The seconds a run needs before the deadline to start: a worker's start and two epochs (one to
    checkpoint, one of slack for a busier core), and never less than ``min_minutes``, so that no
    stretch ends with a run started in its last minutes (an unknown epoch time counts as none)."""
    return max(min_minutes * 60, STARTUP_SECONDS + 2 * (epoch_seconds or 0.0))


def run_campaign(config: CampaignConfig, deadline: float, workers: int = 2, only: Sequence[str] = (),
                 root: str = ".", min_minutes: float = MIN_START_MINUTES, number: int | None = None) -> list[dict]:  # fmt: skip
    """Work through the entries (those of runs named in ``only``, or the one numbered ``number``, if
    given) in order, ``workers`` at a time in single-thread processes, until all are reached or
    ``deadline``; an entry starts only if the time left covers :func:`start_need`. A worker that
    dies (out of memory, killed) fails the campaign with the entry's name; its run resumes from its
    last epoch. A run that another job holds the lease of (:mod:`amortgap.lease`) is left alone. A
    SIGTERM (to this process, or to every process of the job, as Slurm sends it) stops every worker
    with its lease released, starts nothing more, and raises :class:`Terminated` once they have."""
    if number is not None and not 0 <= number < len(config.entries):
        raise ValueError(f"entry {number}: the campaign's entries are numbered 0-{len(config.entries) - 1}")
    pending = [e for i, e in enumerate(config.entries) if (not only or e.run in only) and number in (None, i)]
    if only and not pending:
        raise ValueError(f"no entry of the campaign is a run named {list(only)}; runs: {sorted({e.run for e in config.entries})}")
    results: list[dict] = []
    waiting: list[Entry] = []
    with worker_pool(workers) as pool, sigterm_to_workers() as terminating:
        busy: dict[Future, Entry] = {}
        while (pending and not terminating) or busy:
            for entry in [] if terminating else list(pending):
                if len(busy) >= workers:
                    break
                if entry.run in {e.run for e in busy.values()}:
                    continue  # never one run in two processes
                if any(e.run == entry.run for e in pending[: pending.index(entry)]):
                    continue  # an earlier entry of the same run goes first
                decoder = config.decoder_path(entry, root)
                if decoder is not None and not decoder.exists():
                    if entry not in waiting:
                        print(f"campaign: {entry.run} waits for its decoder {decoder}", flush=True)
                        waiting.append(entry)
                    continue  # until the run that trains its decoder writes it
                pending.remove(entry)
                if reached(config, entry, read_status(config.run_dir(entry.run, root))):
                    continue
                need, left = start_need(epoch_seconds(config, root)[entry.run], min_minutes), deadline - time.time()
                if left < need:
                    print(f"campaign: not starting {entry.run}: {max(left, 0) / 60:.1f} min to the deadline, "
                          f"it needs {need / 60:.1f}", flush=True)  # fmt: skip
                    continue
                print(f"campaign: starting {entry.run} to epoch {config.target(entry)}", flush=True)
                busy[pool.submit(train_entry, config, entry, deadline, root)] = entry
            if not busy:
                break
            done, _ = wait(busy, return_when=FIRST_COMPLETED)
            for future in done:
                entry = busy.pop(future)
                try:
                    status = future.result()
                except LeaseHeld as err:  # LeaseLost too: the other job goes on with the run
                    print(f"campaign: not training {entry.run}: {err}", flush=True)
                    continue
                except Terminated as err:
                    print(f"campaign: {entry.run} {err}", flush=True)
                    continue
                except BrokenProcessPool as err:
                    if terminating:  # a worker the SIGTERM reached before its run began
                        print(f"campaign: {entry.run} stopped by SIGTERM before it began", flush=True)
                        continue
                    raise RuntimeError(f"the worker training {entry.run} died (killed, or out of memory?); "
                                       f"rerun to resume it from its last checkpoint") from err  # fmt: skip
                print(f"campaign: {entry.run} {status['status']} at epoch {status['epoch']}", flush=True)
                results.append(status)
    if terminating:
        raise Terminated("the campaign stopped by SIGTERM; each run resumes from its last checkpoint")
    return results


@contextmanager
def sigterm_to_workers() -> Iterator[list[int]]:
    """For the block, in the main thread: a SIGTERM is passed on to this process's worker processes
    (each stops its run, :func:`stopped_by_sigterm`) and recorded in the list yielded, so that this
    process waits for them instead of ending first (its workers would die with it, leases held)."""
    received: list[int] = []

    def forward(signum: int, frame: object) -> None:
        received.append(signum)
        for child in multiprocessing.active_children():
            try:
                os.kill(child.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    with on_sigterm(forward):
        yield received


def run_stage(config: CampaignConfig, run: str, retrain: bool, deadline: float = math.inf, root: str = ".") -> dict:
    """DVC's stage of one run (dvc.yaml's ``train@<run>``): with ``retrain``, train the run (resume it,
    to its last entry's epoch or ``deadline``); without, leave it as committed, so that ``dvc repro``
    never trains. Either way its directory, the stage's output, exists afterwards (a run not yet
    started gets its ``run.json``), and its ``run.json`` is returned."""
    if run not in config.runs:
        raise ValueError(f"{run!r} is no run of the campaign; its runs are {config.runs}")
    if retrain:
        run_campaign(config, deadline, workers=1, only=[run], root=root)
    run_dir = config.run_dir(run, root)
    status = read_status(run_dir)
    if not (run_dir / "run.json").exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        write_status(run_dir, status | {"run": run})
    if status["status"] != "finished" and not retrain:
        epoch = status.get("training_epoch", status.get("epoch", 0))
        print(f"{run}: {status['status']} at epoch {epoch} of {config.last_target(run)}; not trained here (params.yaml's "
              f"retrain is false): `dvc exp run --queue -s -S retrain=true <its stage>` trains it", flush=True)  # fmt: skip
    return status


def status_table(config: CampaignConfig, root: str = ".") -> pd.DataFrame:
    """One row per run: its status, epoch and last epoch, the best epoch and validation ELBO of its
    protocol, the training steps that trained it, its measured seconds per epoch with each step
    (``s_per_epoch_<step>``), hours spent, and hours left at its :func:`epoch_seconds` (per worker,
    one thread each; NaN where nothing of its kind has trained with today's step)."""
    rows = []
    seconds = epoch_seconds(config, root)
    for run in config.runs:
        s = read_status(config.run_dir(run, root))
        epoch = s.get("training_epoch", s.get("epoch", 0))  # in training: where its checkpoint is
        rows.append({"run": run, "status": s["status"], "epoch": epoch, "last_epoch": config.last_target(run),
                     "best_epoch": s.get("best_epoch"), "best_valid_elbo": s.get("best_valid_elbo"),
                     "steps": "+".join(dict.fromkeys(r.get("step", STEP_BEFORE) for r in s.get("stretches", []))) or "-",
                     **{f"s_per_epoch_{step}": math.nan if (t := step_epoch_seconds(s, step)) is None else round(t, 2)
                        for step in (STEP_BEFORE, STEP)},  # fmt: skip
                     "hours": round(s.get("train_seconds", 0) / 3600, 2),
                     "hours_left": math.nan if seconds[run] is None else round((config.last_target(run) - epoch)
                                                                           * seconds[run] / 3600, 2)})  # fmt: skip
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m amortgap.campaign", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["run", "status", "list", "stage"],
                        help="run: train; status: where each run stands; list: the entries, numbered from 0; "
                             "stage RUN: DVC's stage of one run (trains it only with --retrain true)")  # fmt: skip
    parser.add_argument("run", nargs="?", help="stage: the run (dvc.yaml's train@<run>)")
    parser.add_argument("--retrain", choices=["true", "false"], default=None,
                        help="stage (and only stage): train the run (params.yaml's retrain), or leave it as committed")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--only", nargs="*", default=(), help="train only these runs (by name)")
    parser.add_argument("--entry", type=int, default=None,
                        help="train only the entry of this number (`list`; a Slurm array task's SLURM_ARRAY_TASK_ID)")
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help="stop cleanly after this many minutes (default: no limit)")
    parser.add_argument("--workers", type=int, default=None, help="run: worker processes (default: 2)")
    parser.add_argument("--min-minutes", type=float, default=MIN_START_MINUTES,
                        help="start no run with fewer minutes left before the deadline (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.params)
        if args.command == "list":
            for number, entry in enumerate(config.entries):
                print(number, entry.run, config.target(entry))
            return 0
        if (args.command == "stage") != (args.run is not None) or (args.command == "stage") != (args.retrain is not None):
            raise ValueError("the stage command, and only it, takes a run and --retrain true|false")
        if args.command == "stage" and (args.only or args.entry is not None or args.workers is not None):
            raise ValueError("the stage command trains its one run in one worker: --only, --entry and --workers do not apply")
        if args.entry is not None and args.only:
            raise ValueError("--entry and --only both pick what to train: give one")
        workers = 2 if args.workers is None else args.workers
        if args.command == "status":
            table = status_table(config)
            print(table.to_string(index=False))
            print(f"about {table.hours_left.sum() / workers:.1f} h left on {workers} workers "
                  f"(runs not started beside none of their kind are not counted)")  # fmt: skip
            return 0
        if workers < 1:
            raise ValueError(f"--workers must be positive, not {workers}")
        if args.budget_minutes is not None and args.budget_minutes < args.min_minutes:
            raise ValueError(f"a budget of {args.budget_minutes:g} minutes starts no run: none starts with fewer than "
                             f"{args.min_minutes:g} minutes left (--min-minutes, make retrain's MIN_MINUTES)")  # fmt: skip
        deadline = time.time() + (args.budget_minutes * 60 if args.budget_minutes is not None else 1e12)
        if args.command == "stage":
            run_stage(config, args.run, args.retrain == "true", deadline)
            return 0
        run_campaign(config, deadline, workers, args.only, min_minutes=args.min_minutes, number=args.entry)
        print(status_table(config).to_string(index=False))
    except (ValueError, CheckpointError, RuntimeError, Terminated) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
