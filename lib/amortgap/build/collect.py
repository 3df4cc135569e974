"""Gather DVC experiments that each built a share of the pipeline into one workspace.

``dvc exp run --queue`` + ``dvc queue start -j N`` run experiments in parallel, each in its own
temporary workspace, and keep each result as a Git commit under ``refs/exps/``. ``dvc exp apply``
brings back one experiment's *whole* workspace, so applying a second one undoes the first. When
every experiment ran different stages (say, different branches of the width sweep), this module
takes from each one only what it changed: its stages' entries in ``dvc.lock`` and those stages'
outputs (files it deleted too, such as a finished campaign run's checkpoint); not its settings
(``params.yaml``'s overrides, ``dvc exp run -S``) nor anything else its snapshot held.
Afterwards ``dvc status`` shows those stages as done, and ``dvc repro`` runs only what is left.

    python -m amortgap.build.collect              # every experiment based on the current commit
    python -m amortgap.build.collect width-16 width-64
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import yaml

from .pipeline import project_root


def git(args: Sequence[str], root: Path) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


def experiments(root: Path, baseline: str = "HEAD") -> dict[str, str]:
    """Experiment name -> commit, for the experiments whose baseline is ``baseline``."""
    base = git(["rev-parse", baseline], root).strip()
    refs = git(["for-each-ref", f"refs/exps/{base[:2]}/{base[2:]}", "--format=%(refname) %(objectname)"], root)
    return {ref.rsplit("/", 1)[1]: sha for ref, sha in (line.split() for line in refs.splitlines())}


def lock_stages(root: Path, rev: str) -> dict:
    return (yaml.safe_load(git(["show", f"{rev}:dvc.lock"], root)) or {}).get("stages", {})


def collect(root: Path, names: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Bring each named experiment's stage outputs and ``dvc.lock`` stage entries into the workspace
    at ``root``; returns the stages taken from each. Only the outputs of the stages whose entries the
    experiment changed come back: whatever else its snapshot held (uncommitted files when it was
    queued) stays behind. A stage that two experiments left with different entries is refused,
    since their results would silently replace one another (identical entries, say an upstream
    stage both re-recorded, are one result); so is a collection that would overwrite files changed
    here since the last commit. Nothing is touched unless every experiment can be collected."""
    available = experiments(root)
    names = list(available) if names is None else list(names)
    unknown = sorted(set(names) - set(available))
    if unknown:
        raise ValueError(f"no experiments {unknown} on this commit; there are {sorted(available)}")
    plans, owner = [], {}
    for name in names:
        rev = available[name]
        base = git(["rev-parse", f"{rev}^"], root).strip()
        before, after = lock_stages(root, base), lock_stages(root, rev)
        stages = {s: entry for s, entry in after.items() if before.get(s) != entry}
        clashes = {s: owner[s][0] for s in stages if s in owner and owner[s][1] != stages[s]}
        if clashes:
            raise ValueError(f"experiment {name!r} reran stages another experiment also ran: {clashes}")
        owner.update({s: (name, entry) for s, entry in stages.items()})
        outs = sorted({out["path"] for entry in stages.values() for out in entry.get("outs", [])})
        changes = [line.split("\t", 1) for line in git(["diff", "--name-status", "--no-renames", base, rev, "--", *outs],
                                                       root).splitlines()] if outs else []  # fmt: skip
        plans.append((name, rev, stages, [f for kind, f in changes if kind != "D"], [f for kind, f in changes if kind == "D"]))
    touched = [f for *_, files, deleted in plans for f in files + deleted]
    local = git(["status", "--porcelain", "--", *touched], root).splitlines() if touched else []
    if local:
        raise ValueError(f"files the experiments changed are also changed here since the last commit: {local}; "
                         "commit or restore them first")  # fmt: skip
    lock_path = root / "dvc.lock"
    lock = yaml.safe_load(lock_path.read_text()) if lock_path.exists() else {"schema": "2.0", "stages": {}}
    for name, rev, stages, files, deleted in plans:
        if files:
            git(["checkout", rev, "--", *files], root)
        if deleted:
            git(["rm", "-q", "--ignore-unmatch", "--", *deleted], root)
        lock["stages"].update(stages)
    lock_path.write_text(yaml.safe_dump(lock, sort_keys=False))
    return {name: list(stages) for name, _, stages, *_ in plans}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m amortgap.build.collect", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="experiment names (default: all on the current commit)")
    args = parser.parse_args(argv)
    try:
        for name, stages in collect(project_root(), args.names or None).items():
            print(f"{name}: {', '.join(stages) or 'no stages'}")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
