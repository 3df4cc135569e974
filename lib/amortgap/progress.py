"""Progress of long work on the terminal, never in a notebook's output.

Every long loop of the library (training epochs, decompose batches, q* steps, AIS transitions)
reports through :func:`bar`, which goes one of three ways:

- ``$AMORTGAP_PROGRESS`` names a file: plain lines are appended to it, at most one per bar every
  :data:`INTERVAL` seconds and one when the bar closes. :func:`amortgap.build.pipeline.run_notebook` sets
  it for the notebook's kernel and echoes the file on its own terminal while the notebook runs, so a
  pipeline stage shows what it is doing and its rendered notebook stays free of progress bars;
- otherwise ``show=True`` draws an ordinary tqdm bar (the command line, an interactive session);
- and ``show=False`` draws nothing.
"""

from __future__ import annotations

import os
import time
from typing import Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

ENV = "AMORTGAP_PROGRESS"
INTERVAL = 10.0
"""Seconds between two lines of one bar in the progress file."""

T = TypeVar("T")


class LineBar:
    """The part of tqdm's interface that the library uses, writing throttled lines to a file."""

    def __init__(self, path: str, iterable: Iterable | None, desc: str, total: int | None, initial: int = 0):
        self.path, self.iterable, self.desc = path, iterable, desc
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.n, self.postfix = initial, ""
        self.start = self.last = time.perf_counter()
        self.closed = False

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update()
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.perf_counter() - self.last >= INTERVAL:
            self._write()

    def set_postfix(self, **values) -> None:
        self.postfix = " ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._write(done=True)

    def _write(self, done: bool = False) -> None:
        self.last = time.perf_counter()
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        line = f"  {self.desc}: {count} in {self.last - self.start:.0f} s{' done' if done else ''} {self.postfix}"
        with open(self.path, "a") as f:
            f.write(line.rstrip() + "\n")


def bar(iterable: Iterable[T] | None = None, *, desc: str, total: int | None = None, show: bool = False,
        initial: int = 0, leave: bool = True) -> tqdm | LineBar:
    """A progress bar over ``iterable`` (or a manual one with ``total`` and ``update``): lines in the
    progress file when ``$AMORTGAP_PROGRESS`` is set, else a tqdm bar if ``show``, else nothing."""
    path = os.environ.get(ENV)
    if path:
        return LineBar(path, iterable, desc, total, initial)
    return tqdm(iterable, desc=desc, total=total, disable=not show, initial=initial, leave=leave)
