"""Ramp functions rho: [0, 1] -> [0, 1] for smooth bumps (Koehler et al. 2021, Sec. 4).

Two ramps, both 0 for x <= 0 and strictly increasing on (0, 1]:

* the C-infinity ramp ``rho(x) = exp(-1 / (alpha x**beta))`` (alpha > 0 trainable, beta in {1, 2}
  a hyper-parameter); every derivative vanishes as x -> 0+.
* the monomial ramp ``rho(x) = x**k`` (k >= 1 an integer); as a function on R that is 0 for
  x <= 0 it is C^(k-1) (its k-th derivative jumps from 0 to k! at 0).

Numerics. A single ``torch.where`` on an expression that is infinite in the unused branch gives
NaN gradients (0 * inf), so every masked expression below is evaluated at a safe substitute
argument first (the double-``where`` pattern). Where the C-infinity ramp is below
``exp(-LOG_UNDERFLOW)`` (the smallest positive float64) it is returned as exactly 0 with zero
derivatives, which keeps its derivatives of every order finite in float32 and float64 (the true
values there are below 1e-300 and thus not representable anyway). Units: dimensionless.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: exp(-LOG_UNDERFLOW) ~ 5e-324 is the smallest positive float64; log-values below -LOG_UNDERFLOW
#: are treated as log(0). In float32 such values already underflow to 0 near exp(-104).
LOG_UNDERFLOW: float = 745.0

#: Values of beta for which the C-infinity ramp is supported.
SUPPORTED_BETAS: tuple[int, ...] = (1, 2)


def check_beta(beta: int) -> None:
    """Raise ``ValueError`` unless ``beta`` is one of :data:`SUPPORTED_BETAS`."""
    if beta != 1 and beta != 2:
        raise ValueError(f"ramp exponent beta must be 1 or 2, got {beta}")


def _exp_ramp_mask(
    x: Tensor, alpha: Tensor, beta: int, log_underflow: float = LOG_UNDERFLOW
) -> Tensor:
    """True where exp(-1/(alpha x^beta)) is representable (x > 0, exponent >= -log_underflow)."""
    with torch.no_grad():
        positive = x.clamp(min=0.0)
        return (x > 0) & (alpha * positive.pow(beta) * log_underflow > 1.0)


def log_exp_ramp(x: Tensor, alpha: Tensor, beta: int = 1) -> Tensor:
    """Log of the C-infinity ramp, ``-1 / (alpha x**beta)``; ``-inf`` where the ramp is 0.

    Args:
        x: points, any shape.
        alpha: ramp scale, > 0, broadcastable to ``x``.
        beta: ramp exponent, 1 or 2.

    Returns:
        ``log rho(x)``, shape of ``x`` broadcast with ``alpha``. The gradient is 0 where the value
        is ``-inf`` (x <= 0 or rho below float64 underflow); it grows without bound as x -> 0+,
        so differentiate ratios (see :func:`exp_ramp_log_ratio`) rather than this value near 0.
    """
    inside = _exp_ramp_mask(x, alpha, beta)
    x_safe = torch.where(inside, x, torch.ones_like(x))
    value = -1.0 / (alpha * x_safe.pow(beta))
    return torch.where(inside, value, torch.full_like(value, -float("inf")))


def exp_ramp(x: Tensor, alpha: Tensor, beta: int = 1) -> Tensor:
    """C-infinity ramp ``exp(-1 / (alpha x**beta))`` for x > 0, else 0.

    Args:
        x: points, any shape.
        alpha: ramp scale, > 0, broadcastable to ``x``.
        beta: ramp exponent, 1 or 2.

    Returns:
        ``rho(x)`` in [0, 1) for x <= 1 (rho -> 1 as x -> inf); derivatives of every order are
        finite everywhere, including x = 0, in float32 and float64.
    """
    inside = _exp_ramp_mask(x, alpha, beta)
    x_safe = torch.where(inside, x, torch.ones_like(x))
    value = torch.exp(-1.0 / (alpha * x_safe.pow(beta)))
    return torch.where(inside, value, torch.zeros_like(value))


def exp_ramp_log_ratio(t: Tensor, alpha: Tensor, beta: int) -> tuple[Tensor, Tensor]:
    """``u(t) = log rho(t) - log rho(1 - t)`` of the C-infinity ramp and ``du/dt``, for 0 < t < 1.

    ``u(t) = (1 / alpha) * ((1 - t)**-beta - t**-beta)`` is strictly increasing, odd about
    t = 1/2, and ``du/dt = (beta / alpha) * (t**-(beta + 1) + (1 - t)**-(beta + 1)) > 0``.
    Callers must pass t strictly inside (0, 1) (the generalized sigmoid masks first).

    Args:
        t: points in (0, 1), any shape.
        alpha: ramp scale, > 0, broadcastable to ``t``.
        beta: ramp exponent, 1 or 2.

    Returns:
        ``(u, du/dt)``, each of the broadcast shape.
    """
    s = 1.0 - t
    if beta == 1:
        inv_t = 1.0 / t
        inv_s = 1.0 / s
        u = (inv_s - inv_t) / alpha
        du = (inv_t * inv_t + inv_s * inv_s) / alpha
    else:
        inv_t2 = 1.0 / (t * t)
        inv_s2 = 1.0 / (s * s)
        u = (inv_s2 - inv_t2) / alpha
        du = 2.0 * (inv_t2 / t + inv_s2 / s) / alpha
    return u, du


def integer_power(x: Tensor, exponent: int) -> Tensor:
    """``x**exponent`` for an integer exponent >= 0 by repeated products (finite gradients at 0)."""
    result = torch.ones_like(x)
    for _ in range(exponent):
        result = result * x
    return result


def monomial_ramp(x: Tensor, k: int) -> Tensor:
    """Monomial ramp ``x**k`` on [0, 1], 0 for x <= 0 and 1 for x >= 1 (C^(k-1) at 0 and 1).

    Args:
        x: points, any shape.
        k: integer order >= 1.

    Returns:
        ``rho(x)``, shape of ``x``; all derivatives finite everywhere.
    """
    if k < 1:
        raise ValueError(f"monomial ramp order k must be >= 1, got {k}")
    return integer_power(x.clamp(min=0.0, max=1.0), k)


def log_monomial_ramp(x: Tensor, k: int) -> Tensor:
    """``k log x`` for 0 < x <= 1 (log of :func:`monomial_ramp`), ``-inf`` for x <= 0.

    Args:
        x: points, any shape.
        k: integer order >= 1.

    Returns:
        ``log rho(x)``, shape of ``x``, gradient 0 where the value is ``-inf``.
    """
    if k < 1:
        raise ValueError(f"monomial ramp order k must be >= 1, got {k}")
    inside = x > 0
    x_safe = torch.where(inside, x.clamp(max=1.0), torch.ones_like(x))
    value = k * torch.log(x_safe)
    return torch.where(inside, value, torch.full_like(value, -float("inf")))
