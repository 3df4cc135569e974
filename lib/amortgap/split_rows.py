"""The split of the amortization gap's per-image ELBOs (issue 39, item 2), for one decoder and a batch
of images: L[q] of each candidate encoder of that decoder, all drawn with the same random numbers,
and L[q*] by the gap table's FFG search, started from the encoders the caller names (the best
search kept per image).

A module of its own, apart from the split's summaries (:mod:`amortgap.study.split`), so that a
change of how the split is summarized or drawn does not change the fingerprint of its kept parts
(:mod:`amortgap.parts`).
"""

from __future__ import annotations

import os

import pandas as pd
import torch
from torch import Tensor

from .bounds import elbo
from .families import DiagonalGaussian
from .gaps import DecomposeConfig, optimal_elbo
from .models import VAE, load
from .rng import seeded


def shares_decoder(decoder: VAE, encoders: dict[str, VAE]) -> None:
    """Refuse an encoder whose decoder is not ``decoder``'s, weight for weight: the split compares
    encoders of one model."""
    ours = decoder.decoder.state_dict()
    for name, model in encoders.items():
        theirs = model.decoder.state_dict()
        if ours.keys() != theirs.keys() or not all(torch.equal(ours[k], theirs[k]) for k in ours):
            raise ValueError(f"candidate {name} was not trained on this decoder")


@torch.no_grad()
def candidate_elbos(encoders: dict[str, VAE], x: Tensor, samples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """L[q] of each encoder (columns, by name) on each image of x [N, D] (rows), with ``samples``
    samples drawn from one seed for every encoder (common random numbers: their differences are
    less noisy than their values)."""
    columns = {}
    for name, model in encoders.items():
        with seeded(seed):
            columns[name] = elbo(model, x, num_samples=samples).value.double().numpy()
    return pd.DataFrame(columns)


def evaluate(decoder: str | os.PathLike, candidates: dict[str, str | os.PathLike], x: Tensor, config: DecomposeConfig,
             qstar_from: tuple[str, ...] = ()) -> pd.DataFrame:  # fmt: skip
    """Per image of x [N, D]: ``elbo_<name>`` of the decoder file's own encoder (``joint``, q_joint)
    and of each candidate (weights files whose decoder is the same), with ``config``'s ELBO samples
    and seed. With ``qstar_from`` (encoder names), L[q*] in the FFG family by ``config``'s search
    from each named encoder's q (q_joint's as the gap table starts it), the best per image kept:
    ``qstar_elbo``, ``qstar_elbo_se``, ``qstar_steps``, ``qstar_converged``, and ``qstar_start``,
    the encoder its search started from. (Each search draws its ELBO with the same seeds, so the
    starts are compared on common random numbers.)"""
    if "joint" in candidates:
        raise ValueError("'joint' names the decoder file's own encoder: give the candidates other names")
    model = load(decoder)
    encoders = {"joint": model, **{name: load(path) for name, path in candidates.items()}}
    shares_decoder(model, encoders)
    if unknown := set(qstar_from) - set(encoders):
        raise ValueError(f"q* cannot start from {sorted(unknown)}: the encoders are {sorted(encoders)}")
    table = candidate_elbos(encoders, x, config.elbo_samples, config.seed).add_prefix("elbo_")
    if qstar_from:
        searches = {}
        for name in dict.fromkeys(qstar_from):
            with torch.no_grad():
                start = "encoder" if name == "joint" else DiagonalGaussian().params_from(encoders[name].encode(x))
            searches[name] = optimal_elbo(model, x, DiagonalGaussian(), config, init=start)
        found = pd.concat(searches, names=["start", "image"]).reset_index()
        best = found.loc[found.groupby("image", sort=True).elbo_optimal.idxmax()].set_index("image").sort_index()
        table["qstar_elbo"], table["qstar_elbo_se"] = best.elbo_optimal.to_numpy(), best.elbo_optimal_se.to_numpy()
        table["qstar_steps"], table["qstar_converged"] = best.qstar_steps.to_numpy(), best.qstar_converged.to_numpy()
        table["qstar_start"] = best.start.to_numpy()
    return table
