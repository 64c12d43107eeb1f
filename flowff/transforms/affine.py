"""Affine element-wise transform on R, for RealNVP-style baselines on unbounded domains only.

``f(x) = exp(s) x + t`` with unconstrained log-scale ``s`` and shift ``t``. It does not map [0, 1]
onto itself and must not be used for interval or circular coordinates: rescaling any affine map
to fix 0 and 1 gives the identity (Koehler et al. 2021, Sec. 4), so on [0, 1] use
:class:`~flowff.transforms.mixture.SmoothMixtureTransform` or the spline instead.
Dimensionless.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowff.transforms.base import ElementwiseTransform


class AffineTransform(ElementwiseTransform):
    """``y = exp(s) x + t`` element-wise on R; params (..., d, 2) are ``[s, t]``.

    ``circular`` is always False; the inverse is analytic.
    """

    def __init__(self) -> None:
        super().__init__(num_params=2, circular=False, has_analytic_inverse=True)

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """Map ``x`` (..., d) to ``(y, log|dy/dx|)``, each (..., d)."""
        self.check_shapes(x, params)
        log_scale = params[..., 0]
        return torch.exp(log_scale) * x + params[..., 1], log_scale

    @torch.jit.export
    def analytic_inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """Map ``y`` (..., d) back to ``(x, log|dx/dy|)``, each (..., d)."""
        self.check_shapes(y, params)
        log_scale = params[..., 0]
        return (y - params[..., 1]) * torch.exp(-log_scale), -log_scale

    def identity_params(self, dtype: torch.dtype | None = None) -> Tensor:
        """Zeros, shape (2,): unit scale and no shift (the exact identity); ``dtype`` as torch's."""
        return torch.zeros(2, dtype=dtype)
