"""`make bench`'s measuring code on a tiny model: every figure it prints is computed, and the profile
puts time where it was spent (timings themselves are never asserted)."""

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from amortgap import models

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmarks", ROOT / "bench" / "benchmarks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = models.VAE(models.VAEConfig(data_dim=20, latent_dim=3, encoder_hidden=(8,), decoder_hidden=(8,)))
    model.requires_grad_(False)
    x = torch.bernoulli(torch.full((6, 20), 0.3))
    return model, x


def test_profile_attributes_matmul_time_to_matmuls(bench):
    a, b = torch.randn(512, 512), torch.randn(512, 512)
    shares = bench.where_time_goes(lambda: [a @ b for _ in range(5)])
    assert shares["matmul"] > 0.8
    assert math.isclose(sum(shares.values()), 1.0)


def test_profile_sees_the_likelihood_and_the_optimizer(bench):
    model = models.VAE()
    x, z = torch.bernoulli(torch.full((100, 784), 0.3)), torch.randn(40, 100, 50)
    logits = model.decoder(z).detach()
    shares = bench.where_time_goes(lambda: models.bernoulli_log_likelihood(logits, x))
    assert shares["likelihood"] > 0.5
    logits.requires_grad_()
    shares = bench.where_time_goes(lambda: models.bernoulli_log_likelihood(logits, x).sum().backward())
    assert shares["likelihood"] > 0.5, "the backward pass is the likelihood's too"
    weight = torch.nn.Parameter(torch.randn(100, 100))
    optimizer = torch.optim.Adam([weight])

    def step():
        weight.grad = torch.ones_like(weight)
        optimizer.step()

    assert bench.where_time_goes(step)["optimizer"] > 0.5


def test_qstar_and_iwae_figures_are_computed(bench, tiny):
    model, x = tiny
    peak = bench.matmul_flops(n=256, repeats=2)
    q = bench.bench_qstar(model, x, loop_points=2, peak=peak)
    iw = bench.bench_iwae(model, x, peak, k=50)
    assert q["qstar_loop_points_measured"] == 2 and q["qstar_points"] == 6
    assert q["qstar_agreement_nats"] < 0.5, "the loop and the vectorized run optimise the same objective"
    for value in (q["qstar_vectorized_speedup"], q["qstar_speedup_bound_at_matmul_peak"],
                  iw["iwae_matmul_fraction"], iw["iwae_decoder_only_matmul_fraction"]):
        assert math.isfinite(value) and value > 0
    assert set(q["qstar_profile"]) >= {"matmul", "likelihood", "other"}


def test_gpu_runs_are_not_profiled_by_cpu_time(bench):
    def fail():
        raise AssertionError("a GPU profile must not run the function")

    assert bench.where_time_goes(fail, torch.device("cuda")) is None


@pytest.mark.slow
def test_the_adopted_likelihood_is_the_same_number(bench):
    torch.manual_seed(0)
    model = models.VAE()
    x = torch.bernoulli(torch.full((100, 784), 0.3))
    r = bench.bench_adopted(model, x)
    assert r["likelihood_max_abs_difference_nats"] < 1e-2
    assert r["fused_adam_step_speedup"] > 0 and r["likelihood_speedup"] > 0


def test_a_sweep_is_timed_stacked_and_alone_on_the_same_members(bench, monkeypatch):
    """Every member trains once in its stack and once alone, with its own seed, and both times are
    summed over the stacks."""
    calls = {"stack": [], "alone": []}
    train_stack, train_alone = bench.train.train_stack, bench.train.train
    monkeypatch.setattr(bench.train, "train_stack", lambda ms, *a, **k: calls["stack"].append(len(ms)) or train_stack(ms, *a, **k))
    monkeypatch.setattr(bench.train, "train", lambda m, *a, **k: calls["alone"].append(a[2].seed) or train_alone(m, *a, **k))
    config = models.VAEConfig(data_dim=20, latent_dim=3, encoder_hidden=(8,), decoder_hidden=(8,))
    torch.manual_seed(0)
    stacks = {"a": [models.VAE(config) for _ in range(3)], "b": [models.VAE(config) for _ in range(2)]}
    x = torch.bernoulli(torch.full((64, 20), 0.3))
    together, alone = bench.sweep_epoch_seconds(stacks, x, x[:16], bench.train.TrainConfig(epochs=2, batch_size=16))
    assert calls == {"stack": [3, 1, 1, 1, 2, 1, 1], "alone": [0, 1, 2, 0, 1]}, "alone = a stack of one"
    assert together > 0 and alone > 0


def test_the_step_is_measured_against_its_floor_side_by_side(bench, tiny):
    model, _ = tiny
    train_x, valid_x = torch.rand(300, 20), torch.bernoulli(torch.full((50, 20), 0.3))
    threads = torch.get_num_threads()
    r = bench.bench_step(train_x, valid_x, model.config, batch_size=100, steps=5, threads=1)
    assert torch.get_num_threads() == threads, "the thread count is restored"
    products = {"ffg": 11, "planar": 11, "frozen": 9}  # forward, weight and input gradients of 4 layers,
    for case, count in products.items():  # less the data's gradient (and the frozen decoder's weights')
        s = {key[len(f"step_{case}_"):]: value for key, value in r.items() if key.startswith(f"step_{case}_")}
        assert s["products"] == count, case
        assert s["floor_seconds"] == pytest.approx(s["matmul_seconds"] + s["adam_seconds"])
        assert s["trainer_seconds"] == pytest.approx(s["trainer_epoch_seconds"] / 3)
        assert s["over_floor"] == pytest.approx(s["seconds"] / s["floor_seconds"])
        assert s["speedup"] == pytest.approx(s["plain_seconds"] / s["seconds"])
        assert 0 < s["validation_share"] and 0 < s["data_order_share"] and s["chain_over_floor"] > 0
        assert s["profile"]["matmul"] > 0 and s["profile"]["optimizer"] > 0, "the step's products and its Adam"
        assert s["profile"]["other"] < 1, "the groups find the step's own kernels"


@pytest.mark.slow
def test_decompose_is_measured_in_one_process_and_in_workers_with_its_gradient_evaluations(bench, tiny):
    model, x = tiny
    settings = {"elbo_samples": 10, "iwae_samples": 10, "ais": {"steps": 5, "chains": 2}, "qstar": {"max_steps": 50}}
    r = bench.bench_decompose(model, x, workers=2, settings=settings)
    assert r["decompose_points_measured"] == 6 and r["decompose_workers"] == 2
    ratio = r["decompose_1000_seconds"] / r["decompose_1000_seconds_workers"]
    evaluations = r["decompose_gradient_evaluations_per_second"] * r["decompose_1000_seconds"] * 6 / 1000
    assert evaluations >= 6 * 5 * 2 * 5, "AIS's at least: steps x chains x leapfrog steps per point"
    assert r["decompose_gradient_evaluations_per_second_workers"] == pytest.approx(
        r["decompose_gradient_evaluations_per_second"] * ratio)


def test_the_table_prints_a_partial_rerun_with_what_was_not_measured_as_nan(bench, capsys):
    bench.print_table({"machine": "here", "date": "2026-11-25", "matmul_flops": 1e11, "device": "cpu",
                       "step_ffg_floor_seconds": 0.003, "step_ffg_products": 17, "step_ffg_matmul_seconds": 0.0027,
                       "step_ffg_adam_seconds": 0.0003, "step_ffg_plain_over_floor": 1.5, "step_ffg_over_floor": 1.6,
                       "step_ffg_validation_share": 0.03, "step_ffg_data_order_share": 0.01,
                       "reruns": {"training": {"date": "2026-12-03", "matmul_flops": 9e10}}})  # fmt: skip
    out = capsys.readouterr().out
    assert "rerun since: training on 2026-12-03, matmul 90 GFLOP/s" in out
    assert "1.60x" in out and "nan" in out, "what was measured prints, what was not reads nan"
