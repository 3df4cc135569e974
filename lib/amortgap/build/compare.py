"""Does a rebuild still say what the committed paper says? Every number, every claim, every table.

Two builds are compared: ``base`` (by default the committed one, ``HEAD``) and ``other`` (by default
the working tree, i.e. what ``make repro`` just rebuilt). A build is a folder or any git revision.

- **Numbers** are the paper's generated values, read from the ``paper/generated/*.json`` files that
  :func:`amortgap.report.write_macros` writes beside each ``.tex`` (or, for a build older than
  those records, from the ``.tex`` as printed, and then compared as printed). A number with an uncertainty
  (standard error over datapoints, Monte Carlo, or over seeds) is judged by ``z = (other - base) /
  se``: within when ``|z| <= 3``. Counts and text (trend words, comparisons, the cheapest
  estimator, ...) are claims: reproduced only when unchanged. A real number without an uncertainty
  (a timing, a single training run's score, a closed-form value) is listed, not judged.
- **Per-datapoint tables** (``results/**/*.csv``) are compared row by row and reported, column by
  column: a column with a ``<column>_se`` partner by its largest ``|z|`` and by how many values lie
  beyond 3 SE, other columns by their largest absolute difference and how many rows changed;
  timing columns are left out. Single datapoints may legitimately cross 3 SE on another machine
  (one in 370 would by chance), so tables inform the verdict only when one goes missing.

The verdict is "reproduced" when every number with an uncertainty is within 3 SE, every claim is
unchanged and nothing is missing. ``python -m amortgap.build.compare [--base REV|DIR] [--other REV|DIR]``
prints the report, writes it to ``build/reproduction.md`` and ends with one summary line.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .pipeline import project_root

THRESHOLD = 3.0
"""|difference| / uncertainty above which a number counts as changed."""
TIMING = ("seconds", "train_seconds", "seconds_per_point")
"""Table columns that measure the machine, not the science."""
PATHS = ("paper/generated", "results")


@dataclass
class Report:
    numbers: pd.DataFrame  # name, base, other, se, z, within
    claims: pd.DataFrame  # name, base, other, same
    unjudged: pd.DataFrame  # name, base, other, difference
    columns: pd.DataFrame  # table, column, kind (se|listed|exact), rows, max_abs_z, max_abs_diff, changed
    missing: list[str]  # numbers, tables or columns in one build only

    @property
    def reproduced(self) -> bool:
        return bool(self.numbers.within.all() and self.claims.same.all() and not self.missing)

    def summary(self) -> str:
        largest = float(self.numbers.z.abs().max()) if len(self.numbers) else 0.0
        with_se = self.columns[self.columns.kind == "se"]
        table_z = float(with_se.max_abs_z.max()) if len(with_se) else 0.0
        verdict = "reproduced" if self.reproduced else "NOT reproduced"
        return (f"{verdict}: {int(self.numbers.within.sum())}/{len(self.numbers)} numbers within {THRESHOLD:g} SE "
                f"(largest {largest:.2f} SE), {int(self.claims.same.sum())}/{len(self.claims)} claims unchanged, "
                f"{len(self.unjudged)} numbers without uncertainty listed; tables: {self.columns.table.nunique()} "
                f"files, largest per-datapoint |z| {table_z:.2f} ({int(with_se.changed.sum())} of "
                f"{int(with_se.rows.sum())} values beyond {THRESHOLD:g} SE); {len(self.missing)} missing")


def materialise(build: str, root: Path, into: Path) -> Path:
    """A folder holding ``build``'s paper/generated and results: the folder itself, or a git
    revision extracted into ``into``."""
    folder = Path(build)
    if folder.is_dir():
        return folder
    archive = subprocess.run(["git", "archive", "--format=tar", build, *PATHS], cwd=root, capture_output=True)
    if archive.returncode != 0:
        raise ValueError(f"{build!r} is neither a folder nor a git revision with {PATHS}: "
                         f"{archive.stderr.decode().strip()}")
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


_MACRO = re.compile(r"\\newcommand\{\\(\w+)\}\{(.*)\}")
_DECIMAL = re.compile(r"^-?\d+(\.(\d+))?$")


def read_numbers(folder: Path) -> dict[str, dict]:
    """name -> {"value": ..., "se": ...} or {"text": ...} from every paper/generated/*.json; a
    macro file without its JSON record (a build older than the records) is read from its LaTeX, as
    printed: {"value": ..., "se": None, "decimals": ...}."""
    numbers: dict[str, dict] = {}
    for tex in sorted((folder / "paper/generated").glob("*.tex")):
        record = tex.with_suffix(".json")
        if record.exists():
            numbers.update(json.loads(record.read_text()))
            continue
        for name, text in _MACRO.findall(tex.read_text()):
            plain = text.replace("\\,", "")
            match = _DECIMAL.match(plain)
            if match is None:
                numbers[name] = {"text": text}
            elif match.group(1) is None:
                numbers[name] = {"value": int(plain), "decimals": 0, "printed": plain}
            else:
                numbers[name] = {"value": float(plain), "se": None, "decimals": len(match.group(2)), "printed": plain}
    return numbers


def _claim(record: dict) -> str:
    """A claim as the paper prints it, so that a text macro that looks like a number ("0.001") in
    one build equals the same macro read from the other build's LaTeX."""
    return str(record.get("text", record.get("printed", record.get("value")))).replace("\\,", "")


def compare_numbers(base: dict[str, dict], other: dict[str, dict]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(judged numbers, claims, unjudged numbers) of the names both builds have."""
    numbers, claims, unjudged = [], [], []
    for name in sorted(set(base) & set(other)):
        b, o = base[name], other[name]
        counts = isinstance(b.get("value"), int) and isinstance(o.get("value"), int) and "se" not in b and "se" not in o
        if "text" in b or "text" in o or counts:
            bt, ot = _claim(b), _claim(o)
            claims.append({"name": name, "base": bt, "other": ot, "same": bt == ot})
            continue
        bv, ov = b["value"], o["value"]
        decimals = min(x.get("decimals", 99) for x in (b, o))
        if decimals < 99:  # one side is known only as printed: compare both as printed
            bv, ov = round(bv, decimals), round(ov, decimals)
        se = b.get("se") if b.get("se") is not None else o.get("se")
        if se is None or not math.isfinite(se) or se <= 0:
            unjudged.append({"name": name, "base": bv, "other": ov, "difference": ov - bv})
            continue
        z = (ov - bv) / se
        numbers.append({"name": name, "base": bv, "other": ov, "se": se, "z": z, "within": abs(z) <= THRESHOLD})
    return (pd.DataFrame(numbers, columns=["name", "base", "other", "se", "z", "within"]),
            pd.DataFrame(claims, columns=["name", "base", "other", "same"]),
            pd.DataFrame(unjudged, columns=["name", "base", "other", "difference"]))


def compare_table(name: str, base: pd.DataFrame, other: pd.DataFrame) -> tuple[list[dict], list[str]]:
    """Per-column comparison of two versions of one per-datapoint table (rows in the same order)."""
    if len(base) != len(other):
        return [], [f"{name}: {len(base)} rows in base, {len(other)} in other"]
    missing = [f"{name}:{c}" for c in sorted(set(base.columns) ^ set(other.columns))]
    rows = []
    for column in [c for c in base.columns if c in other.columns and c not in TIMING and not c.endswith("_se")]:
        b, o = base[column], other[column]
        row = {"table": name, "column": column, "rows": len(b), "max_abs_z": np.nan, "max_abs_diff": np.nan}
        if not (pd.api.types.is_float_dtype(b) and pd.api.types.is_float_dtype(o)):
            same = (b.astype(object) == o.astype(object)) | (b.isna() & o.isna())  # an empty cell equals an empty cell
            rows.append({**row, "kind": "exact", "changed": int((~same).sum())})
            continue
        diff = o.to_numpy(float) - b.to_numpy(float)
        row["max_abs_diff"] = float(np.nanmax(np.abs(diff))) if len(diff) else 0.0
        if f"{column}_se" in base.columns:
            z = np.where(diff == 0, 0.0, np.abs(diff) / base[f"{column}_se"].to_numpy(float))
            rows.append({**row, "kind": "se", "max_abs_z": float(np.nanmax(z)), "changed": int((z > THRESHOLD).sum())})
        else:
            rows.append({**row, "kind": "listed", "changed": int((diff != 0).sum())})
    return rows, missing


def compare(base: Path, other: Path) -> Report:
    """Compare two materialised builds (folders holding paper/generated and results)."""
    base_numbers, other_numbers = read_numbers(base), read_numbers(other)
    missing = [f"number {n}" for n in sorted(set(base_numbers) ^ set(other_numbers))]
    numbers, claims, unjudged = compare_numbers(base_numbers, other_numbers)
    columns = []
    tables = {p.relative_to(base).as_posix() for p in (base / "results").rglob("*.csv")}
    tables |= {p.relative_to(other).as_posix() for p in (other / "results").rglob("*.csv")}
    for table in sorted(tables):
        if not ((base / table).is_file() and (other / table).is_file()):
            missing.append(f"table {table}")
            continue
        rows, gone = compare_table(table, pd.read_csv(base / table), pd.read_csv(other / table))
        columns += rows
        missing += gone
    columns = pd.DataFrame(columns, columns=["table", "column", "kind", "rows", "max_abs_z", "max_abs_diff", "changed"])
    return Report(numbers, claims, unjudged, columns, missing)


def render(report: Report, base: str, other: str) -> str:
    """The report as Markdown: verdict first, then every number, claim, column and what is missing."""

    def show(frame: pd.DataFrame) -> str:
        return frame.to_string(index=False, float_format=lambda v: f"{v:.6g}") if len(frame) else "(none)"

    columns = report.columns
    parts = [
        f"# Reproduction report: {other} against {base}", "", report.summary(), "",
        f"## Numbers with an uncertainty (z = (other - base) / SE; within: |z| <= {THRESHOLD:g})", "",
        show(report.numbers), "",
        "## Claims: counts and words the paper computes (must be unchanged)", "", show(report.claims), "",
        "## Numbers without an uncertainty (listed, not judged)", "", show(report.unjudged), "",
        f"## Per-datapoint columns with a standard error (changed: values beyond {THRESHOLD:g} SE)", "",
        show(columns[columns.kind == "se"].drop(columns="kind")), "",
        "## Per-datapoint columns without one (changed: rows that differ at all)", "",
        show(columns[columns.kind != "se"].drop(columns="max_abs_z")), "",
        "## In one build only", "", "\n".join(report.missing) or "(nothing)", "",
    ]  # fmt: skip
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m amortgap.build.compare", description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD", help="a folder or git revision (default: HEAD, the committed build)")
    parser.add_argument("--other", default=None, help="a folder or git revision (default: the working tree)")
    parser.add_argument("--out", type=Path, default=Path("build/reproduction.md"), help="where to write the report")
    parser.add_argument("--check", action="store_true", help="exit 1 unless the verdict is 'reproduced'")
    parser.add_argument("--quiet", action="store_true", help="print only where the report went and its summary")
    args = parser.parse_args(argv)
    root = project_root()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            base = materialise(args.base, root, Path(tmp) / "base")
            other = materialise(args.other or str(root), root, Path(tmp) / "other")
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        report = compare(base, other)
    text = render(report, args.base, args.other or "the working tree")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    if not args.quiet:
        print(text)
    print(f"reproduction report written to {args.out}")
    print(report.summary())
    return 1 if args.check and not report.reproduced else 0


if __name__ == "__main__":
    raise SystemExit(main())
