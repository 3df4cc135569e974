"""The family matrix's per-image rows (issue 40, item 1), for one decoder and a batch of images: each
family's fresh amortized encoder on that frozen decoder, its L[q] (all encoders on the same random
numbers), and the family's L[q*], with the seconds each search took.

Every family's q* is searched the same way. The diagonal Gaussian (FFG) q* starts from the FFG
encoder's q, with the configuration's extra starts. A flow's ELBO is not concave in its
parameters, so a flow q* is the better of two searches per image: one from the flow's own encoder,
one from the FFG q* with identity layers (a flow that starts as that Gaussian), the search the gap
table uses too (:func:`amortgap.gaps.best_flow_qstar`).

A module of its own, apart from the matrix's summaries, so that a change of how the matrix is
summarized or drawn does not change the fingerprint of its kept parts (:mod:`amortgap.parts`).
"""

from __future__ import annotations

import os
import time

import pandas as pd
import torch
from torch import Tensor

from .families import DiagonalGaussian
from .gaps import DecomposeConfig, best_flow_qstar, optimal_elbo_with_qstar
from .models import load
from .split_rows import candidate_elbos, shares_decoder


def evaluate(encoders: dict[str, str | os.PathLike], x: Tensor, config: DecomposeConfig) -> pd.DataFrame:
    """Per image of x [N, D], for ``encoders`` ({family name: weights file}, one of them "diagonal",
    all on one frozen decoder): ``elbo_<family>`` (L[q], ``config``'s samples and seed for every
    encoder), ``qstar_<family>`` and ``qstar_<family>_se`` (L[q*] in the family, searched as the
    module's docstring says, with ``config``'s ELBO samples), ``qstar_<family>_seconds`` (the
    search's wall time per image, its ELBO estimate included: both searches for a flow) and, for a
    flow, ``qstar_<family>_start`` ("encoder" or "ffg_qstar", the search that won)."""
    if "diagonal" not in encoders:
        raise ValueError(f"the flows' q* start from the FFG q*: name a 'diagonal' encoder among {sorted(encoders)}")
    models = {family: load(path) for family, path in encoders.items()}
    for family, model in models.items():
        if model.config.family != family:
            raise ValueError(f"{encoders[family]} holds a {model.config.family} encoder, not a {family} one")
    shares_decoder(models["diagonal"], models)
    table = candidate_elbos(models, x, config.elbo_samples, config.seed).add_prefix("elbo_")
    began = time.perf_counter()
    ffg, ffg_star = optimal_elbo_with_qstar(models["diagonal"], x, DiagonalGaussian(), config)
    table["qstar_diagonal"], table["qstar_diagonal_se"] = ffg.elbo_optimal.to_numpy(), ffg.elbo_optimal_se.to_numpy()
    table["qstar_diagonal_seconds"] = (time.perf_counter() - began) / len(x)
    for family, model in models.items():
        if family == "diagonal":
            continue
        began = time.perf_counter()
        best = best_flow_qstar(model, x, model.family, config, ffg_star)
        table[f"qstar_{family}_seconds"] = (time.perf_counter() - began) / len(x)
        table[f"qstar_{family}"], table[f"qstar_{family}_se"] = best.elbo_optimal.to_numpy(), best.elbo_optimal_se.to_numpy()
        table[f"qstar_{family}_start"] = best.start.to_numpy()
    table.index.name = "image"
    return table
