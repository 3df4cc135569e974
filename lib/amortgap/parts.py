"""An evaluation's finished parts, kept in the repository, so that a stage longer than one working
stretch goes on from them in the next (on this machine or another) instead of starting over.

A *part* is one call of a module-level function (one model on one split, say) whose result is a
table or a tuple of tables. :func:`kept` computes it once and keeps it in
``<directory>/<name>-<fingerprint>.pkl.xz``: ``name`` says what it is (``diagonal_s0_test``), and
the fingerprint (:func:`fingerprint`) covers the function, its arguments and the code it runs (its
module and every ``amortgap`` module that one imports, directly or not), so that a changed input,
setting or estimator recomputes the part, while a changed comment, docstring, figure or unrelated
module does not. A code change that adds without changing what exists (a new family beside the
old ones) may be *declared* equivalent in ``equivalent_code.json`` beside this file, with its
reason: a part kept under the former code is then found, renamed to its new fingerprint and loaded
(:func:`former_fingerprints`), as ``dvc commit`` accepts a stage's outputs. Each file also records
where it was computed (:func:`provenance`). The files are
small (xz-compressed pickles of per-image tables, tens of kilobytes), written atomically; a part's
older versions are removed when a new one is written.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import itertools
import json
import os
import socket
import sys
import types
from dataclasses import asdict, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from .models import atomic_write

PACKAGE = Path(__file__).resolve().parent
PRESENTATION = {"amortgap.plots", "amortgap.report"}  # modules that only draw and format: no part depends on them
SUFFIX = ".pkl.xz"
EQUIVALENT_CODE = PACKAGE / "equivalent_code.json"  # code changes declared not to change any kept part


def tensor_digest(*tensors: torch.Tensor) -> str:
    """A short hash of the tensors' shapes and bytes."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


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


def _module_file(name: str) -> Path | None:
    """The source file of ``amortgap`` module ``name`` (a package's ``__init__.py``), if there is one."""
    top, *rest = name.split(".")
    if top != "amortgap":
        return None
    candidates = [PACKAGE / Path(*rest).with_suffix(".py"), PACKAGE / Path(*rest) / "__init__.py"] if rest else [PACKAGE / "__init__.py"]
    return next((path for path in candidates if path.is_file()), None)


def imported_modules(source: str, package: str = "") -> list[str]:
    """The names of the modules that Python ``source`` imports (a ``from m import n`` gives ``m`` and
    ``m.n``: a name may be a module), relative imports resolved against ``package``."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - node.level + 1] if node.level else []
            stem = ".".join(base + ([node.module] if node.module else []))
            names += [stem] + [f"{stem}.{alias.name}" for alias in node.names]
    return names


def code_modules(module: str | list[str], skip: frozenset[str] | set[str] = PRESENTATION) -> dict[str, Path]:
    """``module`` (or each of several) and every ``amortgap`` module it imports, directly or through
    another, by name (read from the import statements of their source; ``skip`` left out: by
    default :data:`PRESENTATION`)."""
    found: dict[str, Path] = {}
    pending = [module] if isinstance(module, str) else list(module)
    while pending:
        name = pending.pop()
        path = _module_file(name)
        if name in found or name in skip or path is None:
            continue
        found[name] = path
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        pending += imported_modules(path.read_text(), package)
    return dict(sorted(found.items()))


def _token(value: Any) -> str:
    """A stable text for an argument: a model by its weights, a tensor or array by its bytes, a
    config by its fields, a file by its bytes, a function by its name, another object by its class
    and attributes; what has no stable text (a memory address, a folder) is refused."""
    if isinstance(value, torch.nn.Module):
        return tensor_digest(*value.state_dict().values())
    if isinstance(value, torch.Tensor):
        return tensor_digest(value)
    if isinstance(value, np.ndarray):
        return f"{value.dtype}{value.shape}" + hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
    if is_dataclass(value) and not isinstance(value, type):
        return json.dumps(asdict(value), sort_keys=True, default=str)
    if isinstance(value, Path):
        if not value.is_file():
            raise TypeError(f"cannot fingerprint {value}: only a file's path (by its bytes)")
        return hashlib.sha256(value.read_bytes()).hexdigest()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_token(v) for v in value) + "]"
    if isinstance(value, (set, frozenset)):
        return "{" + ",".join(sorted(_token(v) for v in value)) + "}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k!r}:{_token(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type)):
        if "<" in value.__qualname__:  # a lambda or a local function
            raise TypeError(f"cannot fingerprint {value!r}: pass a module-level function")
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, (functools.partial, types.MethodType)):
        raise TypeError(f"cannot fingerprint {value!r}: pass a module-level function and its arguments")
    if hasattr(value, "__dict__"):
        return f"{type(value).__qualname__}{_token(vars(value))}"
    if " at 0x" in repr(value):
        raise TypeError(f"cannot fingerprint {value!r}: its repr names a memory address")
    return repr(value)


def fingerprint(fn: Callable[..., Any], *args: Any, code: dict[str, str] | None = None) -> str:
    """A short hash of the call ``fn(*args)``: the function's name, its arguments (:func:`_token`)
    and the code of its module and of every ``amortgap`` module that one imports
    (:func:`code_modules`, comments and docstrings left out: :func:`code_digest`), or the digests
    ``code`` ({module: digest}) given in their place."""
    return _hashed([_token(fn), *(_token(a) for a in args)], code or code_digests(fn))


def _hashed(tokens: list[str], code: dict[str, str]) -> str:
    """The fingerprint of a call's tokens (function and arguments) and its modules' digests."""
    payload = "|".join([*tokens, *(f"{name}:{digest}" for name, digest in code.items())])
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def code_digests(fn: Callable[..., Any]) -> dict[str, str]:
    """{module: :func:`code_digest`} of ``fn``'s module and every ``amortgap`` module it imports."""
    return {name: code_digest(path.read_text()) for name, path in code_modules(fn.__module__).items()}


def declared_equivalent(path: Path = EQUIVALENT_CODE) -> dict[str, dict[str, str]]:
    """{module: {digest: former digest}} from ``path``: a list of {"module", "former", "current",
    "why"}, each declaring that the module's code of digest ``current`` computes every kept part as
    its code of digest ``former`` did (``why`` says what changed, for a reviewer)."""
    if not path.is_file():
        return {}
    found: dict[str, dict[str, str]] = {}
    for i, entry in enumerate(json.loads(path.read_text())):
        if set(entry) != {"module", "former", "current", "why"} or not entry["why"].strip():
            raise ValueError(f"{path}, entry {i}: needs exactly module, former, current and a why, not {sorted(entry)}")
        if entry["current"] in found.get(entry["module"], {}):
            raise ValueError(f"{path}, entry {i}: {entry['module']}'s digest {entry['current']} is declared twice")
        found.setdefault(entry["module"], {})[entry["current"]] = entry["former"]
    return found


def former_fingerprints(fn: Callable[..., Any], *args: Any, declared: dict[str, dict[str, str]] | None = None) -> list[str]:
    """The fingerprints ``fn(*args)`` had under code declared equivalent to today's
    (:func:`declared_equivalent`): every combination of each module's current and former digests
    (a former digest's own former too), today's alone left out. Their number is the product of
    the chains' lengths: prune ``equivalent_code.json`` once every stage has run under the new code."""
    declared = declared_equivalent() if declared is None else declared
    code = code_digests(fn)
    tokens = [_token(fn), *(_token(a) for a in args)]
    choices = []
    for name, digest in code.items():
        chain, earlier = [digest], declared.get(name, {})
        while chain[-1] in earlier and earlier[chain[-1]] not in chain:
            chain.append(earlier[chain[-1]])
        choices.append(chain)
    return [_hashed(tokens, dict(zip(code, combination))) for combination in itertools.islice(itertools.product(*choices), 1, None)]


def provenance(path: str | os.PathLike) -> dict[str, Any]:
    """Where and when the part in ``path`` was computed: host, CPU kernels, threads, torch."""
    return pd.read_pickle(path)["provenance"]


def kept(directory: str | os.PathLike | None, name: str, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, kept in ``directory`` under ``name`` and the call's :func:`fingerprint`; a
    later call with the same fingerprint loads it instead of computing it (a file that cannot be
    read is computed again). ``directory=None`` only computes. A module-level function, so that
    :func:`amortgap.parallel.run_tasks` can hand it to workers."""
    if directory is None:
        return fn(*args)
    if not name or "/" in name or "-" in name:
        raise ValueError(f"a part's name is a file name without '-' or '/', not {name!r}")
    directory = Path(directory)
    path = directory / f"{name}-{fingerprint(fn, *args)}{SUFFIX}"
    if not path.is_file() and any(directory.glob(f"{name}-*{SUFFIX}")):  # a part of this name kept under other code?
        former = [directory / f"{name}-{f}{SUFFIX}" for f in former_fingerprints(fn, *args)]
        for older in (f for f in former if f.is_file()):
            print(f"parts: {older.name} was kept under code declared equivalent ({EQUIVALENT_CODE.name}); "
                  f"renamed to {path.name}", file=sys.stderr)  # fmt: skip
            os.replace(older, path)
            break
    if path.is_file():
        try:
            return pd.read_pickle(path)["result"]
        except Exception as err:  # noqa: BLE001 - another pandas' pickle, a damaged file: compute it again
            print(f"parts: {path} cannot be read ({type(err).__name__}: {err}); computing it again", file=sys.stderr)
    result = fn(*args)
    made = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "host": socket.gethostname(),
            "kernels": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "torch": torch.__version__}  # fmt: skip
    atomic_write(path, lambda tmp: pd.to_pickle({"result": result, "provenance": made}, tmp, compression="xz"))
    for older in directory.glob(f"{name}-*{SUFFIX}"):
        if older != path:
            older.unlink()
    return result
