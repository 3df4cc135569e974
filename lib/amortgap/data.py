"""Fashion-MNIST from Debian's idx files: parsing, splits and binarization.

The images come as gzipped idx files (``apt-get install dataset-fashion-mnist`` puts them in
``/usr/share/datasets/fashion-mnist``). Nothing is ever downloaded. Images are returned as float
intensities in [0, 1] of shape [N, 784]; :func:`binarize` turns them into {0, 1} data, either
statically (pixel > 0.5, the protocol of Cremer et al. 2018) or dynamically (a fresh Bernoulli draw).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

DEFAULT_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
DATA_DIR_ENV = "AMORTGAP_DATA_DIR"
INSTALL_HINT = (
    "install it with `sudo apt-get install dataset-fashion-mnist` (or run `make repro`), "
    f"or point {DATA_DIR_ENV} at a folder holding the Fashion-MNIST idx .gz files"
)
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
NUM_VALID = 10_000
_IDX_DTYPE_UBYTE = 0x08

Split = Literal["train", "valid", "test"]
Binarization = Literal["static", "dynamic"]


class DataError(RuntimeError):
    """A data file is missing, unreadable or not a valid idx file."""


@dataclass(frozen=True)
class Images:
    """One split: intensities [N, 784] (float32 in [0, 1]) and labels [N] (int64)."""

    x: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """The folder to read: the argument, else ``$AMORTGAP_DATA_DIR``, else Debian's folder."""
    if path is not None:
        return Path(path)
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse one gzipped idx file of unsigned bytes into an array of its declared shape."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Fashion-MNIST file not found: {path}; {INSTALL_HINT}")
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"Fashion-MNIST file is corrupt ({err}): {path}; {INSTALL_HINT}") from err
    if len(raw) < 4:
        raise DataError(f"Fashion-MNIST file is corrupt (too short): {path}; {INSTALL_HINT}")
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != _IDX_DTYPE_UBYTE or ndim == 0:
        raise DataError(f"Fashion-MNIST file is corrupt (bad idx header): {path}; {INSTALL_HINT}")
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", raw[4:header]) if len(raw) >= header else ()
    if len(shape) != ndim or len(raw) - header != int(np.prod(shape)):
        raise DataError(
            f"Fashion-MNIST file is corrupt (size does not match its header): {path}; {INSTALL_HINT}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _read_pair(kind: str, folder: Path) -> Images:
    image_file, label_file = FILES[kind]
    images = read_idx(folder / image_file)
    labels = read_idx(folder / label_file)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DataError(
            f"Fashion-MNIST files disagree: {folder / image_file} holds {images.shape}, "
            f"{folder / label_file} holds {labels.shape}; {INSTALL_HINT}"
        )
    x = torch.from_numpy(images.reshape(images.shape[0], -1).astype(np.float32) / 255.0)
    return Images(x=x, labels=torch.from_numpy(labels.astype(np.int64)))


def load(
    split: Split,
    path: str | os.PathLike | None = None,
    *,
    split_seed: int = 0,
    num_valid: int = NUM_VALID,
) -> Images:
    """Load one split. ``train``/``valid`` are a seeded partition of the 60k training images
    (50k/10k by default); ``test`` is the official 10k test set."""
    if split not in ("train", "valid", "test"):
        raise ValueError(f"split must be 'train', 'valid' or 'test', not {split!r}")
    folder = data_dir(path)
    if split == "test":
        return _read_pair("test", folder)
    full = _read_pair("train", folder)
    if not 0 < num_valid < len(full):
        raise ValueError(f"num_valid must be in (0, {len(full)}), not {num_valid}")
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(split_seed))
    rows = order[num_valid:] if split == "train" else order[:num_valid]
    rows = rows.sort().values
    return Images(x=full.x[rows], labels=full.labels[rows])


def binarize(
    x: torch.Tensor, mode: Binarization = "static", generator: torch.Generator | None = None
) -> torch.Tensor:
    """Intensities [..., D] in [0, 1] to {0, 1}: ``static`` thresholds at 0.5, ``dynamic`` draws
    Bernoulli(x) (with ``generator`` for reproducibility)."""
    if mode == "static":
        return (x > 0.5).to(x.dtype)
    if mode == "dynamic":
        return torch.bernoulli(x, generator=generator)
    raise ValueError(f"binarization must be 'static' or 'dynamic', not {mode!r}")


def load_binarized(
    split: Split,
    mode: Binarization = "static",
    path: str | os.PathLike | None = None,
    *,
    split_seed: int = 0,
    num_valid: int = NUM_VALID,
    binarize_seed: int = 0,
) -> torch.Tensor:
    """A split as a fixed {0, 1} tensor [N, 784] for evaluation (a dynamic draw is seeded)."""
    images = load(split, path, split_seed=split_seed, num_valid=num_valid)
    return binarize(images.x, mode, torch.Generator().manual_seed(binarize_seed))


def random_subset(size: int, n: int, seed: int) -> torch.Tensor:
    """``n`` distinct row indices of a split of ``size`` rows, drawn uniformly with ``seed`` and
    sorted: [n]. Evaluating on a random subset, not the first rows, keeps it representative (the
    first 100 test images are easier than the rest), and the seed makes it the same every run. The
    subsets of one seed are nested: the first ``m`` indices drawn for ``n`` are the draw for ``m``."""
    if not 0 < n <= size:
        raise ValueError(f"need 0 < n <= {size}, not n={n}")
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))
    return order[:n].sort().values

