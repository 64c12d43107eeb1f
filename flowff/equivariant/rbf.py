"""Normalised Gaussian radial basis functions with trainable means and bandwidths.

K_k(s) = softmax_k(-(s - mu_k)^2 / (2 gamma_k^2)): the Gaussian bumps of the paper's kernel flow,
normalised to sum to one (as the authors' code does), which keeps phi = R^T W K bounded by the
largest weight for every distance, including far outside the kernel range. The softmax form is
exact and overflow-free. Means and log-bandwidths are ``nn.Parameter`` when trainable and
buffers otherwise, so they follow ``.to()`` and are saved in ``state_dict`` either way.
"""

from __future__ import annotations

import torch
from torch import nn


class GaussianRBF(nn.Module):
    """M normalised Gaussian kernels on a scalar input; returns values and d/ds."""

    def __init__(
        self,
        means: torch.Tensor,
        bandwidths: torch.Tensor,
        trainable_means: bool = True,
        trainable_bandwidths: bool = True,
    ) -> None:
        super().__init__()
        means = torch.as_tensor(means).flatten()
        if not means.is_floating_point():
            means = means.to(torch.get_default_dtype())
        bandwidths = torch.as_tensor(bandwidths, dtype=means.dtype).flatten()
        if bandwidths.numel() == 1:
            bandwidths = bandwidths.expand_as(means).clone()
        if means.numel() < 1 or bandwidths.shape != means.shape:
            raise ValueError("need at least one kernel and one bandwidth per mean")
        if not bool((bandwidths > 0).all()):
            raise ValueError("RBF bandwidths must be positive")
        log_bw = bandwidths.log()
        if trainable_means:
            self.means = nn.Parameter(means.clone())
        else:
            self.register_buffer("means", means.clone())
        if trainable_bandwidths:
            self.log_bandwidths = nn.Parameter(log_bw)
        else:
            self.register_buffer("log_bandwidths", log_bw)

    @property
    def n_kernels(self) -> int:
        """Number of kernels M."""
        return int(self.means.shape[0])

    def forward(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Kernels K (..., M) and their derivatives dK/ds (..., M) at inputs s (...)."""
        inv_var = torch.exp(-2.0 * self.log_bandwidths)
        diff = s.unsqueeze(-1) - self.means
        logits = -0.5 * diff * diff * inv_var
        k = torch.softmax(logits, dim=-1)
        dlogits = -diff * inv_var
        dk = k * (dlogits - (k * dlogits).sum(dim=-1, keepdim=True))
        return k, dk

    def contract(self, s: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """K(s) @ c and dK(s)/ds @ c for inputs s (...) and coefficients c (M,) -> (...), (...).

        Same values as ``forward`` followed by ``@ c``, computed with two matrix products over
        the kernel axis instead of a dozen element-wise passes: the logits are
        [s^2, s, 1] @ Q, and with E = exp(logits - max), a_k = (mu_k - s) / gamma_k^2,
        K @ c = sum E c / Z,  dK @ c = sum E a c / Z - (sum E a / Z)(sum E c / Z).
        """
        inv_var = torch.exp(-2.0 * self.log_bandwidths)
        mu = self.means
        q = torch.stack([-0.5 * inv_var, mu * inv_var, -0.5 * mu * mu * inv_var])  # (3, M)
        feats = torch.stack([s * s, s, torch.ones_like(s)], dim=-1)
        logits = feats @ q
        e = torch.exp(logits - torch.amax(logits, dim=-1, keepdim=True).detach())
        mi = mu * inv_var
        basis = torch.stack([torch.ones_like(c), c, inv_var, mi, c * inv_var, c * mi], dim=-1)
        sums = e @ basis  # (..., 6)
        z = sums[..., 0]
        kc = sums[..., 1] / z
        ka = (sums[..., 3] - s * sums[..., 2]) / z
        kac = (sums[..., 5] - s * sums[..., 4]) / z
        return kc, kac - ka * kc


def equispaced(n: int, low: float, high: float) -> torch.Tensor:
    """n equispaced points in [low, high]."""
    return torch.linspace(low, high, n, dtype=torch.get_default_dtype())


def concentrated(
    n: int, low: float, centre: float, high: float, power: float = 2.0
) -> torch.Tensor:
    """n points in [low, high], dense around ``centre`` and spreading out towards the ends."""
    if not low < centre < high:
        raise ValueError("need low < centre < high")
    u = torch.linspace(-1.0, 1.0, n, dtype=torch.get_default_dtype())
    spread = u.abs() ** power
    return torch.where(u < 0, centre - (centre - low) * spread, centre + (high - centre) * spread)


def local_spacing(points: torch.Tensor, floor: float) -> torch.Tensor:
    """Mean distance of each point to its neighbours (sorted input), at least ``floor``."""
    gaps = points[1:] - points[:-1]
    left = torch.cat([gaps[:1], gaps])
    right = torch.cat([gaps, gaps[-1:]])
    return torch.clamp(0.5 * (left + right), min=floor)
