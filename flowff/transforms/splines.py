"""Rational-quadratic spline transforms (Durkan et al. 2019), the C^1 baseline of the paper.

Written here in plain, TorchScript-scriptable torch because nflows/zuko are neither dependencies
nor scriptable (TorchScript export for OpenMM is required).

A monotone rational-quadratic spline with K bins maps [0, 1] onto [0, 1] through knots
(x_k, y_k), k = 0..K, with positive knot derivatives d_k. It is C^1 but not C^2: its second
derivative jumps at the knots (the point of the paper's comparison).

* interval (``circular=False``): f(0) = 0, f(1) = 1; boundary derivatives d_0, d_K are either
  fixed to 1 or learned. Outside [0, 1] f continues linearly with the boundary slopes,
  ``f(x) = d_0 x`` for x < 0 and ``f(x) = 1 + d_K (x - 1)`` for x > 1, which keeps f C^1 and
  strictly monotone on R.
* circle (``circular=True``): d_0 = d_K (one shared parameter) makes the density periodic;
  ``f(x) = n + S(x - n) + s`` with ``n = floor(x)`` and a trainable rotation ``s``, so
  f(x + 1) = f(x) + 1 on R.

Parameter layout along the last axis: ``[width logits (K) | height logits (K) | derivatives |
rotation (circle only)]`` with K + 1 derivatives (interval, learned boundaries), K - 1 (interval,
unit boundaries) or K (circle: K - 1 interior and 1 shared boundary). Dimensionless.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional

from flowff.transforms.base import ElementwiseTransform

#: Smallest bin width and height (fraction of [0, 1]); keeps the spline invertible in floats.
MIN_BIN_SIZE: float = 1e-3
#: Smallest knot derivative.
MIN_DERIVATIVE: float = 1e-3


def _knots(logits: Tensor, min_size: float) -> Tensor:
    """Knot positions (..., K + 1), exactly 0 to 1, bins >= min_size, from logits (..., K)."""
    num_bins = logits.shape[-1]
    sizes = min_size + (1.0 - min_size * num_bins) * torch.softmax(logits, dim=-1)
    interior = torch.cumsum(sizes, dim=-1)[..., :-1]
    return torch.cat(
        [torch.zeros_like(interior[..., :1]), interior, torch.ones_like(interior[..., :1])], dim=-1
    )


def _select_bin(values: Tensor, knots: Tensor) -> Tensor:
    """Index (..., 1) of the bin of ``values`` (...), in 0..K-1, given knots (..., K + 1)."""
    interior = knots[..., 1:-1]
    return torch.sum((values.unsqueeze(-1) >= interior).long(), dim=-1, keepdim=True)


def _gather(tensor: Tensor, index: Tensor) -> Tensor:
    return torch.gather(tensor, -1, index).squeeze(-1)


def rational_quadratic_spline(
    x: Tensor, x_knots: Tensor, y_knots: Tensor, derivatives: Tensor, inverse: bool = False
) -> tuple[Tensor, Tensor]:
    """Monotone rational-quadratic spline on [0, 1] and its inverse.

    Args:
        x: points in [0, 1] (the outputs when ``inverse``), shape (...).
        x_knots: increasing knot abscissae (..., K + 1) from 0 to 1.
        y_knots: increasing knot ordinates (..., K + 1) from 0 to 1.
        derivatives: knot derivatives (..., K + 1), positive.
        inverse: evaluate the inverse map instead.

    Returns:
        ``(y, log|dy/dx|)`` (forward) or ``(x, log|dx/dy|)`` (inverse), each of shape (...).
    """
    widths = x_knots[..., 1:] - x_knots[..., :-1]
    heights = y_knots[..., 1:] - y_knots[..., :-1]
    index = _select_bin(x, y_knots if inverse else x_knots)
    x_k = _gather(x_knots, index)
    y_k = _gather(y_knots, index)
    width = _gather(widths, index)
    height = _gather(heights, index)
    d_left = _gather(derivatives, index)
    d_right = _gather(derivatives, index + 1)
    slope = height / width
    curvature = d_right + d_left - 2.0 * slope
    if inverse:
        offset = x - y_k
        qa = height * (slope - d_left) + offset * curvature
        qb = height * d_left - offset * curvature
        qc = -slope * offset
        discriminant = (qb * qb - 4.0 * qa * qc).clamp(min=0.0)
        theta = (2.0 * qc) / (-qb - torch.sqrt(discriminant))
    else:
        theta = (x - x_k) / width
    one_minus = 1.0 - theta
    mixed = theta * one_minus
    denominator = slope + curvature * mixed
    derivative_numerator = (slope * slope) * (
        d_right * theta * theta + 2.0 * slope * mixed + d_left * one_minus * one_minus
    )
    log_derivative = torch.log(derivative_numerator) - 2.0 * torch.log(denominator)
    if inverse:
        return x_k + theta * width, -log_derivative
    y = y_k + height * (slope * theta * theta + d_left * mixed) / denominator
    return y, log_derivative


class RationalQuadraticSplineTransform(ElementwiseTransform):
    """Rational-quadratic spline with K bins on [0, 1] (``circular=False``) or on the circle.

    Args:
        num_bins: number K of bins, >= 2.
        circular: True for the periodic version (shared boundary derivative, rotation).
        learn_boundary_derivatives: interval only; False fixes d_0 = d_K = 1.

    Shapes: ``forward(x (..., d), params (..., d, num_params))`` returns
    ``(y (..., d), log|dy/dx| (..., d))``;
    ``analytic_inverse(y, params) -> (x, log|dx/dy|)`` likewise.
    """

    def __init__(
        self, num_bins: int = 8, circular: bool = False, learn_boundary_derivatives: bool = False
    ) -> None:
        if num_bins < 2:
            raise ValueError(f"num_bins must be >= 2, got {num_bins}")
        if circular and learn_boundary_derivatives:
            raise ValueError(
                "learn_boundary_derivatives applies to the interval spline only; the circular "
                "spline always learns one shared boundary derivative"
            )
        if circular:
            num_derivatives = num_bins
        elif learn_boundary_derivatives:
            num_derivatives = num_bins + 1
        else:
            num_derivatives = num_bins - 1
        num_params = 2 * num_bins + num_derivatives + (1 if circular else 0)
        super().__init__(num_params, circular, has_analytic_inverse=True)
        self.num_bins = num_bins
        self.num_derivatives = num_derivatives
        self.learn_boundary_derivatives = learn_boundary_derivatives
        # Module attributes (not globals) so that TorchScript sees them.
        self.min_bin_size = MIN_BIN_SIZE
        self.min_derivative = MIN_DERIVATIVE

    def spline_params(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Knot abscissae, ordinates and derivatives, each (..., d, K + 1), from ``params``."""
        k = self.num_bins
        x_knots = _knots(params[..., 0:k], self.min_bin_size)
        y_knots = _knots(params[..., k : 2 * k], self.min_bin_size)
        raw = params[..., 2 * k : 2 * k + self.num_derivatives]
        learned = self.min_derivative + functional.softplus(raw)
        if self.circular:
            boundary = learned[..., -1:]
            derivatives = torch.cat([boundary, learned[..., :-1], boundary], dim=-1)
        elif self.learn_boundary_derivatives:
            derivatives = learned
        else:
            unit = torch.ones_like(learned[..., :1])
            derivatives = torch.cat([unit, learned, unit], dim=-1)
        return x_knots, y_knots, derivatives

    def _evaluate(self, x: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        self.check_shapes(x, params)
        x_knots, y_knots, derivatives = self.spline_params(params)
        if self.circular:
            shifted = x - params[..., -1] if inverse else x
            turns = torch.floor(shifted).detach()
            value, log_derivative = rational_quadratic_spline(
                shifted - turns, x_knots, y_knots, derivatives, inverse
            )
            value = value + turns
            if not inverse:
                value = value + params[..., -1]
            return value, log_derivative
        inside = (x >= 0.0) & (x <= 1.0)
        clamped = x.clamp(min=0.0, max=1.0)
        value, log_derivative = rational_quadratic_spline(
            clamped, x_knots, y_knots, derivatives, inverse
        )
        d_left = derivatives[..., 0]
        d_right = derivatives[..., -1]
        if inverse:
            below = x / d_left
            above = 1.0 + (x - 1.0) / d_right
            log_below = -torch.log(d_left)
            log_above = -torch.log(d_right)
        else:
            below = x * d_left
            above = 1.0 + (x - 1.0) * d_right
            log_below = torch.log(d_left)
            log_above = torch.log(d_right)
        outside_value = torch.where(x < 0.0, below, above)
        outside_log = torch.where(x < 0.0, log_below, log_above)
        return (
            torch.where(inside, value, outside_value),
            torch.where(inside, log_derivative, outside_log),
        )

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """Map ``x`` (..., d) to ``(y, log|dy/dx|)``, each (..., d)."""
        return self._evaluate(x, params, inverse=False)

    @torch.jit.export
    def analytic_inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """Map ``y`` (..., d) back to ``(x, log|dx/dy|)``, each (..., d)."""
        return self._evaluate(y, params, inverse=True)

    def identity_params(self, dtype: torch.dtype | None = None) -> Tensor:
        """Unconstrained parameters, shape (num_params,), of the identity map (exact to rounding).

        Equal bins and unit knot derivatives make every bin linear with slope 1. ``dtype``
        defaults to ``torch.get_default_dtype()``.
        """
        unit_derivative = math.log(math.expm1(1.0 - MIN_DERIVATIVE))
        pieces = [
            torch.zeros(2 * self.num_bins, dtype=dtype),
            torch.full((self.num_derivatives,), unit_derivative, dtype=dtype),
        ]
        if self.circular:
            pieces.append(torch.zeros(1, dtype=dtype))
        return torch.cat(pieces)

    def extra_repr(self) -> str:
        return (
            f"num_bins={self.num_bins}, circular={self.circular}, "
            f"learn_boundary_derivatives={self.learn_boundary_derivatives}"
        )
