"""Training losses of Eq. 5: w_n NLL + w_k KLD + w_f FM, all in kT units.

``model`` is a :class:`flowff.energy.FlowEnergy` (eager); ``model.reduced_energy(x)`` is
u_f(x)/kT = -log p_f(x) for positions x (batch, n, 3) nm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


def nll_loss(model: torch.nn.Module, positions: Tensor) -> Tensor:
    """Mean negative log-likelihood -log p_f(x) of MD frames (kT); positions (batch, n, 3) nm."""
    return model.reduced_energy(positions).mean()


def flow_forces_kT(model: torch.nn.Module, positions: Tensor, create_graph: bool) -> Tensor:
    """Flow forces -d(u_f/kT)/dx in kT/nm, shape (batch, n, 3); ``create_graph`` for training."""
    x = positions.detach().requires_grad_(True)
    u = model.reduced_energy(x)
    (grad,) = torch.autograd.grad(u.sum(), x, create_graph=create_graph)
    return -grad


def force_matching_loss(
    model: torch.nn.Module, positions: Tensor, forces_kJ_per_mol_nm: Tensor, kT_kJ_per_mol: float
) -> Tensor:
    """Force-matching error (FME): mean over frames and atoms of |f_flow - f_ref|^2 in (kT/nm)^2.

    Reference forces are given in kJ/mol/nm and converted to kT/nm. Differentiable w.r.t. the
    flow parameters (second derivatives of the flow through ``create_graph``).
    """
    ref = forces_kJ_per_mol_nm / kT_kJ_per_mol
    pred = flow_forces_kT(model, positions, create_graph=True)
    return ((pred - ref) ** 2).sum(-1).mean()


def relative_force_matching_loss(
    model: torch.nn.Module, positions: Tensor, forces_kJ_per_mol_nm: Tensor
) -> Tensor:
    """Per-frame relative force error, dimensionless: mean over frames of
    sum_atoms |f_flow - f_ref|^2 / sum_atoms |f_ref|^2 (units cancel; kT/nm inside).

    For frames whose forces vary over orders of magnitude (perturbed tails): each frame counts
    alike, so a few stretched bonds cannot drown the rest. Each frame is divided by its largest
    reference force component before squaring, so a near-overlap of two atoms (forces ~1e19
    kJ/mol/nm, whose square overflows float32) gives a finite ratio (~1) instead of NaN.
    """
    if positions.shape[0] == 0:
        return positions.new_zeros(())
    pred = flow_forces_kT(model, positions, create_graph=True)
    kT = float(model.kT)
    ref = forces_kJ_per_mol_nm / kT
    scale = ref.detach().abs().amax(dim=(-1, -2), keepdim=True).clamp_min(1e-6)
    error = (((pred - ref) / scale) ** 2).sum(dim=(-1, -2))
    return (error / ((ref / scale) ** 2).sum(dim=(-1, -2)).clamp_min(1e-12)).mean()


def reverse_kl_loss(
    sampler: Callable[[int], tuple[Tensor, Tensor]],
    target_reduced_energy: Callable[[Tensor], Tensor],
    n_samples: int,
    max_energy_kT: float = 1.0e4,
) -> Tensor:
    """Reverse KL up to a constant: E_{x~p_f}[u_target(x)/kT + log p_f(x)] (kT).

    ``sampler(n) -> (x (n, atoms, 3) nm, log p_f(x) (n,))``, differentiable through the flow's
    numerical inverse; ``target_reduced_energy(x) -> (n,)`` in kT. Target energies above
    ``max_energy_kT`` (clashes) are softened logarithmically so a single bad sample cannot blow
    up the gradient.
    """
    x, log_q = sampler(n_samples)
    u = target_reduced_energy(x)
    u = torch.where(u < max_energy_kT, u,
                    max_energy_kT + torch.log1p((u - max_energy_kT).clamp(min=0)))
    return (u + log_q).mean()


@dataclass(frozen=True)
class LossWeights:
    """Weights of Eq. 5 (the paper: w_n = 1 - w_k - w_f)."""

    nll: float = 0.999
    kl: float = 0.0
    fm: float = 0.001

    def __post_init__(self) -> None:
        if min(self.nll, self.kl, self.fm) < 0:
            raise ValueError(f"loss weights must be non-negative, got {self}")
        if self.nll + self.kl + self.fm <= 0:
            raise ValueError("at least one loss weight must be positive")
