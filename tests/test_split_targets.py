"""The split of the amortization gap's training images play one part each, and the distillation's
q* targets are kept as parts and beat the encoder they start from."""

import pytest
import torch

from amortgap import data, models
from amortgap.bounds import elbo
from amortgap.models import VAE, VAEConfig
from amortgap.qstar import QStarConfig
from amortgap.study import split_targets as split


def test_the_roles_images_are_disjoint_and_the_first_are_the_gap_tables():
    sets = split.training_images(1000, {"reported": 50, "selection": 100, "targets": 300}, seed=3)
    assert [len(v) for v in sets.values()] == [50, 100, 300]
    assert all(bool((v[1:] > v[:-1]).all()) for v in sets.values()), "each sorted, without repeats"
    assert len(torch.cat(list(sets.values())).unique()) == 450, "no image plays two parts"
    assert torch.equal(sets["reported"], data.random_subset(1000, 50, 3))
    with pytest.raises(ValueError, match="asked of a split of 1000"):
        split.training_images(1000, {"a": 600, "b": 500}, seed=0)


def test_the_targets_are_qstar_kept_in_parts_and_above_the_encoders_elbo(tmp_path):
    torch.manual_seed(0)
    model = VAE(VAEConfig(latent_dim=3, encoder_hidden=(16,), decoder_hidden=(16,)))
    (tmp_path / "models" / "run").mkdir(parents=True)
    models.save(model, tmp_path / "models" / "run" / "best.pt")
    config = split.TargetsConfig(run_dir="models", decoders=("run/best.pt",), images=split.SplitImages(reported=10, selection=10, targets=60),
                                 qstar=QStarConfig(max_steps=300, num_samples=4), chunk=25, workers=1)  # fmt: skip
    found = split.targets(config, "run/best.pt", tmp_path)
    assert torch.equal(found["indices"], config.images.indices(50000)["targets"])
    assert found["loc"].shape == found["log_scale"].shape == (60, 3) and found["converged"].shape == (60,)
    assert (found["decoder"], found["binarization"], found["split_seed"]) == ("run/best.pt", "static", 0)
    assert len(list((tmp_path / config.parts_dir).glob("run.best_targets*"))) == 3, "one part per chunk of 25"
    x = data.binarize(data.load("train").x[found["indices"]], "static")
    torch.manual_seed(1)
    with torch.no_grad():
        ours = elbo(model, x, num_samples=500, q=model.family.distribution({k: found[k] for k in ("loc", "log_scale")})).value
        encoder = elbo(model, x, num_samples=500).value
    assert float((ours - encoder).mean()) > 0.05, "q* beats the encoder it starts from"

    kept = {p: p.stat().st_mtime_ns for p in (tmp_path / config.parts_dir).iterdir()}
    again = split.targets(config, "run/best.pt", tmp_path)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / config.parts_dir).iterdir()} == kept, "read, not computed again"
    assert all(torch.equal(found[k], again[k]) for k in ("indices", "loc", "log_scale", "converged"))
