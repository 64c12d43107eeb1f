"""``flowff data``: reference MD (positions, forces, energies) with OpenMM; resumable."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "data", help="generate reference MD data with forces (OpenMM, resumable)",
        description="Run independent Langevin replicas (amber99sbildn + OBC, no cutoff, no "
        "constraints) and save positions (nm), forces (kJ/mol/nm) and potential energies "
        "(kJ/mol) every save interval. Re-running the same command resumes; a larger --ns "
        "extends the replicas.",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--pdb", type=Path, default=None,
                   help="starting structure (default: the shipped alanine dipeptide)")
    p.add_argument("--replicas", type=int, default=2, help="independent replicas (default 2)")
    p.add_argument("--ns", type=float, default=10.0, help="ns per replica (default 10)")
    p.add_argument("--workers", type=int, default=2, help="parallel processes (default 2)")
    p.add_argument("--temperature", type=float, default=300.0, help="kelvin (default 300)")
    p.add_argument("--timestep-fs", type=float, default=1.0)
    p.add_argument("--friction", type=float, default=1.0, help="1/ps (default 1)")
    p.add_argument("--save-interval-ps", type=float, default=1.0)
    p.add_argument("--frames-per-chunk", type=int, default=100)
    p.add_argument("--equilibration-ps", type=float, default=20.0)
    p.add_argument("--platform", default="Reference")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--export-dcd", type=Path, default=None,
                   help="also write all frames as one DCD trajectory (mdtraj)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flowff.data.reference import (
        ReferenceMDConfig,
        generate_reference_data,
        load_reference_data,
    )
    from flowff.openmm.classical import alanine_dipeptide_pdb_path

    cfg = ReferenceMDConfig(
        temperature_K=args.temperature, timestep_fs=args.timestep_fs,
        friction_per_ps=args.friction, save_interval_ps=args.save_interval_ps,
        frames_per_chunk=args.frames_per_chunk, equilibration_ps=args.equilibration_ps,
        platform=args.platform, seed=args.seed,
    )
    with alanine_dipeptide_pdb_path() as default_pdb:
        pdb = args.pdb or default_pdb
        generate_reference_data(args.out, pdb, args.replicas, args.ns, cfg, args.workers)
    data = load_reference_data(args.out)
    print(f"{args.out}: {len(data)} frames ({len(data) * cfg.save_interval_ps / 1000:.3f} ns) "
          f"in {len(set(data.replica.tolist()))} replicas")
    if args.export_dcd is not None:
        data.to_mdtraj().save_dcd(str(args.export_dcd))
        print(f"wrote {args.export_dcd}")
    return 0
