"""run_md: energy conservation in NVE, CMMotionRemover handling, seeding, files, blow-ups."""

from __future__ import annotations

import csv
from pathlib import Path

import mdtraj
import numpy as np
import openmm as mm
import pytest

from flowff.openmm.md import (
    CSV_COLUMNS,
    MOLAR_GAS_CONSTANT_KJ_PER_MOL_K,
    load_positions,
    openmm_seed,
    run_md,
    temperature_degrees_of_freedom,
    without_cm_motion_remover,
)

#: Bound on the NVE total-energy std per dof (kJ/mol/dof) over 200 steps at 1 fs from an
#: equilibrated start. Measured for 12 seeds: median 5.3e-3, max 8.6e-3. The same runs at 2 fs
#: give 1.8e-2 .. 4.0e-2 and with a Langevin thermostat at 1/ps 6.1e-2 .. 1.1e-1, so the bound
#: catches a doubled time step or a thermostat left on.
NVE_STD_PER_DOF_BOUND = 0.013
DOF = 60


def nve_std_per_dof(ala, **options) -> float:
    topology, system, positions, velocities = ala
    options = {"integrator": "verlet", **options}
    result = run_md(
        system, topology, positions, velocities=velocities, steps=200, report_interval=1,
        progress=False, **options,
    )
    assert not result.blew_up, result.blowup_reason
    assert result.steps_completed == 200 and result.total_kjmol.size == 201
    return float(np.std(result.total_kjmol) / DOF)


def test_nve_conserves_energy_at_1fs(ala) -> None:
    assert nve_std_per_dof(ala, timestep_fs=1.0) < NVE_STD_PER_DOF_BOUND


def test_conservation_bound_catches_doubled_timestep_and_thermostat(ala) -> None:
    assert nve_std_per_dof(ala, timestep_fs=2.0) > NVE_STD_PER_DOF_BOUND
    langevin = nve_std_per_dof(ala, integrator="langevin", friction_per_ps=1.0)
    assert langevin > NVE_STD_PER_DOF_BOUND


def test_nve_runs_on_a_copy_without_cm_motion_remover(ala) -> None:
    topology, system, positions, velocities = ala
    n_forces = system.getNumForces()
    result = run_md(
        system, topology, positions, velocities=velocities, steps=10, integrator="verlet",
        progress=False,
    )
    assert result.cm_motion_removers_removed == 1
    assert system.getNumForces() == n_forces  # the caller's System is untouched
    copy, removed = without_cm_motion_remover(system)
    assert removed == 1 and copy is not system
    assert not any(isinstance(f, mm.CMMotionRemover) for f in copy.getForces())
    assert copy.getNumForces() == n_forces - 1
    again, removed_again = without_cm_motion_remover(copy)
    assert again is copy and removed_again == 0
    langevin = run_md(system, topology, positions, steps=10, progress=False)
    assert langevin.cm_motion_removers_removed == 0


def test_nve_conserves_total_momentum(ala) -> None:
    """Without a CMMotionRemover, velocities with net momentum keep it (and energy stays put)."""
    topology, system, positions, _ = ala
    masses = np.array([system.getParticleMass(i)._value for i in range(22)])
    velocities = np.random.default_rng(3).normal(0.0, 0.3, size=(22, 3)) + [0.5, 0.0, 0.0]
    result = run_md(
        system, topology, positions, velocities=velocities, steps=100, integrator="verlet",
        report_interval=100, progress=False,
    )
    assert result.final_velocities_nm_per_ps is not None
    before = masses @ velocities
    after = masses @ result.final_velocities_nm_per_ps
    np.testing.assert_allclose(after, before, atol=1e-8 * np.abs(before).max())


def test_temperature_degrees_of_freedom_and_conversion(ala) -> None:
    topology, system, positions, _ = ala
    assert temperature_degrees_of_freedom(system) == 3 * 22 - 3
    assert temperature_degrees_of_freedom(without_cm_motion_remover(system)[0]) == 3 * 22
    result = run_md(system, topology, positions, steps=20, report_interval=10, progress=False)
    np.testing.assert_allclose(
        result.temperature_K, 2 * result.kinetic_kjmol / (63 * MOLAR_GAS_CONSTANT_KJ_PER_MOL_K)
    )
    np.testing.assert_allclose(result.total_kjmol, result.potential_kjmol + result.kinetic_kjmol)


def test_reports_at_step_zero_every_interval_and_last_step(ala) -> None:
    topology, system, positions, _ = ala
    result = run_md(
        system, topology, positions, steps=25, report_interval=10, timestep_fs=0.5, progress=False
    )
    np.testing.assert_array_equal(result.step, [0, 10, 20, 25])
    np.testing.assert_allclose(result.time_ps, [0.0, 0.005, 0.010, 0.0125])


def test_same_seed_same_run_other_seed_other_run(ala) -> None:
    topology, system, positions, _ = ala

    def energies(seed: int) -> np.ndarray:
        return run_md(
            system, topology, positions, steps=50, report_interval=10, seed=seed, progress=False
        ).total_kjmol

    np.testing.assert_array_equal(energies(4), energies(4))
    assert not np.allclose(energies(4), energies(5))


def test_openmm_seed_is_nonzero_and_deterministic() -> None:
    seeds = {openmm_seed(seed, stream) for seed in range(20) for stream in range(2)}
    assert len(seeds) == 40 and 0 not in seeds
    assert openmm_seed(7, 1) == openmm_seed(7, 1)
    with pytest.raises(ValueError, match="non-negative"):
        openmm_seed(-1, 0)


def test_trajectory_csv_and_start_from_frame(ala, tmp_path: Path) -> None:
    topology, system, positions, _ = ala
    traj_path, csv_path = tmp_path / "run.dcd", tmp_path / "out" / "energies.csv"
    result = run_md(
        system, topology, positions, steps=40, report_interval=10, seed=1, progress=False,
        trajectory_path=traj_path, energies_csv=csv_path, record_positions=True,
    )
    assert result.positions_nm is not None and result.positions_nm.shape == (5, 22, 3)
    traj = mdtraj.load(str(traj_path), top=mdtraj.Topology.from_openmm(topology))
    assert traj.n_frames == 5
    np.testing.assert_allclose(traj.xyz, result.positions_nm, atol=1e-5)
    with open(csv_path) as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 6
    table = np.array(rows[1:], dtype=float)
    np.testing.assert_array_equal(table[:, 0], result.step)
    np.testing.assert_allclose(table[:, 4], result.total_kjmol, rtol=1e-15)
    frame = load_positions(f"{traj_path}:3")
    np.testing.assert_allclose(frame, result.positions_nm[3], atol=1e-5)
    np.testing.assert_allclose(load_positions(f"{traj_path}:-1"), result.positions_nm[4], atol=1e-5)
    with pytest.raises(ValueError, match="out of range"):
        load_positions(f"{traj_path}:5")


@pytest.mark.parametrize("integrator", ["verlet", "langevin"])
def test_huge_timestep_blows_up_and_stops(ala, integrator: str) -> None:
    topology, system, positions, velocities = ala
    result = run_md(
        system, topology, positions, velocities=velocities, steps=2000, integrator=integrator,
        timestep_fs=20.0, report_interval=10, progress=False,
    )
    assert result.blew_up
    assert result.steps_completed < 2000
    assert result.final_positions_nm is None
    assert "total energy moved" in result.blowup_reason or "non-finite" in result.blowup_reason


def test_exploding_custom_energy_trips_the_threshold(ala, inverted_harmonic_force) -> None:
    topology, system, positions, velocities = ala
    broken = mm.XmlSerializer.clone(system)
    broken.addForce(inverted_harmonic_force())
    result = run_md(
        broken, topology, positions, velocities=velocities, steps=5000, integrator="verlet",
        report_interval=10, blowup_threshold_kjmol=500.0, progress=False,
    )
    assert result.blew_up and "threshold 500" in result.blowup_reason
    assert abs(result.total_kjmol[-1] - result.total_kjmol[0]) > 500.0
    assert np.all(np.abs(result.total_kjmol[:-1] - result.total_kjmol[0]) <= 500.0)


def test_non_finite_energy_is_a_blowup(ala) -> None:
    topology, system, positions, _ = ala
    broken = mm.XmlSerializer.clone(system)
    broken.addForce(mm.PythonForce(lambda state: (float("nan"), np.zeros((22, 3)))))
    result = run_md(broken, topology, positions, steps=10, progress=False)
    assert result.blew_up and result.blowup_reason == "non-finite energy at step 0"


def test_openmm_nan_coordinate_error_is_a_blowup(ala) -> None:
    """The CPU platform raises on NaN coordinates inside ``step``; run_md reports it."""
    topology, system, positions, _ = ala
    broken = mm.XmlSerializer.clone(system)
    calls = [0]

    def nan_forces_after_a_few_calls(state: mm.State) -> tuple[float, np.ndarray]:
        calls[0] += 1
        return 0.0, np.zeros((22, 3)) if calls[0] < 5 else np.full((22, 3), np.nan)

    broken.addForce(mm.PythonForce(nan_forces_after_a_few_calls))
    result = run_md(
        broken, topology, positions, steps=100, report_interval=50, platform="CPU", progress=False
    )
    assert result.blew_up and result.blowup_reason.startswith("OpenMM raised")


def test_bad_input_raises_clear_errors(ala, tmp_path: Path) -> None:
    topology, system, positions, _ = ala
    with pytest.raises(ValueError, match=r"shape \(22, 3\)"):
        run_md(system, topology, positions[:10], steps=1, progress=False)
    with pytest.raises(ValueError, match="unknown integrator"):
        run_md(system, topology, positions, steps=1, integrator="nose-hoover", progress=False)
    with pytest.raises(ValueError, match="non-finite"):
        run_md(system, topology, np.full((22, 3), np.nan), steps=1, progress=False)
    with pytest.raises(ValueError, match="suffixes are .dcd"):
        run_md(
            system, topology, positions, steps=1, trajectory_path=tmp_path / "x.xyz",
            progress=False,
        )
    with pytest.raises(ValueError, match="timestep_fs must be positive"):
        run_md(system, topology, positions, steps=1, timestep_fs=0.0, progress=False)
    with pytest.raises(FileNotFoundError):
        load_positions(tmp_path / "missing.pdb")
