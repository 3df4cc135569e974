"""Config dataclasses are built from their params.yaml sections in one call, nested ones included."""

import pytest
import yaml

from amortgap.ais import AISConfig
from amortgap.gaps import DecomposeConfig
from amortgap.qstar import QStarConfig
from amortgap.train import TrainConfig
from tests.test_pipeline import PARAMS


def test_a_nested_section_becomes_nested_configs_and_lists_become_tuples():
    config = DecomposeConfig.from_section({"elbo_samples": 10, "iwae_samples": 0, "seed": 3,
                                           "ais": {"steps": 20, "chains": 4}, "qstar": {"max_steps": 200}})
    assert config.ais == AISConfig(steps=20, chains=4)
    assert config.qstar == QStarConfig(max_steps=200)
    assert (config.elbo_samples, config.iwae_samples, config.seed) == (10, 0, 3)
    assert TrainConfig.from_section({"snapshot_epochs": [1, 3]}).snapshot_epochs == (1, 3)
    assert QStarConfig.from_section({"adam_betas": [0.5, 0.9]}).adam_betas == (0.5, 0.9)


def test_an_unknown_setting_is_an_error_that_names_the_known_ones():
    with pytest.raises(ValueError, match=r"TrainConfig has no setting\(s\) \['epoch'\]; it has \['epochs'"):
        TrainConfig.from_section({"epoch": 3})
    with pytest.raises(ValueError, match=r"AISConfig has no setting\(s\) \['step'\]"):
        DecomposeConfig.from_section({"ais": {"step": 3}})
    with pytest.raises(TypeError, match="mapping"):
        TrainConfig.from_section([("epochs", 3)])


def test_every_config_section_of_params_yaml_builds_its_config():
    """Each section that configures a method maps one-to-one onto its dataclass, at paper scale."""
    sections = {("model_setup", "training"): TrainConfig, ("width_sweep", "training"): TrainConfig,
                ("oracle", "training"): TrainConfig, ("gap_table", "decompose"): DecomposeConfig,
                ("convergence", "decompose"): DecomposeConfig, ("width_sweep", "decompose"): DecomposeConfig,
                ("oracle", "decompose"): DecomposeConfig, ("refinement", "qstar"): QStarConfig,
                ("certification", "qstar"): QStarConfig, ("certification", "reference"): AISConfig}
    for (stage, name), cls in sections.items():
        config = cls.from_section(PARAMS[stage][name])
        assert isinstance(config, cls)
    shared = TrainConfig.from_section(PARAMS["protocols"]["plateau"])
    assert TrainConfig.from_section(PARAMS["width_sweep"]["training"]) == shared
    assert TrainConfig.from_section(PARAMS["model_setup"]["training"]).snapshot_epochs == (1, 3, 10, 30, 100, 300)
    assert yaml.safe_dump(PARAMS["gap_table"]["decompose"]["ais"]) == yaml.safe_dump(PARAMS["protocols"]["ais"])
