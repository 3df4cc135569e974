"""An encoder distilled onto per-image q*: the closed-form KL against torch's, per datapoint, and a
distillation that recovers a teacher encoder's map on images it did not fit."""

import pytest
import torch
from torch.distributions import kl_divergence

from amortgap.distill import DistillConfig, distill, encoder_params, kl_diagonal
from amortgap.families import diagonal_gaussian
from amortgap.models import VAE, VAEConfig

CONFIG = VAEConfig(data_dim=12, latent_dim=3, encoder_hidden=(16,), decoder_hidden=(8,))


def random_params(n: int, d: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {"loc": torch.randn(n, d, generator=generator, dtype=torch.float64),
            "log_scale": 0.5 * torch.randn(n, d, generator=generator, dtype=torch.float64)}  # fmt: skip


def test_the_kl_is_torchs_per_datapoint_and_zero_only_at_equality():
    g = torch.Generator().manual_seed(0)
    q, p = random_params(50, 4, g), random_params(50, 4, g)
    ours = kl_diagonal(q, p)
    theirs = kl_divergence(diagonal_gaussian(q["loc"], q["log_scale"]), diagonal_gaussian(p["loc"], p["log_scale"]))
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    assert ours.shape == (50,) and (ours > 0).all()
    assert kl_diagonal(q, q).abs().max() < 1e-12


def test_the_encoder_params_are_those_of_its_distribution():
    torch.manual_seed(0)
    model = VAE(CONFIG)
    x = torch.bernoulli(torch.full((7, CONFIG.data_dim), 0.4))
    params, q = encoder_params(model, x), model.encode(x)
    torch.testing.assert_close(params["loc"], q.mean)
    torch.testing.assert_close(params["log_scale"].exp(), q.stddev)


def teacher_and_student(n: int) -> tuple[VAE, VAE, torch.Tensor, dict[str, torch.Tensor]]:
    """A teacher encoder's q on ``n`` random images as the targets, and a student of the same
    architecture from another initialisation that shares the teacher's decoder."""
    torch.manual_seed(1)
    teacher = VAE(CONFIG)
    torch.manual_seed(2)
    student = VAE(CONFIG)
    student.decoder.load_state_dict(teacher.decoder.state_dict())
    x = torch.bernoulli(torch.full((n, CONFIG.data_dim), 0.5), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        target = encoder_params(teacher, x)
    return teacher, student, x, target


def test_distillation_recovers_a_teacher_encoder_on_held_out_images():
    teacher, student, x, target = teacher_and_student(2000)
    before = [t.clone() for t in student.state_dict().values()]
    fitted, history = distill(student, x, target, DistillConfig(epochs=60, batch_size=50, lr=3e-3, seed=0))
    assert list(history.epoch) == list(range(61))
    assert history.held_out_kl.iloc[0] > 0.1, "the student must start away from the teacher"
    assert history.held_out_kl.min() < 0.02 * history.held_out_kl.iloc[0]
    assert fitted is not student and all(torch.equal(a, b) for a, b in zip(before, student.state_dict().values()))
    assert all(torch.equal(a, b) for a, b in zip(fitted.decoder.state_dict().values(), teacher.decoder.state_dict().values()))
    # the returned encoder is the epoch of the smallest held-out KL, recomputed from scratch here
    held = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:200]
    with torch.no_grad():
        kl = kl_diagonal(encoder_params(fitted, x[held]), {k: v[held] for k, v in target.items()}).mean()
    assert float(kl) == pytest.approx(history.held_out_kl.min(), rel=1e-5)


def test_distillation_is_deterministic():
    _, student, x, target = teacher_and_student(300)
    config = DistillConfig(epochs=3, batch_size=50, lr=1e-3, seed=4)
    first, second = distill(student, x, target, config)[0], distill(student, x, target, config)[0]
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def test_bad_input_is_refused():
    _, student, x, target = teacher_and_student(20)
    with pytest.raises(ValueError, match="shape"):
        distill(student, x, {"loc": target["loc"][:5], "log_scale": target["log_scale"][:5]})
    with pytest.raises(ValueError, match="loc and log_scale"):
        distill(student, x, {"loc": target["loc"]})
    with pytest.raises(ValueError, match="diagonal Gaussian"):
        distill(VAE(CONFIG.__class__(**{**CONFIG.to_dict(), "family": "planar"})), x, target)
    with pytest.raises(ValueError, match="held_out"):
        DistillConfig(held_out=1.0)
