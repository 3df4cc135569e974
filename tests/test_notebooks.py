"""The nbval regression tests are current and can fail: the golden notebooks hold the code of
today's notebooks, and moving one bound by 1% makes the comparison fail."""

import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

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


def nbval(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-o", "addopts=", "-p", "no:cacheprovider", "--nbval",
         "--nbval-current-env", "--nbval-sanitize-with", str(GOLDEN / "sanitize.cfg"), str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )


def test_nbval_fails_when_a_bound_moves_by_one_percent():
    """A copy of the golden background notebook with L[q] and L[q*] scaled by 1.01 must fail nbval;
    the untouched copy, run the same way, must pass."""
    work = ROOT / "build" / "nbval-bites"
    shutil.rmtree(work, ignore_errors=True)
    (work / "control").mkdir(parents=True)
    (work / "perturbed").mkdir()
    golden = GOLDEN / "01_background.ipynb"
    shutil.copy(golden, work / "control" / golden.name)
    notebook = nbformat.read(golden, as_version=4)
    imports = next(i for i, c in enumerate(notebook.cells) if c.cell_type == "code" and "from amortgap" in c.source)
    notebook.cells.insert(imports + 1, nbformat.v4.new_code_cell(PERTURBATION))
    nbformat.write(notebook, work / "perturbed" / golden.name)

    control = nbval(work / "control" / golden.name)
    assert control.returncode == 0, control.stdout[-3000:]
    perturbed = nbval(work / "perturbed" / golden.name)
    assert perturbed.returncode == 1, perturbed.stdout[-3000:]
    assert "Cell outputs differ" in perturbed.stdout
    assert "estimated = gaps.decompose" in perturbed.stdout, "the cell that prints the bounds must be the one to fail"
