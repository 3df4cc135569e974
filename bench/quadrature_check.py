"""An independent check of the oracle's quadrature on real images: brute-force grids against
:func:`amortgap.quadrature.exact_posterior`, image by image.

For each image, log p(x) by a plain Riemann sum on a fixed 1201 x 1201 grid over [-6, 6]^2 (spacing
0.01), and again on an 801 x 801 grid over the posterior's mean +- 10 standard deviations (from the
fixed grid). Where the two brute-force values agree with each other, they referee the adaptive
quadrature. The images: the ones where an earlier oracle's exact value was found wrong (1458,
2890, 6259), where AIS and IWAE fail together (1729, 167) or AIS alone (4287), where AIS's estimate
swings by nats between runs (5667), and random others among the oracle's.

    python bench/quadrature_check.py [--model models/oracle_2d.pt] [--others 16] [--out build/quadrature_check.csv]
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from amortgap import data, models, quadrature

FLAGGED = [1458, 2890, 6259, 1729, 5667, 4287, 167]


@torch.no_grad()
def riemann_log_px(model, x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, points: int, chunk: int = 20000):
    """log p(x) [B] of a Riemann sum on a points x points grid over [lo, hi] (each [B, 2]), with the
    grid's posterior mean [B, 2] and standard deviations [B, 2]."""
    out, means, sds = [], [], []
    for b in range(x.shape[0]):
        axes = [torch.linspace(float(lo[b, i]), float(hi[b, i]), points, dtype=torch.float64) for i in range(2)]
        z = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
        log_joint = torch.cat([model.log_joint(x[b : b + 1], z[i : i + chunk, None, :].float()).double()[:, 0]
                               for i in range(0, len(z), chunk)])  # fmt: skip
        cell = (axes[0][1] - axes[0][0]) * (axes[1][1] - axes[1][0])
        out.append(torch.logsumexp(log_joint, 0) + cell.log())
        w = torch.softmax(log_joint, 0)
        mean = (w[:, None] * z).sum(0)
        means.append(mean)
        sds.append(((w[:, None] * (z - mean) ** 2).sum(0)).sqrt())
    return torch.stack(out), torch.stack(means), torch.stack(sds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/oracle_2d.pt")
    parser.add_argument("--points", type=int, default=100, help="the oracle's random test images")
    parser.add_argument("--others", type=int, default=16, help="random images besides the flagged ones")
    parser.add_argument("--out", default="build/quadrature_check.csv")
    args = parser.parse_args()
    model = models.load(args.model).requires_grad_(False)
    test_x = data.load_binarized("test", "static")
    index = data.random_subset(len(test_x), args.points, 0)
    others = [int(i) for i in index[torch.randperm(len(index), generator=torch.Generator().manual_seed(1))] if int(i) not in FLAGGED]
    images = [i for i in FLAGGED if i in set(index.tolist())] + others[: args.others]
    x = test_x[images]
    began = time.perf_counter()
    exact = quadrature.exact_posterior(model, x, points=151)
    adaptive_seconds = time.perf_counter() - began
    wide, mean, sd = riemann_log_px(model, x, x.new_full((len(images), 2), -6.0).double(), x.new_full((len(images), 2), 6.0).double(), 1201)
    zoomed, _, _ = riemann_log_px(model, x, mean - 10 * sd, mean + 10 * sd, 801)
    table = pd.DataFrame({"image": images, "adaptive": exact.log_px.double().numpy(), "wide_1201": wide.numpy(),
                          "zoomed_801": zoomed.numpy(), "quadrature_error": exact.quadrature_error.double().numpy(),
                          "passes": exact.passes.numpy(), "points": exact.points.numpy(), "posterior_sd_min": sd.min(1).values.numpy()})
    table["adaptive_minus_zoomed"] = table.adaptive - table.zoomed_801
    table["wide_minus_zoomed"] = table.wide_1201 - table.zoomed_801
    table.to_csv(args.out, index=False, float_format="%.6f")
    print(table.round(4).to_string(index=False))
    print(f"adaptive quadrature: {adaptive_seconds:.1f} s for {len(images)} images; largest |adaptive - zoomed| "
          f"{table.adaptive_minus_zoomed.abs().max():.2e} nats, |wide - zoomed| {table.wide_minus_zoomed.abs().max():.2e}")


if __name__ == "__main__":
    main()
