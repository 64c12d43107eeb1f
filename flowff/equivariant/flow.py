"""Continuous normalizing flow on the centre-of-mass-free configurations of a particle system.

Base (prior) at t = 0, data at t = 1. Following flowff's flow contract, ``forward`` is the
density direction (data x -> base z, integrating t: 1 -> 0) and returns (z, log|dz/dx|);
``inverse`` is the sampling direction (z -> x, t: 0 -> 1) and returns (x, log|dx/dz|); both are
computed by the same integrator (fixed-grid RK4 by default), so they are inverse to each other up
to the discretisation error. Densities are per unit volume of the (n - 1) d dimensional
mean-free subspace (inputs are centred first; translations are a symmetry):

    log p(x) = log p_prior(z) + log|dz/dx|,   log|dz/dx| = int_1^0 div v dt.

Units: positions in the system's reduced length unit, log-densities in nats (so -log p is an
energy in kT).
"""

from __future__ import annotations

import torch
from torch import nn

from flowff.equivariant.particles import check_configurations, remove_mean
from flowff.equivariant.prior import MeanFreeNormal


class ContinuousFlow(nn.Module):
    """Prior + integrator(dynamics). ``integrator(x, t0, t1) -> (x(t1), int div dt)``."""

    def __init__(self, integrator: nn.Module, prior: MeanFreeNormal) -> None:
        super().__init__()
        self.integrator = integrator
        self.prior = prior

    @property
    def n_particles(self) -> int:
        """Number of particles n."""
        return self.prior.n_particles

    @property
    def n_dims(self) -> int:
        """Spatial dimension d."""
        return self.prior.n_dims

    @property
    def dynamics(self) -> nn.Module:
        """The vector field."""
        return self.integrator.dynamics

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Data (batch, n, d) -> base z (batch, n, d) and log|dz/dx| (batch,)."""
        check_configurations(x, self.n_particles, self.n_dims)
        return self.integrator(remove_mean(x), 1.0, 0.0)

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Base z (batch, n, d) -> data x (batch, n, d) and log|dx/dz| (batch,)."""
        check_configurations(z, self.n_particles, self.n_dims)
        return self.integrator(remove_mean(z), 0.0, 1.0)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) (batch,) in nats on the mean-free subspace."""
        z, logdet = self.forward(x)
        return self.prior.log_prob(z) + logdet

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """Flow energy -log p(x) in kT, shape (batch,)."""
        return -self.log_prob(x)

    def sample(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """n samples x (n, n_particles, n_dims) and their model log-densities log q(x) (n,)."""
        param = next(self.parameters(), None)
        dtype = param.dtype if param is not None else torch.get_default_dtype()
        device = param.device if param is not None else None
        z = self.prior.sample(n, generator=generator, dtype=dtype, device=device)
        x, logdet = self.inverse(z)
        return x, self.prior.log_prob(z) - logdet
