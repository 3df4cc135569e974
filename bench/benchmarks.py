"""`make bench`: how fast amortgap measures the gaps, as ratios taken in one run on one machine.

Prints a table and writes bench/results.json. Every figure is measured here, now; where a figure is
measured on fewer points than its name says, the JSON says how many (``*_points_measured``).

    python bench/benchmarks.py                  # the six benchmarks (about 6 minutes here)
    python bench/benchmarks.py --paper-stages   # also time every stage at paper scale (over an hour)
    python bench/benchmarks.py --device cuda --out bench/results-gpu.json   # the same table on a GPU
    python bench/benchmarks.py --only training decompose   # some benchmarks, merged into the JSON

``--device`` places the benchmarks' models and data (default ``auto``: a GPU when torch sees one);
the stage timings run the pipeline, whose notebooks choose their device with their own ``device``
parameter (also ``auto``).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch
import yaml
from torch import nn

from amortgap import certify, data, gaps, models, qstar, stacked, sweep, train
from amortgap.adam import FlatAdam
from amortgap.elbo_gradient import NegativeElbo
from amortgap.build import pipeline
from amortgap.ais import AISConfig
from amortgap.bounds import MAX_PAIRS, elbo, iwae
from amortgap.device import resolve_device
from amortgap.families import diagonal_gaussian

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import autograd_elbo  # noqa: E402  (the tests' autograd oracle: the plain loop the step is timed beside)

REFERENCE = ROOT / "models" / "reference" / "reference_diagonal_s0.pt"  # written by the model_setup stage
CREMER_AIS_EVALUATIONS = 100 * 10_000 * 10  # chains x intermediate distributions x leapfrog steps


def timed(fn, *args, **kwargs):
    """``fn``'s result and wall seconds, queued GPU work included."""
    synchronize()
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    synchronize()
    return out, time.perf_counter() - start


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def matmul_flops(n: int = 2048, repeats: int = 10, device: torch.device | str = "cpu") -> float:
    """Dense float32 matmul FLOP/s that torch reaches on ``device`` (best of ``repeats``)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    best = min(timed(torch.mm, a, b)[1] for _ in range(repeats))
    return 2 * n**3 / best


def linear_macs(*modules: nn.Module) -> int:
    """Multiply-accumulates of one forward pass of one datapoint through the Linear layers."""
    return sum(m.in_features * m.out_features for mod in modules for m in mod.modules() if isinstance(m, nn.Linear))


def bench_training(peak: float, device: torch.device) -> dict:
    """The reference model trained alone on the 50k training images: the second epoch's time (the
    first pays one-off costs: binarizing the data set, warming the allocator), validation pass
    included; model FLOPs = 6 x MACs per image trained + 2 x MACs per image validated. The profile is
    of 50 training steps."""
    train_x = data.load("train").x
    valid_x = data.load_binarized("valid")
    torch.manual_seed(0)
    model = models.VAE().to(device)
    result, seconds = timed(train.train, model, train_x, valid_x, train.TrainConfig(epochs=2, patience=None),
                            progress=False)  # fmt: skip
    epoch_seconds = float(result.history["seconds"].iloc[-1])
    macs = linear_macs(model.encoder, model.decoder)
    flops = 6 * macs * len(train_x) + 2 * macs * len(valid_x)
    batch = data.binarize(train_x[:100], "static").to(device)
    results = {"training_epoch_seconds": epoch_seconds, "training_first_epoch_seconds": seconds - epoch_seconds,
               "training_flops": flops / epoch_seconds, "training_matmul_fraction": flops / epoch_seconds / peak,
               "training_profile": where_time_goes(lambda: training_steps([model], batch, 50), device)}  # fmt: skip
    if device.type == "cpu":
        results.update(bench_step(train_x, valid_x))
    return results


def step_floor_seconds(model: models.VAE, batch_size: int = 100, repeats: int = 200) -> dict[str, float]:
    """The floor of one training step of ``model``'s architecture: its matrix products alone (per
    Linear layer the forward product, the weight's gradient if it trains, and the input's gradient
    except for the data: 17 for the reference VAE's six layers, 14 with a frozen decoder), and a fused
    Adam step over its trainable parameters, each the best of five rounds of ``repeats``, on tensors
    of the training step's shapes."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    shapes = [(torch.randn(batch_size, m.in_features), m.weight.detach().clone(), torch.randn(batch_size, m.out_features),
               m.weight.requires_grad) for m in layers]  # fmt: skip

    def matmuls() -> None:
        for _ in range(repeats):
            for i, (x, w, g, trains) in enumerate(shapes):
                torch.addmm(torch.zeros(w.shape[0]), x, w.t())  # forward, bias added in place by addmm
                if i > 0:
                    g @ w  # the gradient with respect to the layer's input (none for the data)
                if trains:
                    g.t() @ x  # the gradient with respect to its weight

    params = [p.detach().clone().requires_grad_() for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p)
    adam = torch.optim.Adam(params, fused=True)

    def adam_steps() -> None:
        for _ in range(repeats):
            adam.step()

    matmuls(), adam_steps()  # warm-up
    return {"matmuls": min(timed(matmuls)[1] for _ in range(5)) / repeats,
            "adam": min(timed(adam_steps)[1] for _ in range(5)) / repeats,
            "products": sum(1 + (i > 0) + trains for i, (*_, trains) in enumerate(shapes))}  # fmt: skip


def step_chain_seconds(model: models.VAE, batch_size: int = 100, repeats: int = 200) -> float:
    """The same matrix products as :func:`step_floor_seconds`, in the order and with the data flow
    of a training step (the encoder's layers, the decoder's on a latent batch, then the backward pass
    in reverse, each product on the previous one's output), so that operands leave the cache between
    a layer's forward and backward products as they do in training; the best of five rounds. The
    latent batch and the gradients that enter the backward pass are drawn once, outside the timing."""
    encoder = [m for m in model.encoder if isinstance(m, nn.Linear)]
    decoder = [m for m in model.decoder if isinstance(m, nn.Linear)]
    weights = [m.weight.detach().clone() for m in encoder + decoder]
    biases = [m.bias.detach().clone() for m in encoder + decoder]
    trains = [m.weight.requires_grad for m in encoder + decoder]
    x = torch.bernoulli(torch.full((batch_size, encoder[0].in_features), 0.5))
    latent = torch.randn(batch_size, decoder[0].in_features)
    grad_logits, grad_out = torch.randn(batch_size, decoder[-1].out_features), torch.randn(batch_size, encoder[-1].out_features)

    def chain() -> None:
        for _ in range(repeats):
            inputs, h = [], x
            for i, (w, b) in enumerate(zip(weights, biases)):
                if i == len(encoder):
                    h = latent
                inputs.append(h)
                h = torch.addmm(b, h, w.t())
            g = grad_logits
            for i in reversed(range(len(weights))):
                if trains[i]:
                    g.t() @ inputs[i]  # the weight's gradient
                if i > 0:
                    g = g @ weights[i]  # the input's gradient (none for the data)
                if i == len(encoder):  # from the latent sample's gradient to the encoder output's
                    g = grad_out

    chain()  # warm-up
    return min(timed(chain)[1] for _ in range(5)) / repeats


def step_kernels_seconds(model: models.VAE, batch_size: int = 100, repeats: int = 200) -> float:
    """The elementwise work that no training step of ``model``'s architecture can skip, each kernel
    alone and once, in eager PyTorch: the noise draw, the activation and its derivative on every
    hidden layer, the sigmoid (the likelihood's gradient) and its log (the loss's value) on every
    pixel and one pass to scale the gradient, and the bias gradient (a sum over the batch) of every
    trainable layer; the best of five rounds. With :func:`step_chain_seconds` and the fused Adam it
    bounds the step from below: a fused kernel could save only the passes over memory, not the
    transcendental functions."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    hidden = [torch.randn(batch_size, m.out_features) for part in (model.encoder, model.decoder)
              for m in [m for m in part if isinstance(m, nn.Linear)][:-1]]  # fmt: skip
    outputs = [torch.empty_like(h) for h in hidden]
    logits = torch.randn(batch_size, layers[-1].out_features)
    fit, log_lik = torch.empty_like(logits), torch.empty(batch_size)
    grads = [torch.randn(batch_size, m.out_features) for m in layers if m.weight.requires_grad]
    latent_dim = model.config.latent_dim

    def kernels() -> None:
        for _ in range(repeats):
            torch.randn(batch_size, latent_dim)
            for h, out in zip(hidden, outputs):
                torch.ops.aten.elu.out(h, 1.0, 1, 1, out=out)
                torch.ops.aten.elu_backward.grad_input(h, 1.0, 1, 1, True, out, grad_input=h)
            torch.sigmoid(logits, out=fit)
            torch.sum(fit.log(), -1, out=log_lik)
            fit.mul_(0.5)
            for g in grads:
                g.sum(0)

    kernels()  # warm-up
    return min(timed(kernels)[1] for _ in range(5)) / repeats


STEP_CASES = {"ffg": ("diagonal", False), "planar": ("planar", False), "frozen": ("diagonal", True)}


def bench_step(train_x: torch.Tensor, valid_x: torch.Tensor, config: models.VAEConfig = models.VAEConfig(),
               batch_size: int = 100, steps: int = 200, threads: int = 1) -> dict:  # fmt: skip
    """The training step against its floor, side by side in one run, in ``threads`` threads (1: as
    the campaign's workers train), for three models of ``config``'s widths: the FFG VAE, the planar
    VAE, and the FFG encoder on a frozen decoder (``STEP_CASES``). For each (``step_<case>_...``):
    the floor (matrix products and fused Adam, :func:`step_floor_seconds`), the same products in a
    step's order (:func:`step_chain_seconds`) and the kernels no step skips
    (:func:`step_kernels_seconds`), the plain loop (autograd and torch's fused Adam, the tests' oracle), the step (:mod:`amortgap.elbo_gradient` and :mod:`amortgap.adam`, on one
    batch), the trainer's step (its second epoch's time over its batches, as its history records
    it: data order and validation included, the checkpoint's write not), the shares of the
    trainer's epoch that validation and the data order take, and where the step's time goes."""
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads)
    results: dict = {"step_threads": threads}
    try:
        batch = data.binarize(train_x[:batch_size], "static")
        binary = data.binarize(train_x, "static")
        for case, (family, frozen) in STEP_CASES.items():
            case_config = dataclasses.replace(config, family=family)
            torch.manual_seed(0)
            model = models.VAE(case_config)
            if frozen:
                model = model.with_frozen_decoder(case_config)
            floor = step_floor_seconds(model, batch_size, steps)
            chain = step_chain_seconds(model, batch_size, steps)
            kernels = step_kernels_seconds(model, batch_size, steps)
            plain, step = (min(timed(run, [copy.deepcopy(model)], batch, steps)[1] for _ in range(3)) / steps
                           for run in (autograd_steps, training_steps))  # fmt: skip
            with tempfile.TemporaryDirectory() as tmp:  # the trainer checkpoints every epoch, as in the campaign
                history = train.train(copy.deepcopy(model), train_x, valid_x, train.TrainConfig(epochs=2, batch_size=batch_size),
                                      Path(tmp) / "train.pt", progress=False).history  # fmt: skip
            epoch_seconds = float(history.seconds.iloc[-1])
            with torch.no_grad():
                validation = min(timed(train.mean_elbo, stacked.stack_models([model]), valid_x)[1] for _ in range(3))
            order = min(timed(lambda: binary[torch.randperm(len(binary))])[1] for _ in range(3))  # an epoch's reshuffle
            trainer = epoch_seconds / math.ceil(len(train_x) / batch_size)
            step_floor = floor["matmuls"] + floor["adam"]
            results |= {f"step_{case}_{key}": value for key, value in {
                "products": floor["products"], "floor_seconds": step_floor, "matmul_seconds": floor["matmuls"],
                "adam_seconds": floor["adam"], "chain_over_floor": (chain + floor["adam"]) / step_floor,
                "kernels_seconds": kernels, "bound_over_floor": (chain + floor["adam"] + kernels) / step_floor,
                "plain_seconds": plain, "plain_over_floor": plain / step_floor, "seconds": step,
                "over_floor": step / step_floor, "speedup": plain / step, "trainer_epoch_seconds": epoch_seconds,
                "trainer_seconds": trainer, "trainer_over_floor": trainer / step_floor,
                "validation_share": validation / epoch_seconds, "data_order_share": order / epoch_seconds,
                "profile": where_time_goes(lambda: training_steps([copy.deepcopy(model)], batch, 20)),
            }.items()}  # fmt: skip
    finally:
        torch.set_num_threads(threads_before)
    return results


def autograd_steps(members: list[models.VAE], batch: torch.Tensor, n: int, loss=autograd_elbo.negative_elbo,
                   fused: bool = True) -> None:  # fmt: skip
    """``n`` steps of the plain loop on one batch [B, D] (every member's): the stacked loss by
    autograd (the tests' oracle, ``loss``: eager or compiled), its gradient and an Adam step of
    torch's (``fused`` or torch's default foreach Adam)."""
    stack = stacked.stack_models(members)
    optimizer = torch.optim.Adam(list(stack.trainable.values()), fused=fused or None)
    x = batch.expand(stack.size, -1, -1)
    for _ in range(n):
        eps = torch.randn(1, stack.size, len(batch), stack.template.latent_dim, device=batch.device)
        optimizer.zero_grad(set_to_none=True)
        loss(stack, x, eps)[0].backward()
        optimizer.step()


def training_steps(members: list[models.VAE], batch: torch.Tensor, n: int) -> None:
    """``n`` steps of :func:`amortgap.train.train_stack`'s step on one batch [B, D] (every
    member's): the hand-written loss and gradient and Adam over one flat buffer."""
    stack = stacked.stack_models(members)
    adam = FlatAdam(stack)
    loss = NegativeElbo(stack, adam.grads)
    x = batch.expand(stack.size, -1, -1)
    for _ in range(n):
        eps = torch.randn(1, stack.size, len(batch), stack.template.latent_dim, device=batch.device)
        loss(x, eps)
        adam.step(1e-3)


def sweep_epoch_seconds(stacks: dict[str, list[models.VAE]], train_x: torch.Tensor, valid_x: torch.Tensor,
                        config: train.TrainConfig) -> tuple[float, float]:  # fmt: skip
    """(seconds, seconds): the second epoch of every stack trained as one, and of every member of
    every stack trained alone, each summed over the stacks (from the training history)."""
    together = alone = 0.0
    for members in stacks.values():
        configs = [dataclasses.replace(config, seed=s) for s in range(len(members))]
        fresh = [copy.deepcopy(m) for m in members]
        results = train.train_stack(fresh, train_x, valid_x, configs, progress=False)
        together += results[0].history.seconds.iloc[-1] * len(members)  # a member's row holds its share
        for member, member_config in zip(members, configs):
            alone += train.train(copy.deepcopy(member), train_x, valid_x, member_config, progress=False
                                 ).history.seconds.iloc[-1]  # fmt: skip
    return together, alone


def bench_stacked(peak: float, device: torch.device, num_train: int = 10_000, num_valid: int = 2_000) -> dict:
    """Model-epochs per second, stacked vs one model at a time, for the paper's two sweeps (the joint
    widths and the frozen-decoder encoder widths, depth and seeds of params.yaml's width_sweep), on ``num_train`` training images (an epoch of
    100 steps) and ``num_valid`` validation images; and the stacked joint sweep's training FLOP/s over
    the matmul FLOP/s (6 x MACs per image trained, 2 x per image validated)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())["width_sweep"]
    seeds, depth = params["seeds"], params["depth"]
    train_x = data.load("train").x[:num_train]
    valid_x = data.load_binarized("valid")[:num_valid]
    config = train.TrainConfig(epochs=2, patience=None)
    base = models.VAEConfig()
    joint = {}
    for width in params["widths"]:
        torch.manual_seed(0)
        joint[f"w{width}"] = [models.VAE(sweep.member_config(base, width, depth)).to(device) for _ in seeds]
    reference = models.load(REFERENCE, map_location=device)
    torch.manual_seed(0)
    frozen = {f"w{w}": [reference.with_frozen_decoder(sweep.member_config(base, w, depth)) for _ in seeds]
              for w in params["frozen_widths"]}  # fmt: skip
    joint_together, joint_alone = sweep_epoch_seconds(joint, train_x, valid_x, config)
    frozen_together, frozen_alone = sweep_epoch_seconds(frozen, train_x, valid_x, config)
    flops = sum(len(ms) * linear_macs(ms[0].encoder, ms[0].decoder) * (6 * num_train + 2 * num_valid)
                for ms in joint.values())  # fmt: skip
    return {"stacked_joint_speedup": joint_alone / joint_together,
            "stacked_frozen_speedup": frozen_alone / frozen_together,
            "stacked_training_flops": flops / joint_together,
            "stacked_training_matmul_fraction": flops / joint_together / peak,
            "stacked_joint_models": sum(map(len, joint.values())), "stacked_frozen_models": sum(map(len, frozen.values())),
            "stacked_images_per_epoch": num_train}  # fmt: skip


def bench_compile(device: torch.device, steps: int = 200, width: int = 200, members: int = 3) -> dict:
    """``torch.compile`` of the stacked loss on one sweep stack (``members`` models of encoder width
    ``width``): seconds per training step compiled and eager, the compile time (the first compiled
    steps minus eager ones), and the steps after which compiling has paid for itself."""
    torch.manual_seed(0)
    stack = [models.VAE(sweep.member_config(models.VAEConfig(), width, 2)).to(device) for _ in range(members)]
    batch = data.binarize(data.load("train").x[:100]).to(device)
    eager = min(timed(autograd_steps, stack, batch, steps)[1] for _ in range(2)) / steps
    compiled_loss = torch.compile(autograd_elbo.negative_elbo)
    try:
        _, first = timed(autograd_steps, stack, batch, 3, compiled_loss)
    except Exception as err:  # no C++ compiler, an unsupported op, ...: reported, not fatal
        return {"compile_error": f"{type(err).__name__}: {err}"[:300]}
    compiled = min(timed(autograd_steps, stack, batch, steps, compiled_loss)[1] for _ in range(2)) / steps
    compile_seconds = first - 3 * compiled
    gain = eager - compiled
    return {"compile_step_speedup": eager / compiled, "compile_seconds": compile_seconds,
            "compile_break_even_steps": compile_seconds / gain if gain > 0 else None,
            "compile_eager_step_ms": 1e3 * eager, "compile_compiled_step_ms": 1e3 * compiled}  # fmt: skip


WORKER = """
import torch
from amortgap import data, models, sweep, train
train_x, valid_x = data.load("train").x[:5000], data.load_binarized("valid")[:1000]
torch.manual_seed(0)
members = [models.VAE(sweep.member_config(models.VAEConfig(), 200, 2)) for _ in range(3)]
train.train_stack(members, train_x, valid_x, [train.TrainConfig(epochs=2, patience=None, seed=s) for s in range(3)],
                  progress=False)
"""


def bench_processes() -> dict:
    """Two training jobs (a width-200 stack of 3, 2 epochs of 5000 images each) run one after the
    other in one process with 2 threads, or side by side in two processes with 1 thread each: wall
    seconds of each way, process start-up included in both."""

    def job(threads: int) -> subprocess.Popen:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        return subprocess.Popen([sys.executable, "-c", WORKER], env=env, cwd=ROOT)

    def run(threads: int, side_by_side: bool) -> float:
        start = time.perf_counter()
        if side_by_side:
            jobs = [job(threads), job(threads)]
            codes = [j.wait() for j in jobs]
        else:
            codes = [job(threads).wait(), job(threads).wait()]
        if any(codes):
            raise RuntimeError(f"a training worker failed: exit codes {codes}")
        return time.perf_counter() - start

    one_process = run(2, side_by_side=False)
    two_processes = run(1, side_by_side=True)
    return {"one_process_two_threads_seconds": one_process, "two_processes_one_thread_seconds": two_processes,
            "two_processes_speedup": one_process / two_processes}  # fmt: skip


# Where the time goes, under torch.profiler: matmuls, activations and sampling by the self time of
# their ops; the Bernoulli likelihood (forward and backward) and the optimizer step by the total time
# of their calls, children included (their elementwise work runs as many small ops).
LEAF_OPS = {
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul"),
    "activation": ("aten::elu", "aten::elu_backward"),
    "sampling": ("aten::normal_",),
    "likelihood": ("aten::sigmoid", "aten::softplus"),  # the hand-written step's; autograd's: CALLS
    "optimizer": ("aten::_fused_adam_",),  # the flat Adam's; torch.optim's: CALLS
}
CALLS = {  # where present, they replace the group's leaf ops (which they include)
    "likelihood": ("bernoulli_log_likelihood",
                   "autograd::engine::evaluate_function: LogSigmoidBackward"),
    "optimizer": ("Optimizer.step",),
}  # fmt: skip


def where_time_goes(fn, device: torch.device = torch.device("cpu")) -> dict[str, float] | None:
    """Shares of ``fn``'s CPU time: the groups above, and ``other`` (elementwise arithmetic,
    copies, indexing, per-op framework overhead). None on a GPU, where CPU time is not the cost."""
    if device.type != "cpu":
        return None
    fn()  # warm-up
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    shares = {group: sum(e.self_cpu_time_total for e in events if e.key.startswith(names)) / total
              for group, names in LEAF_OPS.items()}  # fmt: skip
    for group, names in CALLS.items():
        if spent := sum(e.cpu_time_total for e in events if e.key.startswith(names)):
            shares[group] = spent / total
    shares["other"] = 1 - sum(shares.values())
    return shares


def bench_qstar(model: models.VAE, x: torch.Tensor, loop_points: int, peak: float) -> dict:
    """q* for all points as one vectorized problem vs one datapoint at a time (same stopping rule),
    the loop timed on the first ``loop_points``; agreement of L[q*] on those points (1000 samples).
    The bound is the speed-up if the vectorized run did nothing but its decoder matmuls (forward and
    backward to z, 4 x MACs per sample) at the matmul peak while the loop stayed as it is."""
    torch.manual_seed(0)
    vectorized, vec_seconds = timed(qstar.optimal_q, model, x)
    looped, loop_seconds = [], 0.0
    for i in range(loop_points):
        result, seconds = timed(qstar.optimal_q, model, x[i : i + 1])
        looped.append(result)
        loop_seconds += seconds
    sub = x[:loop_points]
    vec_q = diagonal_gaussian(*(vectorized.params[k][:loop_points] for k in ("loc", "log_scale")))
    loop_q = diagonal_gaussian(*(torch.cat([r.params[k] for r in looped]) for k in ("loc", "log_scale")))
    torch.manual_seed(1)
    vec_elbo = elbo(model, sub, vec_q, 1000).value
    torch.manual_seed(1)
    loop_elbo = elbo(model, sub, loop_q, 1000).value
    per_point_vec = vec_seconds / len(x)
    per_point_loop = loop_seconds / loop_points
    loop_steps = sum(r.steps.item() for r in looped)
    matmul_seconds_per_step = 4 * linear_macs(model.decoder) * qstar.QStarConfig().num_samples / peak
    return {
        "qstar_vectorized_seconds_per_point": per_point_vec,
        "qstar_loop_seconds_per_point": per_point_loop,
        "qstar_vectorized_speedup": per_point_loop / per_point_vec,
        "qstar_agreement_nats": (vec_elbo - loop_elbo).abs().mean().item(),
        "qstar_points": len(x),
        "qstar_loop_points_measured": loop_points,
        "qstar_mean_steps": vectorized.steps.float().mean().item(),
        "qstar_vectorized_ms_per_point_step": 1e3 * vec_seconds / vectorized.steps.sum().item(),
        "qstar_loop_ms_per_step": 1e3 * loop_seconds / loop_steps,
        "qstar_speedup_bound_at_matmul_peak": loop_seconds / loop_steps / matmul_seconds_per_step,
        "qstar_profile": where_time_goes(lambda: qstar.refine(model, x, 20), x.device),
    }


def bench_logpx(model: models.VAE, n_points: int) -> dict:
    """Cheapest estimator within 0.1 nats of a long-run reference, on data simulated from the
    decoder (so that BDMC, started from the generating z, certifies the reference from above).
    "Within" means mean error plus two standard errors over the points, so luck does not choose."""
    x, z = model.sample(n_points, torch.Generator(next(model.parameters()).device).manual_seed(0))
    torch.manual_seed(0)
    found = qstar.optimal_q(model, x)
    long = AISConfig(steps=1000, chains=8)
    candidates = [AISConfig(steps=s, chains=c) for s, c in [(25, 4), (50, 4), (100, 4), (100, 8), (200, 8), (500, 16)]]
    result = certify.certify(model, x, z, found.q, long, candidates + [1000, 5000], seed=0)
    summary = result.summary()
    best = certify.cheapest_within(summary, 0.1)
    return {
        "logpx_reference": f"AIS {long.steps}x{long.chains} from q*",
        "logpx_sandwich_nats": summary.loc["sandwich", "error_nats"],
        "logpx_reference_seconds_per_point": summary.loc["sandwich", "seconds_per_point"],
        "logpx_candidates": summary.drop(index="sandwich").to_dict(orient="index"),
        "logpx_cheapest": best,
        "logpx_decoder_evals_per_point": int(summary.loc[best, "evaluations"]) if best else None,
        "logpx_error_nats": summary.loc[best, "error_nats"] if best else None,
        "logpx_qstar_evals_per_point": found.steps.float().mean().item() * qstar.QStarConfig().num_samples,
        "logpx_fewer_than_cremer": CREMER_AIS_EVALUATIONS / summary.loc[best, "evaluations"] if best else None,
        "logpx_points": n_points,
    }


def bench_iwae(model: models.VAE, x: torch.Tensor, peak: float, k: int = 5000) -> dict:
    """IWAE with k samples (best of two runs): decoder FLOPs (2 x MACs per sample) per second over
    matmul FLOP/s; beside it, the same fraction for the decoder's layers alone on the same chunks (no
    likelihood, no sampling): the ceiling that the 784 Bernoulli terms per sample pull IWAE down from."""
    with torch.no_grad():
        q = model.encode(x)
    seconds = min(timed(iwae, model, x, q, k)[1] for _ in range(2))  # the first run warms up
    flops = 2 * linear_macs(model.decoder) * k * len(x)
    chunk = max(1, MAX_PAIRS // len(x))
    z = torch.randn(chunk, len(x), model.latent_dim, device=x.device)
    with torch.no_grad():
        decoder_seconds = min(timed(lambda: [model.decoder(z) for _ in range(0, k, chunk)])[1] for _ in range(2))
    decoder_flops = 2 * linear_macs(model.decoder) * len(x) * chunk * len(range(0, k, chunk))
    return {"iwae_seconds": seconds, "iwae_flops": flops / seconds, "iwae_matmul_fraction": flops / seconds / peak,
            "iwae_decoder_only_matmul_fraction": decoder_flops / decoder_seconds / peak,
            "iwae_points": len(x), "iwae_samples": k, "iwae_max_pairs": MAX_PAIRS,
            "iwae_profile": where_time_goes(lambda: iwae(model, x, q, 500), x.device)}  # fmt: skip


def bench_decompose(model: models.VAE, x: torch.Tensor, workers: int = 2,
                    settings: dict | None = None) -> dict:  # fmt: skip
    """``decompose`` at the gap table's settings (params.yaml's ``gap_table.decompose``, or
    ``settings``) in one process and in ``workers`` single-thread worker processes (the points split
    into one batch per worker); seconds for 1000 points scaled from len(x), and gradient evaluations
    of log p(x, z) per second (q* steps x samples, and AIS's chains x steps x leapfrog steps), the
    unit that carries over to other settings."""
    if settings is None:
        settings = yaml.safe_load((ROOT / "params.yaml").read_text())["gap_table"]["decompose"]
    config = dataclasses.replace(gaps.DecomposeConfig.from_section(settings), batch_size=math.ceil(len(x) / workers))
    table, one = timed(gaps.decompose, model, x, config)
    _, parallel = timed(gaps.decompose, model, x, config, workers=workers)
    evaluations = float((table.qstar_steps * config.qstar.num_samples).sum()) + len(x) * config.ais.gradient_evaluations
    return {"decompose_seconds_per_point": one / len(x), "decompose_1000_seconds": 1000 * one / len(x),
            "decompose_workers": workers, "decompose_1000_seconds_workers": 1000 * parallel / len(x),
            "decompose_gradient_evaluations_per_second": evaluations / one,
            "decompose_gradient_evaluations_per_second_workers": evaluations / parallel,
            "decompose_points_measured": len(x)}  # fmt: skip


def bench_adopted(model: models.VAE, x: torch.Tensor) -> dict:
    """The speed-ups that training adopted with stacking, measured against what they replaced:
    ``torch.optim.Adam(fused=True)`` for a training step of the reference architecture (batch of
    100), and :func:`amortgap.models.bernoulli_log_likelihood` against
    ``binary_cross_entropy_with_logits`` on IWAE's chunks (no grad)."""
    torch.manual_seed(0)
    fresh = models.VAE().to(x.device)
    batch = x[:100]

    def step_seconds(fused: bool) -> float:
        return min(timed(autograd_steps, [fresh], batch, 100, fused=fused)[1] for _ in range(3))

    def bce(logits: torch.Tensor) -> torch.Tensor:
        return -nn.functional.binary_cross_entropy_with_logits(logits, batch.expand_as(logits), reduction="none").sum(-1)

    def shared(logits: torch.Tensor) -> torch.Tensor:
        return models.bernoulli_log_likelihood(logits, batch)

    with torch.no_grad():
        logits = model.decoder(torch.randn(MAX_PAIRS // len(batch), len(batch), model.latent_dim, device=x.device))
        seconds = {f: min(timed(lambda: [f(logits) for _ in range(20)])[1] for _ in range(3)) for f in (bce, shared)}
        difference = (bce(logits) - shared(logits)).abs().max().item()
    return {"fused_adam_step_speedup": step_seconds(False) / step_seconds(True),
            "likelihood_speedup": seconds[bce] / seconds[shared],
            "likelihood_max_abs_difference_nats": difference}  # fmt: skip


def stage_seconds(profile: str | None, dest: Path) -> dict[str, float]:
    """Wall time of every DVC stage, each forced to run alone in a fresh copy (training from scratch)."""
    pipeline.reproduce_copy(dest, profile)
    stages = pipeline.run_dvc(["stage", "list", "--name-only"], dest, capture=True).stdout.split()
    seconds = {}
    for stage in stages:
        shutil.rmtree(dest / "build" / "checkpoints", ignore_errors=True)
        start = time.perf_counter()
        pipeline.run_dvc(["repro", "--force", "--single-item", stage], dest, capture=True)
        seconds[stage] = time.perf_counter() - start
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper-stages", action="store_true", help="also time every stage at paper scale")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--device", default="auto", help="auto (a GPU if torch sees one), cpu, cuda, ...")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="run only these benchmarks; their figures replace those in --out, the rest are kept")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    machine = f"{platform.machine()}, {torch.get_num_threads()} torch threads, {platform.processor() or platform.platform()}"
    if device.type == "cuda":
        machine += f", {torch.cuda.get_device_name(device)}"
    results: dict = {"machine": machine, "device": str(device), "date": date.today().isoformat(),
                     "torch": torch.__version__}  # fmt: skip
    peak = matmul_flops(device=device)
    results["matmul_flops"] = peak
    model = models.load(REFERENCE, map_location=device)
    model.requires_grad_(False)
    test_x = data.load_binarized("test").to(device)
    steps = [
        ("training", lambda: bench_training(peak, device)),
        ("q*", lambda: bench_qstar(model, test_x[:200], loop_points=20, peak=peak)),
        ("log p(x)", lambda: bench_logpx(model, n_points=50)),
        ("IWAE", lambda: bench_iwae(model, test_x[:100], peak)),
        ("decompose", lambda: bench_decompose(model, test_x[:400])),
        ("adopted speed-ups", lambda: bench_adopted(model, test_x)),
        ("stacked training", lambda: bench_stacked(peak, device)),
        ("torch.compile", lambda: bench_compile(device)),
        ("one process or two", bench_processes),
        ("quick stages", lambda: {"stage_seconds_quick": stage_seconds("quick", ROOT / "build" / "bench-quick")}),
    ]
    if args.paper_stages:
        steps.append(("paper stages", lambda: {"stage_seconds_paper": stage_seconds(None, ROOT / "build" / "bench-paper")}))
    if args.only:
        unknown = set(args.only) - {name for name, _ in steps}
        if unknown:
            parser.error(f"no benchmark named {sorted(unknown)}; the names are {[name for name, _ in steps]}")
        steps = [(name, step) for name, step in steps if name in args.only]
        previous = json.loads(args.out.read_text()) if args.out.exists() else {}
        reruns = previous.get("reruns", {}) | {name: {"date": results["date"], "matmul_flops": peak, "machine": machine}
                                               for name in args.only}  # fmt: skip
        results = (previous or results) | {"reruns": reruns}  # the full run's date, machine and peak stay
    elif args.out.exists() and "stage_seconds_paper" in (previous := json.loads(args.out.read_text())):
        stages = pipeline.run_dvc(["stage", "list", "--name-only"], ROOT, capture=True).stdout.split()
        if set(previous["stage_seconds_paper"]) == set(stages):  # only while the pipeline is the same
            results["stage_seconds_paper"] = previous["stage_seconds_paper"]
            results["stage_seconds_paper_date"] = previous.get("stage_seconds_paper_date", previous.get("date"))
    for name, step in steps:
        print(f"[bench] {name} ...", flush=True)
        results.update(step())
    if args.paper_stages and "paper stages" in {name for name, _ in steps}:
        results["stage_seconds_paper_date"] = date.today().isoformat()
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)


class _NanIfMissing(dict):
    """Results in which a figure never measured reads as nan (a partial ``--only`` run)."""

    def __missing__(self, key: str) -> float:
        return math.nan


def print_table(r: dict) -> None:
    r = _NanIfMissing(r)
    rows = [
        ("1 training: model FLOP/s / matmul FLOP/s", f"{r['training_matmul_fraction']:.2f}", ">= 0.5"),
        ("2 q*: vectorized speed-up over a loop", f"{r['qstar_vectorized_speedup']:.1f}x", ">= 20x"),
        ("2 q*: mean |L[q*] vectorized - loop|", f"{r['qstar_agreement_nats']:.3f} nats", "<= 0.05"),
        ("2 q*: speed-up bound (decoder matmuls at peak)", f"{r['qstar_speedup_bound_at_matmul_peak']:.1f}x", ""),
        ("3 log p(x): decoder evals/point within 0.1 nats", str(r["logpx_decoder_evals_per_point"]),
         f"<= {CREMER_AIS_EVALUATIONS // 100:,}"),
        ("3 log p(x): its error vs reference", f"{r['logpx_error_nats']:.3f} nats", "<= 0.1"),
        ("3 log p(x): BDMC sandwich of the reference", f"{r['logpx_sandwich_nats']:.3f} nats", ""),
        ("4 IWAE k=5000: FLOP/s / matmul FLOP/s", f"{r['iwae_matmul_fraction']:.2f}", ">= 0.5"),
        ("4 IWAE: the decoder's layers alone", f"{r['iwae_decoder_only_matmul_fraction']:.2f}", ""),
        ("5 decompose, 1000 test points, 1 process", f"{r['decompose_1000_seconds']:.0f} s", ""),
        (f"5 decompose, 1000 test points, {r.get('decompose_workers', 2)} workers",
         f"{r.get('decompose_1000_seconds_workers', float('nan')):.0f} s", "<= 150 s"),
        ("5 decompose: gradient evaluations/s, workers",
         f"{r.get('decompose_gradient_evaluations_per_second_workers', float('nan')):,.0f}", ""),
    ]
    for case, name in (("ffg", "FFG"), ("planar", "planar"), ("frozen", "frozen-decoder encoder")):
        if f"step_{case}_floor_seconds" not in r:
            continue
        c = _NanIfMissing({key[len(f"step_{case}_"):]: value for key, value in r.items() if key.startswith(f"step_{case}_")})
        rows += [
            (f"8 {name} step floor ({r.get('step_threads', 2)} thread(s)): {c['products']} matmuls + fused Adam",
             f"{c['floor_seconds'] * 1e3:.2f} ms", f"({c['matmul_seconds'] * 1e3:.2f} + {c['adam_seconds'] * 1e3:.2f})"),
            (f"8 {name}: the products in a step's order / floor", f"{c['chain_over_floor']:.2f}x", ""),
            (f"8 {name}: those + Adam + the kernels no step skips / floor", f"{c['bound_over_floor']:.2f}x",
             f"({c['kernels_seconds'] * 1e3:.2f} ms of kernels)"),
            (f"8 {name}: plain loop (autograd, torch's fused Adam) / floor", f"{c['plain_over_floor']:.2f}x", ""),
            (f"8 {name}: the training step / floor", f"{c['over_floor']:.2f}x", "<= 1.25x"),
            (f"8 {name}: the trainer's epoch per step / floor", f"{c['trainer_over_floor']:.2f}x", ""),
            (f"8 {name}: epoch shares: validation, data order",
             f"{c['validation_share']:.0%}, {c['data_order_share']:.0%}", ""),
        ]  # fmt: skip
    rows += [
        ("7a joint sweep: model-epochs/s, stacked / alone", f"{r['stacked_joint_speedup']:.2f}x", ">= 4x"),
        ("7b frozen sweep: model-epochs/s, stacked / alone", f"{r['stacked_frozen_speedup']:.2f}x", ">= 4x"),
        ("7c stacked training: FLOP/s / matmul FLOP/s", f"{r['stacked_training_matmul_fraction']:.2f}", ">= 0.5"),
        ("fused Adam: training step speed-up", f"{r['fused_adam_step_speedup']:.2f}x", ""),
        ("shared likelihood: speed-up on IWAE chunks", f"{r['likelihood_speedup']:.2f}x", ""),
        ("torch.compile: stacked step speed-up", f"{r['compile_step_speedup']:.2f}x" if "compile_step_speedup" in r
         else "failed", ""),
        ("torch.compile: compile seconds", f"{r.get('compile_seconds', float('nan')):.0f} s", ""),
        ("two 1-thread processes / one 2-thread process", f"{r['two_processes_speedup']:.2f}x", ""),
    ]
    for scale in ("quick", "paper"):
        for stage, seconds in r.get(f"stage_seconds_{scale}", {}).items():
            rows.append((f"6 {scale}: {stage}", f"{seconds:.0f} s", ""))
    width = max(len(name) for name, _, _ in rows)
    print(f"\n{r['machine']}, {r['date']}; matmul {r['matmul_flops'] / 1e9:.0f} GFLOP/s")
    for name, rerun in r.get("reruns", {}).items():
        print(f"  rerun since: {name} on {rerun['date']}, matmul {rerun['matmul_flops'] / 1e9:.0f} GFLOP/s"
              + (f", {rerun['machine']}" if rerun.get("machine", r["machine"]) != r["machine"] else ""))
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>14}  {target}")
    print("\nwhere the time goes (share of CPU time):")
    for name in ("training", "step_ffg", "step_planar", "step_frozen", "qstar", "iwae"):
        if not isinstance(r[f"{name}_profile"], dict):
            print(f"  {name:<11} (not profiled on {r['device']}, or not measured)")
            continue
        shares = ", ".join(f"{group} {share:.0%}" for group, share in r[f"{name}_profile"].items())
        print(f"  {name:<11} {shares}")


if __name__ == "__main__":
    main()
