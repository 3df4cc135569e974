"""The reproduction report judges each number by its own uncertainty, each claim by equality, and
each per-datapoint column by its standard errors; what has no uncertainty is listed, not judged."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from amortgap import report
from amortgap.build import compare
from amortgap.report import Number

ROOT = Path(__file__).resolve().parents[1]


def build(folder: Path, numbers: dict, table: pd.DataFrame) -> Path:
    """A build as the pipeline writes one: macros (+ their JSON record) and a per-datapoint table."""
    report.write_macros(folder / "paper/generated/results.tex", numbers)
    (folder / "results/gaps").mkdir(parents=True)
    table.to_csv(folder / "results/gaps/w16_s0.csv", index=False)
    return folder


NUMBERS = {"TabFfgTestAmort": Number(5.17, 0.2), "JointTrend": "shrinks", "TabPoints": 500,
           "RefEncoderMs": Number(0.4, digits=3)}
TABLE = pd.DataFrame({"datapoint": range(4), "elbo_amortized": [-90.0, -100.0, -110.0, -120.0],
                      "elbo_amortized_se": [0.1] * 4, "log_px": [-85.0, -95.0, -105.0, -115.0],
                      "train_seconds": [3.0] * 4})


def test_identical_builds_are_reproduced_with_zero_differences(tmp_path):
    result = compare.compare(build(tmp_path / "a", NUMBERS, TABLE), build(tmp_path / "b", NUMBERS, TABLE))
    assert result.reproduced
    assert result.numbers.name.tolist() == ["TabFfgTestAmort"] and result.numbers.z.tolist() == [0.0]
    assert sorted(result.claims.name) == ["JointTrend", "TabPoints"] and result.claims.same.all()
    assert result.unjudged.name.tolist() == ["RefEncoderMs"]
    kinds = result.columns.set_index("column").kind.to_dict()
    assert kinds == {"datapoint": "exact", "elbo_amortized": "se", "log_px": "listed"}, \
        "timings measure the machine, not the science: left out"
    assert result.summary().startswith("reproduced: 1/1 numbers within 3 SE (largest 0.00 SE), 2/2 claims unchanged")


@pytest.mark.parametrize("z, reproduced", [(2.0, True), (-2.9, True), (3.5, False), (-8.0, False)])
def test_a_number_is_judged_in_units_of_its_own_standard_error(tmp_path, z, reproduced):
    moved = {**NUMBERS, "TabFfgTestAmort": Number(5.17 + z * 0.2, 0.2)}
    result = compare.compare(build(tmp_path / "a", NUMBERS, TABLE), build(tmp_path / "b", moved, TABLE))
    assert result.numbers.z.iloc[0] == pytest.approx(z)
    assert result.reproduced is reproduced


def test_a_changed_claim_is_not_reproduced_however_small(tmp_path):
    changed = {**NUMBERS, "JointTrend": "does not shrink significantly"}
    result = compare.compare(build(tmp_path / "a", NUMBERS, TABLE), build(tmp_path / "b", changed, TABLE))
    assert not result.reproduced
    assert result.claims.set_index("name").same.to_dict() == {"JointTrend": False, "TabPoints": True}


def test_numbers_without_uncertainty_are_listed_not_judged(tmp_path):
    slower = {**NUMBERS, "RefEncoderMs": Number(4.0, digits=3)}
    other = TABLE.assign(log_px=TABLE.log_px + 1.0, train_seconds=9.0)
    result = compare.compare(build(tmp_path / "a", NUMBERS, TABLE), build(tmp_path / "b", slower, other))
    assert result.reproduced
    assert result.unjudged.difference.tolist() == [pytest.approx(3.6)]
    log_px = result.columns.set_index("column").loc["log_px"]
    assert log_px.max_abs_diff == pytest.approx(1.0) and log_px.changed == 4


def test_a_datapoint_beyond_three_standard_errors_is_counted_and_reported(tmp_path):
    other = TABLE.copy()
    other.loc[2, "elbo_amortized"] += 0.5  # 5 SE on one image
    other.loc[1, "elbo_amortized"] += 0.1  # 1 SE on another
    result = compare.compare(build(tmp_path / "a", NUMBERS, TABLE), build(tmp_path / "b", NUMBERS, other))
    column = result.columns.set_index("column").loc["elbo_amortized"]
    assert column.max_abs_z == pytest.approx(5.0) and column.changed == 1
    assert "largest per-datapoint |z| 5.00 (1 of 4 values beyond 3 SE)" in result.summary()


def test_missing_numbers_and_tables_are_reported(tmp_path):
    fewer = {k: v for k, v in NUMBERS.items() if k != "JointTrend"}
    a, b = build(tmp_path / "a", NUMBERS, TABLE), build(tmp_path / "b", fewer, TABLE)
    (b / "results/gaps/w16_s0.csv").rename(b / "results/gaps/w32_s0.csv")
    result = compare.compare(a, b)
    assert not result.reproduced
    assert result.missing == ["number JointTrend", "table results/gaps/w16_s0.csv", "table results/gaps/w32_s0.csv"]


def test_command_line_compares_git_revisions_and_writes_the_report(tmp_path, capsys):
    out = tmp_path / "report.md"
    assert compare.main(["--base", "HEAD", "--other", "HEAD", "--out", str(out), "--check"]) == 0
    printed = capsys.readouterr().out
    assert printed.strip().splitlines()[-1].startswith("reproduced: ")
    assert out.read_text().startswith("# Reproduction report: HEAD against HEAD")
    assert compare.main(["--base", "no-such-revision", "--out", str(out)]) == 2


def test_the_committed_build_records_every_macro_with_its_uncertainty():
    """Every macro of paper/generated/*.tex has its JSON record, so a rebuild can be judged."""
    for tex in sorted((ROOT / "paper/generated").glob("*.tex")):
        if "\\newcommand" not in tex.read_text():
            continue  # a table, not macros
        names = set(pd.Series(tex.read_text().splitlines()).str.extract(r"\\newcommand\{\\(\w+)\}")[0].dropna())
        recorded = set(compare.read_numbers(ROOT)) if tex.with_suffix(".json").exists() else set()
        assert names <= recorded, f"{tex.name}: macros without a record {sorted(names - recorded)}"
    recorded = [v for v in compare.read_numbers(ROOT).values() if v.get("se") is not None]
    assert recorded and all(np.isfinite(v["se"]) and v["se"] >= 0 for v in recorded), \
        "an SE of 0 is a proportion at 0% or 100% (listed, not judged); a negative or NaN SE is a bug"
    assert sum(v["se"] > 0 for v in recorded) >= 40, "the headline numbers are judged by their SEs"


def test_a_build_without_records_is_compared_as_printed(tmp_path):
    """The build committed before the JSON records existed is read from its LaTeX macros."""
    old, new = build(tmp_path / "old", NUMBERS, TABLE), build(tmp_path / "new", {**NUMBERS, "TabFfgTestAmort": Number(5.1749, 0.2)}, TABLE)
    (old / "paper/generated/results.json").unlink()
    result = compare.compare(old, new)
    assert result.numbers[["name", "base", "other"]].values.tolist() == [["TabFfgTestAmort", 5.17, 5.17]]
    assert result.claims.set_index("name").same.to_dict() == {"JointTrend": True, "TabPoints": True}
    assert result.reproduced


def test_a_text_macro_that_looks_like_a_number_is_the_same_claim_when_read_from_latex(tmp_path):
    numbers = {**NUMBERS, "SetupLr": "0.001", "Points": 1000}
    old, new = build(tmp_path / "old", numbers, TABLE), build(tmp_path / "new", numbers, TABLE)
    (old / "paper/generated/results.json").unlink()
    claims = compare.compare(old, new).claims.set_index("name")
    assert claims.same.all(), claims
    changed = build(tmp_path / "changed", {**numbers, "SetupLr": "0.002"}, TABLE)
    assert not compare.compare(old, changed).claims.set_index("name").same["SetupLr"]


def test_empty_cells_of_a_text_column_are_unchanged_and_a_changed_word_is_counted(tmp_path):
    table = TABLE.assign(verdict=["True", "False", None, None])
    moved = TABLE.assign(verdict=["True", "True", None, None])
    result = compare.compare(build(tmp_path / "a", NUMBERS, table), build(tmp_path / "b", NUMBERS, table))
    assert result.columns.set_index("column").changed["verdict"] == 0 and result.reproduced
    result = compare.compare(build(tmp_path / "c", NUMBERS, table), build(tmp_path / "d", NUMBERS, moved))
    assert result.columns.set_index("column").changed["verdict"] == 1
