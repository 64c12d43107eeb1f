"""The openmm-ml entry point: the registration path of openmmml 1.8, followed step by step.

openmm-ml itself is not a flowff dependency; its MLPotential does exactly this: load every
``openmmml.potentials`` entry point, instantiate the factory, ``createImpl(name, **args)``, and
in ``createSystem`` add particles then call ``impl.addForces(topology, system, None, 0)``.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import numpy as np
import openmm
import openmm.unit as unit
import pytest
import torch


def test_entry_point_builds_the_flow_force(small_model_file, small_energy, ala_structure) -> None:
    found = [ep for ep in entry_points(group="openmmml.potentials") if ep.name == "flowff"]
    assert len(found) == 1, "flowff is not registered (reinstall the package)"
    impl = found[0].load()().createImpl("flowff", modelPath=str(small_model_file))
    topology, pos = ala_structure
    system = openmm.System()
    for atom in topology.atoms():
        system.addParticle(atom.element.mass)
    impl.addForces(topology, system, None, 0)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001),
                         openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(pos)
    energy = ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(
        unit.kilojoule_per_mole)
    assert energy == pytest.approx(small_energy(torch.tensor(pos)).item(), rel=1e-10)
    assert np.isfinite(energy)
