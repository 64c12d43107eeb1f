"""Differentiable black-box inverse x = f^-1(y; theta) with implicit gradients (paper Eqs. 8-11).

The root x* is found without autograd (:mod:`flowff.flows.inversion`); gradients come from the
inverse function theorem using forward evaluations of f only:

    dx/dy = 1 / f'(x)                       dx/dtheta = -(df/dtheta)(x) / f'(x)

and log|dx/dy| = -log f'(x(y, theta), theta) is an ordinary differentiable expression in x, so
its derivatives (Eqs. 10-11) follow from the chain rule. The backward is built from
differentiable operations evaluated at the *output* x (which keeps its link to this node), so
it can be differentiated again to any order (force matching through the inverse needs second
order). The parameters theta are a tensor produced by a conditioner; gradients reach the
conditioner's input through theta's own graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from flowff.flows.inversion import (
    DEFAULT_MAX_ITERATIONS,
    DEFAULT_NUM_BINS,
    circular_lift,
    solve_transform,
)
from flowff.flows.periodic import wrap_unit


@dataclass(frozen=True)
class InversionSettings:
    """Multi-bin bisection options: ``num_bins`` K >= 2, ``tol`` on x (None: per-dtype default)."""

    num_bins: int = DEFAULT_NUM_BINS
    tol: float | None = None
    max_iterations: int = DEFAULT_MAX_ITERATIONS


class _ImplicitInverse(torch.autograd.Function):
    """x = f^-1(y; params) for increasing element-wise f; differentiable to any order."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        y: Tensor,
        params: Tensor,
        transform: torch.nn.Module,
        settings: InversionSettings,
    ) -> Tensor:
        result = solve_transform(
            transform,
            y,
            params,
            num_bins=settings.num_bins,
            tol=settings.tol,
            max_iterations=settings.max_iterations,
        )
        x = result.x
        ctx.transform = transform
        ctx.save_for_backward(params, x)
        return x

    @staticmethod
    def backward(ctx: Any, grad_x: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        params, x = ctx.saved_tensors
        need_y, need_params = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        create_graph = torch.is_grad_enabled()
        if create_graph:
            # Differentiate w.r.t. a fresh alias of params: the total derivative w.r.t. the alias
            # is the partial df/dtheta at fixed x (the path through x's own graph back to params
            # does not reach the alias), so this does not recurse into this node, while the
            # result stays differentiable in x, params and grad_x.
            params = params.view_as(params)
        else:
            # First-order only: detached copies, so no graph outlives this call.
            x = x.detach()
            params = params.detach().requires_grad_(need_params)
        with torch.enable_grad():
            f_x, log_slope = ctx.transform(x, params)
            weighted = grad_x * torch.exp(-log_slope)  # grad_x / f'(x)
            grad_y = weighted if need_y else None
            grad_params = None
            if need_params:
                (vjp,) = torch.autograd.grad(
                    f_x, params, grad_outputs=weighted, create_graph=create_graph
                )
                grad_params = -vjp
        if not create_graph:
            grad_y = None if grad_y is None else grad_y.detach()
            grad_params = None if grad_params is None else grad_params.detach()
        return grad_y, grad_params, None, None


def implicit_inverse(
    transform: torch.nn.Module,
    y: Tensor,
    params: Tensor,
    settings: InversionSettings | None = None,
) -> tuple[Tensor, Tensor]:
    """Numerical inverse of an element-wise transform with implicit gradients.

    ``y`` (..., d), ``params`` (..., d, num_params) -> (x (..., d), log|dx/dy| (..., d)).
    Circular transforms: ``y`` is read modulo 1 and x is returned in [0, 1). Gradients flow to
    ``y`` and ``params`` (and through ``params`` to whatever produced them) to any order.
    Raises :class:`flowff.flows.inversion.InversionError` if the bisection does not converge.
    """
    settings = InversionSettings() if settings is None else settings
    circular = bool(getattr(transform, "circular", False))
    target = y + circular_lift(transform, y, params) if circular else y
    x = _ImplicitInverse.apply(target, params, transform, settings)
    _, log_slope = transform(x, params)
    if circular:
        x = wrap_unit(x)
    return x, -log_slope
