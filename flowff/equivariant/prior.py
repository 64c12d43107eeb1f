"""Mean-free isotropic Gaussian on the centre-of-mass-free subspace (paper, supplement A.3).

The subspace U = {x in R^(n d): sum_i x_i = 0} has dimension k = (n - 1) d. Projecting an
isotropic normal N(0, s^2 I) of R^(n d) onto U gives the isotropic normal of U, whose density with
respect to the Lebesgue measure of U (orthonormal coordinates) is

    log p(x) = -|x|^2 / (2 s^2) - (k / 2) log(2 pi s^2),   x in U.

``log_prob`` evaluates it at the centred input (the translation is a symmetry and carries no
density); ``sample`` draws from it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from flowff.equivariant.particles import remove_mean, subspace_dimension


class MeanFreeNormal(nn.Module):
    """Isotropic Gaussian of standard deviation ``std`` on the (n - 1) d mean-free subspace."""

    def __init__(self, n_particles: int, n_dims: int, std: float = 1.0) -> None:
        super().__init__()
        if n_particles < 2 or n_dims < 1 or std <= 0:
            raise ValueError("need n_particles >= 2, n_dims >= 1 and a positive std")
        self.n_particles = n_particles
        self.n_dims = n_dims
        self.std = float(std)
        k = subspace_dimension(n_particles, n_dims)
        self.log_normalizer = 0.5 * k * math.log(2.0 * math.pi * self.std**2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) for x (batch, n, d) -> (batch,), evaluated on the centred x."""
        xc = x - x.mean(dim=-2, keepdim=True)
        return -0.5 * xc.pow(2).sum(dim=(-2, -1)) / (self.std**2) - self.log_normalizer

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Same as ``forward``."""
        return self.forward(x)

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """n samples (n, n_particles, n_dims), exactly mean-free."""
        eps = torch.randn(n, self.n_particles, self.n_dims, generator=generator, dtype=dtype)
        return remove_mean(self.std * eps).to(device)
