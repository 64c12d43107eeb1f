#!/usr/bin/env python
"""MD speed (steps/s) of alanine dipeptide with Amber and, given --model, the flow potential.

Amber (amber99sbildn + OBC, no cutoff, no constraints) runs on every platform asked for. With
``--model``, ``FlowPotential(modelPath, backend=b).createSystem(topology, replicas=R)`` runs for
each backend and replica count R: R independent copies of the molecule in one System, so the
useful rate is molecule-steps/s = R * steps/s. Ratios compare molecule-steps/s with Amber's
steps/s on the same platform in the same run. LangevinMiddleIntegrator, 1 fs, 300 K.

    python scripts/bench_md.py --json results/bench/md.json
    python scripts/bench_md.py --model ala2.pt --replicas 1,8,64 --platforms Reference,CPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform as host
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openmm as mm
import openmm.app as app
import openmm.unit as unit

from flowff.openmm.classical import AmberPotential, load_alanine_dipeptide
from flowff.openmm.platforms import available_platforms, get_platform
from flowff.utils.atomic import write_text

BACKENDS = ("torchforce", "pythonforce")


@dataclass
class Row:
    """One benchmark configuration and its speed (``None`` with ``error`` when it failed)."""

    potential: str
    backend: str
    replicas: int
    platform: str
    steps_per_s: float | None
    molecule_steps_per_s: float | None
    ratio_to_amber: float | None = None
    error: str | None = None


def steps_per_second(
    system: mm.System, positions: np.ndarray, platform: str, seconds: float, warmup_steps: int
) -> float:
    """Steps/s of Langevin dynamics of ``system`` on ``platform``, timed for about ``seconds``.

    Starts from ``positions`` (nm) without minimisation, after ``warmup_steps`` untimed steps
    (TorchScript optimises a module during its first calls).
    """
    integrator = mm.LangevinMiddleIntegrator(
        300 * unit.kelvin, 1.0 / unit.picosecond, 1.0 * unit.femtosecond
    )
    integrator.setRandomNumberSeed(1)
    context = mm.Context(system, integrator, get_platform(platform))
    context.setPositions(positions)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    integrator.step(warmup_steps)
    context.getState(getEnergy=True)  # synchronise before timing
    chunk, steps = 10, 0
    start = time.perf_counter()
    while True:
        integrator.step(chunk)
        steps += chunk
        context.getState(getEnergy=True)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return steps / elapsed
        chunk = min(chunk * 2, 10_000)


def replicated_positions(positions: np.ndarray, replicas: int) -> np.ndarray:
    """``replicas`` copies of ``positions`` (nm), each shifted 3 nm along x."""
    return np.concatenate([positions + [3.0 * r, 0.0, 0.0] for r in range(replicas)])


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--platforms", default="Reference,CPU",
                        help="comma-separated OpenMM platforms (default Reference,CPU)")
    parser.add_argument("--model", type=Path, default=None, help="flowff model file")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--replicas", default="1,8,64", help="replica counts for the flow")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per configuration")
    parser.add_argument("--warmup-steps", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None, help="write the table as JSON")
    args = parser.parse_args(argv)

    platforms = [name.strip() for name in args.platforms.split(",") if name.strip()]
    missing = [name for name in platforms if name not in available_platforms()]
    if missing:
        print(f"unknown platforms {missing}; available: {available_platforms()}", file=sys.stderr)
        return 2
    topology, positions = load_alanine_dipeptide()
    amber_system = AmberPotential().createSystem(topology)
    rows: list[Row] = []
    amber_speed: dict[str, float] = {}
    for name in platforms:
        speed = steps_per_second(amber_system, positions, name, args.seconds, args.warmup_steps)
        amber_speed[name] = speed
        rows.append(Row("amber", "-", 1, name, speed, speed, 1.0))
        print(f"amber on {name}: {speed:.0f} steps/s", flush=True)

    notes: list[str] = []
    if args.model is not None:
        try:
            from flowff.openmm.potential import FlowPotential
        except ImportError as error:
            notes.append(f"flow potential not available ({error}); benchmarked Amber only")
            FlowPotential = None
        if FlowPotential is not None:
            replica_counts = [int(r) for r in args.replicas.split(",")]
            for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
                potential = FlowPotential(modelPath=args.model, backend=backend)
                for replicas in replica_counts:
                    for name in platforms:
                        rows.append(
                            bench_flow(potential, backend, replicas, name, topology, positions,
                                       args, amber_speed[name])
                        )
                        print(format_row(rows[-1]), flush=True)
    print()
    print(table(rows))
    for note in notes:
        print(note)
    if args.json is not None:
        payload = {
            "openmm_version": mm.__version__,
            "host": {"machine": host.machine(), "processor": host.processor(),
                     "cpus": os.cpu_count()},
            "integrator": "LangevinMiddleIntegrator 1 fs 300 K",
            "seconds_per_configuration": args.seconds,
            "notes": notes,
            "rows": [asdict(row) for row in rows],
        }
        write_text(args.json, json.dumps(payload, indent=2, allow_nan=False) + "\n")
        print(f"wrote {args.json}")
    return 0


def bench_flow(potential: Any, backend: str, replicas: int, platform: str,
               topology: app.Topology, positions: np.ndarray, args: argparse.Namespace,
               amber: float) -> Row:
    """One flow configuration; failures become a row with ``error`` set."""
    try:
        system = potential.createSystem(topology, replicas=replicas)
        speed = steps_per_second(
            system, replicated_positions(positions, replicas), platform, args.seconds,
            args.warmup_steps,
        )
    except Exception as error:  # report every failure (missing kernels, bad replicas) as a row
        return Row("flow", backend, replicas, platform, None, None, None,
                   f"{type(error).__name__}: {error}")
    return Row("flow", backend, replicas, platform, speed, speed * replicas,
               speed * replicas / amber)


def format_row(row: Row) -> str:
    """One line describing a row."""
    if row.error is not None:
        return f"{row.potential} {row.backend} R={row.replicas} on {row.platform}: {row.error}"
    return (f"{row.potential} {row.backend} R={row.replicas} on {row.platform}: "
            f"{row.steps_per_s:.1f} steps/s, {row.molecule_steps_per_s:.1f} molecule-steps/s")


def table(rows: list[Row]) -> str:
    """Plain-text table of the rows."""
    header = (f"{'potential':<10} {'backend':<12} {'R':>4} {'platform':<10} {'steps/s':>10} "
              f"{'mol-steps/s':>12} {'vs amber':>9}")
    lines = [header, "-" * len(header)]
    for row in rows:
        if row.error is not None:
            lines.append(f"{row.potential:<10} {row.backend:<12} {row.replicas:>4} "
                         f"{row.platform:<10} failed: {row.error[:60]}")
            continue
        lines.append(
            f"{row.potential:<10} {row.backend:<12} {row.replicas:>4} {row.platform:<10} "
            f"{row.steps_per_s:>10.1f} {row.molecule_steps_per_s:>12.1f} "
            f"{row.ratio_to_amber:>9.4f}"
        )
    lines.append("vs amber: molecule-steps/s over Amber's steps/s on the same platform, same run")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
