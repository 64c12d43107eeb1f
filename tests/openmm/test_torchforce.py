"""TorchForce registration: OpenMM energies/forces equal the module's autograd (float64)."""

from __future__ import annotations

import numpy as np
import openmm
import openmm.unit as unit
import pytest
import torch

from flowff.openmm.torchforce import (
    EnergyModuleError,
    create_torch_force,
    validate_energy_module,
)


class PairEnergy(torch.nn.Module):
    """A smooth anharmonic pair energy (kJ/mol) of positions (n, 3) nm, computed in float64."""

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        x = positions.to(torch.float64)
        diff = x.unsqueeze(0) - x.unsqueeze(1)
        r2 = (diff * diff).sum(-1) + torch.eye(x.size(0), dtype=x.dtype)
        r = torch.sqrt(r2)
        return (torch.triu(torch.cos(3.0 * r) * torch.exp(-r) + 0.5 * r2, 1)).sum()


class WrongShape(torch.nn.Module):
    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return (positions.to(torch.float64) ** 2).sum(-1)


class IntegerEnergy(torch.nn.Module):
    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return (positions * 1000).sum().to(torch.int64)


class Detached(torch.nn.Module):
    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return positions.detach().to(torch.float64).sum()


def _openmm_energy_forces(force: openmm.Force, positions: np.ndarray, platform: str):
    system = openmm.System()
    for _ in range(len(positions)):
        system.addParticle(12.0)
    system.addForce(force)
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform)
    )
    context.setPositions(positions * unit.nanometer)
    state = context.getState(getEnergy=True, getForces=True)
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    return energy, np.asarray(forces)


@pytest.mark.parametrize("platform", ["Reference", "CPU"])
def test_torchforce_matches_autograd(platform: str) -> None:
    rng = np.random.default_rng(1)
    positions = rng.uniform(0.0, 1.2, size=(7, 3))
    module = PairEnergy()
    x = torch.tensor(positions, dtype=torch.float64, requires_grad=True)
    energy = module(x)
    (grad,) = torch.autograd.grad(energy, x)
    force = create_torch_force(module, n_particles=7)
    e_mm, f_mm = _openmm_energy_forces(force, positions, platform)
    assert e_mm == pytest.approx(energy.item(), rel=1e-10)
    scale = grad.abs().max().item()
    np.testing.assert_allclose(f_mm, -grad.numpy(), rtol=1e-10, atol=1e-10 * scale)


def test_torchforce_from_file(tmp_path) -> None:
    from flowff._torchscript import quiet_jit

    path = tmp_path / "pair.pt"
    with quiet_jit():
        torch.jit.script(PairEnergy()).save(str(path))
    positions = np.random.default_rng(2).uniform(0.0, 1.0, size=(5, 3))
    e_mm, _ = _openmm_energy_forces(create_torch_force(path, 5), positions, "Reference")
    expected = PairEnergy()(torch.tensor(positions)).item()
    assert e_mm == pytest.approx(expected, rel=1e-10)
    with pytest.raises(FileNotFoundError, match="model file not found"):
        create_torch_force(tmp_path / "missing.pt", 5)


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (WrongShape(), r"scalar energy .* got shape \(4,\)"),
        (IntegerEnergy(), "floating-point energy, got torch.int64"),
        (Detached(), "does not depend differentiably"),
    ],
)
def test_bad_modules_are_refused_with_clear_errors(module, message) -> None:
    with pytest.raises(EnergyModuleError, match=message):
        validate_energy_module(module, n_particles=4)
    with pytest.raises(EnergyModuleError, match=message):
        create_torch_force(module, n_particles=4)


def test_module_failing_on_wrong_atom_count_is_refused() -> None:
    class NeedsFive(torch.nn.Module):
        def forward(self, positions: torch.Tensor) -> torch.Tensor:
            return positions.to(torch.float64).reshape(5, 3).sum()

    with pytest.raises(EnergyModuleError, match=r"failed on torch.float64 positions of shape \(4"):
        create_torch_force(NeedsFive(), n_particles=4)
