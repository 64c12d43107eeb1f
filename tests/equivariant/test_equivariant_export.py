"""TorchScript export of the LJ-13 flow energy, run by OpenMM through openmm-torch."""

from __future__ import annotations

import numpy as np
import openmm
import openmm.unit as unit
import openmmtorch
import pytest
import torch

from flowff._torchscript import quiet_jit
from flowff.equivariant.export import energy_module, export_energy
from flowff.equivariant.models import kernel_flow
from flowff.equivariant.openmm_systems import kt_kj_per_mol
from flowff.equivariant.training import sample_flow


@pytest.fixture(scope="module")
def lj_flow():
    flow = kernel_flow("LJ-13", seed=2, n_steps=3)
    with torch.no_grad():
        flow.dynamics.weight.mul_(10.0)  # a non-trivial map
    return flow


def test_exported_energy_in_openmm_matches_eager(lj_flow, tmp_path):
    temperature = 250.0
    path = tmp_path / "lj13_flow.pt"
    scripted = export_energy(lj_flow, path, temperature)
    eager = energy_module(lj_flow, temperature)
    positions, _ = sample_flow(lj_flow, 3, seed=4)
    positions = positions + 1.0  # OpenMM sees the cluster away from the origin

    system = openmm.System()
    for _ in range(13):
        system.addParticle(39.948)
    with quiet_jit():
        system.addForce(openmmtorch.TorchForce(str(path)))
    integrator = openmm.VerletIntegrator(0.001)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    for xi in positions:
        x = xi.detach().clone().requires_grad_(True)
        energy = eager(x)
        (grad,) = torch.autograd.grad(energy, x)
        context.setPositions(xi.numpy())
        state = context.getState(getEnergy=True, getForces=True)
        e_omm = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        kj_nm = unit.kilojoule_per_mole / unit.nanometer
        f_omm = state.getForces(asNumpy=True).value_in_unit(kj_nm)
        assert e_omm == pytest.approx(energy.item(), rel=1e-8)
        assert np.abs(f_omm + grad.numpy()).max() <= 1e-8 * np.abs(grad.numpy()).max()
        assert float(scripted(xi).detach()) == pytest.approx(energy.item(), rel=1e-12)
        # energy is -kT log p, with the flow's own log-density
        expected = -kt_kj_per_mol(temperature) * lj_flow.log_prob(xi[None]).item()
        assert energy.item() == pytest.approx(expected, rel=1e-10)

    context.setPositions(positions[0].numpy())
    context.setVelocitiesToTemperature(temperature, 1)
    integrator.step(20)  # NVE
    state = context.getState(getEnergy=True, getPositions=True)
    assert np.isfinite(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)).all()
    assert np.isfinite(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))

    langevin = openmm.LangevinMiddleIntegrator(temperature, 1.0, 0.001)
    context2 = openmm.Context(system, langevin, openmm.Platform.getPlatformByName("Reference"))
    context2.setPositions(positions[1].numpy())
    langevin.step(10)
    pos = context2.getState(getPositions=True).getPositions(asNumpy=True)
    assert np.isfinite(pos.value_in_unit(unit.nanometer)).all()


def test_export_rejects_unscriptable_flows(tmp_path):
    with pytest.raises(ValueError, match="KernelDynamics"):
        export_energy(kernel_flow("LJ-13", trace="exact", n_steps=2), tmp_path / "a.pt", 300.0)
    with pytest.raises(ValueError, match="RK4"):
        export_energy(kernel_flow("LJ-13", solver="dopri5-adjoint"), tmp_path / "b.pt", 300.0)
