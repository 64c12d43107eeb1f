"""Sampling Cartesian positions from a flow energy: base -> flow inverse -> IC inverse."""

from __future__ import annotations

import torch
from torch import Tensor

from flowff.energy.flow_energy import FlowEnergy


def sample_positions(
    model: FlowEnergy, n: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """n samples x (n, atoms, 3) nm in a canonical frame and their log p_f(x) (n,).

    Differentiable w.r.t. the flow parameters (implicit gradients of the numerical inverse).
    log p_f(x) is the Cartesian density per unit rigid-body volume, as -u(x)/kT.
    """
    prior = model.flow.prior
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    z = prior.sample(n, generator=generator).to(dtype=dtype, device=device)
    h, log_det_inverse_flow = model.flow.inverse(z)  # log|dh/dz|
    log_q_h = prior.log_prob(z) - log_det_inverse_flow
    x, log_det_inverse_ic = model.ic.inverse(h)  # = -log_det of the forward IC map
    return x, log_q_h - log_det_inverse_ic
