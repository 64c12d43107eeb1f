"""Equivariant kernel flows for particle systems (Köhler, Klein & Noé, ICML 2020).

Systems (DW-2, DW-4, LJ-13) as torch energies and OpenMM systems, Metropolis reference data, the
RBF kernel vector field with closed-form divergence, fixed-grid RK4 and adaptive adjoint
integration, training (ML and ML + KL), minima counting and TorchScript export for openmm-torch.
"""

from flowff.equivariant.adjoint import AdjointDopri5, dopri5
from flowff.equivariant.dynamics import AutogradTrace, KernelDynamics, MLPDynamics
from flowff.equivariant.flow import ContinuousFlow
from flowff.equivariant.integrators import RK4Integrator
from flowff.equivariant.mcmc import MCMCProtocol, metropolis, reference_samples
from flowff.equivariant.models import kernel_flow, mlp_flow
from flowff.equivariant.prior import MeanFreeNormal
from flowff.equivariant.systems import (
    LennardJonesCluster,
    MultiDoubleWell,
    ParticleSystem,
    dw2,
    dw4,
    get_system,
    lj13,
)
from flowff.equivariant.training import TrainConfig, mean_nll, sample_flow, train_flow

__all__ = [
    "AdjointDopri5",
    "AutogradTrace",
    "ContinuousFlow",
    "KernelDynamics",
    "LennardJonesCluster",
    "MCMCProtocol",
    "MLPDynamics",
    "MeanFreeNormal",
    "MultiDoubleWell",
    "ParticleSystem",
    "RK4Integrator",
    "TrainConfig",
    "dopri5",
    "dw2",
    "dw4",
    "get_system",
    "kernel_flow",
    "lj13",
    "mean_nll",
    "metropolis",
    "mlp_flow",
    "reference_samples",
    "sample_flow",
    "train_flow",
]
