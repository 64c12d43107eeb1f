"""Register a TorchScript energy module as an openmm-torch ``TorchForce``, after checking it.

openmm-torch calls the module with positions (n_particles, 3) in nm (float64 on the Reference
and CPU platforms, float32 on GPU platforms in mixed precision) and expects a scalar energy in
kJ/mol; forces come from autograd. A module that returns anything else aborts inside C++, so we
evaluate it once in Python first and raise a clear error instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import openmmtorch
import torch

from flowff._torchscript import quiet_jit


class EnergyModuleError(ValueError):
    """A module cannot serve as an OpenMM energy (wrong output shape, dtype, or not finite)."""


def validate_energy_module(
    module: torch.nn.Module, n_particles: int, positions: torch.Tensor | None = None
) -> None:
    """Evaluate ``module`` on float64 and float32 positions (n_particles, 3) nm and check it.

    The output must be a finite floating-point scalar (shape () or (1,)) that depends on the
    positions differentiably. ``positions`` defaults to a small random cloud.
    """
    if positions is None:
        gen = torch.Generator().manual_seed(0)
        positions = 0.5 * torch.rand(n_particles, 3, generator=gen, dtype=torch.float64)
    for dtype in (torch.float64, torch.float32):
        x = positions.detach().to(dtype).requires_grad_(True)
        try:
            energy = module(x)
        except Exception as exc:
            raise EnergyModuleError(
                f"the energy module failed on {dtype} positions of shape ({n_particles}, 3): {exc}"
            ) from exc
        if not isinstance(energy, torch.Tensor):
            raise EnergyModuleError(
                f"the energy module must return a torch.Tensor, got {type(energy).__name__}"
            )
        if energy.numel() != 1 or energy.dim() > 1:
            raise EnergyModuleError(
                "the energy module must return a scalar energy in kJ/mol (shape () or (1,)), "
                f"got shape {tuple(energy.shape)}"
            )
        if not energy.is_floating_point():
            raise EnergyModuleError(
                f"the energy module must return a floating-point energy, got {energy.dtype}"
            )
        if not torch.isfinite(energy).all():
            raise EnergyModuleError(f"the energy module returned a non-finite energy: {energy}")
        if not energy.requires_grad:
            raise EnergyModuleError(
                "the energy does not depend differentiably on the positions (no autograd graph), "
                "so OpenMM could not compute forces"
            )


def create_torch_force(
    model: torch.nn.Module | str | os.PathLike[str],
    n_particles: int,
    force_group: int = 0,
    validate: bool = True,
) -> openmmtorch.TorchForce:
    """A ``TorchForce`` for a TorchScript module or file; validated first unless told not to."""
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.exists():
            raise FileNotFoundError(f"model file not found: {path}")
        with quiet_jit():
            module = torch.jit.load(str(path), map_location="cpu")
    else:
        module = model
        if not isinstance(module, torch.jit.ScriptModule):
            with quiet_jit():
                module = torch.jit.script(module)
    if validate:
        validate_energy_module(module, n_particles)
    with quiet_jit():
        force = openmmtorch.TorchForce(module)
    force.setUsesPeriodicBoundaryConditions(False)
    force.setOutputsForces(False)
    force.setForceGroup(force_group)
    return force
