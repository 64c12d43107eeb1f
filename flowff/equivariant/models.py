"""Ready-made flows for the benchmark systems: the kernel flow and the MLP baseline.

``kernel_flow`` is the paper's equivariant flow (supplement C.1, 620 parameters), ``mlp_flow`` the
non-equivariant nODE baseline (supplement C.3: tanh MLP [64, 64] for DW-4, [64, 128, 64] for
LJ-13; it also takes t as an input, hence 5,320 / 21,735 parameters against the paper's 5,256 /
21,671). Both use a mean-free unit Gaussian prior and, unless told otherwise, 20-step RK4.
"""

from __future__ import annotations

import torch
from torch import nn

from flowff.equivariant.adjoint import AdjointDopri5
from flowff.equivariant.dynamics import AutogradTrace, MLPDynamics, kernel_dynamics_for
from flowff.equivariant.flow import ContinuousFlow
from flowff.equivariant.integrators import RK4Integrator
from flowff.equivariant.prior import MeanFreeNormal

#: (n_particles, n_dims) of the named systems.
SHAPES = {"DW-2": (2, 2), "DW-4": (4, 2), "LJ-13": (13, 3)}
#: Hidden layers of the MLP baseline per system (supplement C.3).
MLP_HIDDEN = {"DW-2": (64, 64), "DW-4": (64, 64), "LJ-13": (64, 128, 64)}


def _shape(system_name: str) -> tuple[int, int]:
    if system_name not in SHAPES:
        raise ValueError(f"unknown system {system_name!r}; choose one of {sorted(SHAPES)}")
    return SHAPES[system_name]


def make_integrator(dynamics: nn.Module, solver: str = "rk4", n_steps: int = 20) -> nn.Module:
    """'rk4' (fixed grid, ``n_steps``) or 'dopri5-adjoint' (adaptive, adjoint gradients)."""
    if solver == "rk4":
        return RK4Integrator(dynamics, n_steps)
    if solver == "dopri5-adjoint":
        return AdjointDopri5(dynamics)
    raise ValueError(f"solver must be 'rk4' or 'dopri5-adjoint', got {solver!r}")


def kernel_flow(
    system_name: str,
    seed: int = 0,
    n_steps: int = 20,
    solver: str = "rk4",
    trace: str = "closed-form",
    dtype: torch.dtype = torch.float64,
) -> ContinuousFlow:
    """Equivariant kernel flow; ``trace`` 'closed-form', 'exact' (autograd) or 'hutchinson'."""
    n, d = _shape(system_name)
    gen = torch.Generator().manual_seed(seed)
    dynamics: nn.Module = kernel_dynamics_for(system_name, generator=gen)
    if trace != "closed-form":
        dynamics = AutogradTrace(dynamics, trace)
    flow = ContinuousFlow(make_integrator(dynamics, solver, n_steps), MeanFreeNormal(n, d))
    return flow.to(dtype)


def mlp_flow(
    system_name: str,
    seed: int = 0,
    n_steps: int = 20,
    solver: str = "rk4",
    trace: str = "exact",
    hidden: tuple[int, ...] | None = None,
    dtype: torch.dtype = torch.float64,
) -> ContinuousFlow:
    """Non-equivariant MLP CNF; ``trace`` 'exact' (brute-force autograd) or 'hutchinson'."""
    n, d = _shape(system_name)
    torch.manual_seed(seed)  # nn.Linear draws from the global generator
    dynamics = AutogradTrace(MLPDynamics(n, d, hidden or MLP_HIDDEN[system_name]), trace)
    flow = ContinuousFlow(make_integrator(dynamics, solver, n_steps), MeanFreeNormal(n, d))
    return flow.to(dtype)


def set_trace_method(flow: ContinuousFlow, method: str) -> None:
    """Switch an autograd-trace flow between 'exact' and 'hutchinson' (e.g. exact for eval)."""
    dyn = flow.dynamics
    if not isinstance(dyn, AutogradTrace):
        raise TypeError("this flow has a closed-form divergence; there is no trace to switch")
    if method not in ("exact", "hutchinson"):
        raise ValueError(f"method must be 'exact' or 'hutchinson', got {method!r}")
    dyn.method = method


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
