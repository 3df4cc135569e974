"""The hand-written training loss and gradient against autograd (the oracle, tests/autograd_elbo.py),
per family, activation, width, KL weight, sample count and stack, and the flat Adam against torch's."""

import pytest
import torch
from torch import Tensor

from amortgap import models, stacked
from amortgap.adam import FlatAdam
from amortgap.elbo_gradient import NegativeElbo

from autograd_elbo import negative_elbo

SMALL = dict(data_dim=12, latent_dim=3, encoder_hidden=(5, 4), decoder_hidden=(6,), flow_length=4)


def members(config: models.VAEConfig, count: int, frozen: str = "") -> list[models.VAE]:
    """``count`` fresh float64 models; ``frozen="shared"``: all on one frozen decoder (the stack
    keeps it once), ``"own"``: each on its own frozen decoder (stacked, without gradients)."""
    torch.manual_seed(0)
    if not frozen:
        return [models.VAE(config).double() for _ in range(count)]
    reference = models.VAE(config).double()
    return [(reference if frozen == "shared" else models.VAE(config).double()).with_frozen_decoder(config).double()
            for _ in range(count)]  # fmt: skip


def both(config: models.VAEConfig, count: int = 2, samples: int = 1, batch: int = 7, kl_weight: float = 0.3,
         frozen: str = "") -> tuple[stacked.Stack, tuple, Tensor, dict]:  # fmt: skip
    """(stack, autograd's (loss, elbo), the hand-written elbo, its gradients) on random binary
    x [count, batch, D] and noise [samples, count, batch, d]; autograd's gradients are in .grad."""
    stack = stacked.stack_models(members(config, count, frozen))
    x = torch.bernoulli(torch.full((count, batch, config.data_dim), 0.4, dtype=torch.float64))
    eps = torch.randn(samples, count, batch, config.latent_dim, dtype=torch.float64)
    expected = negative_elbo(stack, x, eps, kl_weight)
    expected[0].backward()
    grads = {n: torch.empty_like(p) for n, p in stack.trainable.items()}
    return stack, expected, NegativeElbo(stack, grads)(x, eps, kl_weight), grads


@pytest.mark.parametrize("family", ["diagonal", "planar", "sylvester"])
@pytest.mark.parametrize("case", ["elu", "relu", "tanh", "softplus", "3 samples", "KL weight 1, one model",
                                  "frozen decoder", "frozen decoders, one each", "wide encoder",
                                  "one hidden layer"])  # fmt: skip
def test_the_hand_written_gradient_is_autograds(family, case):
    settings = {"family": family, "activation": case if case in ("elu", "relu", "tanh", "softplus") else "elu",
                **{k: v for k, v in SMALL.items()}}  # fmt: skip
    if case == "wide encoder":
        settings["encoder_hidden"] = (40, 30, 20)
    if case == "one hidden layer":
        settings["encoder_hidden"], settings["decoder_hidden"] = (8,), (9, 7)
    options = {"3 samples": {"samples": 3}, "KL weight 1, one model": {"kl_weight": 1.0, "count": 1},
               "frozen decoder": {"frozen": "shared", "count": 3},
               "frozen decoders, one each": {"frozen": "own", "count": 3, "samples": 2}}.get(case, {})  # fmt: skip
    stack, (_, elbo), hand_elbo, grads = both(models.VAEConfig(**settings), **options)
    assert set(grads) == {n for n in stack.params if n.startswith("encoder")} | (
        set() if case.startswith("frozen") else {n for n in stack.params if n.startswith("decoder")})
    if case.startswith("frozen"):
        shapes = {n: stack.params[n].dim() for n in stack.params if n.startswith("decoder") and n.endswith("weight")}
        assert set(shapes.values()) == {2 if case == "frozen decoder" else 3}, "shared once, or one per model"
    torch.testing.assert_close(hand_elbo, elbo, rtol=1e-12, atol=1e-12)
    for name, p in stack.trainable.items():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-10, atol=1e-12, msg=f"{name}'s gradient")


@pytest.mark.parametrize("family", ["diagonal", "planar", "sylvester"])
@pytest.mark.parametrize("kl_weight", [0.3, 1.0])
def test_a_lookup_table_in_the_encoders_place_gets_autograds_gradient(family, kl_weight):
    """Per-image VI: q's parameters are a table's rows, read by the encoder's one Linear layer from
    one-hot image indices (``VAEConfig.table_images``), while the likelihood is of the images."""
    config = models.VAEConfig(**SMALL, family=family, table_images=9)
    torch.manual_seed(0)
    stack = stacked.stack_models([models.VAE(config).double() for _ in range(2)])
    assert [n for n in stack.trainable if n.startswith("encoder")] == ["encoder.0.weight", "encoder.0.bias"]
    rows = torch.stack([torch.randperm(9)[:5] for _ in range(2)])
    inputs = torch.nn.functional.one_hot(rows, 9).double()
    x = torch.bernoulli(torch.full((2, 5, SMALL["data_dim"]), 0.4, dtype=torch.float64))
    eps = torch.randn(2, 2, 5, SMALL["latent_dim"], dtype=torch.float64)
    loss, elbo = negative_elbo(stack, x, eps, kl_weight, inputs)
    loss.backward()
    grads = {n: torch.empty_like(p) for n, p in stack.trainable.items()}
    hand = NegativeElbo(stack, grads)(x, eps, kl_weight, inputs)
    torch.testing.assert_close(hand, elbo, rtol=1e-12, atol=1e-12)
    for name, p in stack.trainable.items():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-10, atol=1e-12, msg=f"{name}'s gradient")
    unused = torch.ones(2, 9, dtype=torch.bool)
    unused[torch.arange(2)[:, None], rows] = False
    assert grads["encoder.0.weight"][unused].abs().max() == 0, "an image outside the batch gets no gradient"


@pytest.mark.parametrize("family", ["diagonal", "planar", "sylvester"])
def test_the_reference_architecture_in_float32_within_float_tolerance(family):
    """The paper's 784-200-200-50 models at batch 100, as the campaign trains them."""
    torch.manual_seed(1)
    config = models.VAEConfig(family=family)
    stack = stacked.stack_models([models.VAE(config)])
    x = torch.bernoulli(torch.full((1, 100, 784), 0.3))
    eps = torch.randn(1, 1, 100, 50)
    loss, elbo = negative_elbo(stack, x, eps, 0.5)
    loss.backward()
    grads = {n: torch.empty_like(p) for n, p in stack.trainable.items()}
    hand_elbo = NegativeElbo(stack, grads)(x, eps, 0.5)
    torch.testing.assert_close(hand_elbo, elbo, rtol=1e-5, atol=1e-3)
    for name, p in stack.trainable.items():
        scale = p.grad.abs().max()
        assert (grads[name] - p.grad).abs().max() <= 1e-4 * scale, name


def test_the_elbo_alone_is_the_training_passs_and_asks_no_buffers():
    stack = stacked.stack_models(members(models.VAEConfig(**SMALL, family="planar"), 2))
    x = torch.bernoulli(torch.full((2, 7, 12), 0.4, dtype=torch.float64))
    eps = torch.randn(1, 2, 7, 3, dtype=torch.float64)
    forward = NegativeElbo(stack)
    training = NegativeElbo(stack, {n: torch.empty_like(p) for n, p in stack.trainable.items()})
    assert torch.equal(forward.elbo(x, eps), training(x, eps))
    with pytest.raises(ValueError, match="without gradient buffers"):
        forward(x, eps)
    with pytest.raises(ValueError, match="trainable parameters"):
        NegativeElbo(stack, {"encoder.0.weight": torch.empty(1)})


def test_flat_adam_is_torchs_fused_adam():
    """Adam over one flat buffer updates every tensor as torch.optim.Adam(fused=True) does (the same
    kernel: equal up to the last bits, where a small tensor's elements fall in the kernel's vector
    loop once flat and in its scalar tail alone), and its saved state resumes it."""
    torch.manual_seed(0)
    config = models.VAEConfig(**SMALL)
    reference, flat_stack = (stacked.stack_models(members(config, 2)) for _ in range(2))
    optimizer = torch.optim.Adam(list(reference.trainable.values()), lr=3e-3, fused=True)
    adam = FlatAdam(flat_stack)
    for step in range(5):
        gradients = {n: torch.randn_like(p) for n, p in reference.trainable.items()}
        for name, p in reference.trainable.items():
            p.grad = gradients[name].clone()
            adam.grads[name].copy_(gradients[name])
        optimizer.step()
        adam.step(3e-3)
        if step == 2:  # resume from the saved state in a fresh optimizer
            state = {n: {k: v.clone() for k, v in s.items()} for n, s in adam.state().items()}
            adam = FlatAdam(flat_stack)
            adam.load_state(state)
    for name, p in reference.trainable.items():
        torch.testing.assert_close(flat_stack.params[name], p.detach(), rtol=1e-14, atol=0, msg=name)
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(adam.state()[name][key], optimizer.state[p][key], rtol=1e-14, atol=0, msg=name)
    assert float(adam.state()["encoder.0.weight"]["step"]) == 5.0


def test_the_likelihood_survives_a_pixel_so_wrong_that_its_sigmoid_underflows():
    from amortgap.elbo_gradient import bernoulli_fit

    logits = torch.tensor([[[[-120.0, 3.0, 0.5]]]])  # [M, B, S, D]: the first pixel is 120 nats wrong
    x = torch.ones(1, 1, 3)
    log_lik, fit, sign = bernoulli_fit(logits, x)
    expected = torch.nn.functional.logsigmoid(logits).sum(-1)
    assert torch.isfinite(log_lik).all() and torch.allclose(log_lik, expected)
    assert torch.equal(fit.sub(1).mul(sign), torch.sigmoid(logits) - x), "the gradient needs no fallback"
