"""Run molecular dynamics with any OpenMM System and record energies, with blow-up detection.

``run_md`` integrates a System (Langevin or NVE Verlet), reports potential, kinetic and total
energy (kJ/mol) and temperature (K) every ``report_interval`` steps (step 0 included), optionally
writes a DCD trajectory and an energy CSV, and stops early, flagging a *blow-up*, when an energy
becomes non-finite, when the total energy leaves ``blowup_threshold_kjmol`` of its starting value,
or when OpenMM raises (for example on NaN coordinates).

NVE runs use OpenMM's ``VerletIntegrator`` (leapfrog). Its State reports the on-step kinetic energy
(half-step velocities shifted by ``dt/2 * F/m``), so the reported total energy is that of velocity
Verlet, which generates the same positions. A CMMotionRemover would change the total energy
(it rescales momenta), so NVE runs use a copy of the System without it (``run_md`` says so in
``MDResult.cm_motion_removers_removed``).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import mdtraj
import numpy as np
import openmm as mm
import openmm.app as app
import openmm.unit as unit
from tqdm.auto import tqdm

from flowff.openmm.classical import alanine_dipeptide_pdb_path
from flowff.openmm.platforms import get_platform
from flowff.utils.atomic import atomic_path

#: Integrator names accepted by ``run_md``.
INTEGRATORS: tuple[str, ...] = ("langevin", "verlet")

#: Molar gas constant in kJ/mol/K.
MOLAR_GAS_CONSTANT_KJ_PER_MOL_K: float = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(
    unit.kilojoule_per_mole / unit.kelvin
)

#: Default blow-up threshold on |E_total - E_total(0)| in kJ/mol (a few hundred kT for a small
#: molecule; raise it for large systems or for long thermostatted runs from strained starts).
DEFAULT_BLOWUP_THRESHOLD_KJMOL: float = 1000.0

#: Trajectory file suffixes ``run_md`` can write.
TRAJECTORY_SUFFIXES: tuple[str, ...] = (".dcd",)

#: Trajectory formats that carry no topology: mdtraj needs a PDB to read them.
_TOPOLOGY_FREE_SUFFIXES: tuple[str, ...] = (".dcd", ".xtc", ".trr", ".nc", ".netcdf", ".binpos")

#: Columns of the energy CSV written by ``MDResult.write_csv``.
CSV_COLUMNS: tuple[str, ...] = (
    "step",
    "time_ps",
    "potential_kjmol",
    "kinetic_kjmol",
    "total_kjmol",
    "temperature_K",
)


@dataclass
class MDResult:
    """Energies of one MD run at every report (arrays of shape ``(n_reports,)``).

    ``blew_up`` is True when the run stopped early; ``blowup_reason`` says why. The final
    positions (nm) and velocities (nm/ps), shape ``(n_atoms, 3)``, are ``None`` after a blow-up.
    ``positions_nm`` holds the positions at every report, ``(n_reports, n_atoms, 3)``, when the run
    was asked to record them.
    """

    step: np.ndarray
    time_ps: np.ndarray
    potential_kjmol: np.ndarray
    kinetic_kjmol: np.ndarray
    total_kjmol: np.ndarray
    temperature_K: np.ndarray
    integrator: str
    timestep_fs: float
    steps_requested: int
    steps_completed: int
    blew_up: bool = False
    blowup_reason: str | None = None
    cm_motion_removers_removed: int = 0
    final_positions_nm: np.ndarray | None = field(default=None, repr=False)
    final_velocities_nm_per_ps: np.ndarray | None = field(default=None, repr=False)
    positions_nm: np.ndarray | None = field(default=None, repr=False)

    def write_csv(self, path: str | Path) -> None:
        """Write the energies as CSV (columns ``CSV_COLUMNS``), atomically."""
        rows = zip(
            self.step,
            self.time_ps,
            self.potential_kjmol,
            self.kinetic_kjmol,
            self.total_kjmol,
            self.temperature_K,
            strict=True,
        )
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_COLUMNS)
            for step, *values in rows:
                writer.writerow([int(step), *(repr(float(v)) for v in values)])


def without_cm_motion_remover(system: mm.System) -> tuple[mm.System, int]:
    """``system`` without CMMotionRemover forces, and how many were removed.

    Returns ``system`` itself when it has none; otherwise a deep copy (``XmlSerializer.clone``)
    from which they are removed, leaving ``system`` unchanged.
    """
    indices = [
        i for i, force in enumerate(system.getForces()) if isinstance(force, mm.CMMotionRemover)
    ]
    if not indices:
        return system, 0
    try:
        copy = mm.XmlSerializer.clone(system)
    except Exception as error:  # OpenMM raises plain Exception subclasses from SWIG
        raise ValueError(
            "cannot copy the System to remove its CMMotionRemover for NVE "
            f"({error}); build it with removeCMMotion=False instead"
        ) from error
    for index in reversed(indices):
        copy.removeForce(index)
    return copy, len(indices)


def temperature_degrees_of_freedom(system: mm.System) -> int:
    """Degrees of freedom used to turn kinetic energy into temperature.

    OpenMM's ``StateDataReporter`` convention: 3 per particle with mass, minus one per constraint,
    minus 3 when the System has a CMMotionRemover.
    """
    n_massive = sum(
        1
        for i in range(system.getNumParticles())
        if system.getParticleMass(i).value_in_unit(unit.dalton) > 0
    )
    dof = 3 * n_massive - system.getNumConstraints()
    if any(isinstance(force, mm.CMMotionRemover) for force in system.getForces()):
        dof -= 3
    if dof <= 0:
        raise ValueError(f"the System has no kinetic degrees of freedom (computed {dof})")
    return dof


def openmm_seed(seed: int, stream: int) -> int:
    """A nonzero 31-bit OpenMM random seed derived from ``(seed, stream)``.

    OpenMM treats seed 0 as "pick one at random", so user seeds are never passed through directly.
    """
    if seed < 0 or stream < 0:
        raise ValueError(f"seed and stream must be non-negative, got seed={seed}, stream={stream}")
    state = np.random.SeedSequence(seed, spawn_key=(stream,)).generate_state(1)[0]
    return int(state) % (2**31 - 2) + 1


#: Seed streams: one for initial velocities, one for the Langevin noise.
VELOCITY_SEED_STREAM = 0
LANGEVIN_SEED_STREAM = 1


def make_integrator(
    integrator: str,
    timestep_fs: float,
    temperature_K: float,
    friction_per_ps: float,
    seed: int,
) -> mm.Integrator:
    """An OpenMM integrator: ``"langevin"`` (LangevinMiddleIntegrator) or ``"verlet"`` (NVE)."""
    if timestep_fs <= 0 or not math.isfinite(timestep_fs):
        raise ValueError(f"timestep_fs must be positive and finite, got {timestep_fs}")
    timestep = timestep_fs * unit.femtosecond
    if integrator == "verlet":
        return mm.VerletIntegrator(timestep)
    if integrator == "langevin":
        if temperature_K <= 0:
            raise ValueError(f"temperature_K must be positive, got {temperature_K}")
        if friction_per_ps < 0:
            raise ValueError(f"friction_per_ps must be non-negative, got {friction_per_ps}")
        langevin = mm.LangevinMiddleIntegrator(
            temperature_K * unit.kelvin, friction_per_ps / unit.picosecond, timestep
        )
        langevin.setRandomNumberSeed(openmm_seed(seed, LANGEVIN_SEED_STREAM))
        return langevin
    raise ValueError(f"unknown integrator {integrator!r}; choose one of {', '.join(INTEGRATORS)}")


def blowup_check(
    step: int, total_kjmol: float, initial_total_kjmol: float, threshold_kjmol: float
) -> str | None:
    """Why the run has blown up at ``step`` (non-finite or exploded total energy), else None."""
    if not (math.isfinite(total_kjmol) and math.isfinite(initial_total_kjmol)):
        return f"non-finite energy at step {step}"
    excursion = abs(total_kjmol - initial_total_kjmol)
    if excursion > threshold_kjmol:
        return (
            f"total energy moved {excursion:.3g} kJ/mol from its start by step {step} "
            f"(threshold {threshold_kjmol:g} kJ/mol)"
        )
    return None


def _check_positions(name: str, array: np.ndarray, n_atoms: int) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.shape != (n_atoms, 3):
        raise ValueError(
            f"{name} must have shape ({n_atoms}, 3) for this System, got {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contain non-finite values")
    return array


def load_positions(spec: str | Path, topology_pdb: str | Path | None = None) -> np.ndarray:
    """Positions ``(n_atoms, 3)`` in nm from ``"file.pdb"`` or ``"trajectory[:frame]"``.

    ``frame`` is a 0-based index (negative counts from the end; default 0). Trajectory formats
    without a topology (DCD, XTC, ...) need ``topology_pdb``; when it is ``None`` the shipped
    alanine dipeptide PDB is used.
    """
    text = str(spec)
    path_text, frame = text, 0
    head, sep, tail = text.rpartition(":")
    if sep and tail.lstrip("-").isdigit():
        path_text, frame = head, int(tail)
    path = Path(path_text)
    if not path.is_file():
        raise FileNotFoundError(f"start structure {path} does not exist")
    if path.suffix.lower() in _TOPOLOGY_FREE_SUFFIXES:
        if topology_pdb is None:
            with alanine_dipeptide_pdb_path() as default_pdb:
                frames = mdtraj.load(str(path), top=str(default_pdb))
        else:
            frames = mdtraj.load(str(path), top=str(topology_pdb))
    else:
        frames = mdtraj.load(str(path))
    if not -frames.n_frames <= frame < frames.n_frames:
        raise ValueError(f"frame {frame} is out of range: {path} has {frames.n_frames} frames")
    return np.asarray(frames.xyz[frame], dtype=np.float64)


class _TrajectoryWriter:
    """DCD writer for frames at reports (positions in nm)."""

    def __init__(self, path: Path, topology: app.Topology, timestep_fs: float, interval: int):
        if path.suffix.lower() not in TRAJECTORY_SUFFIXES:
            raise ValueError(
                f"cannot write trajectory {path}: supported suffixes are "
                f"{', '.join(TRAJECTORY_SUFFIXES)}"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(path, "wb")
        self._dcd = app.DCDFile(
            self._handle, topology, timestep_fs * unit.femtosecond, firstStep=0, interval=interval
        )

    def write(self, positions_nm: np.ndarray) -> None:
        self._dcd.writeModel(positions_nm * unit.nanometer)

    def close(self) -> None:
        self._handle.close()


def run_md(
    system: mm.System,
    topology: app.Topology,
    positions: np.ndarray,
    *,
    steps: int,
    integrator: str = "langevin",
    timestep_fs: float = 1.0,
    temperature_K: float = 300.0,
    friction_per_ps: float = 1.0,
    report_interval: int = 100,
    seed: int = 0,
    platform: str | None = None,
    velocities: np.ndarray | None = None,
    trajectory_path: str | Path | None = None,
    energies_csv: str | Path | None = None,
    blowup_threshold_kjmol: float = DEFAULT_BLOWUP_THRESHOLD_KJMOL,
    record_positions: bool = False,
    progress: bool = True,
) -> MDResult:
    """Integrate ``system`` for ``steps`` steps from ``positions`` (nm, ``(n_atoms, 3)``).

    Velocities are ``velocities`` (nm/ps) when given, else drawn at ``temperature_K`` with a seed
    derived from ``seed``. ``"verlet"`` runs NVE on a copy of the System without CMMotionRemover.
    Reports (energies in kJ/mol, temperature in K) are taken at step 0 and every
    ``report_interval`` steps, and at the last step. The run stops early, with
    ``blew_up=True``, on non-finite energies, on ``|E_total - E_total(0)| >
    blowup_threshold_kjmol`` or when OpenMM raises.
    """
    if integrator not in INTEGRATORS:
        raise ValueError(
            f"unknown integrator {integrator!r}; choose one of {', '.join(INTEGRATORS)}"
        )
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps}")
    if int(report_interval) != report_interval or report_interval < 1:
        raise ValueError(f"report_interval must be a positive integer, got {report_interval}")
    if not blowup_threshold_kjmol > 0:
        raise ValueError(f"blowup_threshold_kjmol must be positive, got {blowup_threshold_kjmol}")
    n_atoms = system.getNumParticles()
    if topology.getNumAtoms() != n_atoms:
        raise ValueError(
            f"topology has {topology.getNumAtoms()} atoms but the System has {n_atoms} particles"
        )
    positions = _check_positions("positions", positions, n_atoms)
    if velocities is not None:
        velocities = _check_positions("velocities", velocities, n_atoms)

    removed = 0
    if integrator == "verlet":
        system, removed = without_cm_motion_remover(system)
    dof = temperature_degrees_of_freedom(system)
    openmm_integrator = make_integrator(
        integrator, timestep_fs, temperature_K, friction_per_ps, seed
    )
    context = mm.Context(system, openmm_integrator, get_platform(platform))
    context.setPositions(positions)
    if velocities is None:
        context.setVelocitiesToTemperature(
            temperature_K * unit.kelvin, openmm_seed(seed, VELOCITY_SEED_STREAM)
        )
    else:
        context.setVelocities(velocities)

    writer = (
        None
        if trajectory_path is None
        else _TrajectoryWriter(Path(trajectory_path), topology, timestep_fs, report_interval)
    )
    records: list[tuple[int, float, float]] = []  # (step, potential, kinetic)
    frames: list[np.ndarray] = []
    need_positions = writer is not None or record_positions
    blowup_reason: str | None = None
    step = 0
    bar = tqdm(total=steps, desc=f"MD ({integrator})", unit="step", disable=not progress)
    try:
        while True:
            try:
                state = context.getState(getEnergy=True, getPositions=need_positions)
            except mm.OpenMMException as error:
                blowup_reason = f"OpenMM raised at step {step}: {error}"
                break
            potential = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
            kinetic = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
            records.append((step, potential, kinetic))
            if need_positions:
                frame = np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
                if writer is not None:
                    writer.write(frame)
                if record_positions:
                    frames.append(frame)
            blowup_reason = blowup_check(
                step, potential + kinetic, records[0][1] + records[0][2], blowup_threshold_kjmol
            )
            if blowup_reason is not None:
                break
            if step >= steps:
                break
            chunk = min(report_interval, steps - step)
            try:
                openmm_integrator.step(chunk)
            except mm.OpenMMException as error:
                blowup_reason = f"OpenMM raised between steps {step} and {step + chunk}: {error}"
                break
            step += chunk
            bar.update(chunk)
    finally:
        bar.close()
        if writer is not None:
            writer.close()

    final_positions = final_velocities = None
    if blowup_reason is None:
        final = context.getState(getPositions=True, getVelocities=True)
        final_positions = np.asarray(final.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
        final_velocities = np.asarray(
            final.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond)
        )
    steps_array = np.array([r[0] for r in records], dtype=np.int64)
    potential_array = np.array([r[1] for r in records], dtype=np.float64)
    kinetic_array = np.array([r[2] for r in records], dtype=np.float64)
    result = MDResult(
        step=steps_array,
        time_ps=steps_array * timestep_fs * 1e-3,
        potential_kjmol=potential_array,
        kinetic_kjmol=kinetic_array,
        total_kjmol=potential_array + kinetic_array,
        temperature_K=2.0 * kinetic_array / (dof * MOLAR_GAS_CONSTANT_KJ_PER_MOL_K),
        integrator=integrator,
        timestep_fs=float(timestep_fs),
        steps_requested=int(steps),
        steps_completed=step,
        blew_up=blowup_reason is not None,
        blowup_reason=blowup_reason,
        cm_motion_removers_removed=removed,
        final_positions_nm=final_positions,
        final_velocities_nm_per_ps=final_velocities,
        positions_nm=np.stack(frames) if record_positions and frames else None,
    )
    if energies_csv is not None:
        result.write_csv(energies_csv)
    return result
