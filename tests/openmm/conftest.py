"""Fixtures of the MD / drift tests: an equilibrated alanine dipeptide and broken potentials."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import openmm as mm
import openmm.app as app
import pytest

from flowff.openmm.classical import AmberPotential, load_alanine_dipeptide
from flowff.openmm.md import run_md


@pytest.fixture(scope="session")
def ala() -> tuple[app.Topology, mm.System, np.ndarray, np.ndarray]:
    """Topology, Amber System (with CMMotionRemover), positions (nm) and velocities (nm/ps)
    after 0.3 ps of Langevin dynamics at friction 10/ps and 300 K from the shipped structure."""
    topology, positions = load_alanine_dipeptide()
    system = AmberPotential().createSystem(topology, removeCMMotion=True)
    result = run_md(
        system, topology, positions, steps=300, integrator="langevin", friction_per_ps=10.0,
        report_interval=300, seed=0, progress=False,
    )
    assert not result.blew_up
    assert result.final_positions_nm is not None and result.final_velocities_nm_per_ps is not None
    return topology, system, result.final_positions_nm, result.final_velocities_nm_per_ps


def _inverted_harmonic_force(strength_kjmol_nm2: float = 1e5) -> mm.CustomExternalForce:
    force = mm.CustomExternalForce("-k*(x^2 + y^2 + z^2)")
    force.addGlobalParameter("k", strength_kjmol_nm2)
    for index in range(22):
        force.addParticle(index, [])
    return force


@pytest.fixture
def inverted_harmonic_force() -> Callable[[], mm.CustomExternalForce]:
    """Factory of a force pushing the 22 atoms away from the origin (exploding energy)."""
    return _inverted_harmonic_force


class ExplodingAmber(AmberPotential):
    """Amber plus an inverted harmonic well: every run with it blows up."""

    def createSystem(self, topology: app.Topology, removeCMMotion: bool = True) -> mm.System:
        system = super().createSystem(topology, removeCMMotion)
        system.addForce(_inverted_harmonic_force())
        return system


@pytest.fixture
def exploding_amber() -> AmberPotential:
    """A potential whose every MD run blows up."""
    return ExplodingAmber()
