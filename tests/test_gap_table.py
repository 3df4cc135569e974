"""One model's gap-table rows: every column present, the flow q* only where asked, gaps consistent."""

import numpy as np
import pandas as pd
import pytest
import torch

from amortgap import gap_rows, gaps, models
from amortgap.study import gap_table
from amortgap.ais import AISConfig
from amortgap.qstar import QStarConfig

CONFIG = gaps.DecomposeConfig(elbo_samples=50, iwae_samples=20, ais=AISConfig(steps=5, chains=2),
                              qstar=QStarConfig(max_steps=20), seed=0)  # fmt: skip


def test_rows_hold_both_families_and_the_flow_fit_only_where_asked():
    torch.manual_seed(0)
    model = models.VAE(models.VAEConfig(data_dim=12, latent_dim=2, encoder_hidden=(6,), decoder_hidden=(6,)))
    x = torch.bernoulli(torch.full((5, 12), 0.4))
    rows = torch.tensor([True, False, True, False, False])
    table = gap_rows.evaluate(model, x, CONFIG, flow_length=2, flow_rows=rows)
    assert len(table) == 5
    assert table.elbo_optimal_flow.notna().tolist() == rows.tolist()
    assert table.flow_start.notna().tolist() == rows.tolist()
    assert table.log_px.notna().all() and table.elbo_optimal_ffg.notna().all()
    torch.testing.assert_close(torch.tensor(table.approximation_gap + table.amortization_gap),
                               torch.tensor(table.inference_gap), rtol=0, atol=1e-9)  # fmt: skip
    for which in ("amortized", "refined", "optimal_ffg"):
        assert ((table[f"accuracy_{which}"] >= 0) & (table[f"accuracy_{which}"] <= 1)).all(), which
    assert table.elbo_refined.notna().all() and (table.refine_steps == 20).all()
    torch.testing.assert_close(torch.tensor(table.reconstruction_refined - table.kl_refined),
                               torch.tensor(table.elbo_refined), rtol=0, atol=1e-4)  # fmt: skip
    flow = models.VAE(models.VAEConfig(data_dim=12, latent_dim=2, encoder_hidden=(6,), decoder_hidden=(6,),
                                       family="planar", flow_length=2))  # fmt: skip
    own = gap_rows.evaluate(flow, x, CONFIG, flow_length=2, flow_rows=rows)
    assert own.approximation_gap.notna().tolist() == rows.tolist(), "a flow model's own gaps need its flow q*"
    sylvester = models.VAE(models.VAEConfig(data_dim=12, latent_dim=2, encoder_hidden=(6,), decoder_hidden=(6,),
                                            family="sylvester", flow_length=2))  # fmt: skip
    own = gap_rows.evaluate(sylvester, x, CONFIG, flow_length=2, flow_rows=rows)
    assert own.approximation_gap.notna().tolist() == rows.tolist(), "a Sylvester model's flow q* is in its own family"


def test_extra_flow_starts_search_further_from_the_same_first_start():
    """The flow q*'s extra starts (``flow_search``) add searches: a flow q* found from the encoder's side
    counts the steps of all three searches, and
    the first start's search is the same, so the flow q* from the encoder can only gain (up to the
    comparison's noise, which the 200-sample common-random-number estimate keeps small here)."""
    torch.manual_seed(0)
    flow = models.VAE(models.VAEConfig(data_dim=12, latent_dim=2, encoder_hidden=(6,), decoder_hidden=(6,),
                                       family="planar", flow_length=2))  # fmt: skip
    x = torch.bernoulli(torch.full((4, 12), 0.4))
    one = gap_rows.evaluate(flow, x, CONFIG, flow_length=2)
    three = gap_rows.evaluate(flow, x, CONFIG, flow_length=2, flow_search=(1, 1))
    from_encoder = three.flow_start == "encoder"
    assert from_encoder.any()
    assert (three.qstar_steps_flow[from_encoder] > one.qstar_steps_flow[from_encoder]).all()
    assert (three.elbo_optimal_flow >= one.elbo_optimal_flow - 0.05).all()


def _rows(shift: float) -> pd.DataFrame:
    """Synthetic per-image rows of both families, both protocols, two seeds and three images per
    split; the long-trained models' amortization gap is ``shift`` nats larger on every image."""
    rng = np.random.default_rng(0)
    rows = []
    for model in ("diagonal", "planar"):
        for protocol in ("early_stopped", "long_trained"):
            for seed in (0, 1):
                for split in ("train", "test"):
                    for image in range(3):
                        log_px = -100.0 + 0.1 * rng.normal()
                        own = log_px - 3.0
                        amortized = own - 5.0 - (shift if protocol == "long_trained" else 0.0)
                        rows.append({"model": model, "protocol": protocol, "seed": seed, "split": split, "image": image,
                                     "epoch": 3280 if protocol == "long_trained" else 3000 + seed, "log_px": log_px,
                                     "log_px_se": 0.1, "elbo_optimal_ffg": own, "elbo_optimal_flow": own + 0.5,
                                     "elbo_amortized": amortized, "approximation_gap": log_px - own,
                                     "amortization_gap": own - amortized, "inference_gap": log_px - amortized,
                                     "ais_steps": 500, "ais_chains": 16, "elbo_samples": 1000, "refine_steps": 20,
                                     "flow_start": "ffg_qstar" if image % 4 else "encoder"})
    return pd.DataFrame(rows)


def test_the_gap_tables_numbers_pair_the_protocols_and_place_cremers_values():
    rows = _rows(shift=1.0)
    published = pd.DataFrame({"model": ["ffg"] * 4 + ["planar"] * 3,
                              "quantity": ["log_px", "elbo_optimal_flow", "elbo_optimal_ffg", "elbo_amortized",
                                           "log_px", "elbo_optimal_flow", "elbo_amortized"],
                              "nats": [-97.5, -99.0, -103.0, -108.0, -97.4, -99.1, -103.8]})  # fmt: skip
    quantities = ["reconstruction_optimal", "amortization_gap_reconstruction", "accuracy_amortized", "accuracy_optimal_ffg",
                  "accuracy_refined", "kl_refined", "kl_amortized", "kl_optimal", "amortization_gap_kl"]
    parts = pd.DataFrame([{"protocol": p, "split": s, "quantity": q, "mean": 1.0, "se": 0.1}
                          for p in ("early_stopped", "long_trained") for s in ("train", "test") for q in quantities])
    units = pd.DataFrame([{"model": m, "protocol": p, "seed": s, "active_units": 20, "elbo_amortized_whole_test": -110.0}
                          for m in ("diagonal", "planar") for p in ("early_stopped", "long_trained") for s in (0, 1)])
    numbers = gap_table.numbers(rows, parts, units, published)
    assert numbers["TabFfgLongMinusEarlyTestAmort"].value == pytest.approx(1.0)
    assert numbers["TabFfgLongMinusEarlyTestApprox"].value == pytest.approx(0.0, abs=1e-9)
    assert numbers["TabFfgTestAmort"].value == pytest.approx(6.0)
    flow = rows[(rows.model == "planar") & (rows.protocol == "long_trained")]
    assert numbers["TabFlowFromFfgShare"].value == pytest.approx(100 * (flow.image % 4 != 0).mean())
    assert numbers["TabEarlyEpochs"] == "epochs 3\\,000 and 3\\,001 of seeds 0 and 1", "each seed's own best epoch, not their mean"
    assert numbers["CremerAmortInside"] == "below", "their 5.0 nats against our 6.0, whose interval is a point here"
    assert numbers["CremerLogPxInside"] == "above"
    assert numbers["TabFlowInferenceVerdict"] == "neither smaller nor larger", "the same gaps in both families here"
    early = gap_table.table(rows[rows.protocol == "early_stopped"])
    assert not any(c.startswith("Cremer") for c in early.columns)
    assert any(c.startswith("Cremer") for c in gap_table.table(rows[rows.protocol == "long_trained"], published).columns)


def test_paired_differences_use_the_seeds_both_sides_have():
    rows = _rows(shift=1.0)
    ffg = rows[(rows.model == "diagonal") & (rows.protocol == "long_trained") & (rows.split == "test")]
    flow = rows[(rows.model == "planar") & (rows.protocol == "long_trained") & (rows.split == "test") & (rows.seed == 0)]
    difference = gap_table.paired_difference(flow, ffg, "log_px")
    expected = (flow.set_index("image").log_px - ffg[ffg.seed == 0].set_index("image").log_px).mean()
    assert difference.mean == pytest.approx(expected), "seed 0 against seed 0, not against the mean of both seeds"
