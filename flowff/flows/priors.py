"""Base (prior) densities of a flow, on the flow's z side.

A prior is an ``nn.Module`` with ``dim``, ``log_prob(z (..., dim)) -> (...,)`` (TorchScript
compatible) and ``sample(num_samples, generator=None) -> (num_samples, dim)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Prior(nn.Module):
    """Base class of flow priors: subclasses implement ``log_prob`` and ``sample``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if int(dim) < 1:
            raise ValueError(f"prior dimension must be >= 1, got {dim}")
        self.dim = int(dim)

    def log_prob(self, z: Tensor) -> Tensor:
        """Log-density of z (..., dim) -> (...,)."""
        raise NotImplementedError

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw (num_samples, dim) points."""
        raise NotImplementedError

    def forward(self, z: Tensor) -> Tensor:
        return self.log_prob(z)


class UniformPrior(Prior):
    """Uniform density on the unit cube [0, 1]^dim: log p = 0 inside, -inf outside.

    Points outside the cube are not hidden or replaced: their log-density is -inf (the smooth
    confining wall of the energy lives in :mod:`flowff.energy.confinement`). Samples use the
    dtype and device of the module (move it with ``.to``).
    """

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.register_buffer("reference", torch.zeros(()))

    def log_prob(self, z: Tensor) -> Tensor:
        if z.dim() < 1 or z.size(-1) != self.dim:
            raise ValueError(f"expected shape (..., {self.dim}), got {list(z.shape)}")
        inside = ((z >= 0.0) & (z <= 1.0)).all(dim=-1)
        zero = torch.zeros(inside.shape, dtype=z.dtype, device=z.device)
        return torch.where(inside, zero, torch.full_like(zero, float("-inf")))

    @torch.jit.unused
    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        if int(num_samples) < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        return torch.rand(
            (int(num_samples), self.dim),
            generator=generator,
            dtype=self.reference.dtype,
            device=self.reference.device,
        )
