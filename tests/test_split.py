"""The split of the amortization gap: its parts add up per image, q_best is chosen on its own images
with q_joint winning ties, the encoders' ELBOs share their noise and L[q*] is the gap table's, the
candidates are the finished campaign runs of the joint encoder's architecture on each decoder, and
the generalisation's interval is Welch's."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from amortgap import campaign, data, split_rows
from amortgap.bounds import elbo
from amortgap.families import DiagonalGaussian
from amortgap.gaps import DecomposeConfig, optimal_elbo
from amortgap.models import VAE, VAEConfig
from amortgap.models import save as save_model
from amortgap.qstar import QStarConfig
from amortgap.rng import seeded
from amortgap.stats import crossed_interval, t_quantile
from amortgap.study import split
from amortgap.study.split_targets import SplitImages

ROOT = Path(__file__).resolve().parents[1]

CONFIG = VAEConfig(data_dim=12, latent_dim=3, encoder_hidden=(16,), decoder_hidden=(8,))


def test_the_parts_add_up_to_the_amortization_gap_per_image():
    rng = np.random.default_rng(0)
    qstar = pd.Series(-90 + rng.normal(size=20))
    elbos = pd.DataFrame({"joint": qstar - 3 - rng.random(20), "distilled": qstar - 2 - rng.random(20)})
    rows = split.parts_per_image(qstar, elbos, best="distilled")
    np.testing.assert_allclose(rows.expressivity + rows.optimisation, rows.amortization_gap, atol=1e-12)
    np.testing.assert_allclose(rows.amortization_gap, qstar - elbos.joint)
    np.testing.assert_allclose(rows.optimisation, elbos.distilled - elbos.joint)


def test_the_best_candidate_must_beat_the_joint_encoder_strictly():
    selection = pd.DataFrame({"joint": [-100.0, -102.0], "fresh": [-101.0, -101.0], "distilled": [-99.0, -104.0]})
    assert split.choose_best(selection) == "joint", "a tie keeps the joint encoder"
    selection.loc[0, "fresh"] = -100.9
    assert split.choose_best(selection) == "fresh"


def test_every_candidates_elbo_is_drawn_with_the_same_noise_and_on_the_same_decoder():
    torch.manual_seed(0)
    joint = VAE(CONFIG)
    other = joint.with_frozen_decoder(CONFIG)
    x = torch.bernoulli(torch.full((9, CONFIG.data_dim), 0.3), generator=torch.Generator().manual_seed(1))
    table = split_rows.candidate_elbos({"joint": joint, "again": joint, "other": other}, x, samples=50, seed=7)
    assert list(table.columns) == ["joint", "again", "other"] and len(table) == 9
    np.testing.assert_array_equal(table.joint, table.again)
    with seeded(7):
        np.testing.assert_array_equal(table.other, elbo(other, x, num_samples=50).value.double().numpy())
    split_rows.shares_decoder(joint, {"other": other})
    with pytest.raises(ValueError, match="not trained on this decoder"):
        split_rows.shares_decoder(joint, {"stranger": VAE(CONFIG)})


def test_the_generalisation_is_welchs_difference_and_its_parts_add_up():
    rng = np.random.default_rng(1)
    rows = pd.concat([pd.DataFrame({"decoder": "e300", "split": s, "expressivity": rng.normal(m, sd, n),
                                    "optimisation": rng.normal(0.5, 0.2, n)})
                      for s, m, sd, n in (("train", 2.0, 1.0, 40), ("test", 2.6, 2.0, 25))], ignore_index=True)  # fmt: skip
    rows["amortization_gap"] = rows.expressivity + rows.optimisation
    found = split.generalisation(rows).set_index("quantity")
    a, b = rows[rows.split == "test"].expressivity.to_numpy(), rows[rows.split == "train"].expressivity.to_numpy()
    va, vb = a.var(ddof=1) / 25, b.var(ddof=1) / 40
    df = (va + vb) ** 2 / (va**2 / 24 + vb**2 / 39)
    half = t_quantile(0.975, int(df)) * math.sqrt(va + vb)
    assert found.loc["expressivity", "mean"] == pytest.approx(a.mean() - b.mean())
    assert found.loc["expressivity", "high"] - found.loc["expressivity", "mean"] == pytest.approx(half)
    assert found.loc["amortization_gap", "mean"] == pytest.approx(found.loc["expressivity", "mean"] + found.loc["optimisation", "mean"])


def test_the_summary_gives_each_parts_interval_median_and_quantiles():
    rows = pd.DataFrame({"decoder": "best", "split": "train", "expressivity": np.arange(10.0), "optimisation": np.ones(10),
                         "amortization_gap": np.arange(10.0) + 1})  # fmt: skip
    found = split.summary(rows, ["decoder", "split"]).set_index("quantity")
    assert found.loc["expressivity", "mean"] == pytest.approx(4.5) and found.loc["expressivity", "median"] == pytest.approx(4.5)
    assert found.loc["expressivity", "q10"] == pytest.approx(0.9) and found.loc["expressivity", "images"] == 10
    half = t_quantile(0.975, 9) * np.arange(10.0).std(ddof=1) / math.sqrt(10)
    assert found.loc["expressivity", "high"] == pytest.approx(4.5 + half)


def test_a_decoders_rows_hold_every_candidates_elbo_and_the_best_qstar_of_its_starts(tmp_path):
    torch.manual_seed(0)
    joint = VAE(CONFIG)
    other = joint.with_frozen_decoder(CONFIG)
    save_model(joint, tmp_path / "joint.pt")
    save_model(other, tmp_path / "other.pt")
    x = torch.bernoulli(torch.full((6, CONFIG.data_dim), 0.3), generator=torch.Generator().manual_seed(2))
    config = DecomposeConfig(elbo_samples=40, iwae_samples=0, qstar=QStarConfig(max_steps=30), seed=3)
    candidates = {"other": tmp_path / "other.pt"}
    rows = split_rows.evaluate(tmp_path / "joint.pt", candidates, x, config, qstar_from=("joint", "other"))
    assert list(rows.columns) == ["elbo_joint", "elbo_other", "qstar_elbo", "qstar_elbo_se", "qstar_steps", "qstar_converged",
                                  "qstar_start"]  # fmt: skip
    np.testing.assert_array_equal(rows.elbo_other, split_rows.candidate_elbos({"other": other}, x, 40, 3).other)
    from_joint = optimal_elbo(joint, x, DiagonalGaussian(), config).elbo_optimal.to_numpy()
    with torch.no_grad():
        from_other = optimal_elbo(joint, x, DiagonalGaussian(), config, init=DiagonalGaussian().params_from(other.encode(x)))
    np.testing.assert_array_equal(rows.qstar_elbo, np.maximum(from_joint, from_other.elbo_optimal.to_numpy()))
    np.testing.assert_array_equal(rows.qstar_start == "joint", from_joint >= from_other.elbo_optimal.to_numpy())
    assert {"joint", "other"} == set(rows.qstar_start), "30 steps from two random encoders: each start wins somewhere"
    alone = split_rows.evaluate(tmp_path / "joint.pt", candidates, x, config, qstar_from=("joint",))
    np.testing.assert_array_equal(alone.qstar_elbo, from_joint)
    selection = split_rows.evaluate(tmp_path / "joint.pt", candidates, x, config)
    assert list(selection.columns) == ["elbo_joint", "elbo_other"]
    save_model(VAE(CONFIG), tmp_path / "stranger.pt")
    with pytest.raises(ValueError, match="stranger was not trained on this decoder"):
        split_rows.evaluate(tmp_path / "joint.pt", {"stranger": tmp_path / "stranger.pt"}, x, config)
    with pytest.raises(ValueError, match="cannot start from"):
        split_rows.evaluate(tmp_path / "joint.pt", candidates, x, config, qstar_from=("joint", "nobody"))
    with pytest.raises(ValueError, match="other names"):
        split_rows.evaluate(tmp_path / "joint.pt", {"joint": tmp_path / "other.pt"}, x, config)


def fixture_campaign(tmp_path: Path) -> tuple[campaign.CampaignConfig, Path]:
    """The test-scale split's campaign, its runs copied under ``tmp_path`` (to edit their records)."""
    config = campaign.load_config(ROOT / "tests/fixtures/split/params.yaml")
    shutil.copytree(ROOT / config.model_dir, tmp_path / config.model_dir)
    return config, tmp_path


def test_the_candidates_are_the_finished_runs_of_the_joint_width_on_each_decoder(tmp_path):
    config, root = fixture_campaign(tmp_path)
    decoders = ["train.snapshots/e1.pt", "best.pt", "train.snapshots/e40.pt"]
    found = split.candidates_of(config, "diagonal_cremer_s0", decoders, config.runs, root)
    assert {d: sorted(c) for d, c in found.items()} == {"train.snapshots/e1.pt": ["distilled", "refit"],
                                                        "best.pt": ["distilled", "fresh_refit_s0", "refit"],
                                                        "train.snapshots/e40.pt": ["distilled", "refit"]}  # fmt: skip
    assert found["best.pt"]["refit"] == root / config.model_dir / "diagonal_enc32_joint_on_diagonal_cremer_s0.best_refit_s0/best.pt"
    assert split.refit_epochs(config, config.runs) == 10
    with pytest.raises(ValueError, match="not one of diagonal_cremer_s0's decoders"):
        split.candidates_of(config, "diagonal_cremer_s0", ["best.pt"], config.runs, root)
    with pytest.raises(ValueError, match="not a campaign run on a frozen decoder"):
        split.candidates_of(config, "diagonal_cremer_s0", decoders, ["diagonal_cremer_s0"], root)
    on_best = [run for run in config.runs if ".best_" in run]
    with pytest.raises(ValueError, match="no candidate encoder on"):
        split.candidates_of(config, "diagonal_cremer_s0", decoders, on_best, root)
    record = root / config.model_dir / "diagonal_enc32_joint_on_diagonal_cremer_s0.best_refit_s0/run.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "status": "paused", "epoch": 4}))
    with pytest.raises(ValueError, match="not trained to its end yet"):
        split.candidates_of(config, "diagonal_cremer_s0", decoders, config.runs, root)
    section = yaml.safe_load((ROOT / "tests/fixtures/split/params.yaml").read_text())["campaign"]
    wider = campaign.CampaignConfig.from_section({**section, "architecture": {"latent_dim": 4, "encoder_hidden": [64],
                                                                              "decoder_hidden": [32], "flow_length": 2}})
    with pytest.raises(ValueError, match="not of diagonal_cremer_s0's architecture"):
        split.candidates_of(wider, "diagonal_cremer_s0", ["best.pt"], ["diagonal_enc32_on_diagonal_cremer_s0.best_refit_s0"], root)


def test_the_named_decoders_are_the_first_snapshot_and_the_early_stopped_one():
    assert split.roles({"best.pt": 3166, "train.snapshots/e1000.pt": 1000, "train.snapshots/e300.pt": 300}) == {
        "first": "train.snapshots/e300.pt", "stopped": "best.pt"}
    with pytest.raises(ValueError, match="needs best.pt and a snapshot"):
        split.roles({"best.pt": 3166})
    with pytest.raises(ValueError, match="must come before"):
        split.roles({"best.pt": 3166, "train.snapshots/e3280.pt": 3280})


def test_the_roles_images_are_the_gap_tables_and_carry_their_labels():
    roles = split.images_by_role(SplitImages(reported=7, selection=5, targets=3))
    test = data.load("test")
    np.testing.assert_array_equal(roles["test"].rows, data.random_subset(len(test.x), 7, 0).numpy())
    np.testing.assert_array_equal(roles["test"].labels, test.labels[roles["test"].rows].numpy())
    np.testing.assert_array_equal(roles["test"].x, data.binarize(test.x, "static")[roles["test"].rows])
    assert len(roles["selection"].rows) == 5 and not set(roles["selection"].rows) & set(roles["train"].rows)


def synthetic_elbos(rng: np.random.Generator, n: int = 30) -> pd.DataFrame:
    """Per-image ELBOs of two decoders on the same selection, training and test images, rows
    shuffled: ``refit`` beats ``joint`` by about a nat on ``e300`` and loses to it on
    ``best.pt``, where a ``fresh`` candidate exists too (NaN on e300)."""
    frames = []
    images = {role: (rng.permutation(1000)[:n], rng.integers(0, 10, n)) for role in ("selection", "train", "test")}
    for decoder, epoch, gain in (("train.snapshots/e300.pt", 300, 1.0), ("best.pt", 3166, -0.5)):
        for role, (image, label) in images.items():
            joint = -100 + rng.normal(size=n)
            frame = pd.DataFrame({"decoder": decoder, "epoch": epoch, "split": role, "image": image, "label": label, "elbo_joint": joint,
                                  "elbo_refit": joint + gain + 0.3 * rng.normal(size=n),
                                  "elbo_fresh": joint - 5 if decoder == "best.pt" else np.nan})  # fmt: skip
            if role != "selection":
                frame = frame.assign(qstar_elbo=joint + 3 + rng.random(n), qstar_elbo_se=0.1, qstar_converged=True,
                                     qstar_start="joint")  # fmt: skip
            frames.append(frame)
    return pd.concat(frames, ignore_index=True).sample(frac=1.0, random_state=0)


def chosen_split(elbos: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    epochs = {"train.snapshots/e300.pt": 300, "best.pt": 3166}
    selection = split.selection_table(elbos[elbos.split == "selection"], epochs)
    chosen = dict(zip(selection[selection.chosen].decoder, selection[selection.chosen].candidate))
    return selection, split.split_rows(elbos[elbos.split != "selection"], chosen)


def test_the_selection_chooses_by_mean_and_the_rows_split_with_the_chosen_encoder():
    elbos = synthetic_elbos(np.random.default_rng(3))
    selection, rows = chosen_split(elbos)
    assert dict(zip(selection[selection.chosen].decoder, selection[selection.chosen].candidate)) == {
        "train.snapshots/e300.pt": "refit", "best.pt": "joint"}
    assert set(selection[selection.decoder == "train.snapshots/e300.pt"].candidate) == {"joint", "refit"}, "no fresh there"
    assert "qstar_elbo_se" not in set(selection.candidate)
    refit = selection.set_index(["decoder", "candidate"]).loc[("train.snapshots/e300.pt", "refit")]
    paired = elbos[(elbos.split == "selection") & (elbos.decoder == "train.snapshots/e300.pt")]
    expected = crossed_interval((paired.elbo_refit - paired.elbo_joint).to_numpy()[None])
    assert refit.gain == pytest.approx(expected.mean) and refit.gain_low == pytest.approx(expected.low)
    merged = rows.merge(elbos, on=["decoder", "split", "image"], suffixes=("", "_source"))
    assert len(merged) == len(rows) == 120, "every reported row keeps its own image"
    np.testing.assert_array_equal(merged.label, merged.label_source)
    e300 = merged[merged.decoder == "train.snapshots/e300.pt"]
    np.testing.assert_allclose(e300.optimisation, e300.elbo_refit - e300.elbo_joint)
    np.testing.assert_allclose(merged.expressivity, merged.qstar_elbo_source - np.where(
        merged.decoder == "best.pt", merged.elbo_joint, merged.elbo_refit))  # fmt: skip
    np.testing.assert_allclose(rows.expressivity + rows.optimisation, rows.amortization_gap, atol=1e-12)
    assert (rows[rows.decoder == "best.pt"].optimisation == 0).all(), "q_best is q_joint there"
    partly = elbos[elbos.split == "selection"].copy()
    partly.loc[partly.index[0], "elbo_refit"] = np.nan
    with pytest.raises(ValueError, match="lack an ELBO on some images"):
        split.selection_table(partly, {"train.snapshots/e300.pt": 300, "best.pt": 3166})


def test_dominance_pairs_the_parts_and_counts_the_images_where_optimisation_leads():
    rows = pd.DataFrame({"decoder": "best.pt", "epoch": 3166, "split": "train", "image": range(4),
                         "expressivity": [1.0, 2.0, -0.5, 3.0], "optimisation": [2.0, 1.0, 1.5, 0.0]})  # fmt: skip
    found = split.dominance(rows).iloc[0]
    assert found["mean"] == pytest.approx(-0.25) and found.share == pytest.approx(0.5) and found.below_zero == 1
    lead = crossed_interval(np.array([[1.0, -1.0, 2.0, -3.0]]))
    assert found.low == pytest.approx(lead.low) and found.high == pytest.approx(lead.high)
    assert split.dominant(lead) == "neither part is resolved as the larger"
    assert split.dominant(crossed_interval(np.array([[1.0, 1.2, 0.9]]))) == "the optimisation part is the larger"


def test_the_papers_numbers_name_each_decoder_and_read_back_their_parts():
    selection, rows = chosen_split(synthetic_elbos(np.random.default_rng(4)))
    numbers = split.numbers(rows, selection)
    assert numbers["SplitFirstEpoch"] == 300 and numbers["SplitStoppedEpoch"] == 3166
    assert numbers["SplitFirstBest"] == "refit" and numbers["SplitStoppedBest"] == "joint"
    assert numbers["SplitDecoderList"] == "epoch 300 and early-stopped (epoch 3166)"
    train = rows[(rows.decoder == "best.pt") & (rows.split == "train")]
    assert numbers["SplitStoppedTrainExpr"].value == pytest.approx(train.expressivity.mean())
    assert numbers["SplitStoppedTrainDominant"] == "the expressivity part is the larger", "q_best is q_joint: optimisation is 0"
    first = rows[(rows.decoder == "train.snapshots/e300.pt") & (rows.split == "train")]
    lead = crossed_interval((first.optimisation - first.expressivity).to_numpy()[None])
    assert numbers["SplitFirstTrainLead"].value == pytest.approx(lead.mean)
    assert numbers["SplitFirstTrainLeadCi"] == f"[{lead.low:.2f}, {lead.high:.2f}]"
    assert numbers["SplitFirstTrainOptShare"].value == pytest.approx(100 * (first.optimisation > first.expressivity).mean())
    assert numbers["SplitStoppedTestExprBelowZero"] == int((rows[(rows.decoder == "best.pt") & (rows.split == "test")].expressivity < 0).sum())
    assert numbers["SplitImages"] == 30 and numbers["SplitSelection"] == 30 and numbers["SplitRows"] == 120
    assert numbers["SplitQstarUnconverged"] == 0 and "SplitFirstTestExpr" not in numbers, "the prose names only these"
    moved = split.change(rows, "optimisation", "train", "train.snapshots/e300.pt", "best.pt")
    assert numbers["SplitChangeTrainOpt"].value == pytest.approx(moved.mean) and moved.mean < -1, "refit led on e300, not on best.pt"
    general = split.generalisation(rows[rows.decoder == "best.pt"]).set_index("quantity")
    assert numbers["SplitGeneralExpr"].value == pytest.approx(general.loc["expressivity", "mean"])
    gain = selection.set_index(["decoder", "candidate"]).loc[("train.snapshots/e300.pt", "refit")]
    assert numbers["SplitFirstGain"].value == pytest.approx(gain.gain) and numbers["SplitStoppedGain"].value == 0
    assert "SplitFirstDistilledFromRefit" not in numbers and numbers["SplitDistilledVerdict"].startswith("ends where")
    table = split.table(rows)
    assert list(table.index) == ["epoch 300", "epoch 300", "early-stopped (epoch 3166)", "early-stopped (epoch 3166)"]
    cell = split.summary(train, ["decoder"]).set_index("quantity").loc["expressivity"]
    assert table.iloc[2]["expressivity"] == f"{cell['mean']:.2f} $\\pm$ {cell.high - cell['mean']:.2f}"
    assert table.iloc[2]["images"] == "training" and table.iloc[0]["$q_{\\mathrm{best}}$"] == "refit"


def test_the_gaps_by_class_are_each_classs_own_images_and_the_table_keeps_the_labels_order():
    rows = pd.DataFrame({"decoder": "best.pt", "split": ["train"] * 4 + ["test"], "image": range(5), "label": [9, 0, 9, 9, 3],
                         "amortization_gap": [4.0, 1.0, 6.0, 5.0, 2.0], "expressivity": [3.0, 0.5, 4.0, 4.0, 1.0],
                         "optimisation": [1.0, 0.5, 2.0, 1.0, 1.0]})  # fmt: skip
    other = rows.assign(decoder="train.snapshots/e300.pt", amortization_gap=100.0)
    cells = split.by_class(pd.concat([rows, other]), "best.pt").set_index(["split", "item"])
    boots = cells.loc[("train", "ankle boot")]
    assert boots.images == 3 and boots["mean"] == pytest.approx(5.0) and boots.expressivity == pytest.approx(11 / 3)
    assert boots.high == pytest.approx(crossed_interval(np.array([[4.0, 6.0, 5.0]])).high)
    assert np.isnan(cells.loc[("train", "T-shirt/top")].high), "one image: no interval"
    table = split.class_table(rows, "best.pt")
    assert list(table.index) == list(split.CLASSES)
    assert table.loc["ankle boot", "training: images"] == "3" and table.loc["ankle boot", "test: gap"] == "-"
    assert table.loc["dress", "test: E, O"] == "1.00, 1.00"
    selection, split_rows = chosen_split(synthetic_elbos(np.random.default_rng(4)))
    numbers = split.numbers(split_rows, selection)
    train = split_rows[(split_rows.decoder == "best.pt") & (split_rows.split == "train")]
    means = train.groupby("label").amortization_gap.agg(["mean", "size"])
    means = means[means["size"] > 1]["mean"]  # a class of one image has no interval: not named
    assert numbers["SplitClassLargest"] == split.CLASSES[means.idxmax()] and numbers["SplitClassSmallest"] == split.CLASSES[means.idxmin()]
    assert numbers["SplitClassLargestGap"].value == pytest.approx(means.max())


def test_the_classes_differ_by_a_permutation_test_only_when_their_gaps_do():
    rng = np.random.default_rng(8)
    labels = np.repeat(np.arange(5), 40)
    alike = pd.DataFrame({"decoder": "best.pt", "split": "train", "label": labels, "amortization_gap": rng.normal(5, 1, 200)})
    apart = alike.assign(amortization_gap=alike.amortization_gap + labels)
    assert split.class_difference(apart, "best.pt", permutations=500) == pytest.approx(1 / 501), "no shuffling reaches it"
    assert split.class_difference(alike, "best.pt", permutations=500) > 0.05
    assert split.class_difference(alike, "best.pt", permutations=500) == split.class_difference(alike, "best.pt", permutations=500)
    with pytest.raises(ValueError, match="one class only"):
        split.class_difference(alike[alike.label == 0], "best.pt")


def test_a_shuffling_that_ties_the_observed_sum_counts_whatever_the_rounding():
    """Ten one-image classes: every shuffling gives the same sum of squares in exact arithmetic,
    only summed in another order. Each must count, so p is 1 on every CPU."""
    gaps = np.random.default_rng(3).normal(5, 2, 10) / 3
    singles = pd.DataFrame({"decoder": "best.pt", "split": "train", "label": np.arange(10), "amortization_gap": gaps})
    assert split.class_difference(singles, "best.pt", permutations=300) == 1.0


def test_the_worst_images_are_the_largest_gaps_shown_with_their_own_pixels():
    images = split.RoleImages(x=np.eye(784, dtype=np.float32)[:5], labels=np.array([0, 1, 2, 3, 4]), rows=np.array([40, 10, 30, 20, 50]))
    rows = pd.DataFrame({"image": [10, 20, 30, 40, 50], "label": [1, 3, 2, 0, 4], "amortization_gap": [1.0, 5.0, 3.0, 0.5, 2.0],
                         "expressivity": [0.5, 4.0, 1.0, 0.2, 1.5], "optimisation": [0.5, 1.0, 2.0, 0.3, 0.5]})  # fmt: skip
    fig = split.worst_images(rows, images, n=2)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["dress\ngap 5.0\nE 4.0, O 1.0", "pullover\ngap 3.0\nE 1.0, O 2.0"]
    shown = fig.axes[0].get_images()[0].get_array().ravel()
    assert shown.argmax() == 3, "image 20 is row 3 of the images: its pixel 3 is the lit one"


@pytest.mark.parametrize("offset, verdict", [(1e-4, "ends where"), (0.5, "ends apart")])
def test_the_distilled_candidate_is_said_to_end_where_the_refit_one_does_only_within_the_noise(offset, verdict):
    elbos = synthetic_elbos(np.random.default_rng(5))
    elbos["elbo_distilled"] = elbos.elbo_refit + offset
    selection, rows = chosen_split(elbos)
    numbers = split.numbers(rows, selection)
    assert numbers["SplitFirstDistilledFromRefit"].value == pytest.approx(offset)
    assert numbers["SplitStoppedDistilledFromRefit"].value == pytest.approx(offset)
    assert numbers["SplitDistilledVerdict"].startswith(verdict)


def test_the_split_stage_depends_on_every_decoder_and_candidate_its_section_names():
    section = yaml.safe_load((ROOT / "params.yaml").read_text())["split"]
    deps = set(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["split"]["deps"])
    run = Path(section["run_dir"]) / section["run"]
    wanted = {str(run / decoder) for decoder in section["decoders"]} | {str(run / "run.json")}
    wanted |= {str(Path(section["run_dir"]) / name / file) for name in section["candidates"] for file in ("best.pt", "run.json")}
    assert wanted <= deps, f"dvc.yaml's split stage lacks {sorted(wanted - deps)}"
    assert not {d for d in deps if d.startswith("models/")} - wanted, "and lists no model it does not read"
