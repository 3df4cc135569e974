"""The nbval regression tests are current, hold on any CPU, and can fail: the golden notebooks hold
the code of today's notebooks; they pass in every numeric mode (the vector units and thread counts
of other machines, :mod:`amortgap.build.numeric_modes`); and moving one bound by 1% makes the comparison
fail in every mode."""

import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

from amortgap.build import numeric_modes

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0*.py"))

PERTURBATION = """\
import amortgap.gaps as _gaps

_elbo_from_weights = _gaps.elbo_from_weights


def _one_percent_off(log_w):
    estimate = _elbo_from_weights(log_w)
    estimate.value = estimate.value * 1.01
    return estimate


_gaps.elbo_from_weights = _one_percent_off"""


def code_sources(notebook) -> list[str]:
    return [c.source for c in notebook.cells
            if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_golden_notebook_is_current(source):
    golden = GOLDEN / f"{source.stem}.ipynb"
    assert golden.exists(), "run `make golden` after adding a notebook"
    assert code_sources(nbformat.read(golden, as_version=4)) == code_sources(jupytext.read(source)), (
        f"{golden.name} is stale: re-render it with `make golden` and say why in the commit"
    )


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_code_cell_relies_on_a_trailing_semicolon(source):
    """nbval runs each cell with store_history=False, and IPython then cannot see a trailing ';': the
    value it hid in the rendered notebook is shown under nbval, and the cell fails on every machine."""
    for cell in code_sources(jupytext.read(source)):
        last = [line for line in cell.rstrip().splitlines() if line.strip() and not line.lstrip().startswith("#")][-1]
        assert not last.rstrip().endswith(";"), f"{source.name}: end the cell with a statement, not `...;`:\n{cell}"


def nbval(path: Path, mode: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """nbval on ``path`` (a notebook or a folder of them) in a fresh process in numeric ``mode``
    (``env``: that mode's environment with these variables on top)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-o", "addopts=", "-p", "no:cacheprovider", "--nbval",
         "--nbval-current-env", "--nbval-sanitize-with", str(GOLDEN / "sanitize.cfg"), str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=1200, env={**numeric_modes.mode_env(mode), **(env or {})},
    )


@pytest.mark.slow
@pytest.mark.parametrize("mode", numeric_modes.MODES)
def test_golden_notebooks_hold_in_every_numeric_mode(mode):
    """Every golden notebook, re-executed as a CPU with other vector units or threads would, prints
    what the golden holds. Each mode trains its own tiny models (the cached ones are removed first)."""
    shutil.rmtree(ROOT / numeric_modes.TINY, ignore_errors=True)
    result = nbval(GOLDEN, mode)
    assert result.returncode == 0, result.stdout[-5000:]
    cells = sum(c.cell_type == "code" for g in GOLDEN.glob("*.ipynb") for c in nbformat.read(g, as_version=4).cells)
    assert f"{cells} passed" in result.stdout, "nbval must compare every code cell of every golden notebook"


@pytest.mark.slow
@pytest.mark.parametrize("mode", numeric_modes.MODES)
def test_nbval_fails_when_a_bound_moves_by_one_percent(mode):
    """In every numeric mode, a copy of the golden background notebook with L[q] and L[q*] scaled by
    1.01 must fail nbval; the untouched copy, run the same way, must pass."""
    work = ROOT / "build" / "nbval-bites" / mode
    shutil.rmtree(work, ignore_errors=True)
    (work / "control").mkdir(parents=True)
    (work / "perturbed").mkdir()
    golden = GOLDEN / "01_background.ipynb"
    shutil.copy(golden, work / "control" / golden.name)
    notebook = nbformat.read(golden, as_version=4)
    imports = next(i for i, c in enumerate(notebook.cells) if c.cell_type == "code" and "from amortgap" in c.source)
    notebook.cells.insert(imports + 1, nbformat.v4.new_code_cell(PERTURBATION))
    nbformat.write(notebook, work / "perturbed" / golden.name)

    control = nbval(work / "control" / golden.name, mode)
    assert control.returncode == 0, control.stdout[-3000:]
    perturbed = nbval(work / "perturbed" / golden.name, mode)
    assert perturbed.returncode == 1, perturbed.stdout[-3000:]
    assert "Cell outputs differ" in perturbed.stdout
    assert "estimated = gaps.decompose" in perturbed.stdout, "the cell that prints the bounds must be the one to fail"


def test_the_goldens_hold_under_a_headless_matplotlib_backend():
    """A headless CI machine often sets MPLBACKEND=Agg; the suite pins the kernels' backend
    (tests/conftest.py, like the pipeline), so every figure cell still shows its output."""
    result = nbval(GOLDEN / "01_background.ipynb", "native-2", env={"MPLBACKEND": "Agg"})
    assert result.returncode == 0, result.stdout[-3000:]
    cells = sum(c.cell_type == "code" for c in nbformat.read(GOLDEN / "01_background.ipynb", as_version=4).cells)
    assert f"{cells} passed" in result.stdout
