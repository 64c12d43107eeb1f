"""Black-box inversion of monotone element-wise maps by multi-bin bisection (paper Sec. 5).

Every element of ``y`` is solved independently: find x with f(x) = y for a strictly increasing f.
Each iteration splits the current bracket [lo, hi] into K bins, evaluates f at the K-1 interior
edges of all elements at once (one vectorised call), and keeps the bin that contains the root.
The bracket shrinks by a factor K per iteration (K = 2 is plain bisection), at the price of
K-1 evaluations per element per iteration: memory O(K x elements) (times the transform's own
per-element cost, e.g. its number of mixture components).

The result is the midpoint of the final bracket, so its error is at most half the bracket width.
An element has converged when that half-width is <= ``tol * max(1, |x|)`` and the bracket still
satisfies f(lo) <= y <= f(hi) (which fails for a non-monotone f) and every value was finite.

Brackets start at [0, 1] (the support of interval transforms and one period of circle maps).
Targets outside f([0, 1]) are NOT refused: the bracket is expanded geometrically (width doubling,
at most ``MAX_BRACKET_EXPANSIONS`` times) until it encloses the root. This is valid for every
transform of the contract, since interval transforms extend strictly monotonically to R; a
function that never reaches the target (bounded f) is reported as not converged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

#: Default absolute tolerance on x per dtype (scaled by max(1, |x|)).
DEFAULT_TOLERANCE: dict[torch.dtype, float] = {
    torch.float16: 1e-3,
    torch.bfloat16: 1e-2,
    torch.float32: 1e-6,
    torch.float64: 1e-10,
}
#: Default number of bins searched at once (K = 2 is plain bisection).
DEFAULT_NUM_BINS: int = 16
#: Cap on bisection iterations; enough for K = 2 from a bracket of width 2^64 down to 1e-16.
DEFAULT_MAX_ITERATIONS: int = 128
#: Cap on bracket doublings for targets outside f([lo, hi]) (width up to 2^64).
MAX_BRACKET_EXPANSIONS: int = 64

MonotoneFunction = Callable[[Tensor], Tensor]
"""f evaluated at n points per element: x (n, *shape) -> f(x) (n, *shape)."""


class InversionError(RuntimeError):
    """Raised when the black-box inversion did not converge for some elements."""


@dataclass(frozen=True)
class InversionResult:
    """Outcome of :func:`bisect_monotone`.

    ``x``: root estimates (bracket midpoints), shape of ``y``; ``converged``: bool, same shape;
    ``max_half_width``: largest final half bracket width; ``iterations``: bisection steps taken.
    """

    x: Tensor
    converged: Tensor
    max_half_width: float
    iterations: int


def default_tolerance(dtype: torch.dtype) -> float:
    """The default tolerance on x for ``dtype`` (1e-6 in float32, 1e-10 in float64)."""
    if dtype not in DEFAULT_TOLERANCE:
        raise TypeError(f"inversion needs a floating-point dtype, got {dtype}")
    return DEFAULT_TOLERANCE[dtype]


def _expand_bracket(
    fn: MonotoneFunction, y: Tensor, lo: Tensor, hi: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Grow [lo, hi] geometrically until f(lo) <= y <= f(hi); returns lo, hi, f(lo), f(hi).

    Elements that cannot be bracketed keep a violating bracket and are flagged later.
    """
    f_lo = fn(lo.unsqueeze(0)).squeeze(0)
    f_hi = fn(hi.unsqueeze(0)).squeeze(0)
    step_lo = hi - lo
    step_hi = hi - lo
    for _ in range(MAX_BRACKET_EXPANSIONS):
        below = f_lo > y
        above = f_hi < y
        if not bool((below | above).any()):
            break
        # Root left of lo: [lo - step, lo]; root right of hi: [hi, hi + step]; steps double.
        new_lo = torch.where(below, lo - step_lo, torch.where(above, hi, lo))
        new_hi = torch.where(above, hi + step_hi, torch.where(below, lo, hi))
        f_new = fn(torch.stack([new_lo, new_hi]))
        f_lo = torch.where(below | above, f_new[0], f_lo)
        f_hi = torch.where(below | above, f_new[1], f_hi)
        step_lo = torch.where(below, 2.0 * step_lo, step_lo)
        step_hi = torch.where(above, 2.0 * step_hi, step_hi)
        lo, hi = new_lo, new_hi
    return lo, hi, f_lo, f_hi


@torch.no_grad()
def bisect_monotone(
    fn: MonotoneFunction,
    y: Tensor,
    num_bins: int = DEFAULT_NUM_BINS,
    tol: float | None = None,
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
    lower: float = 0.0,
    upper: float = 1.0,
    raise_on_failure: bool = True,
) -> InversionResult:
    """Solve f(x) = y element-wise for an increasing ``fn`` by K-bin bisection.

    ``fn`` maps x (n, *y.shape) to f(x) (n, *y.shape) (n points per element at once). The
    initial bracket is [lower, upper], expanded when y lies outside f([lower, upper]).
    ``tol`` defaults to :func:`default_tolerance` of ``y.dtype``. Raises
    :class:`InversionError` if any element did not converge, unless ``raise_on_failure`` is
    False, in which case ``result.converged`` reports it. Runs without autograd.
    """
    if num_bins < 2:
        raise ValueError(f"num_bins must be >= 2 (2 is plain bisection), got {num_bins}")
    if max_iterations < 0:
        raise ValueError(f"max_iterations must be >= 0, got {max_iterations}")
    if not lower < upper:
        raise ValueError(f"initial bracket needs lower < upper, got [{lower}, {upper}]")
    tol = default_tolerance(y.dtype) if tol is None else float(tol)
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    y = y.detach()
    if not bool(torch.isfinite(y).all()):
        raise InversionError("cannot invert non-finite targets (NaN or inf in y)")

    lo = torch.full_like(y, lower)
    hi = torch.full_like(y, upper)
    lo, hi, f_lo, f_hi = _expand_bracket(fn, y, lo, hi)
    finite = torch.isfinite(f_lo) & torch.isfinite(f_hi)

    # Iterations needed by the widest bracket to reach half-width <= tol (scale >= 1).
    max_width = float((hi - lo).max()) if y.numel() > 0 else 0.0
    needed = 0
    if max_width > 2.0 * tol:
        needed = math.ceil(math.log(max_width / (2.0 * tol)) / math.log(num_bins))
    iterations = min(needed, max_iterations)

    fractions = torch.arange(1, num_bins, dtype=y.dtype, device=y.device) / num_bins
    fractions = fractions.reshape((num_bins - 1,) + (1,) * y.dim())
    for _ in range(iterations):
        width = hi - lo
        interior = lo.unsqueeze(0) + width.unsqueeze(0) * fractions  # (K-1, *shape)
        f_interior = fn(interior)
        finite &= torch.isfinite(f_interior).all(dim=0)
        edges = torch.cat([lo.unsqueeze(0), interior, hi.unsqueeze(0)])  # (K+1, *shape)
        values = torch.cat([f_lo.unsqueeze(0), f_interior, f_hi.unsqueeze(0)])
        # For increasing f the root lies in bin i = #{interior edges with f <= y}.
        index = (f_interior <= y.unsqueeze(0)).sum(dim=0, keepdim=True)
        lo = edges.gather(0, index).squeeze(0)
        hi = edges.gather(0, index + 1).squeeze(0)
        f_lo = values.gather(0, index).squeeze(0)
        f_hi = values.gather(0, index + 1).squeeze(0)

    x = 0.5 * (lo + hi)
    half_width = 0.5 * (hi - lo)
    bracketed = (f_lo <= y) & (y <= f_hi)
    converged = finite & bracketed & (half_width <= tol * x.abs().clamp_min(1.0))
    result = InversionResult(
        x=x,
        converged=converged,
        max_half_width=float(half_width.max()) if y.numel() > 0 else 0.0,
        iterations=iterations,
    )
    if raise_on_failure and not bool(converged.all()):
        failed = int((~converged).sum())
        reasons = []
        if not bool(finite.all()):
            reasons.append("f returned NaN/inf")
        if not bool(bracketed.all()):
            reasons.append("root not bracketed (f not increasing, or never reaches y)")
        if needed > max_iterations:
            reasons.append(f"needs {needed} iterations > max_iterations={max_iterations}")
        raise InversionError(
            f"bisection did not converge for {failed} of {y.numel()} elements "
            f"(tol={tol:g}, num_bins={num_bins}, largest half-width {result.max_half_width:.3g}"
            f"): {'; '.join(reasons) or 'tolerance not reached'}"
        )
    return result


def _check_shapes(y: Tensor, params: Tensor) -> None:
    if params.dim() != y.dim() + 1 or params.shape[:-1] != y.shape:
        raise ValueError(
            f"params must have shape (*y.shape, num_params) = ({', '.join(map(str, y.shape))}, P),"
            f" got {tuple(params.shape)}"
        )


def transform_values(transform: torch.nn.Module, params: Tensor) -> MonotoneFunction:
    """f(x) = transform(x, params)[0] at n points per element: x (n, *y.shape) -> (n, *y.shape)."""
    params = params.detach()

    def evaluate(x: Tensor) -> Tensor:
        expanded = params.unsqueeze(0).expand((x.shape[0],) + tuple(params.shape))
        return transform(x, expanded)[0]

    return evaluate


@torch.no_grad()
def circular_lift(transform: torch.nn.Module, y: Tensor, params: Tensor) -> Tensor:
    """Integer shifts k with y + k in [f(0), f(0) + 1), so the root of f(x) = y + k is in [0, 1).

    For circle maps (f(x+1) = f(x) + 1) this picks the lift of y whose preimage lies in the
    fundamental period. Returns k with the shape and dtype of ``y`` (no gradient).
    """
    _check_shapes(y, params)
    f_at_zero = transform_values(transform, params)(torch.zeros_like(y).unsqueeze(0)).squeeze(0)
    return torch.ceil(f_at_zero - y.detach())


def solve_transform(
    transform: torch.nn.Module,
    y: Tensor,
    params: Tensor,
    num_bins: int = DEFAULT_NUM_BINS,
    tol: float | None = None,
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
    raise_on_failure: bool = True,
) -> InversionResult:
    """Solve transform(x, params)[0] = y element-wise (no gradients; see flowff.flows.implicit).

    ``y`` (..., d), ``params`` (..., d, P). For circular transforms pass the lifted target
    (y + :func:`circular_lift`); the root is then in [0, 1] up to rounding.
    """
    _check_shapes(y, params)
    return bisect_monotone(
        transform_values(transform, params),
        y,
        num_bins=num_bins,
        tol=tol,
        max_iterations=max_iterations,
        raise_on_failure=raise_on_failure,
    )
