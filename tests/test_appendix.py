"""The paper's appendix tables come from params.yaml and the training records, never by hand."""

import importlib.util
from pathlib import Path

import pandas as pd
import yaml

from amortgap.qstar import QStarConfig

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("appendix", ROOT / "paper" / "appendix.py")
appendix = importlib.util.module_from_spec(spec)
spec.loader.exec_module(appendix)


def ais_sections(value) -> list[dict]:
    """Every AIS setting in a params tree: a mapping with steps and chains."""
    if isinstance(value, dict):
        own = [value] if {"steps", "chains"} <= set(value) else []
        return own + [found for v in value.values() for found in ais_sections(v)]
    if isinstance(value, list):
        return [found for v in value for found in ais_sections(v)]
    return []


def test_every_experiment_stage_has_its_settings_from_params():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    table = appendix.settings(params)
    assert set(table.index) == {"model setup", "gap table", "convergence", "split", "encoder width", "width sweep", "refinement",
                                "certification", "validation", "oracle", "every stage"}
    # the q* search's stopping rule and AIS's transitions, which the stages leave at the library's defaults
    every = table.loc["every stage"].set_index("setting").value
    assert every.iloc[0] == f"{QStarConfig().lr:g}; 50 steps, 2 windows; x 0.3; 0.0003"
    assert every.iloc[1] == "5; 0.05 towards 0.65 (x 1.02); sigmoid (delta 4)"
    assert not set().union(*(set(ais) for ais in ais_sections(params))) - {"steps", "chains"}, \
        "a stage sets an AIS knob beside steps and chains: the appendix's 'every stage' row would not hold"
    gap = table.loc["gap table"].set_index("setting").value
    assert gap["random images per split (flow q*)"] == f"{params['gap_table']['num_points']} ({params['gap_table']['flow_points']})"
    params["gap_table"]["num_points"] = 7
    assert appendix.settings(params).loc["gap table"].set_index("setting").value["random images per split (flow q*)"] == (
        f"7 ({params['gap_table']['flow_points']})")
    seeds = "; ".join(f"{', '.join(map(str, s))} ({f})" for f, s in params["gap_table"]["seeds"].items())
    assert gap["models: runs; seeds; protocols"].startswith(f"diagonal cremer, planar cremer; {seeds}")


def test_compute_counts_models_and_their_epochs(tmp_path):
    (tmp_path / "training").mkdir()
    (tmp_path / "sweep").mkdir()
    pd.DataFrame({"model": ["diagonal", "diagonal", "planar"], "seed": [0, 1, 0], "epochs": [40, 52, 61],
                  "training_minutes": [1.0, 2.0, 4.0]}).to_csv(tmp_path / "training" / "summary.csv", index=False)
    pd.DataFrame({"width": [16, 16, 16, 64], "seed": [0, 0, 1, 0], "image": [3, 4, 3, 3], "epochs": [30, 30, 33, 45],
                  "train_seconds": [60.0, 60.0, 120.0, 30.0]}).to_csv(tmp_path / "sweep" / "joint.csv", index=False)
    pd.DataFrame({"decoder": ["reference"] * 3, "encoder_width": [16, 16, 256], "seed": [0, 0, 0], "image": [3, 4, 3],
                  "epochs": [25, 25, 54]}).to_csv(tmp_path / "sweep" / "encoder_decoder.csv", index=False)
    runs = pd.DataFrame([{"run": "diagonal_cremer_s0", "status": "finished", "epoch": 3280, "last_epoch": 3280, "hours": 2.5},
                         {"run": "planar_cremer_s1", "status": "paused", "epoch": 100, "last_epoch": 3280, "hours": 0.2}])
    table = appendix.compute(tmp_path, runs)
    assert table.loc["run diagonal cremer s0 (trained)"].tolist() == [1, "3280 of 3280", "150"]
    assert table.loc["run planar cremer s1 (in training)"].tolist() == [1, "100 of 3280", "12"]
    assert table.loc["reference, FFG encoder"].tolist() == [2, "40-52", "3.0"]
    assert table.loc["reference, planar-flow encoder"].tolist() == [1, "61-61", "4.0"]
    assert table.loc["joint sweep, width 16"].tolist() == [2, "30-33", "3.0"]  # one row per model, not per image
    assert table.loc["encoders on frozen decoders"].tolist() == [2, "25-54", "n/a"]


def test_the_provenance_names_each_chapters_models_and_what_it_waits_on():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    runs = pd.DataFrame([{"run": "diagonal_cremer_s0", "status": "finished"}, {"run": "planar_cremer_s0", "status": "paused"},
                         {"run": "diagonal_cremer_s1", "status": "finished"}, {"run": "diagonal_cremer_s2", "status": "paused"}])
    params["gap_table"]["seeds"] = {"diagonal": [0], "planar": [0]}
    table = appendix.provenance(params, runs)
    gap = table.loc["gap tables, reconstructions (3a)"]
    assert "FFG 0; flow 0" in gap.models
    assert gap.status == ("final for the seeds shown; waits on FFG seed 1 (trained), FFG seed 2 (in training), "
                          "flow seed 1 (not started)")
    assert "in training" in table.loc["training protocols (2b)"].status, "the flow run's longer check is not finished"
    params["gap_table"]["seeds"] = {"diagonal": [0, 1, 2], "planar": [0, 1]}
    assert appendix.provenance(params, runs).loc["gap tables, reconstructions (3a)"].status == "final for the seeds shown"
    assert "campaign run diagonal cremer s0" in table.loc["compute frontier, HMC, break-even (3d)"].models
    assert "plateau" in table.loc["width sweep and encoder x decoder design (3c)"].models
    for text in [*appendix.settings(params).to_numpy().ravel(), *table.to_numpy().ravel()]:
        assert "_" not in str(text), f"a bare underscore breaks the LaTeX table: {text}"
    width = table.loc["encoder width, fixed decoder (3i)"]
    counts = pd.Series([run.split("_on_")[0].split("enc")[1].split("x")[0] for run in params["encoder_width"]["encoders"]]).value_counts()
    assert all(f"width {w} x {n}" in width.models for w, n in counts.items())
    params["encoder_width"]["encoders"] = params["encoder_width"]["encoders"][:1]
    assert "more encoders" in appendix.provenance(params, runs).loc["encoder width, fixed decoder (3i)"].status

