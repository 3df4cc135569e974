"""A lease on a campaign run: never two jobs training the same run, on one machine or on several.

A job that trains a run first takes its lease: ``lease.json`` in the run's directory names the host,
the process and a heartbeat time, which a thread of the holder refreshes every ``heartbeat``
seconds. A second job refuses the run while the heartbeat is fresh. A lease whose heartbeat is older
than ``stale`` seconds (its holder was killed, or its machine lost) may be taken over, and the job
that takes it over says so; on the holder's own host a lease whose process is gone is taken over at
once. A holder that finds its lease taken over (it fell silent, suspended or cut off, for longer than
the limit) stops before its next checkpoint. The holder removes the lease when it stops. Lease files are neither committed nor tracked
(``.gitignore``, ``.dvcignore``): they belong to a job, not to the run's results."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .models import atomic_write

LEASE_FILE = "lease.json"
HEARTBEAT_SECONDS = 60.0
STALE_SECONDS = 600.0  # ten missed heartbeats: a holder that alive never falls this far behind


class LeaseHeld(RuntimeError):
    """The run is being trained by another job whose heartbeat is fresh."""


def read_lease(run_dir: str | os.PathLike) -> dict | None:
    """The run's lease (host, pid, token, taken, heartbeat: ``time.time()`` seconds), or None (none,
    or unreadable)."""
    return _read(Path(run_dir) / LEASE_FILE)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def holder_gone(lease: dict, stale: float, now: float | None = None) -> str | None:
    """Why ``lease`` may be taken over (its heartbeat is older than ``stale`` seconds, or its process
    is gone from this host), or None while its holder is alive."""
    age = (time.time() if now is None else now) - lease["heartbeat"]
    if age > stale:
        return f"its heartbeat is {age:.0f} s old (stale after {stale:.0f} s)"
    if lease["host"] == socket.gethostname() and not _process_alive(lease["pid"]):
        return f"its process {lease['pid']} is gone from this host"
    return None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def acquire(run_dir: str | os.PathLike, stale: float = STALE_SECONDS) -> dict:
    """Take the run's lease, or raise :class:`LeaseHeld` naming its holder. A stale lease is taken
    over with a message on stderr. Returns the lease (its ``token`` identifies this holder)."""
    path = Path(run_dir) / LEASE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    now = time.time()
    lease = {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex, "taken": now,
             "heartbeat": now}  # fmt: skip
    mine = path.with_name(f".{LEASE_FILE}.{lease['token']}.tmp")
    aside = path.with_name(f".{LEASE_FILE}.{lease['token']}.stale")
    mine.write_text(json.dumps(lease, indent=1) + "\n")
    try:
        for _ in range(10):  # a few rounds of losing races to other jobs
            try:
                os.link(mine, path)  # exclusive and whole: of two jobs, one creates it, with its content
                return lease
            except FileExistsError:
                held = read_lease(path.parent)
            if held is None:  # unreadable: a holder killed while writing it long ago, or one mid-write now
                try:
                    age = time.time() - path.stat().st_mtime
                except FileNotFoundError:
                    continue
                if age <= stale:
                    time.sleep(0.05)
                    continue
                held = {"pid": "?", "host": "?", "token": None}
                reason = f"it is unreadable and {age:.0f} s old"
            else:
                reason = holder_gone(held, stale)
            if reason is None:
                age = time.time() - held["heartbeat"]
                raise LeaseHeld(f"{path.parent.name} is being trained by process {held['pid']} on {held['host']} "
                                f"(heartbeat {age:.0f} s ago); it may be taken over once its heartbeat is {stale:.0f} s old")  # fmt: skip
            try:  # move the stale lease aside: of two jobs that try, one succeeds
                os.rename(path, aside)
            except FileNotFoundError:
                continue
            moved = _read(aside)
            if moved is not None and moved.get("token") != held["token"]:  # another job's fresh lease: put it back
                try:
                    os.link(aside, path)
                except FileExistsError:
                    pass
                aside.unlink()
                continue
            aside.unlink()
            print(f"lease: taking over {path.parent.name} from process {held['pid']} on {held['host']}: {reason}",
                  file=sys.stderr, flush=True)  # fmt: skip
        raise LeaseHeld(f"could not take the lease of {path.parent.name}: other jobs keep taking it")
    finally:
        mine.unlink(missing_ok=True)


def release(run_dir: str | os.PathLike, lease: dict) -> None:
    """Remove the run's lease if it is still ``lease`` (a job that took it over keeps its own)."""
    held = read_lease(run_dir)
    if held is not None and held["token"] == lease["token"]:
        (Path(run_dir) / LEASE_FILE).unlink(missing_ok=True)


class LeaseLost(LeaseHeld):
    """Another job took over the lease this job held (it fell silent for longer than the limit)."""


@dataclass
class Lease:
    """A held lease: its record in ``lease.json`` and :meth:`check`, which the holder calls before
    each checkpoint it writes."""

    run_dir: Path
    record: dict

    def check(self) -> None:
        """Raise :class:`LeaseLost` if the run's lease is no longer this one."""
        current = read_lease(self.run_dir)
        if current is None or current["token"] != self.record["token"]:
            holder = "nobody" if current is None else f"process {current['pid']} on {current['host']}"
            raise LeaseLost(f"{self.run_dir.name}: this job lost its lease (now held by {holder}); it stops training")


@contextmanager
def lease(run_dir: str | os.PathLike, stale: float = STALE_SECONDS,
          heartbeat: float = HEARTBEAT_SECONDS) -> Iterator[Lease]:  # fmt: skip
    """Hold the run's lease (:func:`acquire`) for the block, its heartbeat refreshed every
    ``heartbeat`` seconds by a daemon thread, and release it after."""
    held = Lease(Path(run_dir), acquire(run_dir, stale))
    stop = threading.Event()

    def beat() -> None:
        path = held.run_dir / LEASE_FILE
        while not stop.wait(heartbeat):
            current = read_lease(held.run_dir)
            if current is None or current["token"] != held.record["token"]:
                return  # taken over: never write over another holder (check() stops the training)
            try:
                beat_record = json.dumps(held.record | {"heartbeat": time.time()}, indent=1) + "\n"
                atomic_write(path, lambda tmp: tmp.write_text(beat_record))
            except OSError as err:  # a full disk, a network file system's hiccup: try again next beat
                print(f"lease: could not refresh the heartbeat of {held.run_dir.name}: {err}", file=sys.stderr, flush=True)

    thread = threading.Thread(target=beat, name=f"lease heartbeat {held.run_dir.name}", daemon=True)
    thread.start()
    try:
        yield held
    finally:
        stop.set()
        thread.join()
        release(run_dir, held.record)
