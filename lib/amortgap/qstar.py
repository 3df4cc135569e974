"""Per-datapoint optimisation of the variational parameters: q* and semi-amortized refinement.

All datapoints are optimised together as one vectorized problem: the objective is the sum of
per-datapoint ELBO estimates, so each row of the parameter tensors receives exactly its own
datapoint's gradient, and Adam, being elementwise, updates each row as if it were alone. Each
datapoint follows its own stopping rule; a converged row leaves the active set and costs nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, Sequence

import pandas as pd
import torch
from torch import Tensor
from torch.distributions import Distribution

from .config import FromSection
from .bounds import MAX_PAIRS, elbo, log_weights, log_weights_chunked
from .families import DiagonalGaussian, Family, Params
from .models import LatentVariableModel
from .latents import pixel_accuracy
from .progress import bar
from .rng import seeded

Schedule = Literal["constant", "linear"]


@dataclass(frozen=True)
class QStarConfig(FromSection):
    """Stochastic-gradient ascent on each datapoint's ELBO with Adam.

    Every ``window`` steps a datapoint compares the mean of its ELBO estimates over the window with
    its best window so far; after ``patience`` windows without an improvement of ``tolerance`` nats
    its learning rate is multiplied by ``lr_decay``, and once it falls below ``min_lr`` the
    datapoint has converged. Decaying the step size removes the jitter that a constant-rate Adam
    leaves in the optimum; ``max_steps`` bounds the work per datapoint.
    """

    lr: float = 3e-2
    num_samples: int = 20
    window: int = 50
    patience: int = 2
    tolerance: float = 0.01
    lr_decay: float = 0.3
    min_lr: float = 3e-4
    max_steps: int = 5000
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8

    def __post_init__(self) -> None:
        if min(self.lr, self.min_lr, self.num_samples, self.window, self.max_steps) <= 0:
            raise ValueError("lr, min_lr, num_samples, window and max_steps must be positive")
        if not 0 < self.lr_decay < 1:
            raise ValueError(f"lr_decay must be in (0, 1), not {self.lr_decay}")
        if self.patience < 1:
            raise ValueError(f"patience must be at least 1, not {self.patience}")


@dataclass
class LocalResult:
    """Optimised parameters (rows [B, ...]), their distribution, and the steps each row took [B]."""

    params: Params
    q: Distribution
    steps: Tensor
    converged: Tensor


class _RowAdam:
    """Adam (gradient *ascent*) on the rows of a dict of [B, ...] tensors, one step count per row,
    so that rows can join and leave the active set independently."""

    def __init__(self, params: Params, lr: Tensor, betas: tuple[float, float], eps: float):
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.m = {k: torch.zeros_like(v) for k, v in params.items()}
        self.v = {k: torch.zeros_like(v) for k, v in params.items()}
        self.t = torch.zeros(lr.shape[0], dtype=lr.dtype, device=lr.device)

    def step(self, rows: Tensor, grads: Params) -> None:
        b1, b2 = self.betas
        self.t[rows] += 1
        t = self.t[rows]
        for k, g in grads.items():
            shape = (-1,) + (1,) * (g.dim() - 1)
            m = self.m[k][rows] * b1 + (1 - b1) * g
            v = self.v[k][rows] * b2 + (1 - b2) * g * g
            self.m[k][rows], self.v[k][rows] = m, v
            m_hat = m / (1 - b1**t).view(shape)
            v_hat = v / (1 - b2**t).view(shape)
            self.params[k][rows] += self.lr[rows].view(shape) * m_hat / (v_hat.sqrt() + self.eps)


def _elbo_gradients(
    model: LatentVariableModel, x: Tensor, family: Family, params: Params, num_samples: int, max_pairs: int
) -> tuple[Tensor, Params]:
    """A reparameterized estimate of each row's ELBO [b] and its gradient w.r.t. the rows' params.

    Rows are taken in chunks of at most ``max_pairs`` (sample, datapoint) pairs: each row's gradient
    is its own, so chunking changes only which random numbers each row sees, and it keeps the
    decoder's activations in cache (a 500-row batch in one piece ran 1.8x slower per row here)."""
    rows = max(1, max_pairs // num_samples)
    parts = [_chunk_gradients(model, x[i : i + rows], family, {k: v[i : i + rows] for k, v in params.items()},
                              num_samples) for i in range(0, x.shape[0], rows)]  # fmt: skip
    estimate = torch.cat([e for e, _ in parts])
    return estimate, {k: torch.cat([g[k] for _, g in parts]) for k in params}


def _chunk_gradients(
    model: LatentVariableModel, x: Tensor, family: Family, params: Params, num_samples: int
) -> tuple[Tensor, Params]:
    with torch.enable_grad():
        leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
        estimate = log_weights(model, x, family.distribution(leaves), num_samples).mean(0)
        grads = torch.autograd.grad(estimate.sum(), list(leaves.values()))
    return estimate.detach(), dict(zip(leaves, grads))


def optimise(
    model: LatentVariableModel,
    x: Tensor,
    init: Params,
    family: Family = DiagonalGaussian(),
    config: QStarConfig = QStarConfig(),
    *,
    fixed_steps: int | None = None,
    schedule: Schedule = "constant",
    progress: bool = False,
    max_pairs: int = MAX_PAIRS,
) -> LocalResult:
    """Maximise each datapoint's ELBO over its own parameters, starting from ``init`` (rows [B, ...]).

    With ``fixed_steps`` every datapoint takes exactly that many steps (semi-amortized refinement)
    at ``config.lr``, held constant or (``schedule="linear"``) falling linearly to zero over the
    steps; otherwise each stops on the rule of :class:`QStarConfig`. Each step evaluates the decoder
    on at most ``max_pairs`` (sample, datapoint) pairs at a time.
    """
    if max_pairs < 1:
        raise ValueError(f"max_pairs must be positive, not {max_pairs}")
    if schedule not in ("constant", "linear"):
        raise ValueError(f"schedule must be 'constant' or 'linear', not {schedule!r}")
    B = x.shape[0]
    params = {k: v.detach().clone() for k, v in init.items()}
    lr = torch.full((B,), config.lr, dtype=x.dtype, device=x.device)
    adam = _RowAdam(params, lr, config.adam_betas, config.adam_eps)
    best = torch.full((B,), -torch.inf, dtype=x.dtype, device=x.device)
    stalls = torch.zeros(B, dtype=torch.long, device=x.device)
    window_sum = torch.zeros(B, dtype=x.dtype, device=x.device)
    active = torch.ones(B, dtype=torch.bool, device=x.device)
    steps = torch.zeros(B, dtype=torch.long, device=x.device)
    budget = config.max_steps if fixed_steps is None else fixed_steps
    steps_bar = bar(total=budget, desc="q* steps" if fixed_steps is None else "refinement steps", show=progress, leave=False)
    for step in range(1, budget + 1):
        rows = active.nonzero().squeeze(1)
        estimate, grads = _elbo_gradients(
            model, x[rows], family, {k: v[rows] for k, v in params.items()}, config.num_samples, max_pairs
        )
        if fixed_steps is not None and schedule == "linear":
            adam.lr = lr * (1 - (step - 1) / fixed_steps)
        if step % config.window == 0 and not torch.isfinite(estimate).all():  # the check torch.distributions skips
            bad = rows[~torch.isfinite(estimate)].tolist()
            raise FloatingPointError(f"the ELBO of datapoint(s) {bad[:10]} of this batch is not finite at q* step {step}")
        adam.step(rows, grads)
        steps[rows] += 1
        steps_bar.update()
        if fixed_steps is not None:
            continue
        window_sum[rows] += estimate
        if step % config.window == 0:
            mean = window_sum / config.window
            improved = active & (mean > best + config.tolerance)
            best = torch.where(improved, mean, best)
            stalls = torch.where(improved, 0, stalls + active.long())
            decay = stalls >= config.patience
            lr = torch.where(decay, lr * config.lr_decay, lr)
            adam.lr = lr
            stalls = torch.where(decay, 0, stalls)
            active &= lr >= config.min_lr
            window_sum.zero_()
            steps_bar.set_postfix(active=int(active.sum()))
            if not active.any():
                break
    steps_bar.close()
    converged = ~active if fixed_steps is None else torch.ones_like(active)
    return LocalResult(params, family.distribution(params), steps, converged)


def optimal_q(
    model: LatentVariableModel,
    x: Tensor,
    family: Family = DiagonalGaussian(),
    config: QStarConfig = QStarConfig(),
    init: str = "encoder",
    progress: bool = False,
    max_pairs: int = MAX_PAIRS,
    restarts: int = 0,
    compare_samples: int = 200,
) -> LocalResult:
    """q*: the best member of ``family`` for each datapoint, initialised from the encoder's output
    (``init="encoder"``) or from the prior N(0, I) (``init="prior"``); ``restarts`` > 0 adds that
    many searches from random starts of the prior (:func:`search_q`) and keeps each datapoint's best."""
    if restarts < 0:
        raise ValueError(f"restarts must be >= 0, not {restarts}")
    return search_q(model, x, family, config, init, prior_starts=restarts, progress=progress, max_pairs=max_pairs,
                    compare_samples=compare_samples).result  # fmt: skip


@dataclass
class QStarSearch:
    """A q* search from several starts: ``result`` holds each datapoint's best q*; ``elbos`` [K, B]
    each start's final ELBO estimate (common random numbers, so starts compare on equal terms; NaN
    for a lone start, which nothing is compared with); ``starts`` names the K starts, the first
    being ``init``'s."""

    result: LocalResult
    elbos: Tensor
    starts: tuple[str, ...]

    @property
    def first_start_deficit(self) -> Tensor:
        """How far the first start's q* lies below the best start's, nats [B] (0 where it is the best)."""
        return self.elbos.max(0).values - self.elbos[0]

    @property
    def search_uncertainty(self) -> Tensor:
        """What one more start would still add, estimated by leaving each start out in turn: the mean
        over starts j of (best of all K) - (best of the K - 1 others), nats [B]. Zero where two or
        more starts tie at the top, large where one start alone is best by a margin (the best then
        hangs on that start: with two starts it is half their difference); it needs K >= 2."""
        if self.elbos.shape[0] < 2:
            raise ValueError("the search's uncertainty needs at least two starts")
        best = self.elbos.max(0).values
        without = torch.stack([torch.cat([self.elbos[:j], self.elbos[j + 1 :]]).max(0).values
                               for j in range(self.elbos.shape[0])])  # fmt: skip
        return (best - without).mean(0)

    def table(self) -> pd.DataFrame:
        """One row per datapoint: each start's final ELBO estimate (a column per start, named as in
        ``starts``), ``first_start_deficit`` and ``search_uncertainty`` (NaN for a lone start)."""
        table = pd.DataFrame(self.elbos.T.detach().cpu().double().numpy(), columns=list(self.starts))
        table["first_start_deficit"] = self.first_start_deficit.detach().cpu().double().numpy()
        table["search_uncertainty"] = (self.search_uncertainty.detach().cpu().double().numpy()
                                       if len(self.starts) > 1 else float("nan"))  # fmt: skip
        table.index.name = "datapoint"
        return table


def search_q(
    model: LatentVariableModel,
    x: Tensor,
    family: Family = DiagonalGaussian(),
    config: QStarConfig = QStarConfig(),
    init: str | Params = "encoder",
    *,
    prior_starts: int = 0,
    perturbed_starts: int = 0,
    perturb_scale: float = 2.0,
    progress: bool = False,
    max_pairs: int = MAX_PAIRS,
    compare_samples: int = 200,
) -> QStarSearch:
    """The q* search from ``init``'s start and from more starts, keeping per datapoint of x [B, D]
    the q* whose ELBO estimate (``compare_samples`` samples, common random numbers) is highest.

    The ELBO is not concave in q's parameters under a neural decoder, so one start can end in a poor
    local optimum. ``prior_starts`` searches start from unit-scale Gaussians at random means drawn
    from the prior; ``perturbed_starts`` from the encoder's q with its mean moved by
    ``perturb_scale`` encoder standard deviations in a random direction (eps ~ N(0, I), elementwise),
    its other parameters kept. ``init`` is "encoder", "prior", or the first start's parameters,
    rows [B, ...] (named "given" in ``starts``). ``result.steps`` counts the steps of every search."""
    if prior_starts < 0 or perturbed_starts < 0:
        raise ValueError(f"prior_starts and perturbed_starts must be >= 0, not {prior_starts} and {perturbed_starts}")
    if perturb_scale <= 0:
        raise ValueError(f"perturb_scale must be positive, not {perturb_scale}")
    first = init if isinstance(init, str) else "given"
    start = initial_params(model, x, family, init) if isinstance(init, str) else init
    best = optimise(model, x, start, family, config, progress=progress, max_pairs=max_pairs)
    if prior_starts + perturbed_starts == 0:
        return QStarSearch(best, torch.full((1, x.shape[0]), torch.nan, dtype=x.dtype, device=x.device), (first,))
    elbos = [_elbo_for_comparison(model, x, best.q, compare_samples, max_pairs)]
    params, steps, converged = best.params, best.steps, best.converged
    kinds = ["prior"] * prior_starts + ["perturbed"] * perturbed_starts
    for kind in kinds:
        start = _random_start(model, x, family, kind, perturb_scale)
        found = optimise(model, x, start, family, config, max_pairs=max_pairs)
        found_elbo = _elbo_for_comparison(model, x, found.q, compare_samples, max_pairs)
        better = found_elbo > torch.stack(elbos).max(0).values
        params = {k: torch.where(better.view(-1, *[1] * (v.dim() - 1)), found.params[k], v) for k, v in params.items()}
        converged = torch.where(better, found.converged, converged)
        elbos.append(found_elbo)
        steps = steps + found.steps
    starts = (first,) + tuple(f"{kind}_{i}" for i, kind in enumerate(kinds, 1))
    return QStarSearch(LocalResult(params, family.distribution(params), steps, converged), torch.stack(elbos), starts)


def _random_start(model: LatentVariableModel, x: Tensor, family: Family, kind: str, perturb_scale: float) -> Params:
    """Starting parameters [B, ...]: ``"prior"``, a unit-scale q at a mean drawn from the prior;
    ``"perturbed"``, the encoder's q with its mean moved by ``perturb_scale`` of its scales."""
    if kind == "prior":
        start = family.prior_params(x.shape[0], model.latent_dim, x)
        start["loc"] = torch.randn_like(start["loc"])
        return start
    start = initial_params(model, x, family, "encoder")
    start["loc"] = start["loc"] + perturb_scale * start["log_scale"].exp() * torch.randn_like(start["loc"])
    return start


def _elbo_for_comparison(model: LatentVariableModel, x: Tensor, q: Distribution, samples: int, max_pairs: int) -> Tensor:
    """ELBO estimates [B] of q on x, all made with the same random numbers (seed 0), so that two
    q's of one datapoint are compared on equal terms."""
    with seeded(0, x.device):
        return log_weights_chunked(model, x, q, samples, max_pairs).mean(0)


def refine(
    model: LatentVariableModel,
    x: Tensor,
    steps: int,
    family: Family = DiagonalGaussian(),
    config: QStarConfig = QStarConfig(),
    progress: bool = False,
) -> LocalResult:
    """Semi-amortized inference (Kim et al. 2018): ``steps`` ELBO-gradient steps on each datapoint's
    parameters from the encoder's output; ``steps=0`` returns the amortized q itself."""
    if steps < 0:
        raise ValueError(f"refinement steps must be >= 0, not {steps}")
    init = initial_params(model, x, family, "encoder")
    return optimise(model, x, init, family, config, fixed_steps=steps, progress=progress)


def start_for(model: LatentVariableModel, x: Tensor, family: Family = DiagonalGaussian()) -> str:
    """"encoder" where the encoder's q can start a ``family`` q* (a diagonal Gaussian can start a
    diagonal Gaussian or a flow), else "prior" (a flow cannot start a diagonal Gaussian)."""
    with torch.no_grad():
        q = model.encode(x[:1])
    try:
        family.params_from(q)
    except NotImplementedError:
        return "prior"
    return "encoder"


def initial_params(model: LatentVariableModel, x: Tensor, family: Family, init: str) -> Params:
    """Rows [B, ...] of ``family``'s parameters from the encoder's q(z|x) or from the prior."""
    if init == "encoder":
        with torch.no_grad():
            q = model.encode(x)
        try:
            return family.params_from(q)
        except NotImplementedError as err:
            raise ValueError(
                f"the encoder's {type(q).__name__} cannot start a {type(family).__name__} q*; use init='prior'"
            ) from err
    if init == "prior":
        return family.prior_params(x.shape[0], model.latent_dim, x)
    raise ValueError(f"init must be 'encoder' or 'prior', not {init!r}")


def refinement_curve(
    model: LatentVariableModel,
    x: Tensor,
    steps: Sequence[int],
    init: str = "encoder",
    family: Family = DiagonalGaussian(),
    config: QStarConfig = QStarConfig(),
    elbo_samples: int = 1000,
    seed: int = 0,
    schedule: Schedule = "constant",
) -> pd.DataFrame:
    """The ELBO of each datapoint of x [N, D] after k fixed steps from ``init`` ("encoder":
    semi-amortized refinement; "prior": plain per-datapoint VI), at ``config.lr`` on ``schedule``,
    for every k in ``steps``. One row per (k, datapoint): ``elbo``, ``elbo_se``, the decoded posterior
    mean's ``accuracy`` (where the model has ``mean_image``), and ``seconds_per_point``, the wall
    time of the whole vectorized batch (encoder pass included) divided by N. Every k is optimised
    and evaluated with the same random numbers, so differences between k are paired."""
    rows = []
    for k in steps:
        with seeded(seed, x.device):
            start = time.perf_counter()
            result = optimise(model, x, initial_params(model, x, family, init), family, config, fixed_steps=k,
                              schedule=schedule)  # fmt: skip
            seconds = (time.perf_counter() - start) / x.shape[0]
            torch.manual_seed(seed + 1)
            estimate = elbo(model, x, result.q, elbo_samples)
        table = pd.DataFrame({"init": init, "lr": config.lr, "schedule": schedule, "steps": k,
                              "datapoint": range(x.shape[0]), "elbo": estimate.value.cpu().double().numpy(),
                              "elbo_se": estimate.stderr.cpu().double().numpy(), "seconds_per_point": seconds})  # fmt: skip
        if hasattr(model, "mean_image"):
            table["accuracy"] = pixel_accuracy(model, x, result.q).cpu().double().numpy()
        rows.append(table)
    return pd.concat(rows, ignore_index=True)
