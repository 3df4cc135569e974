"""Latent-variable models: the model protocol, the Bernoulli VAE, and safe checkpoints.

The gap code needs only the :class:`LatentVariableModel` protocol: ``encode(x)`` gives q(z|x),
``log_likelihood(x, z)`` and ``log_prior(z)`` give the two parts of log p(x, z) = ``log_joint(x, z)``. The decoder is a separate module so it can be frozen.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from .config import FromSection
from .families import FAMILY_NAMES, DiagonalGaussian, Family, make_family

CHECKPOINT_FORMAT = "amortgap.vae/1"
ACTIVATIONS = {"elu": nn.ELU, "relu": nn.ReLU, "tanh": nn.Tanh, "softplus": nn.Softplus}
LOG_2PI = math.log(2 * math.pi)


@runtime_checkable
class LatentVariableModel(Protocol):
    """What :func:`amortgap.gaps.decompose` needs from a model."""

    latent_dim: int

    def encode(self, x: Tensor) -> Distribution:
        """q(z|x) for x [B, D]: batch shape [B], event shape [latent_dim]."""

    def log_joint(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x, z) = log p(x|z) + log p(z) for x [B, D] and z [S, B, d]: shape [S, B]."""

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z), [S, B] (the ELBO's reconstruction term is its mean under q)."""

    def log_prior(self, z: Tensor) -> Tensor:
        """log p(z), [..., d] -> [...]."""


def bernoulli_log_likelihood(logits: Tensor, x: Tensor) -> Tensor:
    """log Bernoulli(x | sigmoid(logits)) summed over the last dimension, for logits [..., D] and
    binary x broadcastable to them: [...]. Written as log sigmoid((2x - 1) * logits), one fused,
    stable kernel (and its gradient), faster than binary_cross_entropy_with_logits (`make bench`)."""
    with torch.profiler.record_function("bernoulli_log_likelihood"):  # named in `make bench`'s profiles
        return nn.functional.logsigmoid(logits * (2 * x - 1)).sum(-1)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over the last dimension: [..., d] -> [...]."""
    return -0.5 * (z.pow(2).sum(-1) + z.shape[-1] * LOG_2PI)


@dataclass(frozen=True)
class VAEConfig(FromSection):
    """Architecture of a Bernoulli VAE (Cremer et al. 2018's default: 784-200-200-(2x50), ELU).

    ``table_images`` = N > 0 replaces the amortized encoder by a lookup table of q's parameters, one
    row per training image: per-image VI, the decoder trained without an encoder. The table is one
    Linear layer on an image's one-hot index [N] (``encoder_hidden`` is not used): image i's
    parameters are its weight column plus a bias that all images share, so that the training step
    serves it unchanged. The one-hot input is scaled by ``table_scale`` (:func:`table_input`): Adam
    moves a weight by about its rate per step, so a row's q moves by about ``table_scale`` times the
    rate, while the decoder keeps its own. A row has a gradient only when its image is in the batch,
    once per epoch, so at the decoder's rate it would hardly move. The table starts at zero: every
    image's q is the bias's."""

    data_dim: int = 784
    latent_dim: int = 50
    encoder_hidden: tuple[int, ...] = (200, 200)
    decoder_hidden: tuple[int, ...] = (200, 200)
    activation: str = "elu"
    family: str = "diagonal"
    flow_length: int = 10
    table_images: int = 0
    table_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.family not in FAMILY_NAMES:
            raise ValueError(f"family must be one of {FAMILY_NAMES}, not {self.family!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, not {self.activation!r}")
        for name in ("data_dim", "latent_dim", "flow_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")
        if self.table_images < 0:
            raise ValueError(f"table_images is a number of training images (0: an amortized encoder), not {self.table_images}")
        if self.table_scale <= 0 or (self.table_scale != 1.0 and not self.table_images):
            raise ValueError(f"table_scale scales a table model's one-hot input (positive), not {self.table_scale}"
                             f"{'' if self.table_images else ' for a model without a table'}")
        for name in ("encoder_hidden", "decoder_hidden"):
            widths = tuple(int(w) for w in getattr(self, name))
            if any(w < 1 for w in widths):
                raise ValueError(f"{name} widths must be positive, not {widths}")
            object.__setattr__(self, name, widths)

    def to_dict(self) -> dict:
        """The fields as a checkpoint stores them; an amortized encoder's table fields are left out, so
        that a checkpoint written before they existed still reads as the same architecture."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()
                if k not in TABLE_FIELDS or self.table_images}  # fmt: skip

    @property
    def encoder_inputs(self) -> int:
        """The encoder's input size: an image [data_dim], or a one-hot image index [table_images]."""
        return self.table_images or self.data_dim


TABLE_FIELDS = ("table_images", "table_scale")


def table_input(one_hot: Tensor, config: VAEConfig) -> Tensor:
    """The table's encoder input for one-hot image indices [..., table_images]: scaled by
    ``config.table_scale`` (see :class:`VAEConfig`)."""
    return one_hot * config.table_scale


def _one_hot(x: Tensor, n: int) -> bool:
    """Whether every row of x [B, n] is a one-hot vector."""
    return x.shape[-1] == n and bool(((x == 0) | (x == 1)).all()) and bool((x.sum(-1) == 1).all())


def mlp(sizes: list[int], activation: str) -> nn.Sequential:
    """Linear layers of the given sizes with ``activation`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i > 0:
            layers.append(ACTIVATIONS[activation]())
        layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


class Encoder(nn.Sequential):
    """An MLP x [B, D] -> the parameters of ``family`` -> q(z|x), batch [B], event [latent_dim].
    With the default family, q(z|x) = N(loc, diag(exp(log_scale))^2)."""

    def __init__(self, data_dim: int, hidden: Sequence[int], latent_dim: int, activation: str = "elu",
                 family: Family = DiagonalGaussian()):  # fmt: skip
        super().__init__(*mlp([data_dim, *hidden, family.flat_size(latent_dim)], activation))
        self.family, self.latent_dim = family, latent_dim

    def forward(self, x: Tensor) -> Distribution:
        return self.family.distribution(self.family.unflatten(super().forward(x), self.latent_dim))


class VAE(nn.Module):
    """Bernoulli-likelihood VAE with an amortized encoder (of ``config.family``) and a N(0, I) prior,
    or, with ``config.table_images``, a lookup table of per-image q in the encoder's place."""

    def __init__(self, config: VAEConfig = VAEConfig()) -> None:
        super().__init__()
        self.config = config
        self.latent_dim = config.latent_dim
        c = config
        self.family = make_family(c.family, c.flow_length)
        self.encoder = Encoder(c.encoder_inputs, () if c.table_images else c.encoder_hidden, c.latent_dim, c.activation,
                               self.family)  # fmt: skip
        self.decoder = mlp([c.latent_dim, *c.decoder_hidden, c.data_dim], c.activation)
        if c.table_images:
            nn.init.zeros_(self.encoder[0].weight)

    def encode(self, x: Tensor) -> Distribution:
        """q(z|x) for x [B, D], a member of ``self.family`` predicted by the encoder (a table model:
        for one-hot image indices x [B, table_images], the images' rows)."""
        if self.config.table_images and not _one_hot(x, self.config.table_images):
            raise ValueError(f"a table model's q is looked up by one-hot image indices [B, {self.config.table_images}]: "
                             "it has no q for an image itself")  # fmt: skip
        return self.encoder(table_input(x, self.config) if self.config.table_images else x)

    def log_prior(self, z: Tensor) -> Tensor:
        """log p(z), [..., d] -> [...]."""
        return standard_normal_log_prob(z)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) for x [B, D] and z [S, B, d]: shape [S, B]."""
        return bernoulli_log_likelihood(self.decoder(z), x)

    def log_joint(self, x: Tensor, z: Tensor) -> Tensor:
        return self.log_likelihood(x, z) + self.log_prior(z)

    def mean_image(self, z: Tensor) -> Tensor:
        """The decoder's pixel probabilities sigmoid(logits), [..., d] -> [..., D]."""
        return torch.sigmoid(self.decoder(z))

    def with_frozen_decoder(self, config: VAEConfig) -> "VAE":
        """A fresh VAE of ``config`` (its encoder newly initialised from the global RNG) whose decoder
        is a frozen copy of this one's: training it trains the encoder alone."""
        if (config.latent_dim, config.decoder_hidden, config.data_dim, config.activation) != (
            self.config.latent_dim, self.config.decoder_hidden, self.config.data_dim, self.config.activation
        ):
            raise ValueError("the new config's decoder must have this model's latent_dim, widths and activation")
        model = VAE(config).to(next(self.parameters()).device)
        model.decoder.load_state_dict(self.decoder.state_dict())
        model.decoder.requires_grad_(False)
        return model

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Simulate (x [n, D], z [n, d]) from the model; z is an exact posterior sample for x."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator, device=device)
        probs = torch.sigmoid(self.decoder(z))
        return torch.bernoulli(probs, generator=generator), z


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, unsafe, or of another architecture."""


def save(model: VAE, path: str | os.PathLike) -> None:
    """Write the architecture and weights atomically (temp file, then rename)."""
    atomic_save({"format": CHECKPOINT_FORMAT, "config": model.config.to_dict(),
                 "state_dict": model.state_dict()}, path)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """``write`` a temp file beside ``path``, then rename it to ``path``: a crash never leaves half a
    file (and a commit made at any moment sees the old file or the new one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def atomic_save(obj: dict, path: str | os.PathLike) -> None:
    """``torch.save`` with :func:`atomic_write`."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def safe_load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """``torch.load(weights_only=True)``: tensors and plain values only, never code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch's unpickler fails in many ways (KeyError on a text file, ...)
        raise CheckpointError(
            f"{path} is not a loadable amortgap checkpoint: it is corrupt, or it holds objects that "
            f"only arbitrary code could rebuild, which amortgap refuses to run ({type(err).__name__})"
        ) from err
    if not isinstance(obj, dict) or "format" not in obj:
        raise CheckpointError(f"{path} is not an amortgap checkpoint (no format tag)")
    return obj


def load(
    path: str | os.PathLike,
    config: VAEConfig | None = None,
    map_location: str | torch.device = "cpu",
) -> VAE:
    """Rebuild a VAE from :func:`save`'s file. If ``config`` is given, the checkpoint must match it."""
    obj = safe_load(path, map_location)
    if obj["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} has format {obj['format']!r}, expected {CHECKPOINT_FORMAT!r}")
    known = {f.name for f in fields(VAEConfig)}
    stored = obj.get("config", {})
    if set(stored) - known:
        raise CheckpointError(f"{path} has unknown architecture fields {sorted(set(stored) - known)}")
    stored_config = VAEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()})
    if config is not None and config != stored_config:
        diff = {
            f.name: (getattr(stored_config, f.name), getattr(config, f.name))
            for f in fields(VAEConfig)
            if getattr(stored_config, f.name) != getattr(config, f.name)
        }
        raise CheckpointError(
            f"{path} is a checkpoint of another architecture; (stored, expected): {diff}"
        )
    model = VAE(stored_config)
    try:
        model.load_state_dict(obj["state_dict"])
    except (RuntimeError, KeyError) as err:
        raise CheckpointError(f"{path}: weights do not fit the stored architecture: {err}") from err
    return model.to(map_location)
