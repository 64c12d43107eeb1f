"""Differentiable classical energies: OpenMM evaluates u(x) and forces for a batch of positions.

Used for reverse-KL training and importance weights. The gradient of the energy is minus the
OpenMM forces; no second derivatives (reverse KL needs first derivatives of u only).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import openmm
import openmm.unit as unit
import torch
from torch import Tensor


class OpenMMEnergyEvaluator:
    """Evaluates an OpenMM System on positions (batch, n, 3) nm -> energies kJ/mol, forces.

    One Context (``platform``, default Reference) is reused for every call.
    """

    def __init__(self, system: openmm.System, platform: str = "Reference") -> None:
        self.n_atoms = system.getNumParticles()
        self._context = openmm.Context(
            system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform)
        )

    def __call__(self, positions_nm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Energies (batch,) kJ/mol and forces (batch, n, 3) kJ/mol/nm (non-finite -> inf/0)."""
        pos = np.asarray(positions_nm, dtype=np.float64)
        if pos.ndim != 3 or pos.shape[1:] != (self.n_atoms, 3):
            raise ValueError(
                f"positions must have shape (batch, {self.n_atoms}, 3), got {pos.shape}"
            )
        energies = np.empty(len(pos))
        forces = np.zeros_like(pos)
        for i, x in enumerate(pos):
            if not np.isfinite(x).all():
                energies[i] = np.inf
                continue
            self._context.setPositions(x)
            st = self._context.getState(getEnergy=True, getForces=True)
            energies[i] = st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
            forces[i] = st.getForces(asNumpy=True).value_in_unit(
                unit.kilojoule_per_mole / unit.nanometer
            )
        return energies, forces


class _OpenMMEnergyFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, positions: Tensor, evaluator: OpenMMEnergyEvaluator) -> Tensor:
        energies, forces = evaluator(positions.detach().cpu().numpy())
        ctx.save_for_backward(torch.as_tensor(forces, dtype=positions.dtype,
                                              device=positions.device))
        return torch.as_tensor(energies, dtype=positions.dtype, device=positions.device)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None]:
        (forces,) = ctx.saved_tensors
        return -grad_output[:, None, None] * forces, None


def openmm_energy(positions: Tensor, evaluator: OpenMMEnergyEvaluator) -> Tensor:
    """Classical energies (batch,) kJ/mol of positions (batch, n, 3) nm, differentiable once."""
    return _OpenMMEnergyFunction.apply(positions, evaluator)
