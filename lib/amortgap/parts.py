"""An evaluation's finished parts, kept in the repository, so that a stage longer than one working
stretch goes on from them in the next (on this machine or another) instead of starting over.

A *part* is one call of a module-level function (one model on one split, say) whose result is a
table or a tuple of tables. :func:`kept` computes it once and keeps it in
``<directory>/<name>-<fingerprint>.pkl.xz``: ``name`` says what it is (``diagonal_s0_test``), and
the fingerprint (:func:`fingerprint`) covers the function, its arguments and the code of the
science, so that a changed input, setting or estimator recomputes the part while a changed comment,
figure or summary does not. The files are small (xz-compressed pickles of per-image tables, tens of
kilobytes), written atomically, and a part's older versions are removed when a new one is written.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import sys
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch

from .train import tensor_digest

PRESENTATION = {"plots.py", "report.py"}  # modules that only draw and format: no part depends on them
SUFFIX = ".pkl.xz"


def code_digest(source: str) -> str:
    """A hash of Python source that ignores its comments, docstrings and layout: the syntax tree
    without the docstrings."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):  # fmt: skip
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()


def fingerprint(fn: Callable[..., Any], *args: Any) -> str:
    """A short hash of the call ``fn(*args)``: the function's name and the code of its module, its
    arguments (a model by its weights, a tensor by its bytes, a config by its fields, a file by its
    bytes, another object by its class and attributes) and the code of every module of the science (``amortgap/*.py`` but
    :data:`PRESENTATION`; the other study modules, which only summarize, are left out)."""

    def token(value: Any) -> str:
        if isinstance(value, torch.nn.Module):
            return tensor_digest(*value.state_dict().values())
        if isinstance(value, torch.Tensor):
            return tensor_digest(value)
        if isinstance(value, Path) and value.is_file():
            return hashlib.sha256(value.read_bytes()).hexdigest()
        if is_dataclass(value):
            return json.dumps(asdict(value), sort_keys=True, default=str)
        if isinstance(value, (list, tuple)):
            return "[" + ",".join(token(v) for v in value) + "]"
        if isinstance(value, dict):
            return "{" + ",".join(f"{k!r}:{token(v)}" for k, v in sorted(value.items())) + "}"
        if hasattr(value, "__dict__") and not isinstance(value, type):  # another model: its class and its state
            return f"{type(value).__qualname__}{token(vars(value))}"
        if " at 0x" in repr(value):
            raise TypeError(f"cannot fingerprint {value!r}: its repr names a memory address")
        return repr(value)

    science = sorted(p for p in Path(__file__).resolve().parent.glob("*.py") if p.name not in PRESENTATION)
    module = Path(sys.modules[fn.__module__].__file__)
    payload = "|".join([f"{fn.__module__}.{fn.__qualname__}", code_digest(module.read_text()), *(token(a) for a in args),
                        *(code_digest(p.read_text()) for p in science)])  # fmt: skip
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def kept(directory: str | os.PathLike | None, name: str, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, kept in ``directory`` under ``name`` and the call's :func:`fingerprint`; a
    later call with the same fingerprint loads it instead of computing it. ``directory=None`` only
    computes. A module-level function, so that :func:`amortgap.parallel.run_tasks` can hand it to
    workers."""
    if directory is None:
        return fn(*args)
    if not name or "/" in name or "-" in name:
        raise ValueError(f"a part's name is a file name without '-' or '/', not {name!r}")
    directory = Path(directory)
    path = directory / f"{name}-{fingerprint(fn, *args)}{SUFFIX}"
    if path.is_file():
        return pd.read_pickle(path)
    result = fn(*args)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pd.to_pickle(result, tmp, compression="xz")
    os.replace(tmp, path)  # a crash never leaves half a file
    for older in directory.glob(f"{name}-*{SUFFIX}"):
        if older != path:
            older.unlink()
    return result
