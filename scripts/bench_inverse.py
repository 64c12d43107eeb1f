#!/usr/bin/env python
"""Cost of numerical inversion (multi-bin bisection) vs an analytic spline inverse (paper Sec. 6.2).

One coupling layer over 2 * dim interval coordinates transforms ``dim`` of them conditioned on
the other ``dim`` (conditioner MLP with one hidden layer of 64 by default, batch 128). For each
dim, it times the smooth bump-mixture layer's inverse with K = 2, 4, ..., 256 bins, and the
rational-quadratic spline layer's analytic inverse in the same run, both without autograd
("inverse") and with a backward pass to the parameters and the input ("inverse+backward").
Times are medians of repeated runs (torch.utils.benchmark, after warm-up). The slowdown ratio is
the best smooth time over the spline time.

Bisection costs about (K - 1) * ceil(log_K(1 / (2 tol))) transform evaluations per element, so on
a CPU (no idle parallel workers) small K is cheapest; the paper's large optimal K is a GPU
effect. To keep the default run short on two cores, a (dim, K) pair whose predicted time per
call exceeds --max-call-seconds is skipped (reported as null); K = 2 is always measured.

    python scripts/bench_inverse.py --out results/bench/inverse.json
    python scripts/bench_inverse.py --quick
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from typing import Any

import torch
from torch.utils import benchmark

from flowff.flows import CouplingLayer, InversionSettings
from flowff.flows.inversion import default_tolerance
from flowff.transforms import make_transform
from flowff.utils.atomic import write_json

DIMS = (2, 8, 32, 128, 512, 2048)
BINS = tuple(2**m for m in range(1, 9))
QUICK_DIMS = (2, 32)
QUICK_BINS = (2, 4, 16)
#: Spread of the transform parameters around their identity values.
PERTURBATION = 0.5


def make_layer(kind: str, dim: int, resolution: int, hidden: tuple[int, ...]) -> CouplingLayer:
    """Coupling layer on 2*dim interval coordinates: first dim transformed, rest conditioning."""
    keyword = "num_components" if kind == "smooth" else "num_bins"
    transform = make_transform(kind, circular=False, **{keyword: resolution})
    layer = CouplingLayer(
        torch.zeros(2 * dim, dtype=torch.bool),
        list(range(dim)),
        list(range(dim, 2 * dim)),
        interval_transform=transform,
        hidden=hidden,
    )
    # Move away from the identity start like a trained layer: random last conditioner layer, so
    # the transform parameters are identity + O(PERTURBATION) and vary with the input.
    last = layer.conditioner.network[-1]
    with torch.no_grad():
        last.weight.normal_(0.0, PERTURBATION / math.sqrt(last.in_features))
        last.bias.add_(PERTURBATION * torch.randn_like(last.bias))
    return layer


def median_seconds(function, min_run_time: float) -> float:
    """Median wall time of ``function()`` (torch.utils.benchmark, warm-up included)."""
    function()  # warm-up
    timer = benchmark.Timer(
        stmt="function()", globals={"function": function}, num_threads=torch.get_num_threads()
    )
    return float(timer.blocked_autorange(min_run_time=min_run_time).median)


def inverse_call(layer: CouplingLayer, z: torch.Tensor):
    def run() -> None:
        with torch.no_grad():
            layer.inverse(z)

    return run


def inverse_backward_call(layer: CouplingLayer, z: torch.Tensor):
    def run() -> None:
        layer.zero_grad(set_to_none=True)
        z_grad = z.detach().requires_grad_(True)
        h, log_det = layer.inverse(z_grad)
        (h.sum() + log_det.sum()).backward()

    return run


def bisection_iterations(num_bins: int, tol: float) -> int:
    return math.ceil(math.log(1.0 / (2.0 * tol)) / math.log(num_bins))


def benchmark_dim(
    dim: int, bins: tuple[int, ...], args: argparse.Namespace, dtype: torch.dtype
) -> dict[str, Any]:
    """Times (seconds) for one dim: spline analytic, smooth per K, best K and slowdowns."""
    torch.manual_seed(0)
    hidden = tuple(args.hidden)
    smooth = make_layer("smooth", dim, args.components, hidden).to(args.device, dtype)
    spline = make_layer("spline", dim, args.components, hidden).to(args.device, dtype)
    z = torch.rand(args.batch, 2 * dim, dtype=dtype, device=args.device)
    tol = default_tolerance(dtype)

    # Cost of one transform evaluation at (batch, dim): predicts each K's bisection time.
    transform = smooth.groups[0].transform
    params = smooth.conditioner(z[:, dim:])[0].detach()
    evaluation = median_seconds(lambda: transform(z[:, :dim], params), 0.05)

    row: dict[str, Any] = {
        "dim": dim,
        "spline_inverse_s": median_seconds(inverse_call(spline, z), args.min_run_time),
        "spline_inverse_backward_s": median_seconds(
            inverse_backward_call(spline, z), args.min_run_time
        ),
        "smooth_inverse_s": {},
        "smooth_inverse_backward_s": {},
        "predicted_inverse_s": {},
    }
    for num_bins in bins:
        predicted = evaluation * (num_bins - 1) * bisection_iterations(num_bins, tol)
        elements = (num_bins - 1) * args.batch * dim * transform.num_params
        row["predicted_inverse_s"][num_bins] = predicted
        skip = num_bins > 2 and (
            predicted > args.max_call_seconds or elements > args.max_elements
        )
        if skip:
            row["smooth_inverse_s"][num_bins] = None
            row["smooth_inverse_backward_s"][num_bins] = None
            continue
        smooth.inversion = InversionSettings(num_bins=num_bins, tol=tol)
        row["smooth_inverse_s"][num_bins] = median_seconds(
            inverse_call(smooth, z), args.min_run_time
        )
        row["smooth_inverse_backward_s"][num_bins] = median_seconds(
            inverse_backward_call(smooth, z), args.min_run_time
        )
    with torch.no_grad():  # sanity: the numerical inverse recovers h to about the tolerance
        h = torch.rand_like(z)
        row["round_trip_error"] = float((smooth.inverse(smooth(h)[0])[0] - h).abs().max())
    for mode in ("inverse", "inverse_backward"):
        measured = {k: t for k, t in row[f"smooth_{mode}_s"].items() if t is not None}
        best = min(measured, key=measured.get)
        row[f"best_k_{mode}"] = best
        row[f"slowdown_{mode}"] = measured[best] / row[f"spline_{mode}_s"]
    return row


def format_table(rows: list[dict[str, Any]], bins: tuple[int, ...]) -> str:
    """Plain-text table: per dim the spline time, smooth time per K (ms), best K, slowdown."""
    lines = []
    for mode, label in (("inverse", "inverse"), ("inverse_backward", "inverse+backward")):
        header = f"{'dim':>5} {'spline':>9} " + " ".join(f"{'K=' + str(k):>9}" for k in bins)
        lines += [f"{label} (ms, median)", header + f" {'best K':>7} {'slowdown':>9}"]
        for row in rows:
            cells = []
            for k in bins:
                value = row[f"smooth_{mode}_s"][k]
                cells.append(f"{'-':>9}" if value is None else f"{1e3 * value:9.2f}")
            lines.append(
                f"{row['dim']:>5} {1e3 * row[f'spline_{mode}_s']:9.2f} " + " ".join(cells)
                + f" {row[f'best_k_{mode}']:>7} {row[f'slowdown_{mode}']:9.1f}"
            )
        lines.append("")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write results as JSON to this path")
    parser.add_argument("--quick", action="store_true", help="dims 2, 32 and K = 2, 4, 16 only")
    parser.add_argument("--dims", type=int, nargs="+", help=f"dims (default {DIMS})")
    parser.add_argument("--bins", type=int, nargs="+", help=f"values of K (default {BINS})")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64], help="conditioner widths")
    parser.add_argument("--components", type=int, default=8, help="mixture components = bins")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu", help="torch device (cuda untested here)")
    parser.add_argument("--min-run-time", type=float, default=0.3, help="seconds per timing")
    parser.add_argument(
        "--max-call-seconds", type=float, default=1.5,
        help="skip K > 2 whose predicted time per inverse exceeds this",
    )
    parser.add_argument(
        "--max-elements", type=float, default=2e8,
        help="skip K > 2 whose (K-1)*batch*dim*num_params exceeds this (memory guard)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.dims = args.dims or list(QUICK_DIMS)
        args.bins = args.bins or list(QUICK_BINS)
        args.min_run_time = min(args.min_run_time, 0.05)
    args.dims = args.dims or list(DIMS)
    args.bins = args.bins or list(BINS)
    if any(k < 2 for k in args.bins) or any(d < 1 for d in args.dims):
        parser.error("every K must be >= 2 and every dim >= 1")
    if 2 not in args.bins:
        args.bins = [2, *args.bins]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    bins = tuple(sorted(set(args.bins)))
    start = time.perf_counter()
    rows = []
    for dim in args.dims:
        rows.append(benchmark_dim(dim, bins, args, dtype))
        print(f"dim {dim}: done after {time.perf_counter() - start:.0f} s", file=sys.stderr)
    print(format_table(rows, bins))
    print("dim  best K (inv)  slowdown (inv)  best K (inv+bwd)  slowdown (inv+bwd)")
    for row in rows:
        print(
            f"{row['dim']:>4} {row['best_k_inverse']:>12} {row['slowdown_inverse']:>15.1f}"
            f" {row['best_k_inverse_backward']:>17} {row['slowdown_inverse_backward']:>19.1f}"
        )
    if args.out:
        write_json(
            args.out,
            {
                "config": {
                    "batch": args.batch,
                    "hidden": args.hidden,
                    "components": args.components,
                    "dtype": args.dtype,
                    "tolerance": default_tolerance(dtype),
                    "threads": args.threads,
                    "device": args.device,
                    "bins": list(bins),
                    "max_call_seconds": args.max_call_seconds,
                    "torch": torch.__version__,
                    "machine": platform.processor() or platform.machine(),
                    "elapsed_s": time.perf_counter() - start,
                },
                "results": rows,
            },
        )
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
