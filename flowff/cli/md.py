"""``flowff md``: molecular dynamics of alanine dipeptide with the flow or the Amber potential."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``md`` subcommand."""
    p = subparsers.add_parser(
        "md",
        help="run MD (Langevin or NVE Verlet) with a flow model or the Amber force field",
        description="Run MD from a PDB or a trajectory frame, report energies (kJ/mol) and "
        "temperature (K), and stop early, with exit status 1, if the run blows up (non-finite "
        "or exploding energies, OpenMM errors). NVE (--integrator verlet) removes any "
        "CMMotionRemover from the System.",
    )
    p.add_argument("--model", type=Path, default=None,
                   help="flowff model file; selects --potential flow")
    p.add_argument("--potential", choices=("amber", "flow"), default=None,
                   help="potential (default: flow with --model, else amber)")
    p.add_argument("--backend", choices=("torchforce", "pythonforce"), default="torchforce",
                   help="flow potential backend (default torchforce)")
    p.add_argument("--integrator", choices=("langevin", "verlet"), default="langevin")
    p.add_argument("--timestep-fs", type=float, default=1.0, help="fs (default 1)")
    p.add_argument("--temperature", type=float, default=300.0,
                   help="K: Langevin bath and initial velocities (default 300)")
    p.add_argument("--friction", type=float, default=1.0,
                   help="Langevin friction, 1/ps (default 1)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, default=None, help="number of steps")
    length.add_argument("--ps", type=float, default=None, help="length in ps (default 10)")
    p.add_argument("--report-interval", type=int, default=100, help="steps between reports")
    p.add_argument("--seed", type=int, default=0, help="seed of velocities and Langevin noise")
    p.add_argument("--platform", default=None, help="OpenMM platform (default Reference)")
    p.add_argument("--start", default=None,
                   help="PDB or trajectory[:frame] to start from (default: shipped alanine "
                   "dipeptide)")
    p.add_argument("--topology", type=Path, default=None,
                   help="PDB giving the topology (default: --start if it is a PDB, else the "
                   "shipped alanine dipeptide)")
    p.add_argument("--out-traj", type=Path, default=None,
                   help="DCD trajectory, one frame per report")
    p.add_argument("--out-csv", type=Path, default=None, help="energies CSV, one row per report")
    p.add_argument("--blowup-threshold", type=float, default=None,
                   help="kJ/mol: stop when |E_total - E_total(0)| exceeds this (default 1000)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``flowff md``; returns 0, 1 when the run blew up, 2 on bad input."""
    from flowff.cli._potentials import FlowUnavailable, build_potential
    from flowff.openmm.classical import alanine_dipeptide_pdb_path, load_pdb
    from flowff.openmm.drift import drift_statistics, energy_degrees_of_freedom
    from flowff.openmm.md import DEFAULT_BLOWUP_THRESHOLD_KJMOL, load_positions, run_md

    name = args.potential or ("flow" if args.model is not None else "amber")
    if args.steps is not None:
        steps = args.steps
    else:
        steps = round((10.0 if args.ps is None else args.ps) * 1e3 / args.timestep_fs)
    try:
        potential = build_potential(name, args.model, args.backend)
        start_is_pdb = args.start is not None and str(args.start).lower().endswith(".pdb")
        with alanine_dipeptide_pdb_path() as default_pdb:
            topology_pdb = args.topology or (Path(args.start) if start_is_pdb else default_pdb)
            topology, positions = load_pdb(topology_pdb)
            if args.start is not None:
                positions = load_positions(args.start, topology_pdb)
        system = potential.createSystem(topology, removeCMMotion=True)
        result = run_md(
            system,
            topology,
            positions,
            steps=steps,
            integrator=args.integrator,
            timestep_fs=args.timestep_fs,
            temperature_K=args.temperature,
            friction_per_ps=args.friction,
            report_interval=args.report_interval,
            seed=args.seed,
            platform=args.platform,
            trajectory_path=args.out_traj,
            energies_csv=args.out_csv,
            blowup_threshold_kjmol=(
                DEFAULT_BLOWUP_THRESHOLD_KJMOL
                if args.blowup_threshold is None
                else args.blowup_threshold
            ),
            progress=not args.no_progress,
        )
    except (FlowUnavailable, ValueError, FileNotFoundError) as error:
        print(f"flowff md: error: {error}", file=sys.stderr)
        return 2
    print(
        f"{name} {args.integrator}: {result.steps_completed}/{steps} steps of "
        f"{args.timestep_fs} fs, {result.time_ps.size} reports"
    )
    if result.cm_motion_removers_removed:
        print(f"NVE: removed {result.cm_motion_removers_removed} CMMotionRemover from the System")
    if result.time_ps.size and not result.blew_up:
        print(
            f"temperature {result.temperature_K.mean():.1f} K (mean); total energy "
            f"{result.total_kjmol.mean():.3f} +- {result.total_kjmol.std():.3f} kJ/mol"
        )
    if args.integrator == "verlet" and not result.blew_up and result.time_ps.size >= 2:
        dof = energy_degrees_of_freedom(system)
        stats = drift_statistics(result.time_ps, result.total_kjmol, dof)
        print(
            f"NVE total-energy std {stats['std_per_dof']:.3e} kJ/mol/dof, drift "
            f"{stats['slope_per_ns_per_dof']:.3e} kJ/mol/ns/dof"
        )
    for label, path in (("trajectory", args.out_traj), ("energies", args.out_csv)):
        if path is not None:
            print(f"wrote {label} {path}")
    if result.blew_up:
        print(f"flowff md: the run blew up: {result.blowup_reason}", file=sys.stderr)
        return 1
    return 0
