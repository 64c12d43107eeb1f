"""Mixture of truncated-Gaussian CDFs on [0, 1]: a C-infinity interval transform whose energy
-log f' is a log-sum-exp of parabolas (for stiff, nearly harmonic coordinates such as bonds).

Per scalar coordinate, with K components (weights w_k, means mu_k in (0, 1), widths sigma_k):

    f(x) = sum_k w_k (Phi(u_k) - Phi(a_k)) / Z_k,   u_k = (x - mu_k) / sigma_k,
    a_k = -mu_k / sigma_k,  b_k = (1 - mu_k) / sigma_k,  Z_k = Phi(b_k) - Phi(a_k),

so f(0) = 0, f(1) = 1, f' > 0 on all of R. Why not the bump mixture for bonds: a bump's support
ends where the data end, and -log f' bends sharply there (kinks of 1e6-1e8 kT/nm^2 along a bond,
results/alanine_dipeptide/stage5_narrow_intervals/), which a 1-2 fs MD step cannot resolve. Here
the curvature of -log f' is bounded by about 1/sigma_min^2 everywhere, and the energy keeps rising
quadratically beyond the data instead of resting on a floor. With K = 1 the energy along the
coordinate is exactly harmonic, with a centre and stiffness that the conditioner sets.

Parameter layout along the last axis (``num_params = 3 K``):
``[weight logits (K) | mean (K, sigmoid -> (0, 1)) | width (K, log-uniform sigmoid ->
[min_width, max_width])]``. Dimensionless (normalised coordinates). No analytic inverse (the
flows package inverts it by bisection; the means stay in (0, 1) so Z_k >= ~1/2 when narrow).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowff.transforms.base import ElementwiseTransform

#: Default width range of the components (normalised units). On the default bond interval
#: (0.25 nm) MIN_WIDTH is 1.25e-3 nm, a curvature of at most 6.4e5 kT/nm^2 per component;
#: MAX_WIDTH makes the identity initialisation possible (a Gaussian this wide is flat on [0, 1]).
MIN_WIDTH: float = 5e-3
MAX_WIDTH: float = 10.0



def _log_normal_density(u: Tensor) -> Tensor:
    return -0.5 * u * u - 0.5 * math.log(2.0 * math.pi)


class GaussianMixtureTransform(ElementwiseTransform):
    """C-infinity mixture of K truncated-Gaussian CDFs on [0, 1] (interval coordinates only).

    Args:
        num_components: number K of Gaussian components, >= 1.
        min_width, max_width: range of the component widths sigma (normalised units);
            min_width bounds the stiffness (curvature of -log f' <~ 1/min_width^2).
        circular: must be False (there is no circular version).

    Shapes: ``forward(x (..., d), params (..., d, 3 K))`` returns
    ``(y (..., d), log|dy/dx| (..., d))``.
    """

    def __init__(
        self,
        num_components: int = 1,
        min_width: float = MIN_WIDTH,
        max_width: float = MAX_WIDTH,
        circular: bool = False,
    ) -> None:
        if circular:
            raise ValueError("the Gaussian mixture transform acts on intervals only; use the "
                             "smooth bump mixture on the circle")
        if num_components < 1:
            raise ValueError(f"num_components must be >= 1, got {num_components}")
        if not 0.0 < min_width < max_width:
            raise ValueError(f"need 0 < min_width < max_width, got {min_width}, {max_width}")
        super().__init__(3 * num_components, circular=False, has_analytic_inverse=False)
        self.num_components = num_components
        self.min_width = float(min_width)
        self.max_width = float(max_width)
        self.log_min_width = math.log(min_width)
        self.log_width_span = math.log(max_width) - math.log(min_width)

    def _unpack(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(log weights, means, log widths)``, each (..., d, K), from ``params``."""
        k = self.num_components
        logits, mean_raw, width_raw = params.split([k, k, k], dim=-1)
        log_widths = self.log_min_width + self.log_width_span * torch.sigmoid(width_raw)
        return torch.log_softmax(logits, dim=-1), torch.sigmoid(mean_raw), log_widths

    def constrained_params(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(weights, means, widths)``, each (..., d, K), from ``params (..., d, 3 K)``."""
        log_weights, means, log_widths = self._unpack(params)
        return torch.exp(log_weights), means, torch.exp(log_widths)

    def _components(self, x: Tensor, params: Tensor) -> tuple[
        Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor
    ]:
        """Per component (..., d, K): log w, mean, log width, width, u, a, b, Z, the normalised
        CDF G and log(w g) (g = G')."""
        log_weights, means, log_widths = self._unpack(params)
        widths = torch.exp(log_widths)
        u = (x.unsqueeze(-1) - means) / widths
        a = -means / widths
        b = (1.0 - means) / widths
        # a <= 0 <= b: both halves are non-negative, no cancellation when the Gaussian is narrow
        z = (torch.special.ndtr(b) - 0.5) + (0.5 - torch.special.ndtr(a))
        cdf = (torch.special.ndtr(u) - torch.special.ndtr(a)) / z
        log_terms = log_weights + _log_normal_density(u) - log_widths - torch.log(z)
        return log_weights, means, log_widths, widths, u, a, b, z, cdf, log_terms

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """Map ``x`` (..., d) to ``(y, log|dy/dx|)``, each (..., d)."""
        self.check_shapes(x, params)
        log_weights, _, _, _, _, _, _, _, cdf, log_terms = self._components(x, params)
        y = (torch.exp(log_weights) * cdf).sum(dim=-1)
        return y, torch.logsumexp(log_terms, dim=-1)

    @torch.jit.export
    def forward_with_derivatives(
        self, x: Tensor, params: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """:meth:`forward` plus local derivatives, without autograd (for analytic MD forces).

        Returns ``(y, log f', f', d log f'/dx, dy/dparams, d log f'/dparams)``: the first four
        (..., d), the last two (..., d, 3 K) in the layout of ``params``.
        """
        self.check_shapes(x, params)
        log_weights, means, log_widths, widths, u, a, b, z, cdf, log_terms = self._components(
            x, params)
        weights = torch.exp(log_weights)
        phi_u, phi_a, phi_b = (torch.exp(_log_normal_density(v)) for v in (u, a, b))
        y = (weights * cdf).sum(dim=-1)
        log_slope = torch.logsumexp(log_terms, dim=-1)
        responsibility = torch.exp(log_terms - log_slope.unsqueeze(-1))  # w_k g_k / f'
        d_log_slope_dx = -(responsibility * u / widths).sum(dim=-1)
        sigma_z = widths * z
        # d/d mean and d/d width of the component CDFs G and log-densities log g
        d_cdf_mean = ((phi_a - phi_u) - cdf * (phi_a - phi_b)) / sigma_z
        d_cdf_width = ((a * phi_a - u * phi_u) - cdf * (a * phi_a - b * phi_b)) / sigma_z
        d_log_g_mean = u / widths - (phi_a - phi_b) / sigma_z
        d_log_g_width = (u * u - 1.0) / widths - (a * phi_a - b * phi_b) / sigma_z
        # chain rule to the raw parameters
        mean_chain = means * (1.0 - means)
        unit_width = (log_widths - self.log_min_width) / self.log_width_span
        width_chain = widths * self.log_width_span * unit_width * (1.0 - unit_width)
        dy = torch.cat([weights * (cdf - y.unsqueeze(-1)),
                        weights * d_cdf_mean * mean_chain,
                        weights * d_cdf_width * width_chain], dim=-1)
        d_log_slope = torch.cat([responsibility - weights,
                                 responsibility * d_log_g_mean * mean_chain,
                                 responsibility * d_log_g_width * width_chain], dim=-1)
        return y, log_slope, torch.exp(log_slope), d_log_slope_dx, dy, d_log_slope

    def identity_params(self, dtype: torch.dtype | None = None) -> Tensor:
        """Equal weights, means 1/2, widths near max_width: |f' - 1| <~ 1/(8 max_width^2) on
        [0, 1] (1.3e-3 for the default), shape (3 K,)."""
        k = self.num_components
        params = torch.cat([torch.zeros(2 * k, dtype=torch.float64),
                            torch.full((k,), 8.0, dtype=torch.float64)])
        return params.to(torch.get_default_dtype() if dtype is None else dtype)

    def extra_repr(self) -> str:
        return (f"num_components={self.num_components}, min_width={self.min_width:g}, "
                f"max_width={self.max_width:g}")
