"""The gap table's rows for one model, per datapoint (the form of Cremer et al. 2018, Table 2).

For a model and a batch of images: log p(x) by AIS from the FFG q*; L[q*] in both families (FFG, and
a flow: the model's own, or a planar flow for an FFG model); L[q] of the model's own encoder; the gaps, measured in the family of the model's own
encoder; and, for the encoder's q, q refined by a few gradient steps, and the FFG q*, the ELBO's
reconstruction and KL parts and the pixel accuracy of the decoded posterior mean. A flow's ELBO is
not concave in its parameters, so the flow q* is the best of several starts: the encoder's q (an
FFG is a flow with identity layers), random ones, and the FFG q* with identity layers.

A module of its own, apart from the table's summaries (:mod:`amortgap.study.gap_table`), so that a
change of how the table is summarized or printed does not change the fingerprint of its kept parts
(:mod:`amortgap.parts`).
"""

from __future__ import annotations

import os
from dataclasses import replace

import pandas as pd
import torch

from . import gaps, latents, models, qstar
from .bounds import elbo_parts_from_terms, log_weight_terms_chunked
from .families import DiagonalGaussian, PlanarFlow
from .rng import seeded

PASSED_ON = ["log_px", "log_px_se", "log_px_iwae", "elbo_amortized", "elbo_amortized_se",
             "reconstruction_amortized", "kl_amortized", "reconstruction_optimal", "kl_optimal"]  # fmt: skip


def evaluate(
    model: models.VAE, x: torch.Tensor, config: gaps.DecomposeConfig, flow_length: int = 10,
    flow_rows: torch.Tensor | None = None, refine_steps: int = 20, flow_search: tuple[int, int] = (0, 0),
) -> pd.DataFrame:
    """The per-datapoint gap-table rows of ``model`` on images x [N, D] (see the module's docstring).
    The FFG q* search takes ``config``'s extra starts (perturbed ones only where the encoder is an
    FFG); for a flow model, whose own family the flow is, the flow q* search from the encoder takes
    ``flow_search`` = (prior starts, perturbed starts) more, besides its start at the FFG q*
    (:func:`amortgap.gaps.best_flow_qstar`). The flow family is the model's own for a flow model,
    and a planar flow of ``flow_length`` layers for an FFG model. The flow q*, the costliest number here, is found
    only for the rows where ``flow_rows`` [N] (bool) is true (default: all); the others get NaN in
    its columns. The refined q takes ``refine_steps`` steps from the encoder's q (for a flow
    encoder, in the flow family)."""
    own_is_ffg = model.config.family == "diagonal"
    ffg, ffg_star = gaps.decompose_with_qstar(model, x, replace(config, qstar_init="encoder" if own_is_ffg else "prior",
                                                                qstar_perturbed=config.qstar_perturbed if own_is_ffg else 0))
    rows = torch.ones(len(x), dtype=torch.bool) if flow_rows is None else flow_rows.bool()
    flow_family = PlanarFlow(flow_length) if own_is_ffg else model.family
    found = gaps.best_flow_qstar(model, x[rows], flow_family, config, {k: v[rows] for k, v in ffg_star.items()},
                                 flow_search if not own_is_ffg else (0, 0))  # fmt: skip
    found.index = rows.nonzero().squeeze(1).numpy()
    flow = found.reindex(range(len(x)))

    table = ffg[PASSED_ON].copy()
    table["elbo_optimal_ffg"], table["elbo_optimal_ffg_se"] = ffg.elbo_optimal, ffg.elbo_optimal_se
    table["elbo_optimal_flow"], table["elbo_optimal_flow_se"] = flow.elbo_optimal, flow.elbo_optimal_se
    table["flow_start"] = flow.start
    table["qstar_steps_ffg"], table["qstar_steps_flow"] = ffg.qstar_steps, flow.qstar_steps
    own = "elbo_optimal_ffg" if own_is_ffg else "elbo_optimal_flow"
    table["approximation_gap"] = table.log_px - table[own]
    table["approximation_gap_se"] = (table.log_px_se**2 + table[f"{own}_se"] ** 2) ** 0.5
    table["amortization_gap"] = table[own] - table.elbo_amortized
    table["inference_gap"] = table.log_px - table.elbo_amortized
    # A flow's posterior mean is a Monte Carlo mean: seeded, so that it does not depend on which tasks a
    # worker process ran before this one.
    with torch.no_grad(), seeded(config.seed + 2, x.device):
        table["accuracy_amortized"] = latents.pixel_accuracy(model, x, model.encode(x)).cpu().double().numpy()
    table["accuracy_optimal_ffg"] = latents.pixel_accuracy(model, x, DiagonalGaussian().distribution(ffg_star)).cpu().double().numpy()
    with seeded(config.seed + 1, x.device):
        refined = qstar.refine(model, x, refine_steps, model.family, config.qstar).q
        terms = log_weight_terms_chunked(model, x, refined, config.elbo_samples, config.max_pairs)
    parts = elbo_parts_from_terms(*terms)
    table["elbo_refined"] = sum(terms).mean(0).cpu().double().numpy()
    table["reconstruction_refined"] = parts.reconstruction.cpu().double().numpy()
    table["kl_refined"] = parts.kl.cpu().double().numpy()
    with seeded(config.seed + 3, x.device):
        table["accuracy_refined"] = latents.pixel_accuracy(model, x, refined).cpu().double().numpy()
    table["refine_steps"] = refine_steps
    for column in ("elbo_samples", "ais_steps", "ais_chains"):
        table[column] = ffg[column]
    return table


def evaluate_checkpoint(
    path: str | os.PathLike, x: torch.Tensor, config: gaps.DecomposeConfig, flow_rows: torch.Tensor | None = None,
    refine_steps: int = 20, flow_search: tuple[int, int] = (0, 0),
) -> pd.DataFrame:
    """:func:`evaluate` of the model saved at ``path`` (for worker processes: a path travels light)."""
    model = models.load(path)
    return evaluate(model, x, config, model.config.flow_length, flow_rows, refine_steps, flow_search)
