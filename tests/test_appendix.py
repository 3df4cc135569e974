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


def test_every_experiment_stage_has_its_settings_from_params():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    table = appendix.settings(params)
    assert set(table.index) == {"model setup", "gap table", "convergence", "width sweep", "refinement",
                                "certification", "validation", "oracle", "every stage"}
    # the q* search's stopping rule, which the stages leave at the library's defaults
    assert table.loc["every stage"].value == f"{QStarConfig().lr:g}; 50 steps, 2 windows; x 0.3; 0.0003"
    gap = table.loc["gap table"].set_index("setting").value
    assert gap["random images per split (flow q*)"] == f"{params['gap_table']['num_points']} ({params['gap_table']['flow_points']})"
    params["gap_table"]["num_points"] = 7
    assert appendix.settings(params).loc["gap table"].set_index("setting").value["random images per split (flow q*)"] == (
        f"7 ({params['gap_table']['flow_points']})")
    assert gap["models: runs; seeds; protocols"].startswith("diagonal cremer, planar cremer; 0 (diagonal); 0 (planar)")


def test_compute_counts_models_and_their_epochs(tmp_path):
    (tmp_path / "training").mkdir()
    (tmp_path / "sweep").mkdir()
    pd.DataFrame({"model": ["diagonal", "diagonal", "planar"], "seed": [0, 1, 0], "epochs": [40, 52, 61],
                  "training_minutes": [1.0, 2.0, 4.0]}).to_csv(tmp_path / "training" / "summary.csv", index=False)
    pd.DataFrame({"width": [16, 16, 16, 64], "seed": [0, 0, 1, 0], "image": [3, 4, 3, 3], "epochs": [30, 30, 33, 45],
                  "train_seconds": [60.0, 60.0, 120.0, 30.0]}).to_csv(tmp_path / "sweep" / "joint.csv", index=False)
    pd.DataFrame({"decoder": ["reference"] * 3, "encoder_width": [16, 16, 256], "seed": [0, 0, 0], "image": [3, 4, 3],
                  "epochs": [25, 25, 54]}).to_csv(tmp_path / "sweep" / "encoder_decoder.csv", index=False)
    table = appendix.compute(tmp_path)
    assert table.loc["reference, FFG encoder"].tolist() == [2, "40-52", "3.0"]
    assert table.loc["reference, planar-flow encoder"].tolist() == [1, "61-61", "4.0"]
    assert table.loc["joint sweep, width 16"].tolist() == [2, "30-33", "3.0"]  # one row per model, not per image
    assert table.loc["encoders on frozen decoders"].tolist() == [2, "25-54", "n/a"]
