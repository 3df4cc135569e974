"""One model's gap-table rows: every column present, the flow q* only where asked, gaps consistent."""

import torch

from amortgap import gaps, models
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
    table = gap_table.evaluate(model, x, CONFIG, flow_length=2, flow_rows=rows)
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
    own = gap_table.evaluate(flow, x, CONFIG, flow_length=2, flow_rows=rows)
    assert own.approximation_gap.notna().tolist() == rows.tolist(), "a flow model's own gaps need its flow q*"
