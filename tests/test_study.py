"""The study modules' summaries and claims, on hand-made tables whose answers are known."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from amortgap import report
from amortgap.stats import by_seed_and_image, crossed_interval
from amortgap.study import certification, refinement, synthesis, width_sweep


@pytest.fixture
def joint() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [{"width": w, "seed": s, "image": i, "approximation_gap": 1 + rng.normal(), "amortization_gap": w / 8 + rng.normal(),
             "inference_gap": 2 + rng.normal(), "active_units": 10 + w // 16, "epochs": 30 + s, "stopped": "converged"}
            for w in (16, 64) for s in range(3) for i in (5, 9, 2, 7)]
    return pd.DataFrame(rows)


def test_by_seed_and_image_is_a_seed_by_image_matrix(joint):
    m = by_seed_and_image(joint[joint.width == 16], "amortization_gap")
    assert m.shape == (3, 4)
    assert m[1, 0] == joint[(joint.width == 16) & (joint.seed == 1) & (joint.image == 2)].amortization_gap.item()


def test_width_gaps_are_the_crossed_intervals_of_each_width_and_gap(joint):
    table = width_sweep.width_gaps(joint)
    assert len(table) == 2 * 3
    row = table[(table.width == 64) & (table.gap == "amortization gap")].iloc[0]
    expected = crossed_interval(by_seed_and_image(joint[joint.width == 64], "amortization_gap"))
    assert row["mean"] == pytest.approx(expected.mean) and row.ci == pytest.approx(expected.high - expected.mean)


def test_the_sweep_says_rises_where_the_gap_rises_far_beyond_its_noise(joint):
    """amortization_gap is w / 8 plus unit noise: 2 at width 16, 8 at width 64, 12 draws each."""
    numbers = width_sweep.numbers(joint, design(seed_differences=[1.0, 3.0]))
    assert numbers["JointAmortTrend"] == "rises"
    assert numbers["JointAmortNarrow"].value == pytest.approx(joint[joint.width == 16].amortization_gap.mean())
    assert (numbers["JointNarrowWidth"], numbers["JointWideWidth"], numbers["JointNumSeeds"]) == (16, 64, 3)
    assert numbers["JointUnitsWide"].value == 14


def design(seed_differences: list[float]) -> pd.DataFrame:
    """A frozen-decoder design: on every decoder, the wide encoder's gap minus the narrow one's is
    ``seed_differences[s]`` on every image of seed ``s``, the narrow encoder's gap 5."""
    rows = []
    for decoder, scale in (("reference", 1.0), ("joint_w16", 1.0), ("joint_w256", 2.0)):
        for s, difference in enumerate(seed_differences):
            for image in (3, 4, 8):
                rows += [{"decoder": decoder, "encoder_width": 16, "seed": s, "image": image, "amortization_gap": 5.0},
                         {"decoder": decoder, "encoder_width": 256, "seed": s, "image": image,
                          "amortization_gap": 5.0 + scale * difference}]
    return pd.DataFrame(rows)


def test_the_designs_paired_differences_and_their_ratio_are_the_known_ones(joint):
    numbers = width_sweep.numbers(joint, design(seed_differences=[1.0, 3.0]))
    assert numbers["DesignRefWideMinusNarrow"].value == pytest.approx(2.0)
    assert numbers["DesignRefSeedDifferences"] == "1.00 and 3.00"
    assert numbers["DesignWideJointSeedDifferences"] == "2.00 and 6.00"
    assert numbers["DesignPenaltyRatio"].value == pytest.approx(2.0)  # the width-256 decoder's difference over the width-16's
    assert (numbers["DesignNarrowDecoder"], numbers["DesignWideDecoder"], numbers["DesignSeeds"]) == (16, 256, 2)
    # two seeds: a t interval with one degree of freedom, wide enough to include zero here
    low, high = (float(b) for b in numbers["DesignRefWideMinusNarrowCi"][1:-1].split(", "))
    assert low < 0 < high


def frontier(encoder: list[float], prior: list[float], steps=(1, 10, 100)) -> pd.DataFrame:
    rows = [{"init": init, "steps": k, "mean": m, "low": m - 0.1, "high": m + 0.1, "se": 0.05}
            for init, means in (("encoder", encoder), ("prior", prior)) for k, m in zip(steps, means)]
    return pd.DataFrame(rows)


def test_frontier_seconds_joins_each_budget_with_its_mean_timing():
    frontier = pd.DataFrame({"init": ["encoder", "prior"], "steps": [10, 10], "mean": [1.0, 2.0]})
    timings = pd.DataFrame({"method": ["encoder", "encoder", "prior", "q*"], "steps": [10, 10, 10, 700],
                            "seconds_per_image": [1.0, 3.0, 5.0, 9.0]})
    with_seconds, qstar = refinement.frontier_seconds(frontier, timings, 7000.0)
    assert with_seconds.seconds.tolist() == [2.0, 5.0]
    assert qstar.to_dict("records") == [{"evaluations": 7000.0, "seconds": 9.0}]


def test_training_seconds_count_each_stretch_in_proportion_to_its_epochs_before_the_models(tmp_path):
    import json

    stretches = [{"from_epoch": 0, "to_epoch": 100, "seconds": 300.0}, {"from_epoch": 100, "to_epoch": 300, "seconds": 1000.0},
                 {"from_epoch": 300, "to_epoch": 300, "seconds": 5.0}]  # an empty stretch (a resume that trained nothing)
    (tmp_path / "run.json").write_text(json.dumps({"stretches": stretches}))
    assert refinement.training_seconds(tmp_path, 200) == pytest.approx(300.0 + 500.0)
    assert refinement.training_seconds(tmp_path, 50) == pytest.approx(150.0)
    assert refinement.training_seconds(tmp_path, 300) == pytest.approx(1300.0)


def tuning_curves(best: dict[tuple[str, int], float], lrs: dict[str, list[float]]) -> pd.DataFrame:
    """Validation ELBOs of two images for each start, budget (1, 10), step size and schedule, peaked
    at ``best[(init, steps)]`` (in log step size); the linear schedule is a nat worse."""
    rows = [{"init": init, "steps": k, "lr": lr, "schedule": schedule, "datapoint": i,
             "elbo": -abs(np.log(lr / best[init, k])) - (schedule == "linear") + 0.01 * i}
            for init in lrs for k in (1, 10) for lr in lrs[init] for schedule in ("constant", "linear") for i in range(2)]  # fmt: skip
    return pd.DataFrame(rows)


def test_a_grid_grows_at_each_edge_where_a_budgets_best_lies_until_every_best_is_interior():
    best = {("encoder", 1): 0.01, ("encoder", 10): 0.1, ("prior", 1): 3.0, ("prior", 10): 0.3}
    lrs = {"encoder": [0.03, 0.1, 0.3], "prior": [0.03, 0.1, 0.3]}
    chosen = refinement.chosen_settings(tuning_curves(best, lrs))
    assert chosen.set_index(["init", "steps"]).interior.to_dict() == {("encoder", 1): False, ("encoder", 10): True,
                                                                      ("prior", 1): False, ("prior", 10): False}  # fmt: skip
    assert (chosen.schedule == "constant").all()
    assert refinement.grid_extension(chosen, tuning_curves(best, lrs)) == [("encoder", 0.01), ("prior", 0.9)]
    grown = {"encoder": [0.003, 0.01, 0.03, 0.1, 0.3], "prior": [0.03, 0.1, 0.3, 0.9, 2.7, 8.1]}
    chosen = refinement.chosen_settings(tuning_curves(best, grown))
    assert chosen.interior.all() and refinement.grid_extension(chosen, tuning_curves(best, grown)) == []
    assert refinement.grid_words(chosen) == "every budget's best step size is interior to its grid (4 budgets)"
    # no step size beyond the bounds: a best at 10 stays at the edge, and the words say so
    edge = {"encoder": [0.1, 1.0, 10.0], "prior": [0.1, 1.0, 10.0]}
    at_bound = {("encoder", 1): 1.0, ("encoder", 10): 1.0, ("prior", 1): 50.0, ("prior", 10): 0.01}
    chosen = refinement.chosen_settings(tuning_curves(at_bound, edge))
    assert refinement.grid_extension(chosen, tuning_curves(at_bound, edge)) == [("prior", 0.0333)]
    assert refinement.grid_words(chosen).startswith("2 of 4 budgets' best step sizes are interior")


def test_refinement_halves_the_gap_where_the_paired_interval_lies_below_half():
    rng = np.random.default_rng(3)
    gap = 4 + rng.normal(size=60)
    left = {1: 0.9, 3: 0.5, 10: 0.2}  # the share of each image's gap left after k steps
    test = pd.concat([pd.DataFrame({"init": init, "steps": k, "datapoint": np.arange(60),
                                    "gap_remaining": share * gap + 0.1 * rng.normal(size=60)})
                      for init in ("encoder", "prior") for k, share in left.items()])  # fmt: skip
    table = refinement.halving(test, gap)
    assert table.verdict.tolist() == ["not halved", "unresolved", "halved"]
    words = refinement.halving_words(table, digits=1)
    assert words.startswith("halves the gap within 10 steps") and "whether 3 steps do is unresolved" in words
    never = refinement.halving(test[test.steps == 1], gap)
    assert refinement.halving_words(never).startswith("does not halve the gap within 1 step:")
    unresolved = refinement.halving(test[test.steps == 3], gap)
    assert refinement.halving_words(unresolved).startswith("is not shown to halve the gap within 3 steps")


def test_the_certified_error_is_read_at_the_other_experiments_settings_or_is_na():
    summary = pd.DataFrame({"model": ["diagonal", "diagonal", "planar"], "estimator": ["ais_200x8", "ais_500x16", "ais_500x16"],
                            "error_nats": [-0.0004, 0.02, 0.3], "error_se": [0.01, 0.01, 0.02]})
    claims = certification.at_settings(summary, 200, 8)
    assert claims["CertFfgUsedError"].value == 0.0 and str(report.format_number(claims["CertFfgUsedError"])) == "0.000"
    assert claims["CertFlowUsedError"] == "n/a" and claims["CertFlowUsedErrorSe"] == "n/a"
    assert certification.at_settings(summary, 500, 16)["CertFlowUsedError"].value == pytest.approx(0.3)


def test_the_headline_takes_the_experiments_numbers_to_four_decimals():
    numbers = {name: report.Number(1.234567, 0.1) for name in synthesis.HEADLINE}
    assert set(synthesis.headline(numbers).values()) == {1.2346}
    with pytest.raises(KeyError):
        synthesis.headline({})


def test_macros_read_back_are_the_macros_written(tmp_path):
    values = {"Alpha": report.Number(1.5, 0.25), "Beta": 7, "Gamma": "rises", "Delta": report.Number(2.0, None)}
    report.write_macros(tmp_path / "x.tex", values)
    back = report.read_macros(tmp_path / "x.tex")
    assert back["Alpha"] == report.Number(1.5, 0.25) and back["Beta"] == 7 and back["Gamma"] == "rises"
    assert back["Delta"].value == 2.0 and back["Delta"].se is None


def test_a_count_from_timings_keeps_two_significant_figures():
    from amortgap.study import wording

    assert wording.to_significant(59997.0) == 60000.0
    assert wording.in_words(["a"]) == "a" and wording.in_words(["a", "b", "c"]) == "a, b and c"
    assert wording.to_significant(1234.5, 3) == 1230.0
    assert wording.to_significant(0.0123456) == pytest.approx(0.012)
    assert report.format_number(report.Number(wording.to_significant(59997.0), digits=0)) == "60\\,000"


def test_the_stable_view_leaves_out_the_unstable_names_and_coarsens_bounds():
    view = report.stable_view({"TabFfgCi": "[-36.36, -12.04]", "TabFlowAmort": 3.0, "Other": 2}, unstable=("Flow",))
    assert view == {"TabFfgCi": "[-36.4, -12.0]", "Other": 2}


def _validation_summary(family: str = "diagonal", protocol: str = "long_trained") -> pd.DataFrame:
    """reference_summary-like rows of one model on its three parts: the 500x16 setting is within
    0.01 nats everywhere; 200x8 is 0.05 off on simulated images against BDMC; 100x8 has 10% of
    its test images off by more than 0.3 nats."""
    rows = []
    for part in ("train", "test", "simulated"):
        for estimator, evaluations, mean, upper, off in (("reference", 160000, 0.0, 0.005, 0.0), ("ais_100x8", 4000, 0.01, 0.01, 0.1 * (part == "test")),
                                                         ("ais_200x8", 8000, 0.01, 0.05, 0.0), ("ais_500x16", 40000, 0.01, 0.01, 0.0)):
            rows.append({"family": family, "protocol": protocol, "part": part, "start": "qstar", "estimator": estimator,
                         "evaluations": evaluations, "error_nats": mean, "error_se": 0.005, "error_p95": 0.1, "error_max": 0.2,
                         "share_off": off, "reported_se": 0.1,
                         "error_upper_nats": upper if part == "simulated" else np.nan,
                         "error_upper_se": 0.01 if part == "simulated" else np.nan})
    return pd.DataFrame(rows)


def test_an_ais_setting_passes_only_within_half_the_tables_se_on_every_part_and_with_few_images_off():
    from amortgap.study import validation

    verdicts = validation.ais_verdicts(_validation_summary(), half_se=0.03, off_share=0.05).set_index("estimator")
    assert verdicts.validated.to_dict() == {"ais_100x8": False, "ais_200x8": False, "ais_500x16": True}
    assert verdicts.loc["ais_200x8", "worst_mean_error"] == pytest.approx(0.05), "BDMC's bound counts on simulated images"
    assert verdicts.loc["ais_100x8", "worst_share_off"] == pytest.approx(0.1)
    simulated_off = _validation_summary().assign(share_off=lambda t: np.where(t.part == "simulated", 0.2, 0.0))
    ruled = validation.ais_verdicts(simulated_off, half_se=0.03, off_share=0.05).set_index("estimator")
    assert ruled.loc["ais_500x16", "validated"] and ruled.loc["ais_500x16", "simulated_share_off"] == 0.2, (
        "the share of images off is ruled on the table's own images, and reported on simulated ones")
    loose = validation.ais_verdicts(_validation_summary(), half_se=0.06, off_share=0.05).set_index("estimator")
    assert loose.validated.to_dict() == {"ais_100x8": False, "ais_200x8": True, "ais_500x16": True}


def test_the_cheapest_search_is_the_fewest_starts_that_match_all_of_them():
    from amortgap.study import validation

    n = 200
    best = np.linspace(-120, -90, n)
    search = pd.DataFrame({"encoder": best - 0.02, "prior_1": best - 5.0, "perturbed_2": best})
    assert validation.cheapest_search(search) == 1, "0.02 nats short on average, none 0.3 below"
    search.loc[:2, "encoder"] = best[:3] - 1.0  # 1.5% of images far below: the first start alone fails
    assert validation.cheapest_search(search) == 3
    assert validation.search_shortfalls(search)[3].eq(0).all()
    search.loc[:2, "prior_1"] = best[:3]
    assert validation.cheapest_search(search) == 2
    assert validation.cheapest_search(search, far_share=0.02) == 1


def test_the_search_summary_counts_images_whose_first_start_is_beaten():
    from amortgap.study import validation

    search = pd.DataFrame({"encoder": [-100.0, -90.0, -80.0, -70.0], "prior_1": [-101.0, -89.5, -80.5, -70.0],
                           "perturbed_2": [-100.0, -90.05, -79.0, -70.0]})
    search["first_start_deficit"] = search.max(axis=1) - search.encoder
    search["search_uncertainty"] = 0.0
    table = validation.with_shortfalls(search)
    assert table.prior_shortfall.tolist() == [1.0, -0.5, 0.5, 0.0]
    assert table.perturbed_shortfall.tolist() == pytest.approx([0.0, 0.05, -1.0, 0.0])
    s = validation.search_summary(table.reset_index().assign(family="diagonal"), 0.1, RULE)
    assert s["starts"] == 3 and s["images"] == 4, "the index and the model's name are not starts"
    assert s["share_beaten"] == 0.5 and s["deficit_max"] == 1.0  # images 2 (by 0.5) and 3 (by 1.0)
    assert s["prior_shortfall"] == pytest.approx(0.25)
    assert s["starts_needed"] == 3 and s["needed_shortfall"] == 0.0


RULE = {"mean_nats": 0.05, "far_nats": 0.3, "far_share": 0.01}


def test_the_gap_table_refuses_settings_the_validation_did_not_pass():
    from amortgap.ais import AISConfig
    from amortgap.study import validation

    search = pd.DataFrame([{"family": f, "protocol": "long_trained", "split": split, "starts_needed": needed}
                           for f, needed in (("diagonal", 1), ("planar", 3)) for split in ("train", "test")])
    summary = pd.concat([_validation_summary(f) for f in ("diagonal", "planar")], ignore_index=True)
    half_se = pd.Series({("diagonal", "long_trained"): 0.03, ("planar", "long_trained"): 0.06})
    settings = validation.settings(search, summary, half_se, 0.05, AISConfig(steps=500, chains=16))
    assert settings.starts_needed.tolist() == [1, 3] and settings.table_ais_validated.all()
    assert settings.cheapest_validated_ais.tolist() == ["ais_500x16", "ais_200x8"]
    both = {"diagonal": ["long_trained"], "planar": ["long_trained"]}
    validation.check_table_settings(settings, AISConfig(steps=500, chains=16), {"diagonal": 1, "planar": 3}, both)
    with pytest.raises(ValueError, match="planar q\\* search has 2 starts"):
        validation.check_table_settings(settings, AISConfig(steps=500, chains=16), {"diagonal": 1, "planar": 2}, both)
    validation.check_table_settings(settings, AISConfig(steps=500, chains=16), {"diagonal": 1, "planar": 2},
                                    {"diagonal": ["long_trained"]})
    validation.check_table_settings(settings, AISConfig(steps=500, chains=16), {"diagonal": 1, "planar": 2},
                                    {"diagonal": ["early_stopped"], "planar": ["early_stopped"]}), "no such model here"
    with pytest.raises(ValueError, match="not validated"):
        validation.check_table_settings(settings, AISConfig(steps=1000, chains=16), {"diagonal": 1, "planar": 3}, both)
    failed = validation.settings(search, summary, half_se, 0.05, AISConfig(steps=200, chains=8))
    with pytest.raises(ValueError, match="not validated on the diagonal long_trained model"):
        validation.check_table_settings(failed, AISConfig(steps=200, chains=8), {"diagonal": 1, "planar": 3}, both)


def test_validation_numbers_read_the_tables_setting_and_refuse_a_short_reference():
    from amortgap.ais import AISConfig
    from amortgap.study import validation

    summary = _validation_summary()
    search = pd.DataFrame([{"family": "diagonal", "protocol": "long_trained", "split": split, "images": 100, "starts": 9,
                            "share_beaten": 0.03, "beaten_nats": 0.1, "deficit_mean": 0.02, "deficit_se": 0.01,
                            "deficit_max": 0.4, "starts_needed": 1} for split in ("train", "test")])
    settings = validation.settings(search, summary, pd.Series({("diagonal", "long_trained"): 0.03}), 0.05,
                                   AISConfig(steps=500, chains=16))  # fmt: skip
    tables = {"summary": summary, "search": search, "settings": settings}
    rules = {"prior_starts": 4, "perturbed_starts": 4, "perturb_scale": 2.0, **RULE, "off_nats": 0.3, "off_share": 0.05}
    numbers = validation.numbers(tables, AISConfig(steps=500, chains=16), AISConfig(steps=2000, chains=16), 50, rules)
    assert numbers["ValPriorStarts"] == 4 and numbers["ValOffShare"].value == 5.0 and numbers["ValReferenceFactor"] == 4
    assert numbers["ValPoints"] == 100 and numbers["ValStarts"] == 9 and numbers["ValFfgLongTableValidated"] == "yes"
    assert numbers["ValFfgLongHalfSe"].value == 0.03 and numbers["ValFfgLongStartsNeeded"] == "1 start"
    assert numbers["ValTableAisPasses"] == "1 of 1"
    assert not any(name.startswith(("ValFlow", "ValFfgEarly")) for name in numbers), "only the models validated"
    assert numbers["ValSimulatedPoints"] == 50
    search["starts_needed"] = [1, 9]
    settings = validation.settings(search, summary, pd.Series({("diagonal", "long_trained"): 0.03}), 0.05,
                                   AISConfig(steps=500, chains=16))  # fmt: skip
    paper = validation.table({"summary": summary, "search": search, "settings": settings}, AISConfig(steps=500, chains=16))
    assert paper.loc["FFG, long-trained", "starts (train / test)"] == "1 / 9+", "all starts needed: perhaps more"
    assert validation.starts_needed_words(9, 9) == "all 9 starts, perhaps more"
    assert validation.starts_needed_words(8, 9) == "8 starts" and validation.starts_needed_words(1, 9) == "1 start"
    assert paper.loc["FFG, long-trained", "AIS validated"] == "yes"
    validation.check_reference(AISConfig(steps=2000, chains=16), AISConfig(steps=500, chains=16))
    with pytest.raises(ValueError, match="4x"):
        validation.check_reference(AISConfig(steps=1000, chains=16), AISConfig(steps=500, chains=16))


def test_the_control_is_paired_with_the_run_at_its_epoch_on_the_same_images():
    from amortgap import campaign
    from amortgap.study import convergence

    images = [3, 7, 11]
    gaps = pd.DataFrame([{"split": "train", "epoch": e, "image": i, "amortization_gap": 1.0 + e / 100 + i}
                         for e in (100, 300, 1000) for i in images])  # the control's epoch 300 is not the last
    control = pd.DataFrame([{"split": "train", "epoch": 300, "image": i, "amortization_gap": 4.0 + i + d, "batch_size": 20}
                            for i, d in zip(images, (0.5, -0.5, 0.0))])
    change = convergence.control_change(gaps, control, "train", "amortization_gap")
    assert change.mean == pytest.approx(0.0) and change.low < 0 < change.high, "paired at epoch 300: 4 + i + d - (4 + i)"
    with pytest.raises(ValueError, match="different train images"):
        convergence.control_change(gaps, control.assign(image=[3, 7, 12]), "train", "amortization_gap")
    config = campaign.load_config(Path(__file__).parent / "fixtures" / "campaign" / "params.yaml")
    differences = convergence.protocol_differences(config, "diagonal_cremer_s0", "diagonal_batch20_s0")
    assert differences["batch_size"] == (100, 20) and not {"lr", "seed", "family"} & set(differences)
    assert convergence.protocol_differences(config, "diagonal_cremer_s0", "planar_cremer_s0") == {"family": ("diagonal", "planar")}
    with pytest.raises(ValueError, match="no campaign entry"):
        convergence.protocol_differences(config, "diagonal_cremer_s0", "diagonal_cremer_s9")
