"""Energy conservation of a potential in NVE molecular dynamics (the paper's Fig. 4 protocol).

Protocol, per start structure: Langevin equilibration (default 1 ps at friction 10/ps) with
velocities drawn at the temperature from a per-start seed, then NVE Verlet (default 5 ps at 1 fs)
from the equilibrated positions and velocities, reporting the total energy every
``report_every_steps`` steps.

Per start and aggregated over starts, we report:

* ``std_per_dof``: standard deviation over time of the NVE total energy divided by the number of
  degrees of freedom (kJ/mol/dof). The aggregate is the mean over starts that did not blow up,
  as in the authors' notebook (``energies[:, total, :].std(axis=0).mean() / 60``).
* ``slope_per_ns_per_dof``: slope of a least-squares line through the total energy against time
  (kJ/mol/ns/dof); meaningful for long runs (``LONG_NVE_PS``).
* ``max_excursion_kjmol``: ``max |E(t) - E(0)|`` in kJ/mol.
* blow-up flags (non-finite or exploding energies, OpenMM errors) and their number.

Degrees of freedom: ``3 n - n_constraints - 6`` (the internal coordinates of a non-linear molecule
in vacuum: translations and rotations carry no potential energy). For alanine dipeptide without
constraints this is 3 * 22 - 6 = 60, the paper's number. This convention does not depend on
whether a CMMotionRemover is present (the NVE runs never have one).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import openmm as mm
import openmm.app as app
import openmm.unit as unit
from tqdm.auto import tqdm

from flowff.openmm.classical import Potential
from flowff.openmm.md import (
    DEFAULT_BLOWUP_THRESHOLD_KJMOL,
    run_md,
    without_cm_motion_remover,
)
from flowff.openmm.platforms import DEFAULT_PLATFORM
from flowff.utils.atomic import write_text

#: NVE length of the ``long`` mode (ps), long enough for a meaningful drift slope.
LONG_NVE_PS: float = 200.0

#: Report interval of the ``long`` mode (steps): keeps the traces small.
LONG_REPORT_EVERY_STEPS: int = 10

#: Degrees-of-freedom convention, stated in every JSON output.
DOF_CONVENTION = "3 * n_atoms - n_constraints - 6 (internal degrees of freedom)"


def energy_degrees_of_freedom(system: mm.System) -> int:
    """Internal degrees of freedom: 3 per particle with mass, minus constraints, minus 6."""
    n_massive = sum(
        1
        for i in range(system.getNumParticles())
        if system.getParticleMass(i).value_in_unit(unit.dalton) > 0
    )
    dof = 3 * n_massive - system.getNumConstraints() - 6
    if dof <= 0:
        raise ValueError(f"the System has no internal degrees of freedom (computed {dof})")
    return dof


def drift_statistics(
    time_ps: np.ndarray, total_kjmol: np.ndarray, degrees_of_freedom: int
) -> dict[str, float]:
    """Conservation statistics of one total-energy trace (arrays ``(n_reports,)``).

    Returns ``std_per_dof`` (kJ/mol/dof, population standard deviation),
    ``slope_per_ns_per_dof`` (kJ/mol/ns/dof, least squares) and ``max_excursion_kjmol``
    (``max |E - E[0]|``). Needs at least two reports.
    """
    time_ps = np.asarray(time_ps, dtype=np.float64)
    total_kjmol = np.asarray(total_kjmol, dtype=np.float64)
    if time_ps.shape != total_kjmol.shape or time_ps.ndim != 1 or time_ps.size < 2:
        raise ValueError(
            "time_ps and total_kjmol must be 1-D arrays of equal length >= 2, got shapes "
            f"{time_ps.shape} and {total_kjmol.shape}"
        )
    if degrees_of_freedom <= 0:
        raise ValueError(f"degrees_of_freedom must be positive, got {degrees_of_freedom}")
    slope_per_ps = np.polyfit(time_ps, total_kjmol, 1)[0]
    return {
        "std_per_dof": float(np.std(total_kjmol) / degrees_of_freedom),
        "slope_per_ns_per_dof": float(slope_per_ps * 1e3 / degrees_of_freedom),
        "max_excursion_kjmol": float(np.max(np.abs(total_kjmol - total_kjmol[0]))),
    }


def start_seed(seed: int, start_index: int) -> int:
    """The run seed of start ``start_index``: the same for every potential given the same seed."""
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    return int(np.random.SeedSequence([seed, start_index]).generate_state(1)[0])


@dataclass
class StartDrift:
    """Outcome of the protocol for one start; statistics are ``None`` after a blow-up.

    ``time_ps`` and ``total_kjmol`` (``(n_reports,)``) are the NVE trace, possibly cut short.
    """

    index: int
    seed: int
    blew_up: bool
    blowup_phase: str | None
    blowup_reason: str | None
    std_per_dof: float | None
    slope_per_ns_per_dof: float | None
    max_excursion_kjmol: float | None
    nve_steps_completed: int
    mean_nve_temperature_K: float | None
    time_ps: np.ndarray = field(repr=False)
    total_kjmol: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no traces)."""
        return {
            "index": self.index,
            "seed": self.seed,
            "blew_up": self.blew_up,
            "blowup_phase": self.blowup_phase,
            "blowup_reason": self.blowup_reason,
            "std_per_dof": _finite_or_none(self.std_per_dof),
            "slope_per_ns_per_dof": _finite_or_none(self.slope_per_ns_per_dof),
            "max_excursion_kjmol": _finite_or_none(self.max_excursion_kjmol),
            "nve_steps_completed": self.nve_steps_completed,
            "mean_nve_temperature_K": _finite_or_none(self.mean_nve_temperature_K),
        }


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


@dataclass
class DriftResult:
    """Drift protocol results of one potential over all starts."""

    name: str
    protocol: dict[str, Any]
    degrees_of_freedom: int
    starts: list[StartDrift]

    @property
    def n_blowups(self) -> int:
        """Number of starts that blew up (in equilibration or NVE)."""
        return sum(start.blew_up for start in self.starts)

    def aggregate(self) -> dict[str, Any]:
        """Statistics over the starts that did not blow up (``None`` when every start blew up)."""
        good = [start for start in self.starts if not start.blew_up]

        def over(name: str, reduce: Any) -> float | None:
            values = [getattr(start, name) for start in good]
            return _finite_or_none(float(reduce(values))) if values else None

        return {
            "n_starts": len(self.starts),
            "n_blowups": self.n_blowups,
            "std_per_dof_mean": over("std_per_dof", np.mean),
            "std_per_dof_median": over("std_per_dof", np.median),
            "std_per_dof_max": over("std_per_dof", np.max),
            "slope_per_ns_per_dof_mean": over("slope_per_ns_per_dof", np.mean),
            "abs_slope_per_ns_per_dof_mean": over(
                "slope_per_ns_per_dof", lambda v: np.mean(np.abs(v))
            ),
            "max_excursion_kjmol": over("max_excursion_kjmol", np.max),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: protocol, aggregate, and one entry per start."""
        return {
            "name": self.name,
            "degrees_of_freedom": self.degrees_of_freedom,
            "protocol": self.protocol,
            "aggregate": self.aggregate(),
            "starts": [start.to_dict() for start in self.starts],
        }


def _steps(length_ps: float, timestep_fs: float, what: str, minimum: int) -> int:
    if not (math.isfinite(length_ps) and length_ps >= 0):
        raise ValueError(f"{what} must be a non-negative length in ps, got {length_ps}")
    steps = round(length_ps * 1e3 / timestep_fs)
    if steps < minimum:
        raise ValueError(
            f"{what} = {length_ps} ps at {timestep_fs} fs gives {steps} steps; need >= {minimum}"
        )
    return steps


def measure_drift(
    potential: Potential | mm.System,
    topology: app.Topology,
    start_positions: Sequence[np.ndarray],
    *,
    name: str = "potential",
    equilibrate_ps: float = 1.0,
    equilibrate_friction_per_ps: float = 10.0,
    nve_ps: float = 5.0,
    timestep_fs: float = 1.0,
    temperature_K: float = 300.0,
    seed: int = 0,
    platform: str | None = None,
    report_every_steps: int = 1,
    blowup_threshold_kjmol: float = DEFAULT_BLOWUP_THRESHOLD_KJMOL,
    progress: bool = True,
) -> DriftResult:
    """Run the drift protocol from every start (positions ``(n_atoms, 3)`` nm) with ``potential``.

    ``potential`` is a ``Potential`` (its System is built with a CMMotionRemover for the Langevin
    phase and without one for NVE) or a ready ``openmm.System`` (NVE then runs on a copy without
    CMMotionRemover). Start ``i`` uses seed ``start_seed(seed, i)`` for velocities and Langevin
    noise, so equal arguments give equal runs for every potential.
    """
    if len(start_positions) == 0:
        raise ValueError("start_positions is empty: need at least one start structure")
    if int(report_every_steps) != report_every_steps or report_every_steps < 1:
        raise ValueError(f"report_every_steps must be a positive integer, got {report_every_steps}")
    if not (math.isfinite(timestep_fs) and timestep_fs > 0):
        raise ValueError(f"timestep_fs must be positive, got {timestep_fs}")
    equilibrate_steps = _steps(equilibrate_ps, timestep_fs, "equilibrate_ps", 0)
    nve_steps = _steps(nve_ps, timestep_fs, "nve_ps", 2 * report_every_steps)
    if isinstance(potential, mm.System):
        langevin_system = potential
        nve_system, _ = without_cm_motion_remover(potential)
    elif isinstance(potential, Potential):
        langevin_system = potential.createSystem(topology, removeCMMotion=True)
        nve_system = potential.createSystem(topology, removeCMMotion=False)
        nve_system, _ = without_cm_motion_remover(nve_system)
    else:
        raise TypeError(
            "potential must be an openmm.System or have createSystem(topology, removeCMMotion), "
            f"got {type(potential).__name__}"
        )
    dof = energy_degrees_of_freedom(nve_system)
    protocol = {
        "equilibrate_ps": equilibrate_ps,
        "equilibrate_friction_per_ps": equilibrate_friction_per_ps,
        "equilibrate_integrator": "LangevinMiddleIntegrator",
        "nve_ps": nve_ps,
        "nve_integrator": "VerletIntegrator",
        "timestep_fs": timestep_fs,
        "temperature_K": temperature_K,
        "seed": seed,
        "platform": platform or DEFAULT_PLATFORM,
        "report_every_steps": report_every_steps,
        "blowup_threshold_kjmol": blowup_threshold_kjmol,
        "n_starts": len(start_positions),
    }
    starts = []
    for index in tqdm(range(len(start_positions)), desc=f"drift {name}", disable=not progress):
        starts.append(
            _run_start(
                index,
                start_seed(seed, index),
                langevin_system,
                nve_system,
                topology,
                np.asarray(start_positions[index], dtype=np.float64),
                equilibrate_steps=equilibrate_steps,
                nve_steps=nve_steps,
                friction_per_ps=equilibrate_friction_per_ps,
                timestep_fs=timestep_fs,
                temperature_K=temperature_K,
                platform=platform,
                report_every_steps=report_every_steps,
                blowup_threshold_kjmol=blowup_threshold_kjmol,
                dof=dof,
            )
        )
    return DriftResult(name=name, protocol=protocol, degrees_of_freedom=dof, starts=starts)


def _blown_up_start(
    index: int,
    seed: int,
    phase: str,
    reason: str | None,
    nve_steps_completed: int,
    time_ps: np.ndarray | None = None,
    total_kjmol: np.ndarray | None = None,
) -> StartDrift:
    return StartDrift(
        index=index,
        seed=seed,
        blew_up=True,
        blowup_phase=phase,
        blowup_reason=reason,
        std_per_dof=None,
        slope_per_ns_per_dof=None,
        max_excursion_kjmol=None,
        nve_steps_completed=nve_steps_completed,
        mean_nve_temperature_K=None,
        time_ps=np.zeros(0) if time_ps is None else time_ps,
        total_kjmol=np.zeros(0) if total_kjmol is None else total_kjmol,
    )


def _run_start(
    index: int,
    seed: int,
    langevin_system: mm.System,
    nve_system: mm.System,
    topology: app.Topology,
    positions: np.ndarray,
    *,
    equilibrate_steps: int,
    nve_steps: int,
    friction_per_ps: float,
    timestep_fs: float,
    temperature_K: float,
    platform: str | None,
    report_every_steps: int,
    blowup_threshold_kjmol: float,
    dof: int,
) -> StartDrift:
    """Equilibrate one start with Langevin dynamics, then run NVE and summarise it."""
    equilibration = run_md(
        langevin_system,
        topology,
        positions,
        steps=equilibrate_steps,
        integrator="langevin",
        timestep_fs=timestep_fs,
        temperature_K=temperature_K,
        friction_per_ps=friction_per_ps,
        report_interval=max(1, min(100, equilibrate_steps)),
        seed=seed,
        platform=platform,
        blowup_threshold_kjmol=blowup_threshold_kjmol,
        progress=False,
    )
    if equilibration.blew_up:
        return _blown_up_start(index, seed, "equilibration", equilibration.blowup_reason, 0)
    nve = run_md(
        nve_system,
        topology,
        equilibration.final_positions_nm,
        velocities=equilibration.final_velocities_nm_per_ps,
        steps=nve_steps,
        integrator="verlet",
        timestep_fs=timestep_fs,
        temperature_K=temperature_K,
        report_interval=report_every_steps,
        seed=seed,
        platform=platform,
        blowup_threshold_kjmol=blowup_threshold_kjmol,
        progress=False,
    )
    if nve.blew_up:
        return _blown_up_start(
            index, seed, "nve", nve.blowup_reason, nve.steps_completed, nve.time_ps, nve.total_kjmol
        )
    stats = drift_statistics(nve.time_ps, nve.total_kjmol, dof)
    return StartDrift(
        index=index,
        seed=seed,
        blew_up=False,
        blowup_phase=None,
        blowup_reason=None,
        std_per_dof=stats["std_per_dof"],
        slope_per_ns_per_dof=stats["slope_per_ns_per_dof"],
        max_excursion_kjmol=stats["max_excursion_kjmol"],
        nve_steps_completed=nve.steps_completed,
        mean_nve_temperature_K=float(np.mean(nve.temperature_K)),
        time_ps=nve.time_ps,
        total_kjmol=nve.total_kjmol,
    )


@dataclass
class DriftComparison:
    """Drift results of several potentials run with the same protocol, starts and seeds."""

    results: dict[str, DriftResult]
    reference: str

    def ratios(self) -> dict[str, float | None]:
        """Mean std/dof of each potential divided by the reference's (``None`` if undefined)."""
        reference = self.results[self.reference].aggregate()["std_per_dof_mean"]
        ratios: dict[str, float | None] = {}
        for name, result in self.results.items():
            value = result.aggregate()["std_per_dof_mean"]
            ratios[name] = None if value is None or not reference else value / reference
        return ratios

    def table(self) -> str:
        """A plain-text table: std/dof, ratio to the reference, slope, excursion, blow-ups."""
        header = (
            f"{'potential':<12} {'std/dof':>10} {'ratio':>7} {'slope/ns/dof':>13} "
            f"{'max|dE|':>9} {'blow-ups':>9}"
        )
        lines = [header, "-" * len(header)]
        ratios = self.ratios()
        for name, result in self.results.items():
            agg = result.aggregate()
            lines.append(
                f"{name:<12} {_fmt(agg['std_per_dof_mean'], '.3e'):>10} "
                f"{_fmt(ratios[name], '.3g'):>7} "
                f"{_fmt(agg['slope_per_ns_per_dof_mean'], '.2e'):>13} "
                f"{_fmt(agg['max_excursion_kjmol'], '.3f'):>9} "
                f"{agg['n_blowups']:>4d}/{agg['n_starts']:<4d}"
            )
        lines.append(
            f"std/dof, slope/ns/dof: kJ/mol per dof, dof = {DOF_CONVENTION}; "
            f"max|dE| in kJ/mol; ratio = std/dof / {self.reference}'s"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary of every potential and the ratios."""
        return {
            "reference": self.reference,
            "dof_convention": DOF_CONVENTION,
            "openmm_version": mm.__version__,
            "ratios_std_per_dof_to_reference": self.ratios(),
            "potentials": {name: result.to_dict() for name, result in self.results.items()},
        }

    def write_json(self, path: str | Path) -> None:
        """Write ``to_dict()`` as JSON (strict: no NaN), atomically."""
        write_text(path, json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def compare_drift(
    potentials: Mapping[str, Potential | mm.System],
    topology: app.Topology,
    start_positions: Sequence[np.ndarray],
    *,
    reference: str = "amber",
    print_table: bool = True,
    **protocol: Any,
) -> DriftComparison:
    """Run ``measure_drift`` for every potential with the same starts, seeds and protocol.

    ``protocol`` holds ``measure_drift``'s keyword arguments. Prints the comparison table (ratios
    of std/dof to ``reference``) when ``print_table``.
    """
    if reference not in potentials:
        raise ValueError(
            f"reference potential {reference!r} is not among the potentials: "
            f"{', '.join(potentials)}"
        )
    results = {
        name: measure_drift(potential, topology, start_positions, name=name, **protocol)
        for name, potential in potentials.items()
    }
    comparison = DriftComparison(results=results, reference=reference)
    if print_table:
        print(comparison.table())
    return comparison
