"""``flowff drift``: energy conservation in NVE MD (the paper's protocol), flow against Amber."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``drift`` subcommand."""
    p = subparsers.add_parser(
        "drift",
        help="measure NVE energy conservation of the flow and Amber potentials",
        description="For each start structure: Langevin equilibration (friction 10/ps), then NVE "
        "velocity Verlet; reports the total-energy standard deviation per degree of freedom "
        "(dof = 3n - 6 = 60 for alanine dipeptide), the linear drift, the largest excursion and "
        "blow-ups, for every potential with the same starts and seeds, and the ratio to Amber, "
        "which always runs as the reference. Start structures: evenly spaced frames of "
        "--trajectory, or else frames 1 ps apart of a short Amber Langevin run from the PDB.",
    )
    p.add_argument("--potentials", default="amber,flow",
                   help="comma-separated potentials among amber, flow (default amber,flow; "
                   "amber is always added as the reference)")
    p.add_argument("--model", type=Path, default=None, help="flowff model file for 'flow'")
    p.add_argument("--backend", choices=("torchforce", "pythonforce"), default="torchforce",
                   help="flow potential backend (default torchforce)")
    p.add_argument("--starts", type=int, default=10, help="number of start structures (10)")
    p.add_argument("--trajectory", type=Path, default=None,
                   help="reference trajectory to take the starts from (DCD needs --pdb)")
    p.add_argument("--pdb", type=Path, default=None,
                   help="topology and initial structure (default: shipped alanine dipeptide)")
    p.add_argument("--start-spacing-ps", type=float, default=1.0,
                   help="ps between start frames made by Amber MD (default 1)")
    p.add_argument("--equilibrate-ps", type=float, default=1.0, help="Langevin ps (default 1)")
    p.add_argument("--equilibrate-friction", type=float, default=10.0,
                   help="Langevin friction, 1/ps (default 10)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--nve-ps", type=float, default=None, help="NVE ps (default 5)")
    length.add_argument("--long", action="store_true",
                        help="long mode for drift slopes: 200 ps NVE, reports every 10 steps")
    p.add_argument("--timestep-fs", type=float, default=1.0, help="fs (default 1)")
    p.add_argument("--temperature", type=float, default=300.0, help="K (default 300)")
    p.add_argument("--report-every", type=int, default=None,
                   help="steps between NVE energy reports (default 1; 10 with --long)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--platform", default=None, help="OpenMM platform (default Reference)")
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    p.add_argument("--png", type=Path, default=None, help="plot the total-energy traces")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``flowff drift``; returns 0, or 2 on bad input."""
    from flowff.cli._potentials import POTENTIAL_NAMES, FlowUnavailable, build_potential
    from flowff.openmm.classical import alanine_dipeptide_pdb_path, load_pdb
    from flowff.openmm.drift import (
        LONG_NVE_PS,
        LONG_REPORT_EVERY_STEPS,
        compare_drift,
    )
    from flowff.openmm.starts import make_start_frames

    names = [name.strip() for name in args.potentials.split(",") if name.strip()]
    unknown = sorted(set(names) - set(POTENTIAL_NAMES))
    if unknown:
        print(f"flowff drift: error: unknown potentials {', '.join(unknown)}; "
              f"choose from {', '.join(POTENTIAL_NAMES)}", file=sys.stderr)
        return 2
    names = ["amber"] + [name for name in dict.fromkeys(names) if name != "amber"]
    potentials = {}
    try:
        for name in names:
            try:
                potentials[name] = build_potential(name, args.model, args.backend)
            except FlowUnavailable as error:
                if args.model is not None:
                    raise
                print(f"flowff drift: the flow potential is not available ({error}); "
                      "running amber alone")
        nve_ps = LONG_NVE_PS if args.long else (5.0 if args.nve_ps is None else args.nve_ps)
        report_every = args.report_every or (LONG_REPORT_EVERY_STEPS if args.long else 1)
        with alanine_dipeptide_pdb_path() as default_pdb:
            pdb = args.pdb or default_pdb
            topology, positions = load_pdb(pdb)
            starts = make_start_frames(
                args.starts, topology, positions, trajectory=args.trajectory, topology_pdb=pdb,
                spacing_ps=args.start_spacing_ps, seed=args.seed, platform=args.platform,
            )
        source = args.trajectory if args.trajectory is not None else "an Amber Langevin run"
        print(f"{len(starts)} starts from {source}; per start {args.equilibrate_ps} ps Langevin "
              f"then {nve_ps} ps NVE at {args.timestep_fs} fs")
        comparison = compare_drift(
            potentials, topology, starts, reference="amber",
            equilibrate_ps=args.equilibrate_ps,
            equilibrate_friction_per_ps=args.equilibrate_friction,
            nve_ps=nve_ps, timestep_fs=args.timestep_fs, temperature_K=args.temperature,
            seed=args.seed, platform=args.platform, report_every_steps=report_every,
            progress=not args.no_progress,
        )
    except (FlowUnavailable, ValueError, FileNotFoundError) as error:
        print(f"flowff drift: error: {error}", file=sys.stderr)
        return 2
    if args.json is not None:
        comparison.write_json(args.json)
        print(f"wrote {args.json}")
    if args.png is not None:
        from flowff.openmm.drift_plot import plot_drift

        plot_drift(comparison, args.png)
        print(f"wrote {args.png}")
    return 0
