"""Generalized sigmoids and unimodal smooth bump CDFs (Koehler et al. 2021, Sec. 4, Eqs. 6-7).

* ``sigma[rho](t) = rho(t) / (rho(t) + rho(1 - t))`` (Eq. 6), a smooth step from 0 (t <= 0) to
  1 (t >= 1) whose derivative is a bump supported on [0, 1] with maximum at t = 1/2. For the
  C-infinity ramp it is evaluated as ``logistic(log rho(t) - log rho(1 - t))``, which never divides
  by an underflowed ``rho``.
* ``g(x) = sigma(a (x - b) + 1/2)`` steps from 0 to 1 on the support
  ``[b - 1/(2a), b + 1/(2a)]``, and ``G(x) = (g(x) - g(0)) / (g(1) - g(0))`` is its restriction
  rescaled to G(0) = 0, G(1) = 1 (the bump part of Eq. 7; the identity share ``c x`` is added by
  the mixture).
* the periodic version ``H(x) = sum_n g(x + n) - g(n)`` for x in [0, 1] wraps the bump onto the
  circle: H(0) = 0, H(1) = 1 and H' is periodic with all its derivatives.

Precondition (guaranteed by :mod:`flowff.transforms.mixture`'s parameter map, not re-checked
here for speed): ``a >= 1`` and ``0 <= b <= 1``. Then g(0) <= g(b) = 1/2 <= g(1), the support
has half-width ``1/(2a) <= 1/2``, so g(1) = 1 when b <= 1/2 and g(0) = 0 when b >= 1/2. Hence
``g(1) - g(0) >= 1/2``: the normalisation never underflows and no floor is needed.
The same bounds confine the support to [-1/2, 3/2], so the shifts n in {-1, 0, 1} are all that
the wrap needs (every other shift contributes exactly 0).

All functions return values together with their analytic derivative d/dx (no autograd inside);
both are finite with finite derivatives of every order on all of R in float32 and float64.
Units: dimensionless.

Fast path. :func:`bounded_bump_steps` evaluates g and g' of K bumps at P points with one
broadcast expression (what the mixture's forward uses, and MD evaluates at every step). It relies
on a known upper bound ``alpha <= alpha_max`` of the ramp scale to replace the masks of
:func:`generalized_sigmoid` by a single clamp of t to ``[t_min, 1 - t_min]``
(:func:`saturation_floor`): at t_min the log-ratio u is below -1000 for every admissible alpha,
so sigmoid(u) is exactly 0 (or, at 1 - t_min, exactly 1) and its derivative exactly 0 in float32
and float64. Every clamped point therefore gets exactly the saturated value, every point inside
gets the same expression as :func:`generalized_sigmoid`, and all derivatives stay finite
(1/t is at most 1/t_min). The only difference from :func:`generalized_sigmoid`: points with
745 < |u| <= 1000 return sigmoid(u) itself (below 1e-323) instead of an exact 0.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowff.transforms.ramps import LOG_UNDERFLOW, exp_ramp_log_ratio, integer_power

#: Shifts n = -WRAP_REACH..WRAP_REACH of the circular wrap H(x) = sum_n g(x + n) - g(n); one
#: shift on each side is exact for a >= 1, 0 <= b <= 1 (support inside [-1/2, 3/2]).
WRAP_REACH: int = 1

#: The clamped log-ratio at t_min is below -SATURATED_LOG_RATIO (sigmoid exactly 0 in float64).
SATURATED_LOG_RATIO: float = 1000.0


def generalized_sigmoid(
    t: Tensor, alpha: Tensor, beta: int = 1, log_underflow: float = LOG_UNDERFLOW
) -> tuple[Tensor, Tensor]:
    """Generalized sigmoid of the C-infinity ramp (Eq. 6) and its derivative.

    Args:
        t: points, any shape.
        alpha: ramp scale > 0, broadcastable to ``t``.
        beta: ramp exponent, 1 or 2.
        log_underflow: saturation threshold on ``|u|`` (default: float64 underflow).

    Returns:
        ``(sigma(t), dsigma/dt)``: 0 and 0 for t <= 0, 1 and 0 for t >= 1; the C-infinity smooth
        step in between. Exactly saturated (value 0/1, derivative 0) where ``|u| > log_underflow``
        with ``u = log rho(t) - log rho(1 - t)``, i.e. where the exact values differ from the
        saturated ones by less than the smallest float64.
    """
    t, alpha = torch.broadcast_tensors(t, alpha)
    with torch.no_grad():
        open_interval = (t > 0) & (t < 1)
        t_probe = torch.where(open_interval, t, torch.full_like(t, 0.5))
        u_probe, _ = exp_ramp_log_ratio(t_probe, alpha, beta)
        inside = open_interval & (u_probe.abs() <= log_underflow)
    t_safe = torch.where(inside, t, torch.full_like(t, 0.5))
    u, du = exp_ramp_log_ratio(t_safe, alpha, beta)
    rising = torch.sigmoid(u)
    falling = torch.sigmoid(-u)
    # 1 - sigmoid(-u) on the upper half keeps autograd derivatives accurate where sigmoid(u)
    # rounds to 1 (its backward would use 1 - sigmoid(u) = 0).
    value_inside = torch.where(u <= 0, rising, 1.0 - falling)
    derivative_inside = rising * falling * du
    saturated = (t > 0.5).to(t.dtype)
    value = torch.where(inside, value_inside, saturated)
    derivative = torch.where(inside, derivative_inside, torch.zeros_like(derivative_inside))
    return value, derivative


def monomial_generalized_sigmoid(t: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Generalized sigmoid of the monomial ramp, ``t^k / (t^k + (1 - t)^k)``, and its derivative.

    The denominator is >= 2^(1-k) on [0, 1], so the direct rational form is stable. The result is
    C^(k-1) on R (0 below 0, 1 above 1).

    Args:
        t: points, any shape.
        k: integer order >= 1.

    Returns:
        ``(sigma(t), dsigma/dt)``, shape of ``t``.
    """
    if k < 1:
        raise ValueError(f"monomial ramp order k must be >= 1, got {k}")
    clamped = t.clamp(min=0.0, max=1.0)
    rising = integer_power(clamped, k)
    falling = integer_power(1.0 - clamped, k)
    denominator = rising + falling
    value = rising / denominator
    derivative_inside = (
        k * integer_power(clamped * (1.0 - clamped), k - 1) / (denominator * denominator)
    )
    open_interval = (t > 0) & (t < 1)
    derivative = torch.where(open_interval, derivative_inside, torch.zeros_like(t))
    return value, derivative


def bump_step(x: Tensor, a: Tensor, b: Tensor, alpha: Tensor, beta: int) -> tuple[Tensor, Tensor]:
    """``g(x) = sigma(a (x - b) + 1/2)`` and ``dg/dx``, a smooth step on [b - 1/(2a), b + 1/(2a)].

    Args:
        x: points, any shape; ``a`` (concentration > 0), ``b`` (location), ``alpha`` (ramp scale)
            broadcastable to ``x``.
        beta: ramp exponent, 1 or 2.

    Returns:
        ``(g(x), g'(x))`` of the broadcast shape.
    """
    value, derivative = generalized_sigmoid(a * (x - b) + 0.5, alpha, beta)
    return value, a * derivative


def bump_cdf(x: Tensor, a: Tensor, b: Tensor, alpha: Tensor, beta: int) -> tuple[Tensor, Tensor]:
    """Rescaled bump step ``G(x) = (g(x) - g(0)) / (g(1) - g(0))`` and ``G'(x)`` on all of R.

    G(0) = 0, G(1) = 1, G' >= 0 is a C-infinity bump; G is constant outside the support of g.

    Args:
        x: points, any shape; ``a >= 1``, ``0 <= b <= 1``, ``alpha > 0`` broadcastable to ``x``
            (see the module docstring for why these bounds make ``g(1) - g(0) >= 1/2``).
        beta: ramp exponent, 1 or 2.

    Returns:
        ``(G(x), G'(x))`` of the broadcast shape.
    """
    g, dg = bump_step(x, a, b, alpha, beta)
    g0, _ = bump_step(torch.zeros_like(b), a, b, alpha, beta)
    g1, _ = bump_step(torch.ones_like(b), a, b, alpha, beta)
    scale = 1.0 / (g1 - g0)
    return (g - g0) * scale, dg * scale


def wrapped_bump_cdf(
    x: Tensor, a: Tensor, b: Tensor, alpha: Tensor, beta: int, reach: int = WRAP_REACH
) -> tuple[Tensor, Tensor]:
    """Periodic bump CDF ``H(x) = sum_n g(x + n) - g(n)`` and ``H'(x)`` for x in [0, 1].

    H(0) = 0, H(1) = 1, and H' (the bump wrapped onto the circle) is periodic with all its
    derivatives, so ``floor(x) + H(x - floor(x))`` is a C-infinity circle diffeomorphism lift.

    Args:
        x: points in [0, 1], any shape; ``a >= 1``, ``0 <= b <= 1``, ``alpha > 0`` broadcastable
            to ``x`` (the bounds make the three shifts exact, see the module docstring).
        beta: ramp exponent, 1 or 2.
        reach: shifts n run over -reach..reach (1 is exact under the bounds above).

    Returns:
        ``(H(x), H'(x))`` of the broadcast shape.
    """
    value = torch.zeros_like(x)
    derivative = torch.zeros_like(x)
    for shift in range(-reach, reach + 1):
        g, dg = bump_step(x + shift, a, b, alpha, beta)
        g_anchor, _ = bump_step(torch.full_like(b, float(shift)), a, b, alpha, beta)
        value = value + (g - g_anchor)
        derivative = derivative + dg
    return value, derivative


def saturation_floor(alpha_max: float, beta: int) -> float:
    """The clamp t_min of :func:`bounded_bump_steps` for ramp scales ``alpha <= alpha_max``.

    ``t_min = (2 (1 + SATURATED_LOG_RATIO alpha_max))^(-1/beta)``, so that
    ``u(t_min) = (1 / alpha) ((1 - t_min)^-beta - t_min^-beta) < -SATURATED_LOG_RATIO``.
    """
    if not (alpha_max > 0 and math.isfinite(alpha_max)):
        raise ValueError(f"alpha_max must be positive and finite, got {alpha_max}")
    return (2.0 * (1.0 + SATURATED_LOG_RATIO * alpha_max)) ** (-1.0 / beta)


def bounded_bump_steps(
    points: Tensor, a: Tensor, b: Tensor, alpha: Tensor, beta: int, t_min: float
) -> tuple[Tensor, Tensor]:
    """``g(x) = sigma(a (x - b) + 1/2)`` and ``g'(x)`` for many points and bumps at once.

    Args:
        points: x, shape (..., P, 1) (P points per element).
        a, b, alpha: bump parameters, shape (..., 1, K), with ``alpha <= alpha_max``.
        beta: ramp exponent, 1 or 2.
        t_min: ``saturation_floor(alpha_max, beta)``.

    Returns:
        ``(g, g')``, each (..., P, K); equal to :func:`bump_step` (see the module docstring).
    """
    t = (a * (points - b) + 0.5).clamp(t_min, 1.0 - t_min)
    inv_t = t.reciprocal()
    inv_s = (1.0 - t).reciprocal()
    if beta == 1:
        u = (inv_s - inv_t) / alpha
        du = (inv_t * inv_t + inv_s * inv_s) / alpha
    else:
        inv_t2 = inv_t * inv_t
        inv_s2 = inv_s * inv_s
        u = (inv_s2 - inv_t2) / alpha
        du = 2.0 * (inv_t2 * inv_t + inv_s2 * inv_s) / alpha
    rising = torch.sigmoid(u)
    falling = torch.sigmoid(-u)
    # 1 - sigmoid(-u) on the upper half: accurate autograd where sigmoid(u) rounds to 1.
    value = torch.where(u <= 0, rising, 1.0 - falling)
    return value, rising * falling * du * a


def bounded_sigmoid_jet(
    t: Tensor, inv_alpha: Tensor, beta: int, t_min: float
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The generalized sigmoid sigma(t; alpha) with the derivatives analytic forces need.

    Same clamp and preconditions as :func:`bounded_bump_steps` (``alpha <= alpha_max``,
    ``t_min = saturation_floor(alpha_max, beta)``); at clamped points every derivative is exactly
    0 (it carries a factor sigmoid(u) sigmoid(-u) = 0), as the clamp's own derivative would give.
    sigma equals :func:`bounded_bump_steps`' value up to rounding (u = v / alpha is computed as
    v * (1 / alpha) here).

    Args:
        t: points, any shape; ``inv_alpha``: 1 / alpha, broadcastable to ``t``; ``beta``: 1 or 2.

    Returns:
        ``(sigma, d sigma/dt, d2 sigma/dt2, -alpha d sigma/d alpha,
        -alpha d2 sigma/(dt d alpha))``, each of the broadcast shape (the alpha derivatives
        scaled by -alpha).
    """
    t = t.clamp(t_min, 1.0 - t_min)
    inv_t = t.reciprocal()
    inv_s = (1.0 - t).reciprocal()
    # u = v / alpha with v = log rho(t) - log rho(1 - t); du = v' / alpha; d2u = v'' / alpha
    if beta == 1:
        d_log_ratio = inv_t * inv_t + inv_s * inv_s
        u = (inv_s - inv_t) * inv_alpha
        du = d_log_ratio * inv_alpha
        # v'' = 2 (1/s^3 - 1/t^3) = 2 v (v' + 1/t + 1/s), as 1/(t s) = 1/t + 1/s
        d2u = 2.0 * u * (d_log_ratio + inv_t + inv_s)
    else:
        inv_t2 = inv_t * inv_t
        inv_s2 = inv_s * inv_s
        u = (inv_s2 - inv_t2) * inv_alpha
        du = 2.0 * (inv_t2 * inv_t + inv_s2 * inv_s) * inv_alpha
        d2u = 6.0 * (inv_s2 * inv_s2 - inv_t2 * inv_t2) * inv_alpha
    rising = torch.sigmoid(u)
    falling = torch.sigmoid(-u)
    first = rising * falling  # logistic'(u)
    second_du = first * (falling - rising) * du  # logistic''(u) du
    d_sigma = first * du
    d2_sigma = second_du * du + first * d2u
    # u, du and d2u scale as 1/alpha: alpha d/d alpha = -(u d/du + du d/d(du) + ...)
    return rising, d_sigma, d2_sigma, first * u, second_du * u + d_sigma
