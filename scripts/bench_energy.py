#!/usr/bin/env python
"""Time energy + forces of the flow potential (FlowEnergy) per call, as MD needs them.

One call = ``energy = module(positions (R * 22, 3) nm)`` plus ``torch.autograd.grad(energy,
positions)``, what openmm-torch's TorchForce does every MD step. Variants: ``eager`` (the
FlowEnergy nn.Module), ``script`` (torch.jit.script of it), ``freeze`` (torch.jit.freeze of the
scripted module in eval mode), ``md-eager``, ``md-script`` and ``md-freeze``
(flowff.energy.md_energy's MDFlowEnergy with analytic forces: eager, as ``export_for_md`` writes
it into model files, and frozen as openmm-torch's TorchForce runs it), for R
replicas in one call, computing in float64 and float32 (positions are passed as float64, as
OpenMM's CPU platforms do). ``|dF|max`` checks every variant's forces against eager FlowEnergy's
(same dtype). Each configuration is warmed up (TorchScript optimises during its first calls),
then timed call by call; the table gives the median wall-clock time per call in ms, the median
and minimum process CPU time (less disturbed by other processes), wall ms per replica, and the
ratio of CPU medians to the first variant measured in the same run. The machine is shared and
noisy: compare ratios within one run. ``--ops`` adds the number of aten operators per call
(eager, forward + backward, from torch.profiler).

    python scripts/bench_energy.py                        # R = 1, 8, 64; both dtypes; 1 thread
    python scripts/bench_energy.py --replicas 1 --json results/bench/energy.json
    python scripts/bench_energy.py --model ala2.pt --variants freeze,md-script --dtypes float64
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform as host
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from flowff._torchscript import quiet_jit
from flowff.energy.builder import FlowModelConfig, build_energy, load_energy_module
from flowff.openmm.classical import load_alanine_dipeptide
from flowff.utils.atomic import write_text

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def _script(model: torch.nn.Module) -> torch.nn.Module:
    with quiet_jit():
        return torch.jit.script(model)


def _freeze(model: torch.nn.Module) -> torch.nn.Module:
    with quiet_jit():
        return torch.jit.freeze(torch.jit.script(model.eval()))


def _md_eager(model: torch.nn.Module) -> torch.nn.Module:
    from flowff.energy.md_energy import MDFlowEnergy

    return MDFlowEnergy(model)


def _md_script(model: torch.nn.Module) -> torch.nn.Module:
    from flowff.energy.md_energy import export_for_md

    return export_for_md(model)


def _md_freeze(model: torch.nn.Module) -> torch.nn.Module:
    with quiet_jit():
        return torch.jit.freeze(_md_script(model))


#: name -> builder of the timed module from the eager FlowEnergy. ``md-*``: MDFlowEnergy
#: (analytic forces), eager, as exported for OpenMM (scripted), and frozen as openmm-torch
#: runs it.
VARIANTS: dict[str, Callable[[torch.nn.Module], torch.nn.Module]] = {
    "eager": lambda model: model,
    "script": _script,
    "freeze": _freeze,
    "md-eager": _md_eager,
    "md-script": _md_script,
    "md-freeze": _md_freeze,
}


@dataclass
class Row:
    """Timing of one (variant, dtype, replicas) configuration; times in milliseconds."""

    variant: str
    dtype: str
    replicas: int
    median_ms: float
    cpu_median_ms: float
    cpu_min_ms: float
    ms_per_replica: float
    calls: int
    ratio_to_first: float | None = None
    ops_per_call: int | None = None
    max_force_deviation: float | None = None


def perturbed_energy(seed: int = 0, scale: float = 0.1) -> torch.nn.Module:
    """The paper's alanine dipeptide FlowEnergy (float64) with every parameter moved off its
    near-identity initialisation by ``scale`` * N(0, 1), so the flow is not trivial."""
    model = build_energy(FlowModelConfig())
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator,
                                               dtype=parameter.dtype))
    return model.eval()


def with_dtype(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """A copy of a FlowEnergy that computes in ``dtype``."""
    copied = copy.deepcopy(model).to(dtype)
    copied.dtype = dtype
    return copied


def replica_positions(replicas: int, seed: int = 0, noise_nm: float = 0.002) -> torch.Tensor:
    """(replicas * 22, 3) float64 nm: the shipped alanine dipeptide, jittered per replica."""
    _, positions = load_alanine_dipeptide()
    base = torch.tensor(positions, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    noise = noise_nm * torch.randn(replicas, *base.shape, generator=generator,
                                   dtype=torch.float64)
    return (base + noise).reshape(-1, 3)


def energy_and_forces(module: Any, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Energy (kJ/mol) and forces (kJ/mol/nm) as openmm-torch computes them."""
    x = positions.detach().requires_grad_(True)
    energy = module(x)
    (gradient,) = torch.autograd.grad(energy, x)
    return energy.detach(), -gradient


def time_calls(module: Any, positions: torch.Tensor, warmup: int, repeats: int,
               max_seconds: float) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of each timed call (at least 3, at most ``repeats``
    or about ``max_seconds``). CPU time is less disturbed by other processes on a busy host."""
    for _ in range(warmup):
        energy_and_forces(module, positions)
    wall: list[float] = []
    cpu: list[float] = []
    budget_start = time.perf_counter()
    while len(wall) < repeats:
        start, start_cpu = time.perf_counter(), time.process_time()
        energy_and_forces(module, positions)
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start)
        if len(wall) >= 3 and time.perf_counter() - budget_start > max_seconds:
            break
    return wall, cpu


def count_ops(module: Any, positions: torch.Tensor) -> int:
    """aten operators executed by one energy + forces call (forward and backward)."""
    from torch.profiler import ProfilerActivity, profile

    energy_and_forces(module, positions)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Warning: Profiler clears events",
                                category=UserWarning)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            energy_and_forces(module, positions)
    return sum(event.count for event in prof.key_averages() if event.key.startswith("aten::"))


def run(args: argparse.Namespace) -> list[Row]:
    """Every configuration asked for, in the order variants x dtypes x replicas."""
    torch.set_num_threads(args.threads)
    if args.model is not None:
        base = load_energy_module(args.model, "eager")
    else:
        base = perturbed_energy(args.seed)
    rows: list[Row] = []
    first_median: dict[tuple[str, int], float] = {}
    for dtype_name in args.dtypes:
        model = with_dtype(base, DTYPES[dtype_name])
        built = {name: VARIANTS[name](model) for name in args.variants}
        for replicas in args.replicas:
            positions = replica_positions(replicas, args.seed)
            _, reference_forces = energy_and_forces(model, positions)
            for name in args.variants:
                module = built[name]
                times, cpu = time_calls(module, positions, args.warmup, args.repeats,
                                        args.max_seconds)
                median = 1e3 * statistics.median(times)
                cpu_median = 1e3 * statistics.median(cpu)
                key = (dtype_name, replicas)
                first_median.setdefault(key, cpu_median)
                _, forces = energy_and_forces(module, positions)
                row = Row(
                    variant=name, dtype=dtype_name, replicas=replicas, median_ms=median,
                    cpu_median_ms=cpu_median, cpu_min_ms=1e3 * min(cpu),
                    ms_per_replica=median / replicas, calls=len(times),
                    ratio_to_first=cpu_median / first_median[key],
                    max_force_deviation=float((forces - reference_forces).abs().max()),
                )
                if args.ops and name == "eager":
                    row.ops_per_call = count_ops(module, positions)
                rows.append(row)
                print(format_row(row), flush=True)
    return rows


def format_row(row: Row) -> str:
    """One table line."""
    ops = "" if row.ops_per_call is None else f"{row.ops_per_call:>6d}"
    return (f"{row.variant:<10} {row.dtype:<8} {row.replicas:>4} {row.median_ms:>10.3f} "
            f"{row.cpu_median_ms:>8.3f} {row.cpu_min_ms:>8.3f} {row.ms_per_replica:>10.4f} "
            f"{row.ratio_to_first:>7.3f} "
            f"{row.max_force_deviation:>9.1e} {row.calls:>6d} {ops}")


HEADER = (f"{'variant':<10} {'dtype':<8} {'R':>4} {'median ms':>10} {'cpu med':>8} "
          f"{'cpu min':>8} {'ms/replica':>10} {'ratio':>7} {'|dF|max':>9} {'calls':>6} "
          f"{'ops':>6}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", default="1,8,64", help="comma-separated replica counts")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, from {list(VARIANTS)}; ratios are to the first")
    parser.add_argument("--dtypes", default="float64,float32", help="float64 and/or float32")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls first")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls at most")
    parser.add_argument("--max-seconds", type=float, default=3.0,
                        help="stop timing a configuration after this long (>= 3 calls)")
    parser.add_argument("--model", type=Path, default=None,
                        help="flowff model file (default: the paper's architecture, perturbed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ops", action="store_true", help="count aten ops per eager call")
    parser.add_argument("--json", type=Path, default=None, help="write the rows as JSON")
    args = parser.parse_args(argv)
    args.replicas = [int(r) for r in args.replicas.split(",") if r.strip()]
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    args.dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    unknown = [v for v in args.variants if v not in VARIANTS]
    unknown += [d for d in args.dtypes if d not in DTYPES]
    if unknown or not args.variants or not args.dtypes or not args.replicas:
        print(f"unknown or empty choices {unknown}; variants {list(VARIANTS)}, dtypes "
              f"{list(DTYPES)}", file=sys.stderr)
        return 2
    if any(r < 1 for r in args.replicas):
        print("replica counts must be >= 1", file=sys.stderr)
        return 2

    print(HEADER)
    print("-" * len(HEADER))
    rows = run(args)
    print("times per energy + forces call; ratio: CPU median over the first variant's (same "
          "dtype and R, same run); "
          "|dF|max: max force deviation from eager (kJ/mol/nm)")
    if args.json is not None:
        payload = {
            "torch_version": torch.__version__,
            "threads": args.threads,
            "host": {"machine": host.machine(), "processor": host.processor(),
                     "cpus": os.cpu_count()},
            "model": str(args.model) if args.model else "paper architecture, perturbed",
            "rows": [asdict(row) for row in rows],
        }
        write_text(args.json, json.dumps(payload, indent=2, allow_nan=False) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
