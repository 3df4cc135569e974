"""The whole pipeline, end to end at quick scale, in a fresh copy of the project: `dvc repro` builds
the PDF, the PDF shows the numbers the stages generated, and a second `dvc repro` has nothing to do."""

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from amortgap.build import pipeline

ROOT = Path(__file__).resolve().parents[1]
MACRO = re.compile(r"\\newcommand\{\\(\w+)\}\{(.*)\}")


@pytest.fixture(scope="module")
def quick_copy() -> Path:
    return pipeline.reproduce_copy(ROOT / "build" / "test-quick", profile="quick")


def squeeze(text: str) -> str:
    return re.sub(r"\s+|\\,", "", text).replace("\u2212", "-")


def used_macros(paper: Path) -> set[str]:
    """The control words of the paper's own sources and of the generated files' bodies (a generated
    table may print a macro)."""
    sources = [t.read_text() for t in paper.glob("*.tex")]
    sources += [MACRO.sub(r"\2", t.read_text()) for t in (paper / "generated").glob("*.tex")]
    return {name for text in sources for name in re.findall(r"\\(\w+)", re.sub(r"(?<!\\)%.*", "", text))}


def test_the_paper_prints_every_generated_macro(quick_copy):
    """Every macro a stage generates is printed: none is computed and left out (nor can a number pass
    because its digits happen to appear elsewhere in the PDF), and each printed number is in the PDF."""
    paper = quick_copy / "paper"
    values = {name: value for tex in (paper / "generated").glob("*.tex") for name, value in MACRO.findall(tex.read_text())}
    assert len(values) > 20
    unused = sorted(set(values) - used_macros(paper))
    assert not unused, f"generated but never printed by the paper: {unused}"
    pdf = paper / "main.pdf"
    assert pdf.stat().st_size > 10_000
    text = squeeze(subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout)
    missing = {n: v for n, v in values.items() if re.fullmatch(r"-?[\d.\\,]+", v) and squeeze(v) not in text}
    assert not missing, f"generated numbers absent from the PDF: {missing}"
    assert squeeze(values["TabFfgTestAmort"]) in text


def test_quick_profile_was_used(quick_copy):
    setup = (quick_copy / "paper" / "generated" / "model_setup.tex").read_text()
    assert r"\newcommand{\SetupNumTrain}{2\,000}" in setup


def test_second_repro_has_nothing_to_do(quick_copy):
    status = pipeline.run_dvc(["status"], quick_copy, capture=True)
    assert "up to date" in status.stdout, status.stdout


def test_rebuilding_gives_the_same_bytes(quick_copy):
    """Figures, tables and the PDF are byte-reproducible, so dvc.lock does not churn."""
    products = [quick_copy / "paper" / "main.pdf", *sorted((quick_copy / "paper" / "figures").rglob("*.*")),
                *sorted((quick_copy / "paper" / "generated").glob("*.tex"))]
    before = {p: p.read_bytes() for p in products}
    pipeline.run_dvc(["repro", "--force", "--single-item", "results", "paper"], quick_copy, capture=True)
    changed = [str(p.relative_to(quick_copy)) for p in products if p.read_bytes() != before[p]]
    assert not changed, f"rebuilt with different bytes: {changed}"


def test_a_changed_parameter_reruns_only_what_depends_on_it(quick_copy):
    """Only the stages that read a changed section are stale; their products then carry the change on."""
    params_file = quick_copy / "params.yaml"
    original = params_file.read_text()
    try:
        params = yaml.safe_load(original)
        params["background"]["encoder_lr"] = 0.02
        params["refinement"]["lrs"] = [0.1, 0.3]
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))
        status = json.loads(pipeline.run_dvc(["status", "--json"], quick_copy, capture=True).stdout)
        assert set(status) == {"background", "refinement", "appendix"}, status
    finally:
        params_file.write_text(original)
