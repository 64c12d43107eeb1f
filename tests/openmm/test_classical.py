"""Amber reference potential, shipped alanine dipeptide and platform choice."""

from __future__ import annotations

import mdtraj
import numpy as np
import openmm as mm
import pytest

from flowff.openmm.classical import AmberPotential, Potential, load_alanine_dipeptide
from flowff.openmm.platforms import DEFAULT_PLATFORM, available_platforms, get_platform


def test_alanine_dipeptide_positions_are_in_nm() -> None:
    topology, positions = load_alanine_dipeptide()
    assert positions.shape == (22, 3) and positions.dtype == np.float64
    assert [r.name for r in topology.residues()] == ["ACE", "ALA", "NME"]
    traj = mdtraj.Trajectory(positions[None], mdtraj.Topology.from_openmm(topology))
    bonds = np.array([[bond[0].index, bond[1].index] for bond in topology.bonds()])
    assert len(bonds) == 21
    lengths = mdtraj.compute_distances(traj, bonds)[0]
    # Covalent bonds of an organic molecule lie between 0.1 and 0.155 nm (not 1-1.55 Angstrom).
    assert lengths.min() > 0.09 and lengths.max() < 0.16


@pytest.mark.parametrize("remove_cm", [True, False])
def test_amber_system_has_no_cutoff_no_constraints_and_honours_cm_flag(remove_cm: bool) -> None:
    topology, _ = load_alanine_dipeptide()
    potential = AmberPotential()
    assert isinstance(potential, Potential)
    system = potential.createSystem(topology, removeCMMotion=remove_cm)
    assert system.getNumParticles() == 22
    assert system.getNumConstraints() == 0
    kinds = {type(force).__name__ for force in system.getForces()}
    assert {"HarmonicBondForce", "NonbondedForce", "GBSAOBCForce"} <= kinds
    assert ("CMMotionRemover" in kinds) == remove_cm
    nonbonded = next(f for f in system.getForces() if isinstance(f, mm.NonbondedForce))
    assert nonbonded.getNonbondedMethod() == mm.NonbondedForce.NoCutoff


def test_amber_energy_of_shipped_structure_is_finite_and_forces_match_energy() -> None:
    """Forces of the System are minus the gradient of its energy (central differences)."""
    topology, positions = load_alanine_dipeptide()
    system = AmberPotential().createSystem(topology)
    context = mm.Context(system, mm.VerletIntegrator(0.001), get_platform("Reference"))

    def energy(x: np.ndarray) -> float:
        context.setPositions(x)
        return context.getState(getEnergy=True).getPotentialEnergy()._value

    context.setPositions(positions)
    forces = context.getState(getForces=True).getForces(asNumpy=True)._value
    assert np.isfinite(energy(positions))
    h = 1e-5
    for atom, axis in [(0, 0), (8, 1), (14, 2)]:
        step = np.zeros_like(positions)
        step[atom, axis] = h
        numeric = -(energy(positions + step) - energy(positions - step)) / (2 * h)
        assert numeric == pytest.approx(forces[atom, axis], rel=1e-4, abs=1e-3)


def test_default_platform_is_reference() -> None:
    assert DEFAULT_PLATFORM == "Reference"
    assert get_platform(None).getName() == "Reference"
    assert "Reference" in available_platforms()


def test_unknown_platform_error_lists_available_ones() -> None:
    with pytest.raises(ValueError, match="not available; available platforms: .*Reference"):
        get_platform("NoSuchPlatform")
