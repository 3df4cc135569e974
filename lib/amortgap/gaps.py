"""The decomposition of the inference gap, per datapoint (Cremer, Li & Duvenaud 2018):

    log p(x) - L[q]  =  (log p(x) - L[q*])  +  (L[q*] - L[q])
    inference gap       approximation gap       amortization gap

q is the encoder's output, q* the best member of the family for that datapoint (found by
:func:`amortgap.qstar.search_q`), and log p(x) the best of the available estimates: IWAE with q* as
proposal and AIS started from q* (``log_px_from`` picks which, or the larger; AIS by default, since
IWAE with a light-tailed proposal can overshoot when its effective sample size is small). Both ELBOs use common random numbers, so their difference, the
amortization gap, has a small paired standard error; log p(x) carries the standard error of its
chains' (or samples') weights. Each ELBO is also split into its reconstruction term E_q[log p(x|z)]
and its KL term, and so is the amortization gap:

    L[q*] - L[q]  =  (E_q*[log p(x|z)] - E_q[log p(x|z)])  +  (KL(q||p(z)) - KL(q*||p(z)))
                      reconstruction part                        KL part

"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, replace
from typing import Iterator, Literal

import pandas as pd
import torch
from torch import Tensor

from .config import FromSection
from .ais import AISConfig, ais
from .bounds import (MAX_PAIRS, elbo_from_weights, elbo_parts_from_terms, iwae, log_weight_terms_chunked,
                     log_weights_chunked)
from .families import DiagonalGaussian, Family, Params
from .models import LatentVariableModel, load
from .parallel import run_tasks
from .progress import bar
from .qstar import QStarConfig, search_q, start_for
from .rng import seeded

COLUMNS = [
    "log_px", "elbo_optimal", "elbo_amortized",
    "approximation_gap", "amortization_gap", "inference_gap",
    "elbo_optimal_se", "elbo_amortized_se", "amortization_gap_se",
    "log_px_se", "approximation_gap_se", "inference_gap_se",
    "reconstruction_amortized", "kl_amortized", "reconstruction_optimal", "kl_optimal",
    "amortization_gap_reconstruction", "amortization_gap_kl",
    "log_px_iwae", "iwae_ess", "log_px_ais", "ais_acceptance",
    "qstar_steps", "qstar_converged",
    "elbo_samples", "iwae_samples", "ais_chains", "ais_steps", "ais_leapfrog_steps",
]  # fmt: skip
SEARCH_COLUMNS = ["qstar_first_deficit", "qstar_search_uncertainty"]  # only where the q* search has extra starts


@dataclass(frozen=True)
class DecomposeConfig(FromSection):
    """How hard to work for each number. ``iwae_samples=0`` or ``ais=None`` drops that estimate of
    log p(x); ``log_px_from`` names the one reported as ``log_px`` (``"max"``: the larger, as in
    Cremer et al.); ``batch_size`` datapoints form one vectorized problem. ``qstar_restarts`` extra
    starts of the q* search from the prior and ``qstar_perturbed`` from the encoder's q moved by
    ``qstar_perturb_scale`` of its standard deviations (see :func:`amortgap.qstar.search_q`); with
    any, the table gains :data:`SEARCH_COLUMNS` and the search's remaining uncertainty enters the
    standard errors of L[q*] and of both gaps that contain it."""

    elbo_samples: int = 1000
    iwae_samples: int = 5000
    ais: AISConfig | None = field(default_factory=AISConfig)
    qstar: QStarConfig = field(default_factory=QStarConfig)
    qstar_init: str = "encoder"
    qstar_restarts: int = 0
    qstar_perturbed: int = 0
    qstar_perturb_scale: float = 2.0
    log_px_from: Literal["ais", "iwae", "max"] = "ais"
    batch_size: int = 500
    max_pairs: int = MAX_PAIRS
    seed: int = 0

    def __post_init__(self) -> None:
        if self.elbo_samples < 2:
            raise ValueError(f"elbo_samples must be at least 2 (for a standard error), not {self.elbo_samples}")
        if self.iwae_samples < 0:
            raise ValueError(f"iwae_samples must be >= 0, not {self.iwae_samples}")
        needs = {"ais": self.ais is not None, "iwae": self.iwae_samples > 0,
                 "max": self.ais is not None and self.iwae_samples > 0}
        if self.log_px_from not in needs:
            raise ValueError(f"log_px_from must be 'ais', 'iwae' or 'max', not {self.log_px_from!r}")
        if not needs[self.log_px_from]:
            raise ValueError(f"log_px_from={self.log_px_from!r} needs that estimator switched on")
        if self.batch_size < 1 or self.max_pairs < 1:
            raise ValueError("batch_size and max_pairs must be positive")
        if self.qstar_init not in ("encoder", "prior"):
            raise ValueError(f"qstar_init must be 'encoder' or 'prior', not {self.qstar_init!r}")
        if self.qstar_restarts < 0 or self.qstar_perturbed < 0:
            raise ValueError(f"qstar_restarts and qstar_perturbed must be >= 0, not {self.qstar_restarts} and "
                             f"{self.qstar_perturbed}")  # fmt: skip


def decompose(
    model: LatentVariableModel,
    x: Tensor,
    config: DecomposeConfig | None = None,
    family: Family = DiagonalGaussian(),
    progress: bool = False,
    workers: int = 1,
) -> pd.DataFrame:
    """One row per datapoint of x [N, D] with log p(x), L[q*], L[q], the three gaps (nats), their
    standard errors and what each estimate cost. Deterministic for a given ``config.seed``; the
    caller's random state is left untouched. ``config.*`` is stored in ``DataFrame.attrs``. With
    ``workers`` > 1 the batches of ``config.batch_size`` points run in that many single-thread
    processes (each batch seeded by its own seed, so the numbers are those of one process, up to the
    last bits that a thread count changes)."""
    return decompose_with_qstar(model, x, config, family, progress, workers)[0]


def decompose_with_qstar(
    model: LatentVariableModel,
    x: Tensor,
    config: DecomposeConfig | None = None,
    family: Family = DiagonalGaussian(),
    progress: bool = False,
    workers: int = 1,
) -> tuple[pd.DataFrame, Params]:
    """:func:`decompose`, and the parameters of the q* it found, rows [N, ...] (to start another
    family's q* from it, say)."""
    config = config or DecomposeConfig()
    if x.dim() != 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty [N, D] tensor, not of shape {tuple(x.shape)}")
    if config.ais is not None and not isinstance(family, DiagonalGaussian):
        raise ValueError("AIS must start from a q* with a density everywhere, which a flow lacks: "
                         "decompose with the diagonal family, and get the flow's L[q*] from optimal_elbo")
    if workers > 1:
        tasks = [(model, x[start : start + config.batch_size], config, family, seed)
                 for start, seed in _batch_seeds(x, config)]  # fmt: skip
        batches = run_tasks(_decompose_seeded, tasks, workers, desc="decompose batches", progress=progress)
    else:
        batches = [_decompose_batch(model, xb, config, family, progress) for _, xb in _seeded_batches(x, config, progress)]
    table = pd.concat([rows for rows, _ in batches], ignore_index=True)
    table = table[COLUMNS + [c for c in SEARCH_COLUMNS if c in table]]
    table.index.name = "datapoint"
    table.attrs["config"] = asdict(config)
    params = {k: torch.cat([p[k] for _, p in batches]) for k in batches[0][1]}
    return table, params


def _decompose_batch(
    model: LatentVariableModel, x: Tensor, config: DecomposeConfig, family: Family, progress: bool
) -> tuple[pd.DataFrame, Params]:
    S = config.elbo_samples
    with torch.no_grad():
        q = model.encode(x)
    search = search_q(model, x, family, config.qstar, config.qstar_init, prior_starts=config.qstar_restarts,
                      perturbed_starts=config.qstar_perturbed, perturb_scale=config.qstar_perturb_scale,
                      progress=progress, max_pairs=config.max_pairs)  # fmt: skip
    qstar, several = search.result, len(search.starts) > 1
    search_se = search.search_uncertainty if several else torch.zeros_like(search.elbos[0])
    crn_seed = int(torch.randint(2**62, ()))
    with seeded(crn_seed, x.device):
        terms_amortized = log_weight_terms_chunked(model, x, q, S, config.max_pairs)
    with seeded(crn_seed, x.device):
        terms_optimal = log_weight_terms_chunked(model, x, qstar.q, S, config.max_pairs)
    lw_amortized, lw_optimal = sum(terms_amortized), sum(terms_optimal)
    amortized, optimal = elbo_from_weights(lw_amortized), elbo_from_weights(lw_optimal)
    parts_amortized, parts_optimal = elbo_parts_from_terms(*terms_amortized), elbo_parts_from_terms(*terms_optimal)

    nan = torch.full_like(optimal.value, math.nan)
    log_px_iwae, ess, iwae_se = nan, nan, nan
    if config.iwae_samples:
        estimate = iwae(model, x, qstar.q, config.iwae_samples, config.max_pairs)
        log_px_iwae, ess, iwae_se = estimate.value, estimate.ess, estimate.stderr
    log_px_ais, acceptance, ais_se = nan, nan, nan
    if config.ais is not None:
        result = ais(model, x, qstar.q, config.ais, progress)
        log_px_ais, acceptance, ais_se = result.log_px, result.acceptance, result.log_px_se
    if config.log_px_from == "max":
        use_iwae = log_px_iwae > log_px_ais
    else:
        use_iwae = torch.full_like(nan, config.log_px_from == "iwae", dtype=torch.bool)
    log_px, log_px_se = torch.where(use_iwae, log_px_iwae, log_px_ais), torch.where(use_iwae, iwae_se, ais_se)

    ais_cfg = config.ais or AISConfig()
    columns = {
        "log_px": log_px,
        "elbo_optimal": optimal.value,
        "elbo_amortized": amortized.value,
        "approximation_gap": log_px - optimal.value,
        "amortization_gap": optimal.value - amortized.value,
        "inference_gap": log_px - amortized.value,
        "elbo_optimal_se": torch.hypot(optimal.stderr, search_se),  # hypot(a, 0) is a, bit for bit
        "elbo_amortized_se": amortized.stderr,
        "amortization_gap_se": torch.hypot((lw_optimal - lw_amortized).std(0) / math.sqrt(S), search_se),
        "log_px_se": log_px_se,
        "approximation_gap_se": torch.hypot((log_px_se**2 + optimal.stderr**2).sqrt(), search_se),
        "inference_gap_se": (log_px_se**2 + amortized.stderr**2).sqrt(),
        "reconstruction_amortized": parts_amortized.reconstruction,
        "kl_amortized": parts_amortized.kl,
        "reconstruction_optimal": parts_optimal.reconstruction,
        "kl_optimal": parts_optimal.kl,
        "amortization_gap_reconstruction": parts_optimal.reconstruction - parts_amortized.reconstruction,
        "amortization_gap_kl": parts_amortized.kl - parts_optimal.kl,
        "log_px_iwae": log_px_iwae,
        "iwae_ess": ess,
        "log_px_ais": log_px_ais,
        "ais_acceptance": acceptance,
        "qstar_steps": qstar.steps,
        "qstar_converged": qstar.converged,
    }
    table = pd.DataFrame({k: _to_numpy(v) for k, v in columns.items()})
    table["elbo_samples"] = S
    table["iwae_samples"] = config.iwae_samples
    table["ais_chains"] = ais_cfg.chains if config.ais else 0
    table["ais_steps"] = ais_cfg.steps if config.ais else 0
    table["ais_leapfrog_steps"] = ais_cfg.leapfrog_steps if config.ais else 0
    if several:
        table["qstar_first_deficit"] = _to_numpy(search.first_start_deficit)
        table["qstar_search_uncertainty"] = _to_numpy(search_se)
    return table, qstar.params


def decompose_checkpoint(path: str | os.PathLike, x: Tensor, config: DecomposeConfig | None = None) -> pd.DataFrame:
    """:func:`decompose` of the model saved at ``path`` (for worker processes: a path travels light)."""
    return decompose(load(path), x, config)


def optimal_elbo(
    model: LatentVariableModel,
    x: Tensor,
    family: Family,
    config: DecomposeConfig | None = None,
    init: str | Params = "encoder",
) -> pd.DataFrame:
    """L[q*] per datapoint of x [N, D] for ``family`` (e.g. a richer one than the encoder's), with
    ``config``'s q* search (its rule and its extra starts), ELBO sample count, batching and seed:
    columns ``elbo_optimal``, ``elbo_optimal_se``, ``qstar_steps``, ``qstar_converged``. ``init`` is
    "encoder", "prior" (where the encoder's q cannot start ``family``), or starting parameters,
    rows [N, ...]: a non-convex family such as a flow can end in a worse optimum from one start than
    from another, so compare starts and keep the best. Perturbed-encoder starts run only where the
    encoder's q can start ``family``."""
    return optimal_elbo_with_qstar(model, x, family, config, init)[0]


def optimal_elbo_with_qstar(
    model: LatentVariableModel,
    x: Tensor,
    family: Family,
    config: DecomposeConfig | None = None,
    init: str | Params = "encoder",
) -> tuple[pd.DataFrame, Params]:
    """:func:`optimal_elbo`, and the parameters of the q* it found, rows [N, ...] (to start another
    family's q* from it, say)."""
    config = config or DecomposeConfig()
    perturbed = config.qstar_perturbed if start_for(model, x[:1], family) == "encoder" else 0
    rows, found = [], []
    for start, xb in _seeded_batches(x, config):
        first = init if isinstance(init, str) else {k: v[start : start + config.batch_size] for k, v in init.items()}
        qstar = search_q(model, xb, family, config.qstar, first, prior_starts=config.qstar_restarts,
                         perturbed_starts=perturbed, perturb_scale=config.qstar_perturb_scale,
                         max_pairs=config.max_pairs).result  # fmt: skip
        estimate = elbo_from_weights(log_weights_chunked(model, xb, qstar.q, config.elbo_samples, config.max_pairs))
        rows.append(pd.DataFrame({"elbo_optimal": _to_numpy(estimate.value), "elbo_optimal_se": _to_numpy(estimate.stderr),
                                  "qstar_steps": _to_numpy(qstar.steps), "qstar_converged": _to_numpy(qstar.converged)}))  # fmt: skip
        found.append(qstar.params)
    table = pd.concat(rows, ignore_index=True)
    table.index.name = "datapoint"
    return table, {k: torch.cat([p[k].detach() for p in found]) for k in found[0]}


def best_flow_qstar(
    model: LatentVariableModel, x: Tensor, family: Family, config: DecomposeConfig, ffg_star: Params,
    more_starts: tuple[int, int] = (0, 0),
) -> pd.DataFrame:
    """L[q*] in flow ``family`` per image of x [N, D]. A flow's ELBO is not concave in its parameters,
    so q* is the better of two searches: one from the encoder's q (an FFG is a flow with identity
    layers), with ``more_starts`` = (prior starts, perturbed starts) besides, and one from the FFG q*
    ``ffg_star`` (parameters [N, d]) with identity layers. :func:`optimal_elbo`'s table of the
    winning search per image, with its ``start`` ("encoder" or "ffg_qstar")."""
    one_start = replace(config, qstar_restarts=0, qstar_perturbed=0)
    searches = {"encoder": optimal_elbo(model, x, family, replace(one_start, qstar_restarts=more_starts[0],
                                                                  qstar_perturbed=more_starts[1]), init="encoder"),
                "ffg_qstar": optimal_elbo(model, x, family, one_start,
                                          init=family.params_from(DiagonalGaussian().distribution(ffg_star)))}  # fmt: skip
    from_encoder = searches["encoder"].elbo_optimal >= searches["ffg_qstar"].elbo_optimal
    best = searches["ffg_qstar"].copy()
    best.loc[from_encoder] = searches["encoder"].loc[from_encoder]
    best["start"] = from_encoder.map({True: "encoder", False: "ffg_qstar"})
    return best


def _to_numpy(values: Tensor):
    """Floats as float64 (so rounding prints cleanly), integers and booleans as they are."""
    array = values.detach().cpu().numpy()
    return array.astype("float64") if values.is_floating_point() else array


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard error of the mean over datapoints of the six headline columns."""
    cols = COLUMNS[:6]
    return pd.DataFrame({"mean": table[cols].mean(), "sem": table[cols].sem()})


def _batch_seeds(x: Tensor, config: DecomposeConfig) -> list[tuple[int, int]]:
    """(start, seed) of each batch of ``config.batch_size`` rows of x, the seeds drawn from
    ``config.seed`` (the caller's RNG untouched)."""
    starts = range(0, x.shape[0], config.batch_size)
    with seeded(config.seed, x.device):
        seeds = torch.randint(2**62, (len(starts),)).tolist()
    return list(zip(starts, seeds))


def _seeded_batches(x: Tensor, config: DecomposeConfig, progress: bool = False) -> Iterator[tuple[int, Tensor]]:
    """(start, rows [b, D]) of x in batches of ``config.batch_size``; the caller's work on each batch
    runs seeded by that batch's own seed (:func:`_batch_seeds`)."""
    batches = _batch_seeds(x, config)
    for start, seed in bar(batches, desc="decompose batches", show=progress):
        with seeded(seed, x.device):
            yield start, x[start : start + config.batch_size]


def _decompose_seeded(model: LatentVariableModel, x: Tensor, config: DecomposeConfig, family: Family,
                      seed: int) -> tuple[pd.DataFrame, Params]:  # fmt: skip
    """One batch of :func:`decompose` under its own seed (a worker process's task)."""
    with seeded(seed, x.device):
        return _decompose_batch(model, x, config, family, False)
