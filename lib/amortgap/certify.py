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
from typing import Callable

import pandas as pd
import torch
from torch import Tensor
from torch.distributions import Distribution

from .ais import AISConfig, ais, bdmc_upper_bound
from .bounds import iwae
from .qstar import QStarConfig, optimal_q, start_for
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
    model, num_points: int, reference: AISConfig, candidates: list[Estimator], qstar: QStarConfig, seed: int = 0
) -> Certification:
    """:func:`certify` on ``num_points`` images simulated from ``model`` (a VAE: z ~ p(z), x ~ p(x|z),
    so z is an exact posterior sample), every estimator started from the diagonal q* of each image."""
    device = next(model.parameters()).device
    x, z = model.sample(num_points, torch.Generator(device).manual_seed(seed))
    with seeded(seed, device):
        q = optimal_q(model, x, config=qstar, init=start_for(model, x)).q
    return certify(model, x, z, q, reference, candidates, seed)


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

