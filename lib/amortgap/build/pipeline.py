"""Running the paper's notebooks: parameter checks, papermill execution, and scale profiles.

A notebook is a jupytext percent ``.py`` file whose cell tagged ``parameters`` assigns its defaults
(the small, fast case, which nbval re-executes). :func:`run_notebook` reads the notebook's section of
``params.yaml``, refuses unknown names, wrong types and out-of-range values before any work starts,
then executes the notebook with papermill and writes it without volatile timestamps.

Range rules go by name, so notebooks need no schema of their own: counts (``epochs``, ``*_steps``,
``*_samples``, ``num_*``, ``*width*``, ...) must be positive integers, seeds non-negative integers,
and rates (``lr``, ``*_lr``) positive numbers. A list is checked element by element.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

import yaml

from ..progress import ENV as PROGRESS_ENV

POSITIVE_INT = re.compile(
    r"^(epochs|batch_size|latent_dim|num_.*|.*_steps|.*_samples|.*_chains|.*widths?|.*_hidden|.*_points"
    r"|patience|warmup_epochs|steps|chains|window|repeats|workers)$"
)
NON_NEGATIVE_INT = re.compile(r"^(seeds?|.*_seeds?|refine_steps|iwae_samples|qstar_restarts)$")
POSITIVE_NUMBER = re.compile(r"^(lr|.*_lr|noise_scale)$")


KERNEL_ENV = {"MPLBACKEND": "module://matplotlib_inline.backend_inline"}
"""What every notebook kernel sees whatever the caller's shell says: a headless machine often sets
MPLBACKEND=Agg, under which a cell that makes a figure shows nothing, and its golden output (the
figure's text/plain line) goes missing."""


def kernel_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: nothing) with :data:`KERNEL_ENV` on top: the environment to start a kernel in."""
    return {**(base or {}), **KERNEL_ENV}


class ParameterError(ValueError):
    """A notebook's parameters are missing, unknown, of the wrong type or out of range."""


def project_root(start: str | Path | None = None) -> Path:
    """The repository root: the nearest folder at or above ``start`` (default: cwd) with dvc.yaml."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file():
            return folder
    raise FileNotFoundError(f"no dvc.yaml at or above {here}: run from inside the amortgap repository")


def notebook_defaults(path: str | Path) -> dict[str, Any]:
    """The assignments of the notebook's ``parameters`` cell, evaluated as Python literals."""
    import jupytext

    notebook = jupytext.read(path)
    cells = [c for c in notebook.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ParameterError(
            f"{path} needs exactly one code cell tagged 'parameters' (found {len(cells)}); papermill "
            "would otherwise silently run the notebook's own defaults"
        )
    defaults = {}
    for node in ast.parse(cells[0].source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise ParameterError(f"{path}: the parameters cell may hold only `name = literal` lines")
        defaults[node.targets[0].id] = ast.literal_eval(node.value)
    return defaults


def check_parameters(path: str | Path, parameters: dict[str, Any]) -> dict[str, Any]:
    """Validate ``parameters`` against the notebook's defaults and the range rules; return them.
    A mapping (a config's section, such as ``training``) is checked key by key against its default."""
    defaults = notebook_defaults(path)
    _check_mapping(path, "", parameters, defaults)
    _check_ranges(path, "", {**defaults, **parameters})
    return parameters


def _check_mapping(path, prefix: str, values: dict[str, Any], defaults: dict[str, Any]) -> None:
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        where = f"{path} has no parameter(s)" if not prefix else f"{path}: {prefix.rstrip('.')} has no key(s)"
        raise ParameterError(f"{where} {[prefix + name for name in unknown]}; it has {sorted(defaults)}")
    for name, value in values.items():
        _check_type(path, prefix + name, value, defaults[name])
        if isinstance(defaults[name], dict):
            _check_mapping(path, f"{prefix}{name}.", value, defaults[name])


def _check_ranges(path, prefix: str, values: dict[str, Any]) -> None:
    for name, value in values.items():
        if isinstance(value, dict):
            _check_ranges(path, f"{prefix}{name}.", value)
            continue
        for item in value if isinstance(value, list) else [value]:
            _check_range(path, prefix + name, item)


def _check_type(path, name: str, value: Any, default: Any) -> None:
    """``value`` must be of the default's type (an int will do for a float), items of a list too."""

    def same_kind(v: Any, d: Any) -> bool:
        if isinstance(d, float) and not isinstance(v, bool):
            return isinstance(v, (int, float))
        return type(v) is type(d)

    if default is None:
        return
    if not same_kind(value, default):
        raise ParameterError(f"{path}: parameter {name} must be {type(default).__name__}, not {value!r}")
    if isinstance(default, list) and default:
        for item in value:
            if not same_kind(item, default[0]):
                raise ParameterError(f"{path}: {name} must hold {type(default[0]).__name__} values, not {item!r}")


def _check_range(path, name: str, value: Any) -> None:
    """The rule of the last part of ``name`` (``decompose.ais.steps``: ``steps``)."""
    key = name.rsplit(".", 1)[-1]
    if NON_NEGATIVE_INT.match(key):  # the exceptions to the counts' rule (0 IWAE samples: none)
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            raise ParameterError(f"{path}: {name} must be a non-negative integer, not {value!r}")
    elif POSITIVE_INT.match(key) and not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        raise ParameterError(f"{path}: {name} must be a positive integer, not {value!r}")
    if POSITIVE_NUMBER.match(key) and not (isinstance(value, (int, float)) and value > 0):
        raise ParameterError(f"{path}: {name} must be positive, not {value!r}")


def run_notebook(
    notebook: str | Path,
    output: str | Path,
    parameters: dict[str, Any] | None = None,
    cwd: str | Path | None = None,
    progress: bool = True,
) -> None:
    """Check ``parameters``, execute ``notebook`` (jupytext ``.py``) with papermill, and write the
    executed ``.ipynb`` to ``output`` with papermill's timestamps removed.

    With ``progress``, the terminal shows which cell runs and the library's progress lines
    (:mod:`amortgap.progress`: epochs, decompose batches, q* steps), none of which enters the notebook."""
    import jupytext
    import nbformat
    import papermill

    parameters = dict(check_parameters(notebook, parameters or {}))
    workdir = Path(cwd or project_root(Path(notebook).parent)).resolve()
    if "root" in notebook_defaults(notebook):  # the kernel finds the project's files through this parameter
        parameters.setdefault("root", os.path.relpath(project_root(Path(notebook).parent), workdir))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    source = jupytext.read(notebook)
    source.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    total = sum(c.cell_type == "code" for c in source.cells) + bool(parameters)  # + papermill's injected cell
    started = []
    name = Path(notebook).stem

    def announce(cell, cell_index: int) -> None:
        if progress and cell.cell_type == "code":
            started.append(cell_index)
            first = next((line for line in cell.source.splitlines() if line.strip()), "")
            with open(os.environ[PROGRESS_ENV], "a") as log:
                log.write(f"cell {len(started)}/{total}: {first[:70]}\n")

    with _progress_echo(name, enabled=progress), _environment(KERNEL_ENV):
        executed = papermill.execute_notebook(
            source, None, parameters=parameters, kernel_name="python3", progress_bar=False,
            cwd=str(workdir), on_cell_start=announce,
            extra_arguments=["--IPKernelApp.log_level=ERROR"],  # no "running over TCP" warning
        )  # fmt: skip
    executed.metadata.papermill["input_path"] = str(notebook)  # not the whole source notebook again
    nbformat.write(strip_volatile(executed), output)


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` set in ``os.environ`` (which the kernel inherits) for the block, then restored."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _progress_echo(name: str, enabled: bool) -> Iterator[None]:
    """While the block runs, point ``$AMORTGAP_PROGRESS`` (inherited by the kernel) at a fresh file
    and copy each new line of it to stderr, prefixed by ``[name]``."""
    if not enabled:
        yield
        return
    done = threading.Event()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "progress.log"
        path.touch()

        def echo() -> None:
            with open(path) as f:
                while True:
                    finished = done.is_set()
                    for line in f.readlines():
                        print(f"[{name}] {line.rstrip()}", file=sys.stderr, flush=True)
                    if finished:
                        return
                    done.wait(0.5)

        thread = threading.Thread(target=echo, daemon=True)
        with _environment({PROGRESS_ENV: str(path)}):
            thread.start()
            try:
                yield
            finally:
                done.set()
                thread.join()


def strip_volatile(notebook):
    """Remove what changes from run to run without changing results: papermill's times and the
    random cell ids that jupytext draws (replaced by their positions)."""
    notebook = copy.deepcopy(notebook)
    for key in ("start_time", "end_time", "duration"):
        notebook.metadata.get("papermill", {}).pop(key, None)
    for index, cell in enumerate(notebook.cells):
        cell.id = f"cell-{index}"
        papermill_meta = cell.metadata.get("papermill", {})
        for key in ("start_time", "end_time", "duration"):
            papermill_meta.pop(key, None)
        cell.metadata.get("execution", {}).clear()
    return notebook


def load_params(path: str | Path, sections: Sequence[str], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The merged ``sections`` of ``params.yaml`` with ``overrides`` on top (a missing section is
    an error); no sections means just the overrides."""
    merged: dict[str, Any] = {}
    if sections:
        params = yaml.safe_load(Path(path).read_text()) or {}
        for section in sections:
            if section not in params:
                raise ParameterError(f"{path} has no section {section!r}; it has {sorted(params)}")
            merged.update(copy.deepcopy(params[section]))
    return {**merged, **(overrides or {})}


def apply_profile(path: str | Path, profile: str) -> None:
    """Rewrite ``params.yaml`` in place with the overrides of ``profiles.<profile>`` merged in, key by
    key into nested sections (``training: {epochs: 3}`` changes only the epochs)."""
    path = Path(path)
    params = yaml.safe_load(path.read_text())
    profiles = params.get("profiles", {})
    if profile not in profiles:
        raise ParameterError(f"{path} has no profile {profile!r}; it has {sorted(profiles)}")
    for section, overrides in profiles[profile].items():
        if section not in params:
            raise ParameterError(f"profile {profile!r} overrides unknown section {section!r}")
        params[section] = merge(params[section], overrides, f"profile {profile!r}", section)
    path.write_text(yaml.dump(params, Dumper=_Unaliased, sort_keys=False))


class _Unaliased(yaml.SafeDumper):
    """Writes a mapping that several sections share (a YAML alias) out in full at each place."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def merge(base: dict[str, Any], overrides: dict[str, Any], who: str = "overrides", where: str = "") -> dict[str, Any]:
    """A new mapping: ``base`` with ``overrides`` merged in key by key (``base``, whose sub-mappings
    YAML aliases may share with other sections, is left untouched); a key ``base`` lacks is an error."""
    unknown = sorted(set(overrides) - set(base))
    if unknown:
        raise ParameterError(f"{who} overrides unknown keys {unknown} of {where!r}")
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base[key], dict):
            merged[key] = merge(base[key], value, who, f"{where}.{key}")
        else:
            merged[key] = value
    return merged


def project_files(root: Path) -> list[Path]:
    """The files git tracks, plus untracked ones it does not ignore (relative to ``root``)."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root, capture_output=True, text=True, check=True,
    ).stdout
    return [Path(name) for name in listing.split("\0") if name and (root / name).is_file()]


def reproduce_copy(dest: str | Path, profile: str | None = None, root: str | Path | None = None) -> Path:
    """Copy the project to ``dest`` (emptied first), merge ``profiles.<profile>`` into its
    params.yaml, and run ``dvc repro`` there; the working copy is left untouched. Returns ``dest``."""
    root = project_root(root)
    dest = Path(dest).resolve()
    inside = root in dest.parents
    if dest == root or dest in root.parents or (inside and root / "build" not in dest.parents):
        raise ValueError(f"refusing to empty {dest}: choose a folder outside the project or under build/")
    shutil.rmtree(dest, ignore_errors=True)
    for name in project_files(root):
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, dest / name)
    if profile is not None:
        apply_profile(dest / "params.yaml", profile)
    run_dvc(["config", "--local", "core.no_scm", "true"], dest)
    run_dvc(["repro"], dest)
    return dest


def run_dvc(args: Sequence[str], cwd: str | Path, capture: bool = False) -> subprocess.CompletedProcess:
    """``dvc ARGS`` in ``cwd`` with this interpreter's folder first on PATH, so that the stages'
    ``python`` is the one that has amortgap; raises if dvc fails."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "DVC_NO_ANALYTICS": "1"}
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, check=True,
                          capture_output=capture, text=True)


def stage_code(script: str | Path, root: str | Path | None = None) -> list[str]:
    """The library files a stage's ``script`` (a notebook or a script) runs, as DVC deps relative
    to the project ``root``: every ``amortgap`` module it imports and every one those import, the
    figures' and the numbers' modules included (:func:`amortgap.parts.code_modules`). A stage that
    lists these files instead of all of ``lib/amortgap`` goes stale only when its own code changes."""
    from ..parts import code_modules, imported_modules

    root = Path(root) if root else project_root(script)
    modules = code_modules(imported_modules(Path(script).read_text()), skip=frozenset())
    return sorted(str(path.resolve().relative_to(root.resolve())) for path in modules.values())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m amortgap.build.pipeline", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute a notebook with its section of params.yaml")
    run.add_argument("notebook", type=Path)
    run.add_argument("output", type=Path)
    run.add_argument("--params", type=Path, default=Path("params.yaml"))
    run.add_argument("--section", action="append", default=[],
                     help="a section of params.yaml to pass (repeat to merge several; none: the defaults)")
    run.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="override one parameter (VALUE is YAML: 64, [1, 2], text)")
    golden = sub.add_parser("golden", help="re-execute every notebook at its defaults into nbval's golden folder")
    golden.add_argument("--notebooks", type=Path, default=Path("notebooks"))
    golden.add_argument("--out", type=Path, default=Path("tests/golden"))
    copy = sub.add_parser("repro-copy", help="dvc repro in a fresh copy of the project, at a profile's scale")
    copy.add_argument("dest", type=Path)
    copy.add_argument("--profile", default=None)
    deps = sub.add_parser("deps", help="the library files a stage's script runs (its DVC deps)")
    deps.add_argument("script", type=Path)
    profile = sub.add_parser("profile", help="merge params.yaml's profiles.<name> into params.yaml")
    profile.add_argument("name")
    profile.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            overrides = {name: yaml.safe_load(value) for name, value in args.p}
            run_notebook(args.notebook, args.output, load_params(args.params, args.section, overrides))
        elif args.command == "golden":
            for notebook in sorted(args.notebooks.glob("0*.py")):
                print(f"executing {notebook} at its defaults -> {args.out / (notebook.stem + '.ipynb')}")
                run_notebook(notebook, args.out / f"{notebook.stem}.ipynb", cwd=args.out)  # where nbval runs it
        elif args.command == "repro-copy":
            reproduce_copy(args.dest, args.profile)
        elif args.command == "deps":
            print("\n".join(stage_code(args.script)))
        else:
            apply_profile(args.params, args.name)
    except ParameterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
