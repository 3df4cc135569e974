import pytest
import torch

from amortgap.linear_gaussian import LinearGaussian


@pytest.fixture
def linear_model() -> LinearGaussian:
    """10-d data, 3-d latent, a correlated posterior and an imperfect encoder (both gaps > 0)."""
    return LinearGaussian.random(data_dim=10, latent_dim=3, seed=1, encoder_error=0.05)


@pytest.fixture
def linear_x(linear_model: LinearGaussian) -> torch.Tensor:
    x, _ = linear_model.sample(64, torch.Generator().manual_seed(3))
    return x
