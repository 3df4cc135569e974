"""Numeric modes: run the notebooks as other CPUs would, and measure how far each printed number moves.

Another machine changes the last bits of every reduction: torch's own kernels follow the CPU's
vector units (``ATEN_CPU_CAPABILITY``: default, avx2, avx512), MKL's matrix products follow theirs
(``MKL_ENABLE_INSTRUCTIONS``), oneDNN's too (``DNNL_MAX_CPU_ISA``), and the thread count changes how
sums are split (``OMP_NUM_THREADS``). Each :data:`MODES` entry sets all of these as one kind of
machine would, so one machine can stand in for many. A notebook's printed number is stable when it
reads the same in every mode; :func:`spread` measures, per number, how far it moves.

``python -m amortgap.build.numeric_modes run`` executes the notebooks at their defaults once per mode;
``python -m amortgap.build.numeric_modes spread`` prints each number's spread against the step of the
last digit it is printed with.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from .pipeline import kernel_env

# ISA names per library: an AVX2 machine (AMD Zen 2, Intel before Skylake-X) and a baseline x86-64
# without AVX (torch's "default" kernels, SSE4.2 in MKL and oneDNN).
_AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2"}
_BASELINE = {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "DNNL_MAX_CPU_ISA": "SSE41"}

MODES: dict[str, dict[str, str]] = {
    "native-2": {"OMP_NUM_THREADS": "2"},
    "native-1": {"OMP_NUM_THREADS": "1"},
    "avx2-2": {**_AVX2, "OMP_NUM_THREADS": "2"},
    "avx2-1": {**_AVX2, "OMP_NUM_THREADS": "1"},
    "default-2": {**_BASELINE, "OMP_NUM_THREADS": "2"},
    "default-1": {**_BASELINE, "OMP_NUM_THREADS": "1"},
}
"""Environment overrides of each numeric mode ("native": whatever this CPU does best)."""

_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
_KNOBS = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "DNNL_MAX_CPU_ISA", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def mode_env(mode: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with every numeric knob cleared, then set as
    ``mode`` sets it, so that a knob left over in the caller's shell cannot leak into a mode; and the
    kernel's pinned variables (:func:`amortgap.build.pipeline.kernel_env`) on top."""
    if mode not in MODES:
        raise ValueError(f"unknown numeric mode {mode!r}; the modes are {sorted(MODES)}")
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in _KNOBS}
    return kernel_env({**env, **MODES[mode]})


def printed_numbers(notebook: str | Path) -> pd.DataFrame:
    """Every number in the text outputs of an executed notebook, in order, one row each: ``cell``
    (index among all cells), ``position`` (n-th number of that cell), ``text`` (as printed) and
    ``value``. Cells marked ``NBVAL_IGNORE_OUTPUT`` are left out, as nbval leaves them out."""
    import nbformat

    rows = []
    for index, cell in enumerate(nbformat.read(notebook, as_version=4).cells):
        if cell.cell_type != "code" or "NBVAL_IGNORE_OUTPUT" in cell.source:
            continue
        text = "".join(o.get("text") or o.get("data", {}).get("text/plain", "") for o in cell.get("outputs", []))
        for position, match in enumerate(_NUMBER.finditer(text)):
            rows.append({"cell": index, "position": position, "text": match.group(), "value": float(match.group())})
    return pd.DataFrame(rows, columns=["cell", "position", "text", "value"])


def last_digit_step(text: str) -> float:
    """The step of the last printed digit: ``"20.44"`` -> 0.01, ``"7"`` -> 1, ``"1.5e-03"`` -> 1e-4."""
    mantissa, _, exponent = text.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


def spread(folders: Mapping[str, str | Path], reference: str) -> pd.DataFrame:
    """How far each printed number moves across modes. ``folders`` maps a mode to a folder of
    executed notebooks; ``reference`` names the mode whose text is shown. One row per number:
    notebook, cell, position, text, ``spread`` (max - min over modes), ``step`` (of the last
    printed digit), ``differs`` (in how many modes the printed text differs from the reference)."""
    runs = {mode: Path(folder) for mode, folder in folders.items()}
    frames = []
    for path in sorted(runs[reference].glob("*.ipynb")):
        numbers = {mode: printed_numbers(folder / path.name) for mode, folder in runs.items()}
        shapes = {mode: len(n) for mode, n in numbers.items()}
        if len(set(shapes.values())) != 1:
            raise ValueError(f"{path.name}: the modes print different numbers of numbers {shapes}")
        table = numbers[reference][["cell", "position", "text"]].copy()
        values = pd.DataFrame({mode: n.value.to_numpy() for mode, n in numbers.items()})
        table["spread"] = (values.max(axis=1) - values.min(axis=1)).to_numpy()
        table["step"] = table.text.map(last_digit_step)
        table["differs"] = sum((n.text.to_numpy() != table.text.to_numpy()) for n in numbers.values())
        table.insert(0, "notebook", path.stem)
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


TINY = Path("build/tiny")
"""Where the notebooks' defaults write (models, checkpoints, tables): emptied before each mode, so
that every mode trains its own models instead of loading the cached ones of another mode."""


def run_modes(modes: Sequence[str], out: Path, notebooks: Path = Path("notebooks")) -> None:
    """Execute every notebook at its defaults once per mode, into ``out/<mode>/``, each mode in a
    fresh process (the knobs are read when torch loads) and from an empty :data:`TINY`."""
    for mode in modes:
        print(f"numeric mode {mode}: {MODES[mode]}", flush=True)
        shutil.rmtree(TINY, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "amortgap.build.pipeline", "golden", "--notebooks", str(notebooks),
                        "--out", str(out / mode)], env=mode_env(mode), check=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m amortgap.build.numeric_modes", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute the notebooks at their defaults once per numeric mode")
    run.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    run.add_argument("--out", type=Path, default=Path("build/modes"))
    show = sub.add_parser("spread", help="print each number's spread across the modes run")
    show.add_argument("--out", type=Path, default=Path("build/modes"))
    show.add_argument("--all", action="store_true", help="every number, not only those that move")
    args = parser.parse_args(argv)
    if args.command == "run":
        run_modes(args.modes, args.out)
        return 0
    folders = {p.name: p for p in sorted(args.out.iterdir()) if p.name in MODES}
    if not folders:
        print(f"error: no mode has run into {args.out}; run `python -m amortgap.build.numeric_modes run` first", file=sys.stderr)
        return 2
    reference = "native-2" if "native-2" in folders else next(iter(folders))
    expected = {p.name for p in folders[reference].glob("*.ipynb")}
    unfinished = [mode for mode, folder in folders.items() if {p.name for p in folder.glob("*.ipynb")} != expected]
    if unfinished:
        print(f"left out, not finished: {unfinished}")
    table = spread({m: f for m, f in folders.items() if m not in unfinished}, reference=reference)
    moving = table if args.all else table[table.spread > 0]
    pd.set_option("display.width", 200)
    print(f"modes: {sorted(folders)}; {len(table)} printed numbers, {int((table.spread > 0).sum())} move, "
          f"{int((table.differs > 0).sum())} print differently")
    print(moving.assign(ratio=moving.spread / moving.step).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
