import gzip
import math
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from amortgap import data
from amortgap.build.pipeline import kernel_env
from amortgap.families import DiagonalGaussian
from amortgap.linear_gaussian import LinearGaussian
from amortgap.models import standard_normal_log_prob


@pytest.fixture
def linear_model() -> LinearGaussian:
    """10-d data, 3-d latent, a correlated posterior and an imperfect encoder (both gaps > 0)."""
    return LinearGaussian.random(data_dim=10, latent_dim=3, seed=1, encoder_error=0.05)


@pytest.fixture
def linear_x(linear_model: LinearGaussian) -> torch.Tensor:
    x, _ = linear_model.sample(64, torch.Generator().manual_seed(3))
    return x


class TwoModes:
    """x | z ~ N(z^2 + 0.3 z, 0.1^2), z ~ N(0, 1), 1-d: for x = 4 the posterior has modes near
    z = 1.86 and z = -2.16, the first 0.6 nats heavier (the prior favours it). The encoder puts every
    q in the lighter mode, so a search from its output stays there."""

    latent_dim = 1

    def encode(self, x):
        return DiagonalGaussian().distribution({"loc": torch.full_like(x, -2.16), "log_scale": torch.full_like(x, -3.0)})

    def log_likelihood(self, x, z):
        mean = z[..., 0] ** 2 + 0.3 * z[..., 0]
        return -0.5 * ((x[:, 0] - mean) / 0.1) ** 2 - math.log(0.1 * math.sqrt(2 * math.pi))

    def log_prior(self, z):
        return standard_normal_log_prob(z)

    def log_joint(self, x, z):
        return self.log_likelihood(x, z) + self.log_prior(z)


@pytest.fixture
def two_modes() -> TwoModes:
    return TwoModes()


def write_idx(path: Path, array: np.ndarray, magic_dtype: int = 0x08) -> None:
    """Write ``array`` as a gzipped idx file of unsigned bytes (the Fashion-MNIST format)."""
    header = struct.pack(">HBB", 0, magic_dtype, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Path:
    """A Fashion-MNIST look-alike: 30 training and 7 test images of 28x28."""
    rng = np.random.default_rng(0)
    for kind, n in (("train", 30), ("test", 7)):
        image_file, label_file = data.FILES[kind]
        write_idx(tmp_path / image_file, rng.integers(0, 256, size=(n, 28, 28)))
        write_idx(tmp_path / label_file, rng.integers(0, 10, size=n))
    return tmp_path


# --- test layers ----------------------------------------------------------------------------------
# `make test-fast` runs the unit layer alone (`-m "not slow and not golden and not browser and not
# pipeline"`); `make test` runs every layer. Whole files belong to one layer:
LAYERS = {
    "test_notebooks.py": "golden",  # the nbval regressions in every numeric mode
    "test_site.py": "browser",  # the site in headless Chromium
    "test_quick_pipeline.py": "pipeline",  # the whole pipeline at quick scale in a copy
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = Path(str(item.fspath))
        if path.suffix == ".ipynb":  # an nbval cell of a golden notebook
            item.add_marker(pytest.mark.golden)
        elif path.name in LAYERS:
            item.add_marker(getattr(pytest.mark, LAYERS[path.name]))


# The golden notebooks' kernels inherit this process's environment: pin what changes their outputs
# (a headless MPLBACKEND=Agg drops every figure cell's output), as the pipeline pins it for its kernels.
os.environ.update(kernel_env())
