import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from amortgap import data
from amortgap.build.pipeline import kernel_env
from amortgap.linear_gaussian import LinearGaussian


@pytest.fixture
def linear_model() -> LinearGaussian:
    """10-d data, 3-d latent, a correlated posterior and an imperfect encoder (both gaps > 0)."""
    return LinearGaussian.random(data_dim=10, latent_dim=3, seed=1, encoder_error=0.05)


@pytest.fixture
def linear_x(linear_model: LinearGaussian) -> torch.Tensor:
    x, _ = linear_model.sample(64, torch.Generator().manual_seed(3))
    return x


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
