"""OpenMM custom-force systems reproduce the torch energies and forces (times kT)."""

from __future__ import annotations

import pytest
import torch

from flowff.equivariant.mcmc import initial_configurations
from flowff.equivariant.openmm_systems import (
    kt_kj_per_mol,
    openmm_energy_and_forces,
    to_openmm_system,
)
from flowff.equivariant.systems import get_system


@pytest.mark.parametrize("name", ["dw2", "dw4", "lj13"])
@pytest.mark.parametrize("temperature", [300.0, 120.0])
def test_openmm_matches_torch(name, temperature, gen):
    system = get_system(name)
    omm = to_openmm_system(system, temperature=temperature)
    kt = kt_kj_per_mol(temperature)
    x = initial_configurations(system, 4, gen)
    x = x + 0.1 * torch.randn(x.shape, generator=gen, dtype=x.dtype)
    x = x + 3.0  # OpenMM sees a translated cluster; the energy is translation invariant
    for xi in x:
        energy, forces = openmm_energy_and_forces(omm, xi)
        expected_e = float(system.energy(xi)) * kt
        expected_f = system.forces(xi).numpy() * kt
        assert energy == pytest.approx(expected_e, rel=1e-9, abs=1e-9)
        assert abs(forces - expected_f).max() <= 1e-8 * max(1.0, abs(expected_f).max())


def test_kt_value():
    assert kt_kj_per_mol(300.0) == pytest.approx(2.494339, rel=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        kt_kj_per_mol(0.0)
