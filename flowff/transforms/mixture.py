"""Smooth mixtures of bump CDFs on [0, 1] and on the circle (Koehler et al. 2021, Sec. 4).

Per scalar coordinate, with K components (weights w_k, concentrations a_k, locations b_k, ramp
scales alpha_k) and an identity share c in [C_MIN, 1):

* interval:  ``f(x) = (1 - c) sum_k w_k G_k(x) + c x`` with ``G_k`` the rescaled bump step of
  :func:`flowff.transforms.bumps.bump_cdf`. This is the convex mixture of K maps of Eq. 7 that
  share c. f(0) = 0, f(1) = 1, ``f' >= c > 0`` on all of R (outside the bumps' supports f is
  affine with slope c), C-infinity.
* circle:    ``f(x) = n + (1 - c) sum_k w_k H_k(r) + c r + s`` with ``n = floor(x)``, ``r = x - n``,
  ``H_k`` the wrapped bump CDF of :func:`flowff.transforms.bumps.wrapped_bump_cdf` and ``s`` a
  trainable rotation. f(x + 1) = f(x) + 1 on R and every derivative of f is periodic.

Wrapping: a_k >= 1 (support width 1/a_k <= 1) and b_k in [0, 1] put every bump's support inside
[-1/2, 3/2], so the shifts n in {-1, 0, 1} of the wrap are exact, and g_k(1) - g_k(0) >= 1/2, so
the interval normalisation cannot underflow (no floor needed).

The log-derivative is ``log(f')`` of the plain sum: every term is non-negative and bounded and
``f' >= c >= C_MIN``, so the sum neither underflows nor overflows and a log-sum-exp would only add
-inf bookkeeping (whose gradient is NaN when all components vanish) outside the supports.

Parameter layout along the last axis (``num_params = 4 K + 1``, plus 1 on the circle):
``[weight logits (K) | a (K) | b (K) | alpha (K) | c (1) | rotation (1, circle only)]``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowff.transforms.base import ElementwiseTransform
from flowff.transforms.bumps import (
    bounded_bump_steps,
    bounded_sigmoid_jet,
    bump_cdf,
    saturation_floor,
    wrapped_bump_cdf,
)
from flowff.transforms.ramps import check_beta

#: Lower bound of the identity share c: keeps f' >= C_MIN (finite log-det, bracketed roots).
C_MIN: float = 1e-6
#: Bump concentration a ranges over [1, A_MAX] (log-uniformly in the sigmoid of its parameter);
#: a >= 1 is what makes the three-shift circular wrap exact.
A_MAX: float = 1000.0
#: Ramp scale alpha ranges over [ALPHA_MIN, ALPHA_MAX] (the authors used sigmoid x 10).
ALPHA_MIN: float = 0.1
ALPHA_MAX: float = 10.0

#: Identity initialisation: the bump share 1 - c is chosen so that the density f' deviates from 1
#: by at most IDENTITY_DENSITY_TOLERANCE on [0, 1], and is at most IDENTITY_MAX_BUMP_SHARE.
IDENTITY_DENSITY_TOLERANCE: float = 1e-3
IDENTITY_MAX_BUMP_SHARE: float = 0.5


def _logit(p: float) -> float:
    """Inverse of the logistic function for p in (0, 1)."""
    return math.log(p) - math.log1p(-p)


class SmoothMixtureTransform(ElementwiseTransform):
    """C-infinity mixture of K bump CDFs on [0, 1] (``circular=False``) or on the circle.

    Args:
        num_components: number K of bump components, >= 1.
        beta: exponent of the C-infinity ramp exp(-1/(alpha x^beta)), 1 or 2 (hyper-parameter).
        circular: True for the circle version (with a trainable rotation).
        max_concentration: upper bound of the bump concentration a (support width >= 1/a, in
            units of the normalised coordinate); a smoothness knob: lower values forbid the very
            steep steps that a 1-2 fs MD step cannot resolve. At most A_MAX.
        min_identity_share: lower bound of the identity share c (default C_MIN), in
            [C_MIN, 0.5). Bumps have compact support, so between them f' = c: with c ~ 1e-6 a
            coordinate's density can fall by e^-14 per layer in a gap the data rarely visit, and
            importance weights there explode. A floor such as 0.01 bounds that (a defensive
            mixture with the identity).

    Shapes: ``forward(x (..., d), params (..., d, num_params))`` returns
    ``(y (..., d), log|dy/dx| (..., d))``.
    No analytic inverse (the flows package inverts it numerically).
    """

    def __init__(
        self,
        num_components: int = 8,
        beta: int = 1,
        circular: bool = False,
        max_concentration: float = A_MAX,
        min_identity_share: float = C_MIN,
    ) -> None:
        if num_components < 1:
            raise ValueError(f"num_components must be >= 1, got {num_components}")
        if not 1.0 < max_concentration <= A_MAX:
            raise ValueError(
                f"max_concentration must be in (1, {A_MAX:g}], got {max_concentration}"
            )
        if not C_MIN <= min_identity_share < 0.5:
            raise ValueError(
                f"min_identity_share must be in [{C_MIN:g}, 0.5), got {min_identity_share}"
            )
        check_beta(beta)
        num_params = 4 * num_components + 1 + (1 if circular else 0)
        super().__init__(num_params, circular, has_analytic_inverse=False)
        self.num_components = num_components
        self.beta = beta
        # Module attributes (not globals) so that TorchScript sees them.
        self.c_min = float(min_identity_share)
        self.max_concentration = float(max_concentration)
        self.log_a_max = math.log(max_concentration)
        self.alpha_min = ALPHA_MIN
        self.alpha_max = ALPHA_MAX
        self.t_min = saturation_floor(ALPHA_MAX, beta)
        # Evaluation points of the bump steps, x_p = x * uses_x[p] + offset[p] (non-persistent
        # buffers: cast by .to(), not in state dicts). Interval: x, 0, 1 (G = (g(x) - g(0)) /
        # (g(1) - g(0))). Circle: r - 1, r, r + 1, 0, 1 (H = g(r-1) + g(r) + g(r+1) - g(0) - g(1);
        # the anchor g(-1) of the wrap is exactly 0 because a >= 1 and b >= 0). Along dim -2 the
        # steps are then combined with ``value_signs`` and ``slope_mask``.
        if circular:
            uses_x, offset = [1.0, 1.0, 1.0, 0.0, 0.0], [-1.0, 0.0, 1.0, 0.0, 1.0]
            value_signs = [1.0, 1.0, 1.0, -1.0, -1.0]
        else:
            uses_x, offset, value_signs = [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1.0, -1.0, 0.0]
        as_tensor = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
        self.register_buffer("point_uses_x", as_tensor(uses_x), persistent=False)
        self.register_buffer("point_offset", as_tensor(offset), persistent=False)
        self.register_buffer("value_signs", as_tensor(value_signs).unsqueeze(-1),
                             persistent=False)
        self.register_buffer("slope_mask", as_tensor(uses_x).unsqueeze(-1), persistent=False)
        # d(f, f')/d(rotation) on the circle
        self.register_buffer("rotation_derivative", as_tensor([[1.0], [0.0]]), persistent=False)

    def constrained_params(
        self, params: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Map unconstrained ``params (..., d, num_params)`` to the mixture's parameters.

        Returns:
            ``(weights, a, b, alpha, c, one_minus_c)``: the first four of shape (..., d, K)
            (weights sum to 1, a in [1, max_concentration], b in [0, 1],
            alpha in [ALPHA_MIN, ALPHA_MAX]),
            the last two of shape (..., d, 1) (c in [min_identity_share, 1], computed without
            cancellation).
        """
        k = self.num_components
        weights = torch.softmax(params[..., 0:k], dim=-1)
        a = torch.exp(self.log_a_max * torch.sigmoid(params[..., k : 2 * k]))
        b = torch.sigmoid(params[..., 2 * k : 3 * k])
        alpha_span = self.alpha_max - self.alpha_min
        alpha = self.alpha_min + alpha_span * torch.sigmoid(params[..., 3 * k : 4 * k])
        c_logit = params[..., 4 * k : 4 * k + 1]
        c = self.c_min + (1.0 - self.c_min) * torch.sigmoid(c_logit)
        one_minus_c = (1.0 - self.c_min) * torch.sigmoid(-c_logit)
        return weights, a, b, alpha, c, one_minus_c

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """Map ``x`` (..., d) to ``(y, log|dy/dx|)``, each (..., d).

        All K components and all evaluation points (x and the normalising anchors, see
        ``__init__``) go through one broadcast bump evaluation (:func:`bounded_bump_steps`).
        """
        self.check_shapes(x, params)
        k = self.num_components
        logits, squashed, c_logit = params.split([k, 3 * k, params.size(-1) - 4 * k], dim=-1)
        weights = torch.softmax(logits, dim=-1)
        unit_a, b, unit_alpha = torch.sigmoid(squashed).unsqueeze(-2).split(k, dim=-1)
        a = torch.exp(self.log_a_max * unit_a)
        alpha = self.alpha_min + (self.alpha_max - self.alpha_min) * unit_alpha
        c_logit = c_logit.select(-1, 0)
        c = self.c_min + (1.0 - self.c_min) * torch.sigmoid(c_logit)
        one_minus_c = (1.0 - self.c_min) * torch.sigmoid(-c_logit)
        if self.circular:
            turns = torch.floor(x).detach()
            position = x - turns
        else:
            turns = x  # unused on the interval
            position = x
        uses_x = self.point_uses_x.to(x.dtype)
        offset = self.point_offset.to(x.dtype)
        points = torch.addcmul(offset, position.unsqueeze(-1), uses_x).unsqueeze(-1)
        steps, slopes = bounded_bump_steps(points, a, b, alpha, self.beta, self.t_min)
        # (..., d, P, K) -> (..., d, K): bump CDF numerators and slopes at x
        cdf = (steps * self.value_signs.to(x.dtype)).sum(dim=-2)
        density = (slopes * self.slope_mask.to(x.dtype)).sum(dim=-2)
        if not self.circular:
            # G = (g(x) - g(0)) / (g(1) - g(0)): fold 1 / (g(1) - g(0)) into the weights
            g_zero, g_one = steps.select(-2, 1), steps.select(-2, 2)
            weights = weights / (g_one - g_zero)
        mixed_cdf = (weights * cdf).sum(dim=-1)
        mixed_density = (weights * density).sum(dim=-1)
        y = one_minus_c * mixed_cdf + c * position
        if self.circular:
            y = y + turns + params[..., -1]
        derivative = one_minus_c * mixed_density + c
        return y, torch.log(derivative)

    @torch.jit.export
    def forward_with_derivatives(
        self, x: Tensor, params: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """:meth:`forward` plus the local derivatives that analytic forces need (no autograd).

        Args:
            x: (..., d); params: (..., d, num_params), as for :meth:`forward`.

        Returns:
            ``(y, log f', f', d log f'/dx, dy/dparams, d log f'/dparams)``: the first four of shape
            (..., d), the last two (..., d, num_params) (the map acts element-wise, so these are
            the only non-zero Jacobian entries). ``y`` and ``log f'`` equal :meth:`forward`'s to
            rounding. Derivatives w.r.t. every parameter, in the layout of ``params``.
        """
        self.check_shapes(x, params)
        k = self.num_components
        logits, squashed, tail = params.split([k, 3 * k, params.size(-1) - 4 * k], dim=-1)
        weights = torch.softmax(logits, dim=-1)
        unit = torch.sigmoid(squashed).unflatten(-1, [3, k]).movedim(-2, 0)  # (3, ..., d, K)
        unit_a, b, unit_alpha = unit.unbind(0)  # (..., d, K) each
        a = torch.exp(self.log_a_max * unit_a)
        inv_alpha = (self.alpha_min + (self.alpha_max - self.alpha_min) * unit_alpha).reciprocal()
        c_logit = tail[..., 0]
        sigmoid_c = torch.sigmoid(c_logit)
        sigmoid_minus_c = torch.sigmoid(-c_logit)
        c = self.c_min + (1.0 - self.c_min) * sigmoid_c  # (..., d)
        one_minus_c = (1.0 - self.c_min) * sigmoid_minus_c
        if self.circular:
            turns = torch.floor(x)  # (zero derivative: no detach needed)
            position = x - turns
        else:
            turns = x  # unused on the interval
            position = x
        # evaluation points first: (P, ..., d, 1), so that point sums add contiguous blocks
        point_shape = [-1] + [1] * (x.dim() + 1)
        points = torch.addcmul(self.point_offset.to(x.dtype).view(point_shape),
                               position.unsqueeze(-1),
                               self.point_uses_x.to(x.dtype).view(point_shape))
        scaled = a * (points - b)  # t - 1/2 = a (x_p - b), (P, ..., d, K)
        steps, d_sigma, d2_sigma, alpha_d_sigma, alpha_d2_sigma = bounded_sigmoid_jet(
            scaled + 0.5, inv_alpha, self.beta, self.t_min
        )  # the alpha derivatives are -alpha d/d alpha
        # With g = sigma(t), t = a (x - b) + 1/2: g' = a sigma', g'' = a^2 sigma'',
        # a dg/da = sigma' (t - 1/2), dg/db = -a sigma', a dg'/da = a (sigma' + sigma'' (t - 1/2)),
        # dg'/db = -a^2 sigma''. Sum the point quantities first, apply the factors after: the
        # (log a, b, alpha) derivatives are (1, -a, -1/alpha) * (sums of quantities 1..3 for
        # values, a * sums of 4..6 for slopes). (Quantity axes lead throughout: stacking along
        # the last axis is a slow strided copy.)
        quantities = torch.stack(
            [steps, d_sigma * scaled, d_sigma, alpha_d_sigma, d_sigma + d2_sigma * scaled,
             d2_sigma, alpha_d2_sigma], dim=1,
        )  # (P, 7, ..., d, K)
        if self.circular:
            # points r - 1, r, r + 1, 0, 1: H = sum of the first three - the anchors; H' likewise
            at_x = quantities[0] + quantities[1] + quantities[2]
            wrapped = at_x - quantities[3] - quantities[4]
            values = wrapped[0]
            slopes = a * at_x[2]
            curvatures = a * (a * at_x[5])
            d_values = wrapped[1:4]
            d_slopes = a * at_x[4:7]
        else:
            # points x, 0, 1: G = N / D (N = g(x) - g(0), D = g(1) - g(0)), dG = (dN - G dD) / D,
            # dG' = (dg'(x) - G' dD) / D
            at_x = quantities[0]
            numerator = at_x - quantities[1]
            span = quantities[2] - quantities[1]
            inv_span = span[0].reciprocal()
            values = numerator[0] * inv_span
            a_over_span = a * inv_span
            slopes = a_over_span * at_x[2]
            curvatures = a * (a_over_span * at_x[5])
            d_span = span[1:4]
            d_values = (numerator[1:4] - values * d_span) * inv_span
            d_slopes = a_over_span * at_x[4:7] - (slopes * inv_span) * d_span
        # mix the K components: sums of w_k (G, G', G''), (3, ..., d)
        mixed = (torch.stack([values, slopes, curvatures]) * weights).sum(-1)
        y = one_minus_c * mixed[0] + c * position
        derivative = one_minus_c * mixed[1] + c
        d_log_derivative_dx = one_minus_c * mixed[2] / derivative
        # d(f, f')/dparams, blocks in the layout of params; (1 - c) w_k d(log a, b, alpha)/d(raw)
        # with the factors (1, -a, -1/alpha) of the sums above
        share = one_minus_c.unsqueeze(-1) * weights
        factors = torch.stack([torch.full_like(a, self.log_a_max), -a,
                               (self.alpha_min - self.alpha_max) * inv_alpha])
        chain = unit * (1.0 - unit) * factors * share  # (3, ..., d, K)
        d_logits = share * (torch.stack([values, slopes]) - mixed[0:2].unsqueeze(-1))
        d_squashed = chain * torch.stack([d_values, d_slopes])  # (2, 3, ..., d, K)
        d_c_logit = ((1.0 - self.c_min) * sigmoid_c * sigmoid_minus_c) * (
            torch.stack([position, torch.ones_like(position)]) - mixed[0:2]
        )  # (2, ..., d)
        blocks = [
            d_logits.movedim(0, -2),
            d_squashed.movedim([0, 1], [-3, -2]).flatten(-2),
            d_c_logit.movedim(0, -1).unsqueeze(-1),
        ]
        if self.circular:
            y = y + turns + params[..., -1]
            blocks.append(self.rotation_derivative.to(x.dtype).expand(blocks[2].shape))
        jacobian = torch.cat(blocks, dim=-1)  # (..., d, 2, num_params)
        return (y, torch.log(derivative), derivative, d_log_derivative_dx,
                jacobian.select(-2, 0), jacobian.select(-2, 1) / derivative.unsqueeze(-1))

    def identity_params(self, dtype: torch.dtype | None = None) -> Tensor:
        """Unconstrained parameters, shape (num_params,), of a map close to the identity on [0, 1].

        Equal weights and bump centres at the bin centres (k + 1/2) / K. Interval: bumps of width
        2 / K, alpha = 1 (beta = 1) or 3 (beta = 2). Circle: bumps of width ~1 (a = 1.05), alpha
        = 0.6 (beta = 1) or 2.5 (beta = 2), zero rotation (shapes from a scan for the flattest
        summed density at K = 8). The summed bump density is then measured on a grid, and the
        bump share 1 - c is set so that ``|f' - 1| <= IDENTITY_DENSITY_TOLERANCE`` on [0, 1]
        (hence also ``|f(x) - x| <= IDENTITY_DENSITY_TOLERANCE``), capped at
        IDENTITY_MAX_BUMP_SHARE. For K = 8 that is ~0.003 on the interval and 0.5 on the circle.
        ``dtype`` defaults to ``torch.get_default_dtype()``.
        """
        k = self.num_components
        centres = (torch.arange(k, dtype=torch.float64) + 0.5) / k
        if self.circular:
            a_value = 1.05
            alpha_value = 0.6 if self.beta == 1 else 2.5
        else:
            a_value = max(1.05, k / 2.0)
            alpha_value = 1.0 if self.beta == 1 else 3.0
        if a_value >= self.max_concentration:  # a low cap: stay strictly inside (1, cap)
            a_value = math.sqrt(self.max_concentration)
        a = torch.full((k,), a_value, dtype=torch.float64)
        alpha = torch.full((k,), alpha_value, dtype=torch.float64)
        grid = torch.linspace(0.0, 1.0, 2001, dtype=torch.float64).unsqueeze(-1)
        if self.circular:
            _, density = wrapped_bump_cdf(grid, a, centres, alpha, self.beta)
        else:
            _, density = bump_cdf(grid, a, centres, alpha, self.beta)
        deviation = float((density.mean(dim=-1) - 1.0).abs().max())
        bump_share = min(
            IDENTITY_MAX_BUMP_SHARE, IDENTITY_DENSITY_TOLERANCE / max(deviation, 1e-12)
        )
        c_value = 1.0 - bump_share
        pieces = [
            torch.zeros(k, dtype=torch.float64),
            torch.full((k,), _logit(math.log(a_value) / self.log_a_max), dtype=torch.float64),
            torch.logit(centres),
            torch.full(
                (k,),
                _logit((alpha_value - ALPHA_MIN) / (ALPHA_MAX - ALPHA_MIN)),
                dtype=torch.float64,
            ),
            torch.tensor([_logit((c_value - self.c_min) / (1.0 - self.c_min))],
                         dtype=torch.float64),
        ]
        if self.circular:
            pieces.append(torch.zeros(1, dtype=torch.float64))
        return torch.cat(pieces).to(torch.get_default_dtype() if dtype is None else dtype)

    def extra_repr(self) -> str:
        return (
            f"num_components={self.num_components}, beta={self.beta}, circular={self.circular}, "
            f"max_concentration={self.max_concentration:g}, min_identity_share={self.c_min:g}"
        )
