"""The family matrix: the encoders it may use (fresh, of the cell's family, on the cell's decoder, past
one shared schedule), log p(x) from the gap table's rows of the same images, the gaps per image,
intervals over images, each flow paired with the FFG, the same-decoder check, and the paper's numbers."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from amortgap import campaign
from amortgap.stats import crossed_interval
from amortgap.study import family_matrix

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests/fixtures/family_matrix/params.yaml"
DECODERS = {"diagonal": "diagonal_cremer_s0/train.snapshots/e1.pt", "planar": "planar_cremer_s0/train.snapshots/e1.pt"}
RUN = "{family}_enc32_on_{decoder}_cremer_s0.train.snapshots.e1_encoder_cremer_s0"
CELLS = {d: {f: RUN.format(family="sylvester2" if f == "sylvester" else f, decoder=d) for f in family_matrix.FAMILIES} for d in DECODERS}


def test_the_matrix_takes_fresh_encoders_of_each_cells_family_on_its_decoder_past_one_schedule(tmp_path):
    config = campaign.load_config(FIXTURE)
    found = family_matrix.encoders(config, DECODERS, CELLS, ROOT)
    assert list(zip(found.decoder, found.family)) == [(d, f) for d in DECODERS for f in family_matrix.FAMILIES]
    assert set(found.width) == {32} and set(found.epochs) == {13} and (found.train_hours > 0).all()
    assert all(path.name == "best.pt" and path.exists() for path in found.weights)
    swapped = {"diagonal": {**CELLS["diagonal"], "planar": CELLS["diagonal"]["sylvester"]}}
    with pytest.raises(ValueError, match="not a campaign run of a fresh planar encoder"):
        family_matrix.encoders(config, DECODERS, swapped, ROOT)
    other_decoder = {"diagonal": {"diagonal": CELLS["planar"]["diagonal"]}}
    with pytest.raises(ValueError, match="on diagonal_cremer_s0/train.snapshots/e1.pt"):
        family_matrix.encoders(config, DECODERS, other_decoder, ROOT)
    with pytest.raises(ValueError, match="needs an FFG"):
        family_matrix.encoders(config, DECODERS, {"planar": {"planar": CELLS["planar"]["planar"]}}, ROOT)
    with pytest.raises(ValueError, match="not among"):
        family_matrix.encoders(config, DECODERS, {"reference": CELLS["planar"]}, ROOT)
    # a run short of its schedule's end has no final best.pt yet
    name = CELLS["planar"]["sylvester"]
    shutil.copytree(ROOT / config.model_dir / name, tmp_path / config.model_dir / name)
    record = tmp_path / config.model_dir / name / "run.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "status": "paused", "epoch": 12}))
    with pytest.raises(ValueError, match="not reached its schedule's end yet"):
        family_matrix.encoders(config, DECODERS, {"planar": {"diagonal": CELLS["planar"]["diagonal"], "sylvester": name}}, tmp_path)


def test_encoders_trained_otherwise_are_refused(tmp_path):
    params = yaml.safe_load(FIXTURE.read_text())
    params["campaign"]["entries"][1]["encoder_hidden"] = [16]  # the planar encoder on the FFG decoder, narrower
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    config = campaign.load_config(path)
    narrow = {"diagonal": {"diagonal": CELLS["diagonal"]["diagonal"], "planar": "planar_enc16_on_diagonal_cremer_s0.train.snapshots.e1_encoder_cremer_s0"}}
    models = tmp_path / config.model_dir
    shutil.copytree(ROOT / config.model_dir / CELLS["diagonal"]["diagonal"], models / CELLS["diagonal"]["diagonal"])
    shutil.copytree(ROOT / config.model_dir / CELLS["diagonal"]["planar"], models / narrow["diagonal"]["planar"])
    with pytest.raises(ValueError, match="trained the same way"):
        family_matrix.encoders(config, DECODERS, narrow, tmp_path)


def synthetic(rng: np.random.Generator, n: int = 40) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-family rows on two decoders and the gap table's rows (log p(x) of its own per decoder and
    protocol): on every image the planar flow's L[q*] is 1 nat above the FFG's and its L[q] 0.5
    above; the Sylvester flow's are the FFG's."""
    images = np.arange(100, 100 + n)
    log_px = {(decoder, protocol): -100 - 10 * i - j + rng.normal(size=n)
              for i, decoder in enumerate(DECODERS) for j, protocol in enumerate(("early_stopped", "long_trained"))}  # fmt: skip
    ffg_star = {decoder: log_px[decoder, "early_stopped"] - 3 + 0.01 * rng.normal(size=n) for decoder in DECODERS}
    gap_rows = pd.concat([pd.DataFrame({"model": decoder, "protocol": protocol, "seed": 0, "split": "test", "image": images,
                                        "log_px": value, "log_px_se": 0.1,
                                        "elbo_optimal_ffg": ffg_star[decoder] + 0.01 * rng.normal(size=n) + 5 * (protocol != "early_stopped")})
                          for (decoder, protocol), value in log_px.items()], ignore_index=True)  # fmt: skip
    frames = []
    for decoder in DECODERS:
        ffg = ffg_star[decoder] - 2 + 0.5 * rng.normal(size=n)
        for family, up_star, up in (("sylvester", 0.0, 0.0), ("planar", 1.0, 0.5), ("diagonal", 0.0, 0.0)):
            frame = pd.DataFrame({"decoder": decoder, "family": family, "seed": 0, "image": images, "elbo": ffg + up,
                                  "qstar_elbo": ffg_star[decoder] + up_star, "qstar_elbo_se": 0.05, "qstar_seconds": 0.5})  # fmt: skip
            starts = np.where(images % 2, "encoder", "ffg_qstar") if family == "planar" else np.where(images % 4, "ffg_qstar", "encoder")
            frames.append(frame if family == "diagonal" else frame.assign(start=starts))
    return pd.concat(frames, ignore_index=True), gap_rows


def test_gaps_use_the_gap_tables_log_px_of_the_same_images_and_a_flow_is_paired_with_the_ffg():
    per_family, gap_rows = synthetic(np.random.default_rng(0))
    images = per_family.image.unique()
    log_px = pd.concat([family_matrix.log_px(gap_rows, d, "early_stopped", 0, "test", images).assign(decoder=d) for d in DECODERS])
    rows = family_matrix.gap_rows(per_family, log_px)
    assert list(dict.fromkeys(zip(rows.decoder, rows.family))) == [(d, f) for d in DECODERS for f in family_matrix.FAMILIES]
    assert (rows[rows.family == "diagonal"].start == "encoder").all()
    theirs = gap_rows[gap_rows.protocol == "early_stopped"].rename(columns={"model": "decoder"}).set_index(["decoder", "image"]).log_px
    assert rows.set_index(["decoder", "image"]).log_px.equals(theirs.reindex(rows.set_index(["decoder", "image"]).index))
    np.testing.assert_allclose(rows.approximation_gap + rows.amortization_gap, rows.log_px - rows.elbo)
    steps = family_matrix.differences(rows).set_index(["decoder", "family", "gap"])
    for decoder in DECODERS:
        assert steps.loc[(decoder, "planar", "approximation_gap"), "mean"] == pytest.approx(-1.0)
        assert steps.loc[(decoder, "planar", "amortization_gap"), "mean"] == pytest.approx(0.5)
        assert steps.loc[(decoder, "sylvester", "amortization_gap"), ["mean", "low", "high"]].tolist() == pytest.approx([0, 0, 0])
    cells = family_matrix.summary(rows).set_index(["decoder", "family"])
    mine = rows[(rows.decoder == "planar") & (rows.family == "planar")]
    interval = crossed_interval(mine[["amortization_gap"]].to_numpy().T)
    assert cells.loc[("planar", "planar"), ["amortization_gap", "amortization_gap_low", "amortization_gap_high"]].tolist() \
        == pytest.approx([interval.mean, interval.low, interval.high])  # fmt: skip
    assert cells.loc[("planar", "planar"), "from_ffg_qstar"] == 0.5 and cells.loc[("planar", "diagonal"), "from_ffg_qstar"] == 0
    assert cells.loc[("diagonal", "sylvester"), "from_ffg_qstar"] == 0.75
    with pytest.raises(ValueError, match="no log p\\(x\\) of planar .* on 5 of these test images"):
        family_matrix.log_px(gap_rows, "planar", "early_stopped", 0, "test", np.append(images, [1, 2, 3, 4, 5]))
    with pytest.raises(ValueError, match="no log p\\(x\\) of decoder planar"):
        family_matrix.gap_rows(per_family, log_px[log_px.decoder == "diagonal"])


def test_the_ffg_qstar_must_match_the_gap_tables_on_the_same_decoder():
    per_family, gap_rows = synthetic(np.random.default_rng(1))
    images = per_family.image.unique()
    log_px = pd.concat([family_matrix.log_px(gap_rows, d, "early_stopped", 0, "test", images).assign(decoder=d) for d in DECODERS])
    rows = family_matrix.gap_rows(per_family, log_px)
    agreement = family_matrix.same_decoders(rows, gap_rows, "early_stopped", 0, tolerance=0.1)
    assert list(agreement.decoder) == list(DECODERS) and (agreement.mean_abs < 0.05).all()
    shifted = gap_rows.assign(elbo_optimal_ffg=np.where(gap_rows.model == "planar", gap_rows.elbo_optimal_ffg + 1, gap_rows.elbo_optimal_ffg))
    with pytest.raises(ValueError, match="decoder planar's FFG L\\[q\\*\\] differs from the gap table's by -(0.99|1.00)"):
        family_matrix.same_decoders(rows, shifted, "early_stopped", 0, tolerance=0.1)


def test_the_papers_numbers_name_every_cell_and_each_flows_difference(tmp_path):
    per_family, gap_rows = synthetic(np.random.default_rng(2))
    images = per_family.image.unique()
    log_px = pd.concat([family_matrix.log_px(gap_rows, d, "early_stopped", 0, "test", images).assign(decoder=d) for d in DECODERS])
    found = pd.DataFrame([{"decoder": d, "family": f, "width": 200, "epochs": 1093, "train_hours": 1.5}
                          for d in DECODERS for f in family_matrix.FAMILIES])  # fmt: skip
    numbers = family_matrix.numbers(family_matrix.gap_rows(per_family, log_px), found)
    assert (numbers["FamilyImages"], numbers["FamilyWidth"], numbers["FamilyEpochs"]) == (40, 200, 1093)
    assert numbers["FamilyPlanarDecPlanarMinusApprox"].startswith("-1.00 $\\pm$ ")
    assert {f"Family{d}Dec{f}{g}" for d in ("Ffg", "Planar") for f in ("Ffg", "Planar", "Sylvester") for g in ("Approx", "Amort")} <= set(numbers)
    table = family_matrix.table(family_matrix.summary(family_matrix.gap_rows(per_family, log_px)), found)
    assert table.shape == (6, 6) and table.index[0] == ("FFG-trained decoder", "FFG")
    # while only the FFG's cell is trained: its numbers, no flow's differences
    ffg = family_matrix.gap_rows(per_family[per_family.family == "diagonal"], log_px)
    assert family_matrix.differences(ffg).empty
    assert not any("Minus" in name for name in family_matrix.numbers(ffg, found))


def test_the_matrix_stage_depends_on_every_model_its_section_names():
    section = yaml.safe_load((ROOT / "params.yaml").read_text())["family_matrix"]
    deps = {str(d).split("#")[0].strip() for d in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["family_matrix"]["deps"]}
    runs = Path(section["run_dir"])
    wanted = {str(runs / decoder) for decoder in section["decoders"].values()} | {section["gap_rows_path"]}
    wanted |= {str(runs / name / file) for cells in section["encoders"].values() for name in cells.values() for file in ("best.pt", "run.json")}
    assert wanted <= deps, f"dvc.yaml's family_matrix stage lacks {sorted(wanted - deps)}"
    assert not {d for d in deps if d.startswith("models/")} - wanted, "and lists no model it does not read"
