"""Export a kernel flow's energy u(x) = -kT log p(x) as TorchScript for openmm-torch.

The exported module takes positions (n_particles, 3) in nm, in whatever dtype OpenMM passes
(float64 on Reference/CPU), casts them to the flow's dtype (float64), centres them, keeps the
first ``n_dims`` coordinates (2-D systems live in the plane z = 0), integrates the closed-form
kernel dynamics from t = 1 to t = 0 with the flow's fixed-step RK4 and returns

    E(x) = -kT log p(x)   in kJ/mol,   kT = R T at ``temperature`` kelvin,

as a 0-dim tensor in the input dtype. Length unit 1 = 1 nm as in
``flowff.equivariant.openmm_systems``. Forces come from autograd through the RK4 steps, so they
are the exact gradients of the discretised energy (what the test checks against the eager
module). The step loop has a fixed count, so ``torch.jit.script`` compiles it.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
from torch import nn

from flowff._torchscript import quiet_jit
from flowff.equivariant.dynamics import KernelDynamics
from flowff.equivariant.flow import ContinuousFlow
from flowff.equivariant.integrators import RK4Integrator
from flowff.equivariant.openmm_systems import kt_kj_per_mol
from flowff.equivariant.prior import MeanFreeNormal


class FlowEnergyModule(nn.Module):
    """positions (n, 3) nm -> -kT log p(x) kJ/mol (0-dim); see the module docstring."""

    def __init__(self, integrator: RK4Integrator, prior: MeanFreeNormal, kt: float) -> None:
        super().__init__()
        self.integrator = integrator
        self.prior = prior
        self.n_particles = prior.n_particles
        self.n_dims = prior.n_dims
        self.kt = float(kt)
        self.register_buffer("dtype_probe", torch.zeros((), dtype=torch.float64))

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """Energy in kJ/mol of one configuration (n_particles, 3) nm."""
        if positions.dim() != 2 or positions.shape[0] != self.n_particles:
            raise ValueError("positions must have shape (n_particles, 3)")
        x = positions[:, : self.n_dims].to(self.dtype_probe.dtype)
        x = (x - x.mean(dim=0, keepdim=True)).unsqueeze(0)
        z, logdet = self.integrator(x, 1.0, 0.0)
        log_p = self.prior(z) + logdet
        return (-self.kt * log_p.sum()).to(positions.dtype)


def energy_module(flow: ContinuousFlow, temperature: float) -> FlowEnergyModule:
    """An eager float64 copy of ``flow``'s energy as a ``FlowEnergyModule`` (not yet scripted).

    Requires closed-form kernel dynamics and fixed-grid RK4 (autograd traces and the adaptive
    adjoint solver cannot be scripted).
    """
    integrator = flow.integrator
    if not isinstance(integrator, RK4Integrator):
        raise ValueError("only flows integrated with fixed-step RK4 can be exported")
    if not isinstance(integrator.dynamics, KernelDynamics):
        raise ValueError(
            "only closed-form KernelDynamics can be exported, got "
            f"{type(integrator.dynamics).__name__}"
        )
    dynamics = copy.deepcopy(integrator.dynamics).to(torch.float64)
    for p in dynamics.parameters():
        p.requires_grad_(False)
    rk4 = RK4Integrator(dynamics, integrator.n_steps)
    prior = MeanFreeNormal(flow.n_particles, flow.n_dims, flow.prior.std)
    return FlowEnergyModule(rk4, prior, kt_kj_per_mol(temperature)).eval()


def export_energy(
    flow: ContinuousFlow, path: str | os.PathLike[str], temperature: float
) -> torch.jit.ScriptModule:
    """Script the flow energy (kJ/mol at ``temperature`` K) and save it to ``path``.

    Returns the scripted module; load the file with ``openmmtorch.TorchForce(str(path))``.
    """
    module = energy_module(flow, temperature)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with quiet_jit():
        scripted = torch.jit.script(module)
        scripted.save(str(target))
    return scripted
