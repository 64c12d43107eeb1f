"""Start structures for MD and drift runs: frames of a reference trajectory, or a short Amber run.

``make_start_frames`` takes ``n`` evenly spaced frames of a reference trajectory when one is given.
Otherwise it makes them itself: by default with the classical Amber potential (``AmberPotential``),
it minimises the given structure, runs ``warmup_ps`` of Langevin dynamics and then keeps one frame
every ``spacing_ps``. Starts made that way are Amber-equilibrated structures, like the MD frames of
the paper's protocol, not samples of the potential under test.
"""

from __future__ import annotations

from pathlib import Path

import mdtraj
import numpy as np
import openmm as mm
import openmm.app as app
import openmm.unit as unit

from flowff.openmm.classical import AmberPotential, Potential, alanine_dipeptide_pdb_path
from flowff.openmm.md import run_md
from flowff.openmm.platforms import get_platform


def start_frames_from_trajectory(
    trajectory: str | Path, n: int, topology_pdb: str | Path | None = None
) -> list[np.ndarray]:
    """``n`` evenly spaced frames (first and last included), each ``(n_atoms, 3)`` in nm.

    Formats without a topology (DCD, XTC, ...) need ``topology_pdb``; the shipped alanine dipeptide
    PDB is used when it is ``None``.
    """
    if n < 1:
        raise ValueError(f"need at least one start frame, got n={n}")
    path = Path(trajectory)
    if not path.is_file():
        raise FileNotFoundError(f"reference trajectory {path} does not exist")
    if path.suffix.lower() in (".pdb", ".h5"):
        frames = mdtraj.load(str(path))
    elif topology_pdb is None:
        with alanine_dipeptide_pdb_path() as default_pdb:
            frames = mdtraj.load(str(path), top=str(default_pdb))
    else:
        frames = mdtraj.load(str(path), top=str(topology_pdb))
    if frames.n_frames < n:
        raise ValueError(f"{path} has {frames.n_frames} frames, fewer than the {n} starts asked")
    indices = np.round(np.linspace(0, frames.n_frames - 1, n)).astype(int)
    return [np.asarray(frames.xyz[i], dtype=np.float64) for i in indices]


def minimize(
    system: mm.System, positions: np.ndarray, platform: str | None = None
) -> np.ndarray:
    """Positions ``(n_atoms, 3)`` nm after OpenMM's local energy minimisation."""
    integrator = mm.VerletIntegrator(1.0 * unit.femtosecond)
    context = mm.Context(system, integrator, get_platform(platform))
    context.setPositions(np.asarray(positions, dtype=np.float64))
    mm.LocalEnergyMinimizer.minimize(context)
    state = context.getState(getPositions=True)
    return np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))


def start_frames_from_md(
    topology: app.Topology,
    positions: np.ndarray,
    n: int,
    *,
    potential: Potential | None = None,
    warmup_ps: float = 1.0,
    spacing_ps: float = 1.0,
    timestep_fs: float = 1.0,
    temperature_K: float = 300.0,
    friction_per_ps: float = 1.0,
    seed: int = 0,
    platform: str | None = None,
) -> list[np.ndarray]:
    """``n`` frames ``spacing_ps`` apart from a Langevin run (Amber unless ``potential``).

    The structure is minimised first, then equilibrated for ``warmup_ps``. Raises
    ``RuntimeError`` if the run blows up.
    """
    if n < 1:
        raise ValueError(f"need at least one start frame, got n={n}")
    spacing_steps = round(spacing_ps * 1e3 / timestep_fs)
    warmup_steps = round(warmup_ps * 1e3 / timestep_fs)
    if spacing_steps < 1 or warmup_steps < 0:
        raise ValueError(
            f"spacing_ps={spacing_ps} and warmup_ps={warmup_ps} at {timestep_fs} fs give "
            f"{spacing_steps} and {warmup_steps} steps; need >= 1 and >= 0"
        )
    system = (potential or AmberPotential()).createSystem(topology, removeCMMotion=True)
    start = minimize(system, positions, platform)
    # The warm-up runs on its own and hands over positions and velocities, so that the frames
    # fall exactly spacing_steps apart after it whatever the two lengths are.
    warmup = run_md(
        system,
        topology,
        start,
        steps=warmup_steps,
        integrator="langevin",
        timestep_fs=timestep_fs,
        temperature_K=temperature_K,
        friction_per_ps=friction_per_ps,
        report_interval=max(1, warmup_steps),
        seed=seed,
        platform=platform,
        progress=False,
    )
    if warmup.blew_up or warmup.final_positions_nm is None:
        raise RuntimeError(f"the warm-up run for start frames blew up: {warmup.blowup_reason}")
    production = run_md(
        system,
        topology,
        warmup.final_positions_nm,
        velocities=warmup.final_velocities_nm_per_ps,
        steps=spacing_steps * n,
        integrator="langevin",
        timestep_fs=timestep_fs,
        temperature_K=temperature_K,
        friction_per_ps=friction_per_ps,
        report_interval=spacing_steps,
        seed=seed + 1,
        platform=platform,
        record_positions=True,
        progress=False,
    )
    if production.blew_up or production.positions_nm is None:
        raise RuntimeError(f"the run making start frames blew up: {production.blowup_reason}")
    return [np.array(frame) for frame in production.positions_nm[1:]]


def make_start_frames(
    n: int,
    topology: app.Topology,
    positions: np.ndarray,
    *,
    trajectory: str | Path | None = None,
    topology_pdb: str | Path | None = None,
    spacing_ps: float = 1.0,
    seed: int = 0,
    platform: str | None = None,
) -> list[np.ndarray]:
    """``n`` start structures ``(n_atoms, 3)`` nm: trajectory frames, else an Amber Langevin run.

    Without ``trajectory``, ``start_frames_from_md`` makes them with the Amber potential at 300 K
    (1 ps warm-up, frames ``spacing_ps`` apart, seeded by ``seed``).
    """
    if trajectory is not None:
        frames = start_frames_from_trajectory(trajectory, n, topology_pdb)
        if frames[0].shape != (topology.getNumAtoms(), 3):
            raise ValueError(
                f"trajectory frames have {frames[0].shape[0]} atoms, the topology "
                f"{topology.getNumAtoms()}"
            )
        return frames
    return start_frames_from_md(
        topology, positions, n, spacing_ps=spacing_ps, seed=seed, platform=platform
    )
