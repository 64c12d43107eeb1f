"""Flow: a stack of invertible layers on top of a prior.

Directions follow the architecture: ``forward`` is the analytic density direction, data
h -> base z, returning (z, log|dz/dh|); ``inverse`` is the (numerical) sampling direction
z -> h, returning (h, log|dh/dz|). ``log_prob(h) = prior.log_prob(z) + log|dz/dh|``.
Every layer implements ``forward(x) -> (y, log_det)`` and ``inverse(y) -> (x, log_det)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import Tensor, nn

from flowff.flows.implicit import InversionSettings
from flowff.flows.priors import Prior


class Flow(nn.Module):
    """Sequence of layers (applied in order in the density direction) plus a prior.

    ``circular_mask`` (dim,) bool marks circular coordinates (taken from the layers when they
    carry one, else all False). forward(h (batch, dim)) -> (z, log|dz/dh| (batch,)).
    """

    def __init__(
        self,
        layers: Sequence[nn.Module],
        prior: Prior,
        circular_mask: Sequence[bool] | Tensor | None = None,
    ) -> None:
        super().__init__()
        self.dim = int(prior.dim)
        for position, layer in enumerate(layers):
            layer_dim = getattr(layer, "dim", self.dim)
            if layer_dim != self.dim:
                raise ValueError(f"layer {position} acts on dim {layer_dim}, prior on {self.dim}")
        if circular_mask is None:
            masks = [layer.circular_mask for layer in layers if hasattr(layer, "circular_mask")]
            circular_mask = masks[0] if masks else torch.zeros(self.dim, dtype=torch.bool)
        mask = torch.as_tensor(circular_mask, dtype=torch.bool).flatten()
        if mask.numel() != self.dim:
            raise ValueError(f"circular_mask has {mask.numel()} entries, flow dim is {self.dim}")
        for position, layer in enumerate(layers):
            if hasattr(layer, "circular_mask") and not torch.equal(layer.circular_mask.cpu(), mask):
                raise ValueError(f"layer {position} has a different circular_mask")
        self.layers = nn.ModuleList(layers)
        self.prior = prior
        self.register_buffer("circular_mask", mask)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """Density direction h (..., dim) -> (z (..., dim), log|dz/dh| (...,))."""
        if h.dim() < 1 or h.size(-1) != self.dim:
            raise ValueError(f"expected shape (..., {self.dim}), got {list(h.shape)}")
        z = h
        log_det = torch.zeros(h.shape[:-1], dtype=h.dtype, device=h.device)
        for layer in self.layers:
            z, layer_log_det = layer(z)
            log_det = log_det + layer_log_det
        return z, log_det

    @torch.jit.export
    def log_prob(self, h: Tensor) -> Tensor:
        """log p(h) = prior.log_prob(z) + log|dz/dh|, shape (...,)."""
        z, log_det = self.forward(h)
        return self.prior.log_prob(z) + log_det

    @torch.jit.unused
    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Sampling direction z (..., dim) -> (h (..., dim), log|dh/dz| (...,))."""
        if z.dim() < 1 or z.size(-1) != self.dim:
            raise ValueError(f"expected shape (..., {self.dim}), got {list(z.shape)}")
        h = z
        log_det = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
        for layer in reversed(self.layers):
            h, layer_log_det = layer.inverse(h)
            log_det = log_det + layer_log_det
        return h, log_det

    @torch.jit.unused
    def sample(
        self, num_samples: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draw h (num_samples, dim) with log p(h) (num_samples,); differentiable in parameters."""
        z = self.prior.sample(num_samples, generator=generator)
        h, log_det = self.inverse(z)
        return h, self.prior.log_prob(z) - log_det

    @torch.jit.unused
    def configure_inversion(
        self,
        num_bins: int | None = None,
        tol: float | None = None,
        max_iterations: int | None = None,
    ) -> None:
        """Set the bisection options of every layer that inverts numerically (None: keep)."""
        changes = {
            key: value
            for key, value in (
                ("num_bins", num_bins), ("tol", tol), ("max_iterations", max_iterations)
            )
            if value is not None
        }
        for layer in self.layers:
            settings = getattr(layer, "inversion", None)
            if isinstance(settings, InversionSettings):
                layer.inversion = replace(settings, **changes)
