#!/usr/bin/env python
"""Wall time per training iteration and per sampling call: kernel flow vs brute-force CNFs.

Compares, in one run and on the same machine, for DW-4 and LJ-13 at batch 64 with 20-step RK4:

* ``kernel``: the equivariant kernel flow with its closed-form divergence (paper, Eq. 21);
* ``kernel-bruteforce``: the same vector field, divergence by autograd (one backward pass per
  coordinate), i.e. what a generic CNF pays for an exact trace;
* ``mlp-bruteforce``: the non-equivariant MLP nODE with the exact autograd trace;
* ``mlp-hutchinson``: the MLP nODE trained with Hutchinson's estimator (training only: its
  sampling log-densities would be noisy, so sampling always uses the exact trace).

A training iteration is NLL on a batch + backward + AdamW step; a sampling call draws 64
samples with their log-densities (no gradients). Prints mean +- std over ``--repeats`` and the
ratio to the kernel flow (the paper's Table 2 reports >= 10x for sampling), and writes JSON.

    python scripts/bench_equivariant.py --repeats 5 --json results/equivariant/bench.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from flowff.equivariant.models import kernel_flow, mlp_flow, set_trace_method
from flowff.equivariant.training import TrainConfig, train_flow

MODELS = ("kernel", "kernel-bruteforce", "mlp-bruteforce", "mlp-hutchinson")


def build(model: str, system: str, n_steps: int):
    """The flow named ``model`` for ``system``."""
    if model == "kernel":
        return kernel_flow(system, n_steps=n_steps)
    if model == "kernel-bruteforce":
        return kernel_flow(system, n_steps=n_steps, trace="exact")
    if model == "mlp-bruteforce":
        return mlp_flow(system, n_steps=n_steps, trace="exact")
    if model == "mlp-hutchinson":
        return mlp_flow(system, n_steps=n_steps, trace="hutchinson")
    raise ValueError(model)


def time_training(flow, data: torch.Tensor, repeats: int) -> list[float]:
    """Seconds per training iteration (one warm-up excluded)."""
    config = TrainConfig(n_iterations=1, batch_size=data.shape[0])
    train_flow(flow, data, config, progress=False)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        train_flow(flow, data, config, progress=False)
        times.append(time.perf_counter() - start)
    return times


def time_sampling(flow, batch: int, repeats: int) -> list[float]:
    """Seconds per sampling call of ``batch`` samples with log-densities."""
    times = []
    with torch.no_grad():
        flow.sample(batch)
        for _ in range(repeats):
            start = time.perf_counter()
            flow.sample(batch)
            times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=["DW-4", "LJ-13"])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n-steps", type=int, default=20, help="RK4 steps")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--json", type=Path, default=None, help="write results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    results: dict = {
        "batch": args.batch, "repeats": args.repeats, "rk4_steps": args.n_steps,
        "threads": args.threads, "torch": torch.__version__, "machine": platform.processor()
        or platform.machine(), "dtype": "float64", "systems": {},
    }
    for system in args.systems:
        gen = torch.Generator().manual_seed(0)
        entry: dict = {}
        for model in args.models:
            flow = build(model, system, args.n_steps)
            data = flow.prior.sample(args.batch, generator=gen) * (2.0 if "DW" in system else 1.0)
            train = time_training(flow, data, args.repeats)
            if model == "mlp-hutchinson":
                set_trace_method(flow, "exact")
            sample = time_sampling(flow, args.batch, args.repeats)
            entry[model] = {
                "train_s": statistics.mean(train),
                "train_std": statistics.stdev(train) if len(train) > 1 else 0.0,
                "sample_s": statistics.mean(sample),
                "sample_std": statistics.stdev(sample) if len(sample) > 1 else 0.0,
            }
            print(f"{system:6s} {model:18s} train {entry[model]['train_s']:8.3f} s  "
                  f"sample {entry[model]['sample_s']:8.3f} s", file=sys.stderr, flush=True)
        base = entry.get("kernel")
        if base:
            for row in entry.values():
                row["train_ratio"] = row["train_s"] / base["train_s"]
                row["sample_ratio"] = row["sample_s"] / base["sample_s"]
        results["systems"][system] = entry

    print(f"\nwall time per call, batch {args.batch}, {args.n_steps}-step RK4, float64, "
          f"{args.threads} thread(s); mean +- std over {args.repeats}")
    print(f"{'system':7s}{'model':19s}{'train [s]':>18s}{'ratio':>8s}{'sample [s]':>18s}"
          f"{'ratio':>8s}")
    for system, entry in results["systems"].items():
        for model, row in entry.items():
            print(f"{system:7s}{model:19s}{row['train_s']:10.3f} +- {row['train_std']:5.3f}"
                  f"{row.get('train_ratio', float('nan')):8.1f}"
                  f"{row['sample_s']:10.3f} +- {row['sample_std']:5.3f}"
                  f"{row.get('sample_ratio', float('nan')):8.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
