"""Is log p(x) trustworthy? Estimator certification on data simulated from the model itself.

On x simulated by z ~ p(z), x ~ p(x|z), the generating z is an exact posterior sample, so BDMC
(Grosse et al. 2015; Wu et al. 2017) gives a stochastic *upper* bound on log p(x) beside AIS's lower
bound. When the two meet (a narrow sandwich), the long AIS run is a certified reference, and each
cheaper estimator's error against it says how much of a "gap" could be estimator bias.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import pandas as pd
import torch
from torch import Tensor
from torch.distributions import Distribution

from .ais import AISConfig, AISResult, ais, bdmc_upper_bound
from .bounds import iwae
from .families import DiagonalGaussian, Family
from .qstar import QStarConfig, optimal_q, search_q, start_for
from .models import LatentVariableModel
from .rng import seeded

Estimator = AISConfig | int  # an AIS configuration, or the number of IWAE samples


def estimator_name(estimator: Estimator) -> str:
    """``ais_<steps>x<chains>`` or ``iwae_<k>``."""
    if isinstance(estimator, AISConfig):
        return f"ais_{estimator.steps}x{estimator.chains}"
    return f"iwae_{estimator}"


def evaluations(estimator: Estimator) -> int:
    """Decoder evaluations per datapoint (gradient evaluations for AIS, forward passes for IWAE)."""
    return estimator.gradient_evaluations if isinstance(estimator, AISConfig) else int(estimator)


@dataclass
class Certification:
    """Per-datapoint estimates, one column per estimator [N], with the reference bounds, plus the
    seconds each estimator took per datapoint."""

    estimates: pd.DataFrame
    seconds_per_point: dict[str, float]
    evaluations: dict[str, int]

    def summary(self) -> pd.DataFrame:
        """Per candidate estimator: mean error against the reference lower bound (nats; positive =
        below it), its standard error over datapoints, decoder evaluations and seconds per datapoint.
        The last row, ``sandwich``, is the mean width of [reference AIS, BDMC upper bound], with the
        reference's cost."""
        reference = self.estimates["reference_ais"]
        rows = {}
        for name in self.estimates.columns.drop(["reference_ais", "bdmc_upper"]):
            diff = reference - self.estimates[name]
            rows[name] = {"error_nats": diff.mean(), "error_se": diff.std() / math.sqrt(len(diff)),
                          "evaluations": self.evaluations[name], "seconds_per_point": self.seconds_per_point[name]}  # fmt: skip
        sandwich = self.estimates["bdmc_upper"] - reference
        rows["sandwich"] = {"error_nats": sandwich.mean(), "error_se": sandwich.std() / math.sqrt(len(sandwich)),
                            "evaluations": self.evaluations["reference_ais"] + self.evaluations["bdmc_upper"],
                            "seconds_per_point": self.seconds_per_point["reference_ais"] + self.seconds_per_point["bdmc_upper"]}  # fmt: skip
        return pd.DataFrame.from_dict(rows, orient="index")


def certify(
    model: LatentVariableModel,
    x: Tensor,
    z: Tensor,
    q: Distribution,
    reference: AISConfig,
    candidates: list[Estimator],
    seed: int = 0,
) -> Certification:
    """Run the reference AIS and BDMC from q (batch [N]) on simulated x [N, D] with generating z
    [N, d], and every candidate estimator from the same q. Deterministic for a given ``seed``."""
    estimates: dict[str, Tensor] = {}
    seconds: dict[str, float] = {}
    counts: dict[str, int] = {}

    def timed(name: str, cost: int, fn: Callable[[], Tensor]) -> None:
        start = time.perf_counter()
        estimates[name] = fn()
        seconds[name] = (time.perf_counter() - start) / x.shape[0]
        counts[name] = cost

    with seeded(seed, x.device):
        timed("reference_ais", evaluations(reference), lambda: ais(model, x, q, reference).log_px)
        timed("bdmc_upper", evaluations(reference), lambda: bdmc_upper_bound(model, x, z, q, reference).log_px)
        for estimator in candidates:
            if isinstance(estimator, AISConfig):
                fn = lambda e=estimator: ais(model, x, q, e).log_px  # noqa: E731
            else:
                fn = lambda k=estimator: iwae(model, x, q, k).value  # noqa: E731
            timed(estimator_name(estimator), evaluations(estimator), fn)
    table = pd.DataFrame({k: v.detach().cpu().double().numpy() for k, v in estimates.items()})
    table.index.name = "datapoint"
    return Certification(table, seconds, counts)


def cheapest_within(summary: pd.DataFrame, tolerance: float = 0.1) -> str | None:
    """The candidate with the fewest evaluations whose |error| + 2 standard errors <= tolerance."""
    candidates = summary.drop(index="sandwich", errors="ignore")
    ok = candidates[candidates.error_nats.abs() + 2 * candidates.error_se <= tolerance]
    return None if ok.empty else ok.evaluations.idxmin()


def certify_simulated(
    model, num_points: int, reference: AISConfig, candidates: list[Estimator], qstar: QStarConfig, seed: int = 0,
    start: str = "qstar",
) -> Certification:
    """:func:`certify` on ``num_points`` images simulated from ``model`` (a VAE: z ~ p(z), x ~ p(x|z),
    so z is an exact posterior sample), every estimator started from the diagonal q* of each image
    (``start="qstar"``) or from the prior (``start="prior"``; IWAE then samples the prior)."""
    if start not in ("qstar", "prior"):
        raise ValueError(f"start must be 'qstar' or 'prior', not {start!r}")
    device = next(model.parameters()).device
    x, z = model.sample(num_points, torch.Generator(device).manual_seed(seed))
    if start == "prior":
        family = DiagonalGaussian()
        q = family.distribution(family.prior_params(num_points, model.latent_dim, x))
    else:
        with seeded(seed, device):
            q = optimal_q(model, x, config=qstar, init=start_for(model, x)).q
    return certify(model, x, z, q, reference, candidates, seed)


def ais_against_reference(
    model: LatentVariableModel,
    x: Tensor,
    starts: dict[str, Distribution | None],
    reference: AISConfig,
    candidates: Sequence[AISConfig],
    seed: int = 0,
) -> pd.DataFrame:
    """AIS at each candidate setting and at a long ``reference`` setting, from each named start
    (a q of batch [N], or None for the prior), on images x [N, D] that have no exact log p(x).

    One row per (start, estimator, datapoint): ``log_px``, ``log_px_se`` (over the chains),
    ``evaluations`` and ``seconds_per_point``, and ``error``: the yardstick minus the estimate, so
    positive where the estimate lies below. The yardstick is the reference run from the first start
    (put the best start first: from the prior, even a long run scatters by its wide SE, and the
    largest of several noisy runs would be biased upwards). A longer run of the same estimator can
    fail with it (a mode that no chain finds), so agreement with it *validates* a setting; only an
    exact value or a BDMC bracket certifies one. Deterministic for a given ``seed``; every run gets
    its own seed."""
    if not starts:
        raise ValueError("name at least one start (a q, or None for the prior)")
    table = pd.concat([_timed_run(start, "reference" if j == 0 else estimator_name(config), config, seed + 1000 * i + j,
                                  x, lambda q=q, config=config: ais(model, x, q, config))
                       for i, (start, q) in enumerate(starts.items())
                       for j, config in enumerate([reference, *candidates])], ignore_index=True)  # fmt: skip
    table["error"] = table.datapoint.map(_log_px_of(table, next(iter(starts)), "reference")) - table.log_px
    return table


def _timed_run(start: str, estimator: str, config: AISConfig, seed: int, x: Tensor, run: Callable[[], AISResult]) -> pd.DataFrame:
    """One AIS (or BDMC) ``run`` on x [N, D] under ``seed``: a row per datapoint with its start,
    estimator, cost, seconds per datapoint, log_px and log_px_se."""
    with seeded(seed, x.device):
        began = time.perf_counter()
        result = run()
        seconds = (time.perf_counter() - began) / x.shape[0]
    return pd.DataFrame({"start": start, "estimator": estimator, "datapoint": range(x.shape[0]),
                         "evaluations": config.gradient_evaluations, "seconds_per_point": seconds,
                         "log_px": result.log_px.cpu().double().numpy(),
                         "log_px_se": result.log_px_se.cpu().double().numpy()})  # fmt: skip


def _log_px_of(table: pd.DataFrame, start: str, estimator: str) -> pd.Series:
    """The log_px of one (start, estimator) of a run table, indexed by datapoint."""
    return table[(table.start == start) & (table.estimator == estimator)].set_index("datapoint").log_px


def reference_summary(table: pd.DataFrame, off_nats: float = 0.3) -> pd.DataFrame:
    """Per (start, estimator) of :func:`ais_against_reference`'s table: the mean error over images
    and its standard error, the 95th percentile and the largest error, the mean reported standard
    error, the share of images whose error exceeds twice its reported SE, ``share_off``: the share
    whose error is larger than ``off_nats`` either way, and ``within_se``: the
    mean error plus two of its standard errors is below the mean reported SE (the error a reader
    would not see in the interval)."""
    rows = []
    for (start, estimator), g in table.groupby(["start", "estimator"], sort=False):
        n = len(g)
        mean, se = g.error.mean(), g.error.std() / math.sqrt(n) if n > 1 else math.nan
        rows.append({"start": start, "estimator": estimator, "evaluations": int(g.evaluations.iloc[0]),
                     "seconds_per_point": float(g.seconds_per_point.iloc[0]), "error_nats": mean, "error_se": se,
                     "error_p95": g.error.quantile(0.95), "error_max": g.error.max(), "reported_se": g.log_px_se.mean(),
                     "share_beyond_2se": float((g.error > 2 * g.log_px_se).mean()),
                     "share_off": float((g.error.abs() > off_nats).mean()),
                     "within_se": bool(mean + 2 * se < g.log_px_se.mean())})  # fmt: skip
        if "error_upper" in g and g.error_upper.notna().all():  # simulated images: the error against BDMC, too
            upper = g.error_upper.mean()
            rows[-1] |= {"error_upper_nats": upper, "error_upper_se": g.error_upper.std() / math.sqrt(n) if n > 1 else math.nan}
            rows[-1]["within_se"] &= bool(upper + 2 * rows[-1]["error_upper_se"] < g.log_px_se.mean())
    return pd.DataFrame(rows)


def validate_real(
    model: LatentVariableModel,
    x: Tensor,
    qstar: QStarConfig,
    prior_starts: int,
    perturbed_starts: int,
    perturb_scale: float,
    reference: AISConfig,
    candidates: Sequence[AISConfig],
    seed: int = 0,
    family: Family = DiagonalGaussian(),
    from_prior: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Issue 22's checks on real images x [N, D], which have no exact log p(x): the q* of ``family``
    (the model's own: a diagonal Gaussian or a planar flow) searched from several starts
    (:func:`amortgap.qstar.search_q`: the encoder's start where it can start that family, else the
    prior's; perturbed-encoder starts only in the first case), then AIS at each candidate setting and
    at the long ``reference`` from the diagonal q* (the searched one, or for another family one
    search from the start the gap table uses) and, if ``from_prior``, from the prior
    (:func:`ais_against_reference`, yardstick: the reference from q*). Returns the search's table
    (one row per image, :meth:`amortgap.qstar.QStarSearch.table`) and the AIS table."""
    init = start_for(model, x, family)
    with seeded(seed, x.device):
        search = search_q(model, x, family, qstar, init, prior_starts=prior_starts,
                          perturbed_starts=perturbed_starts if init == "encoder" else 0, perturb_scale=perturb_scale)
        start = (search.result.q if isinstance(family, DiagonalGaussian)
                 else optimal_q(model, x, config=qstar, init=start_for(model, x)).q)  # fmt: skip
    starts = {"qstar": start} | ({"prior": None} if from_prior else {})
    return search.table(), ais_against_reference(model, x, starts, reference, candidates, seed)


def validate_simulated(
    model, num_points: int, qstar: QStarConfig, reference: AISConfig, candidates: Sequence[AISConfig], seed: int = 0,
    from_prior: bool = True,
) -> pd.DataFrame:
    """AIS at each candidate and at the ``reference`` setting, from the diagonal q* and (if
    ``from_prior``) from the prior, on ``num_points`` images simulated from ``model`` (z ~ p(z), x ~ p(x|z)), with BDMC at
    the reference setting from the generating z, which is an exact posterior sample: a stochastic
    upper bound. :func:`ais_against_reference`'s table (yardstick: the reference from q*), with
    BDMC's rows (estimator ``bdmc``) and ``error_upper``, the BDMC bound from q* minus the estimate:
    the true error lies between ``error`` and ``error_upper`` (up to the bounds' noise)."""
    device = next(model.parameters()).device if isinstance(model, torch.nn.Module) else torch.device("cpu")
    x, z = model.sample(num_points, torch.Generator(device).manual_seed(seed))
    with seeded(seed, device):
        q = optimal_q(model, x, config=qstar, init=start_for(model, x)).q
    starts = {"qstar": q} | ({"prior": None} if from_prior else {})
    table = ais_against_reference(model, x, starts, reference, candidates, seed)
    bdmc = pd.concat([_timed_run(start, "bdmc", reference, seed + 1000 * i + 999, x,
                                 lambda init=init: bdmc_upper_bound(model, x, z, init, reference))
                      for i, (start, init) in enumerate(starts.items())], ignore_index=True)  # fmt: skip
    bdmc["error"] = bdmc.datapoint.map(_log_px_of(table, "qstar", "reference")) - bdmc.log_px
    table = pd.concat([table, bdmc], ignore_index=True)
    table["error_upper"] = table.datapoint.map(_log_px_of(table, "qstar", "bdmc")) - table.log_px
    return table


def ais_convergence(
    model: LatentVariableModel, x: Tensor, steps: list[int], chains: int, qstar: QStarConfig, seed: int = 0
) -> pd.DataFrame:
    """AIS's log p(x) on real images x [N, D] against its number of annealing steps, from each image's
    diagonal q*: one row per (steps, datapoint) with ``log_px``, ``log_px_se`` (over the chains) and
    the gradient ``evaluations`` per image. Where no exact value exists, a curve that has flattened
    is the evidence that longer runs would not move the estimate."""
    with seeded(seed, x.device):
        q = optimal_q(model, x, config=qstar, init=start_for(model, x)).q
    rows = []
    for k in steps:
        config = AISConfig(steps=k, chains=chains)
        with seeded(seed + k, x.device):
            result = ais(model, x, q, config)
        rows.append(pd.DataFrame({"steps": k, "datapoint": range(x.shape[0]), "evaluations": config.gradient_evaluations,
                                  "log_px": result.log_px.cpu().double().numpy(),
                                  "log_px_se": result.log_px_se.cpu().double().numpy()}))  # fmt: skip
    return pd.concat(rows, ignore_index=True)

