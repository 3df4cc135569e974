"""The amortization gap split into its parts (issue 39, item 2), on one campaign run's decoders.

Each decoder comes with its jointly trained encoder, q_joint. The best encoder of that architecture
found, q_best, is the best of the candidates (q_joint itself; encoders trained against the frozen
decoder: fresh, from q_joint, or from q_joint distilled onto per-image q*), chosen by mean ELBO on
training images that no reported number uses (:class:`amortgap.study.split_targets.SplitImages`).
Per reported image,

- expressivity, L[q*] - L[q_best]: what no encoder of this architecture has been shown to reach;
- optimisation, L[q_best] - L[q_joint]: what joint training left that another encoder found;

and the two add up to the amortization gap L[q*] - L[q_joint]. q_best only bounds the best encoder
of the architecture from below, so in the mean expressivity is an upper bound and optimisation a
lower bound. Generalisation, the test gap minus the training gap, splits the same way.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..bounds import elbo
from ..models import VAE
from ..rng import seeded
from ..stats import Interval, crossed_interval, t_quantile

PARTS = ("expressivity", "optimisation", "amortization_gap")


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


def choose_best(selection: pd.DataFrame, joint: str = "joint") -> str:
    """The candidate (a column of per-image ELBOs on the selection images) of highest mean ELBO;
    ``joint`` wins a tie, so another candidate must do strictly better to replace it."""
    means = selection.mean()
    best = means.idxmax()
    return joint if means[joint] >= means[best] else best


def parts_per_image(qstar: pd.Series, elbos: pd.DataFrame, best: str, joint: str = "joint") -> pd.DataFrame:
    """Per image: L[q*], L[q_best], L[q_joint] and :data:`PARTS` (nats); ``qstar`` and ``elbos``
    share the images' index."""
    table = pd.DataFrame({"qstar_elbo": qstar, "best_elbo": elbos[best], "joint_elbo": elbos[joint]})
    return table.assign(expressivity=table.qstar_elbo - table.best_elbo, optimisation=table.best_elbo - table.joint_elbo,
                        amortization_gap=table.qstar_elbo - table.joint_elbo)  # fmt: skip


def summary(rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per group of ``by`` and part: the mean with its 95% interval over the images (one seed),
    median, 10% and 90% quantiles."""
    found = []
    for key, g in rows.groupby(by, sort=False):
        for part in PARTS:
            values = g[part].to_numpy()
            found.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))), "quantity": part,
                          **vars(crossed_interval(values[None])), "median": float(np.median(values)),
                          "q10": float(np.quantile(values, 0.1)), "q90": float(np.quantile(values, 0.9)), "images": len(values)})  # fmt: skip
    return pd.DataFrame(found)


def difference_of_means(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> Interval:
    """mean(a) - mean(b) for two independent samples (other images), with Welch's interval."""
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se > 0 else 1
    mean = float(a.mean() - b.mean())
    half = t_quantile(0.5 + level / 2, max(int(df), 1)) * se
    return Interval(mean, mean - half, mean + half, level, se)


def generalisation(rows: pd.DataFrame, by: str = "decoder") -> pd.DataFrame:
    """Per group of ``by`` and part: the test images' mean minus the training images' (rows'
    ``split``), with Welch's 95% interval. The amortization gap's difference is the sum of its two
    parts' (to rounding)."""
    found = []
    for key, g in rows.groupby(by, sort=False):
        for part in PARTS:
            change = difference_of_means(g[g.split == "test"][part].to_numpy(), g[g.split == "train"][part].to_numpy())
            found.append({by: key, "quantity": part, **vars(change)})
    return pd.DataFrame(found)
