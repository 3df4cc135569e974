"""The width study with the decoder fixed: the pilot's one-sided test, the encoders it may use (fresh,
on the decoder, past the schedule, one schedule), gaps from the split's q* with the split's random
numbers, intervals over seeds and images, Fieller's ratio, and the schedule check."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from amortgap import campaign, stats
from amortgap.stats import crossed_interval
from amortgap.study import encoder_width

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests/fixtures/encoder_width/params.yaml"
DECODER = "diagonal_cremer_s0/best.pt"
STUDY = ["diagonal_enc4_on_diagonal_cremer_s0.best_encoder_cremer_s0", "diagonal_enc16_on_diagonal_cremer_s0.best_encoder_cremer_s0",
         "diagonal_enc64_on_diagonal_cremer_s0.best_encoder_cremer_s0", "diagonal_enc64_on_diagonal_cremer_s0.best_encoder_cremer_s1"]


def test_the_pilot_passes_an_encoder_as_good_as_the_joint_one_and_fails_one_a_nat_worse():
    rng = np.random.default_rng(0)
    joint = -100 + rng.normal(size=40)
    same = encoder_width.pilot(joint, joint)
    assert same["difference"] == 0 and same["difference_se"] == 0 and same["passes"]
    worse = encoder_width.pilot(joint - 1 + 0.1 * rng.normal(size=40), joint)
    assert worse["difference"] < -encoder_width.PILOT_MARGIN and not worse["passes"]
    t = stats.t_quantile(0.95, 39)  # one-sided, 40 images
    assert worse["lower_bound"] == pytest.approx(worse["difference"] - t * worse["difference_se"])
    close = encoder_width.pilot(joint - 0.1 + 0.01 * rng.normal(size=40), joint)
    assert close["passes"] and close["lower_bound"] > -encoder_width.PILOT_MARGIN
    with pytest.raises(ValueError, match="pairs two ELBOs per image"):
        encoder_width.pilot(joint, joint[:-1])


def test_the_study_takes_fresh_encoders_on_its_decoder_past_their_schedule(tmp_path):
    config = campaign.load_config(FIXTURE)
    found = encoder_width.encoders(config, DECODER, STUDY, ROOT)
    assert list(found.width) == [4, 16, 64, 64] and list(found.seed) == [0, 0, 0, 1]
    assert list(found.epochs) == [13] * 4 and list(found.longer) == [26, 13, 26, 13]
    assert all(path.name == "best.pt" and path.exists() for path in found.weights)
    with pytest.raises(ValueError, match="not a campaign run of a fresh encoder on diagonal_cremer_s0/train"):
        encoder_width.encoders(config, "diagonal_cremer_s0/train.snapshots/e40.pt", STUDY, ROOT)
    with pytest.raises(ValueError, match="not a campaign run of a fresh encoder"):
        encoder_width.encoders(config, DECODER, ["diagonal_cremer_s0"], ROOT)
    pilots = ["diagonal_enc32_on_diagonal_cremer_s0.best_refit_s0", "diagonal_enc32_on_diagonal_cremer_s0.best_encoder_cremer_s0"]
    with pytest.raises(ValueError, match="share one schedule"):
        encoder_width.encoders(config, DECODER, pilots, ROOT)
    assert list(encoder_width.encoders(config, DECODER, pilots, ROOT, one_schedule=False).protocol) == ["refit", "encoder_cremer"]
    # a run short of its schedule's end has no final best.pt yet
    models = tmp_path / config.model_dir
    shutil.copytree(ROOT / config.model_dir / STUDY[1], models / STUDY[1])
    record = models / STUDY[1] / "run.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "status": "paused", "epoch": 12}))
    with pytest.raises(ValueError, match="not reached its schedule's end yet"):
        encoder_width.encoders(config, DECODER, STUDY[1:2], tmp_path)


def synthetic_rows(rng: np.random.Generator, n: int = 50) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-image ELBOs of widths 8 (seeds 0-2), 32 (seeds 0 and 2) and 128 (seeds 0-1) on the same
    training and test images, and the split's rows: q* 2 nats above the widest encoder, q_joint
    between."""
    base = {split: -100 + rng.normal(size=n) for split in ("train", "test")}
    split_rows = pd.concat([pd.DataFrame({"decoder": "best.pt", "split": split, "image": np.arange(n),
                                          "qstar_elbo": base[split] + 2, "joint_elbo": base[split] + 1}) for split in base])  # fmt: skip
    frames = []
    for width, seeds, shortfall in ((8, (0, 1, 2), 6.0), (32, (0, 2), 2.0), (128, (0, 1), 0.0)):
        for seed in seeds:
            for split in base:
                frames.append(pd.DataFrame({"run": f"w{width}_s{seed}", "width": width, "seed": seed, "split": split,
                                            "image": np.arange(n), "label": np.arange(n) % 10,
                                            "elbo": base[split] - shortfall + 0.2 * rng.normal() + 0.3 * rng.normal(size=n)}))  # fmt: skip
    return pd.concat(frames, ignore_index=True), split_rows


def test_a_gap_is_the_splits_qstar_minus_the_encoders_elbo_and_needs_the_splits_images():
    elbos, split_rows = synthetic_rows(np.random.default_rng(1))
    rows = encoder_width.gap_rows(elbos, split_rows, "best.pt")
    np.testing.assert_allclose(rows.amortization_gap, rows.qstar_elbo - rows.elbo)
    assert len(rows) == len(elbos)
    with pytest.raises(ValueError, match="no q\\* of decoder best.pt on 2 of these images"):
        encoder_width.gap_rows(elbos, split_rows[split_rows.image != 7], "best.pt")
    with pytest.raises(ValueError, match="no q\\* of decoder e300.pt"):
        encoder_width.gap_rows(elbos, split_rows, "e300.pt")


def test_the_joint_encoders_elbo_must_be_the_splits_to_the_last_digits():
    _, split_rows = synthetic_rows(np.random.default_rng(2))
    joint = split_rows[["split", "image"]].assign(elbo=split_rows.joint_elbo + 1e-6)
    encoder_width.same_draws(joint, split_rows, "best.pt")
    with pytest.raises(ValueError, match="differs from the split's by 0.0"):
        encoder_width.same_draws(joint.assign(elbo=joint.elbo + 0.02), split_rows, "best.pt")
    with pytest.raises(ValueError, match="differs from the split's by nan"):
        encoder_width.same_draws(joint.assign(image=joint.image + 1000), split_rows, "best.pt")


def test_each_widths_interval_is_over_its_seeds_and_images_and_each_step_over_their_common_seeds():
    elbos, split_rows = synthetic_rows(np.random.default_rng(3))
    rows = encoder_width.gap_rows(elbos, split_rows, "best.pt")
    cells = encoder_width.summary(rows).set_index(["split", "width"])
    train8 = rows[(rows.split == "train") & (rows.width == 8)]
    crossed = crossed_interval(stats.by_seed_and_image(train8, "amortization_gap"))
    assert cells.loc[("train", 8), "high"] == pytest.approx(crossed.high) and cells.loc[("train", 8), "seeds"] == 3
    assert cells.loc[("train", 8), "median"] == pytest.approx(train8.amortization_gap.median())
    assert cells.loc[("train", 8), "q10"] < cells.loc[("train", 8), "median"] < cells.loc[("train", 8), "q90"]
    steps = encoder_width.differences(rows).set_index(["split", "narrow", "wide"])
    assert steps.loc[("train", 8, 32), "seeds"] == 2 and steps.loc[("train", 32, 128), "seeds"] == 1
    assert steps.loc[("train", 8, 32), "mean"] == pytest.approx(4.0, abs=0.5)
    a, b = encoder_width.paired(rows[rows.split == "test"], 8, 128)
    assert a.shape == b.shape == (2, 50)
    assert crossed_interval(a - b).low > 0


def test_fieller_gives_the_ratios_whose_difference_interval_covers_zero():
    rng = np.random.default_rng(4)
    wide = 2 + rng.normal(size=(3, 200)) * 0.5 + rng.normal(size=(3, 1)) * 0.1
    narrow = 3 * wide + rng.normal(size=(3, 200)) * 0.5
    r = encoder_width.ratio(narrow, wide)
    assert r.mean == pytest.approx(narrow.mean() / wide.mean())
    assert r.low < r.mean < r.high and 2.5 < r.low and r.high < 3.5
    for bound, inside in ((r.low, r.low + 1e-3), (r.high, r.high - 1e-3)):
        at = crossed_interval(narrow - inside * wide)
        assert at.low <= 0 <= at.high  # just inside: covers 0
        outside = crossed_interval(narrow - (2 * bound - inside) * wide)
        assert not outside.low <= 0 <= outside.high  # just outside: does not
    unresolved = encoder_width.ratio(narrow, rng.normal(size=(3, 200)) + 0.01)
    assert np.isinf(unresolved.low) or np.isinf(unresolved.high)


def test_the_schedule_suffices_only_when_every_longer_run_gains_less_than_half_the_smallest_claim(tmp_path):
    config = campaign.load_config(FIXTURE)
    found = encoder_width.encoders(config, DECODER, STUDY, ROOT)
    checks = encoder_width.schedule_check(config, found, ROOT)
    assert list(checks.width) == [4, 64] and (checks.trained == 26).all()
    history = pd.read_csv(config.run_dir(STUDY[0], ROOT) / "history.csv")
    assert checks.gain.iloc[0] == pytest.approx(history.valid_elbo.max() - history[history.epoch <= 13].valid_elbo.max())
    with pytest.raises(ValueError, match="a schedule twice as long, 26"):
        encoder_width.schedule_check(config, found.assign(longer=found.longer.replace(26, 20)), ROOT)
    steps = pd.DataFrame({"mean": [5.0, -0.1, 1.5, 0.2], "low": [4.0, -0.3, 0.5, 0.1], "high": [6.0, 0.1, 2.5, 0.3],
                          "seeds": [3, 3, 3, 1]})  # fmt: skip
    claim = encoder_width.smallest_claim(steps)
    assert claim == 1.5  # the unresolved -0.1 is no claim, nor the 0.2 resolved over one seed's images only
    small = checks.assign(gain=[0.5, 0.7])
    assert encoder_width.schedule_verdict(small, claim) == ("the schedule suffices: the longer runs (widths 4 and 64) gain at most "
                                                            "0.70 nats, less than half the smallest width difference claimed, 1.50 nats")
    assert encoder_width.schedule_verdict(small.assign(gain=[0.5, 0.75]), claim).startswith("the schedule does not suffice")
    assert encoder_width.schedule_verdict(small.assign(gain=[None, None]), claim) == "no encoder has been trained to twice the schedule"
    assert "test no claim" in encoder_width.schedule_verdict(small, encoder_width.smallest_claim(steps.iloc[[1]]))


def test_the_pilots_are_of_the_joint_width_and_one_tries_the_studys_schedule():
    elbos, split_rows = synthetic_rows(np.random.default_rng(5))
    rows = encoder_width.gap_rows(elbos, split_rows, "best.pt")
    tried = pd.DataFrame({"run": ["w32_s0"], "protocol": ["encoder_cremer"], "epochs": [3280], "width": [32]})
    table = encoder_width.pilot_table(tried, rows, 32, "encoder_cremer")
    assert table.study.all() and table.difference.iloc[0] == pytest.approx(-3.0, abs=0.3) and not table.passes.any()
    with pytest.raises(ValueError, match="the joint encoder's width 200, not \\[32\\]"):
        encoder_width.pilot_table(tried, rows, 200, "encoder_cremer")
    with pytest.raises(ValueError, match="no pilot was trained under the study's schedule encoder"):
        encoder_width.pilot_table(tried, rows, 32, "encoder")


def test_the_papers_numbers_compare_the_end_widths_on_their_common_seeds_and_word_a_trend_only_over_seeds():
    elbos, split_rows = synthetic_rows(np.random.default_rng(6))
    rows = encoder_width.gap_rows(elbos, split_rows, "best.pt")
    pilot = pd.DataFrame({"epochs": [1093, 3280], "study": [False, True], "difference": [-0.65, -0.19], "margin": 0.3,
                          "difference_se": [0.07, 0.06], "lower_bound": [-0.77, -0.29], "passes": [False, True]})  # fmt: skip
    schedule = pd.DataFrame({"width": [8], "seed": [0], "gain": [0.1]})
    numbers = encoder_width.numbers(rows, pilot, schedule)
    assert numbers["CapacityNarrowWidth"] == 8 and numbers["CapacityWideWidth"] == 128 and numbers["CapacityWidthList"] == "8, 32 and 128"
    train = rows[rows.split == "train"]
    on_common = train[train.seed.isin([0, 1])]  # width 8's seed 2 has no width-128 partner
    narrow = on_common[on_common.width == 8].amortization_gap.mean()
    wide = on_common[on_common.width == 128].amortization_gap.mean()
    assert numbers["CapacityTrainNarrow"].value == pytest.approx(narrow) and numbers["CapacityTrainWide"].value == pytest.approx(wide)
    assert numbers["CapacityTrainDifference"].value == pytest.approx(narrow - wide), "the printed difference is the printed means'"
    assert numbers["CapacityTrainRatio"].value == pytest.approx(narrow / wide)
    assert numbers["CapacityComparedSeeds"] == "two seeds" and numbers["CapacityIntervalOver"] == "seeds and images"
    assert numbers["CapacityTrainVerdict"] == "the narrow encoder's gap is the larger, at 95\\% over seeds and images"
    assert encoder_width.width_verdict(stats.Interval(1.0, 0.5, 1.5), 1).endswith("leaves out the spread between training seeds")
    assert encoder_width.width_verdict(stats.Interval(0.2, -0.5, 0.9), 3) == "unresolved at 95\\%"
    assert numbers["CapacityTrends"].startswith("The widths share only one seed"), "seed 0 is the only one every width has"
    width32_s1 = rows[(rows.width == 32) & (rows.seed == 2)].assign(seed=1)  # now every width has seeds 0 and 1
    assert encoder_width.numbers(pd.concat([rows, width32_s1]), pilot, schedule)["CapacityTrends"] == (
        "Over all the widths, on training images the gap falls; on test images it falls.")
    assert numbers["CapacityPilotFirstVerdict"] == "fails" and numbers["CapacityPilotSecondVerdict"] == "passes"
    assert numbers["CapacityScheduleVerdict"].startswith("the schedule suffices")
    with pytest.raises(ValueError, match="compares widths"):
        encoder_width.numbers(rows[rows.width == 8], pilot, schedule)


def test_no_width_is_reported_while_the_studys_pilot_fails_and_one_seed_words_no_trend():
    elbos, split_rows = synthetic_rows(np.random.default_rng(7))
    rows = encoder_width.gap_rows(elbos, split_rows, "best.pt")
    pilot = pd.DataFrame({"epochs": [3280], "study": [True], "difference": [-0.65], "margin": 0.3, "difference_se": [0.07],
                          "lower_bound": [-0.77], "passes": [False]})  # fmt: skip
    schedule = pd.DataFrame({"width": [8], "seed": [0], "gain": [None]})
    with pytest.raises(ValueError, match="pilot under the study's schedule fails"):
        encoder_width.numbers(rows, pilot, schedule)
    one_seed = rows[rows.seed == 0]
    numbers = encoder_width.numbers(one_seed, pilot.assign(passes=True), schedule)
    assert numbers["CapacityTrends"].startswith("The widths share only one seed") and numbers["CapacityIntervalOver"] == "images only (one seed)"
    assert numbers["CapacityScheduleVerdict"] == "no encoder has been trained to twice the schedule"
    steps = encoder_width.differences(one_seed)
    assert steps.low.gt(0).any() and encoder_width.smallest_claim(steps) is None, "one seed's differences are over images only: no claim"


def test_the_width_stage_depends_on_every_encoder_its_section_names():
    section = yaml.safe_load((ROOT / "params.yaml").read_text())["encoder_width"]
    deps = set(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["encoder_width"]["deps"])
    runs = Path(section["run_dir"])
    wanted = {str(runs / section["decoder"]), section["split_rows_path"]}
    wanted |= {str(runs / name / file) for name in section["encoders"] + section["pilots"] for file in ("best.pt", "run.json", "history.csv")}
    assert wanted <= deps, f"dvc.yaml's encoder_width stage lacks {sorted(wanted - deps)}"
    assert not {d for d in deps if d.startswith("models/")} - wanted, "and lists no model it does not read"
