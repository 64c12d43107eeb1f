"""Internal coordinates of a short real alanine dipeptide trajectory against mdtraj."""

from __future__ import annotations

import math

import mdtraj
import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import pytest
import torch

from flowff.ic import InternalCoordinates, ZMatrix, alanine_dipeptide_pdb

N_FRAMES = 20
STEPS_PER_FRAME = 20


@pytest.fixture(scope="module")
def trajectory() -> mdtraj.Trajectory:
    """20 frames, 1 fs Langevin at 300 K (amber99sbildn + OBC, no cutoff, no constraints)."""
    pdb = alanine_dipeptide_pdb()
    forcefield = app.ForceField("amber99sbildn.xml", "amber99_obc.xml")
    system = forcefield.createSystem(pdb.topology, nonbondedMethod=app.NoCutoff,
                                     constraints=None)
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond,
                                                 1 * unit.femtosecond)
    integrator.setRandomNumberSeed(2024)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(pdb.positions)
    openmm.LocalEnergyMinimizer.minimize(context, maxIterations=50)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 2024)
    frames = []
    for _ in range(N_FRAMES):
        integrator.step(STEPS_PER_FRAME)
        state = context.getState(getPositions=True)
        frames.append(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    return mdtraj.Trajectory(np.asarray(frames), mdtraj.Topology.from_openmm(pdb.topology))


def wrapped(angle: np.ndarray) -> np.ndarray:
    """Angle differences wrapped to [-pi, pi)."""
    return np.remainder(angle + math.pi, 2 * math.pi) - math.pi


def test_every_coordinate_matches_mdtraj(trajectory: mdtraj.Trajectory,
                                         alanine_zmatrix: ZMatrix) -> None:
    ic = InternalCoordinates(alanine_zmatrix)
    x = torch.from_numpy(trajectory.xyz.astype(np.float64))
    h, log_det = ic(x)
    assert torch.isfinite(log_det).all()
    assert ((h >= 0) & (h <= 1)).all(), "a 300 K trajectory stays inside the support"
    bonds, angles, torsions = (v.numpy() for v in ic.physical(h))
    # The normalisation itself, checked directly on h:
    lo, hi = ic.bounds["bond_nm"]
    np.testing.assert_allclose(h[:, ic.bond_slice].numpy(), (bonds - lo) / (hi - lo), atol=1e-12)
    np.testing.assert_allclose(h[:, ic.torsion_slice].numpy(),
                               np.remainder(torsions + math.pi, 2 * math.pi) / (2 * math.pi),
                               atol=1e-12)
    # mdtraj computes in float32.
    md_bonds = mdtraj.compute_distances(trajectory, alanine_zmatrix.bonds, periodic=False)
    md_angles = mdtraj.compute_angles(trajectory, alanine_zmatrix.angles, periodic=False)
    md_torsions = mdtraj.compute_dihedrals(trajectory, alanine_zmatrix.torsions, periodic=False)
    np.testing.assert_allclose(bonds, md_bonds, rtol=0, atol=1e-6)
    np.testing.assert_allclose(angles, md_angles, rtol=0, atol=2e-4)
    assert np.abs(wrapped(torsions - md_torsions)).max() < 2e-4
    # The trajectory moves: torsions of the methyl hydrogens differ between frames.
    assert np.ptp(md_torsions, axis=0).max() > 0.1


def test_phi_psi_match_mdtraj(trajectory: mdtraj.Trajectory, alanine_zmatrix: ZMatrix) -> None:
    ic = InternalCoordinates(alanine_zmatrix)
    h, _ = ic(torch.from_numpy(trajectory.xyz.astype(np.float64)))
    for compute, column, index in (
        (mdtraj.compute_phi, ic.phi_column, alanine_zmatrix.phi_index),
        (mdtraj.compute_psi, ic.psi_column, alanine_zmatrix.psi_index),
    ):
        md_atoms, md_values = compute(trajectory)
        assert md_atoms.shape == (1, 4)
        assert tuple(md_atoms[0]) in (alanine_zmatrix.torsions[index],
                                      alanine_zmatrix.torsions[index][::-1])
        ours = 2 * math.pi * h[:, column].numpy() - math.pi
        assert np.abs(wrapped(ours - md_values[:, 0])).max() < 2e-4
