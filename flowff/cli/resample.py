"""``flowff resample``: training frames from a model's own samples, importance-resampled to the
classical Boltzmann distribution (for ``flowff train --init-from MODEL``); resumable."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``resample`` subcommand."""
    p = subparsers.add_parser(
        "resample", help="training frames from a model's samples, reweighted to Boltzmann",
        description="Draw flow samples from a model, evaluate the classical energies and forces "
        "(OpenMM), and resample them by importance weights exp(-u/kT)/q (capped at mean * "
        "sqrt(N)) into a folder `flowff train` reads like MD data: fine-tune the model on it "
        "with --init-from to move its density toward the Boltzmann distribution without new "
        "MD. Re-running the same command resumes.",
    )
    p.add_argument("--model", required=True, type=Path, help="model file (.pt) to sample")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--samples", type=int, default=20_000, help="pool size (default 20000)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--chunk-size", type=int, default=1000,
                   help="samples per resumable chunk (default 1000)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    p.add_argument("--pdb", type=Path, default=None,
                   help="topology PDB (default: the shipped alanine dipeptide)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Draw, weigh and resample; print the pool's sampling efficiency."""
    from flowff.data.flow_samples import generate_resampled_flow_data
    from flowff.openmm.classical import alanine_dipeptide_pdb_path

    with alanine_dipeptide_pdb_path() as default_pdb:
        summary = generate_resampled_flow_data(
            args.model, args.out, args.pdb or default_pdb, args.samples, seed=args.seed,
            chunk_size=args.chunk_size, workers=args.workers, progress=not args.quiet,
        )
    print(f"{args.out}: {summary['frames']} frames ({summary['unique_frames']} distinct) from "
          f"{summary['pool_samples']} samples ({summary['usable']} usable); Kish ESS/N "
          f"{summary['kish_efficiency']:.3f} ({summary['kish_efficiency_truncated']:.3f} after "
          f"capping); largest weight {summary['max_weight_over_mean']:.1f} x the mean")
    return 0
