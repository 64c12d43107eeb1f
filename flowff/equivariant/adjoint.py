"""Adaptive Dormand-Prince (RK45) integration with adjoint gradients, written in plain torch.

The optimize-then-discretize baseline of the paper's Sec. 7.2 (Chen et al. 2018 with the
``dopri5`` option). torchdiffeq is not a dependency of flowff, so this module implements the two
pieces it needs itself:

* ``dopri5``: embedded 5(4) Runge-Kutta with FSAL, error control on a tuple of tensors
  (RMS norm of err / (atol + rtol max(|y_old|, |y_new|)) per tensor, max over tensors) and the
  standard step-size update 0.9 err^(-1/5) clamped to [0.2, 10]; either time direction.
* ``AdjointDopri5``: an integrator module with the same call signature as ``RK4Integrator``,
  forward(x, t0, t1) -> (x(t1), int div dt), whose gradients come from the continuous adjoint:
  the augmented state (x, a_x, a_l, a_theta) is integrated back from t1 to t0 with
  da/dt = -a^T df/d(x, theta), f = (v, div) (Chen et al. 2018, Alg. 1). It counts function
  evaluations of the last forward and backward solves in ``nfe_forward`` / ``nfe_backward``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

Tensors = tuple[torch.Tensor, ...]

_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0)
_A: tuple[tuple[float, ...], ...] = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
)
_B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
_E = tuple(b5 - b4 for b5, b4 in zip(_B5, _B4, strict=True))


class StepLimitError(RuntimeError):
    """The adaptive solver needed more steps than allowed (a stiff or diverging field)."""


def _combine(y: Tensors, h: float, coeffs: Sequence[float], ks: Sequence[Tensors]) -> Tensors:
    out = []
    for i, yi in enumerate(y):
        acc = yi
        for c, k in zip(coeffs, ks, strict=False):
            if c != 0.0:
                acc = acc + (h * c) * k[i]
        out.append(acc)
    return tuple(out)


def _error_norm(err: Tensors, y0: Tensors, y1: Tensors, rtol: float, atol: float) -> float:
    worst = 0.0
    for e, a, b in zip(err, y0, y1, strict=True):
        if e.numel() == 0:
            continue
        scale = atol + rtol * torch.maximum(a.abs(), b.abs())
        worst = max(worst, float((e / scale).pow(2).mean().sqrt()))
    return worst


def _initial_step(
    func: Callable[[float, Tensors], Tensors],
    t0: float, y0: Tensors, f0: Tensors, direction: float, rtol: float, atol: float,
) -> float:
    """Hairer, Norsett & Wanner's starting step (one extra evaluation)."""
    zeros = tuple(torch.zeros_like(y) for y in y0)
    d0 = _error_norm(y0, y0, zeros, rtol, atol)
    d1 = _error_norm(f0, y0, zeros, rtol, atol)
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    y1 = _combine(y0, direction * h0, (1.0,), (f0,))
    f1 = func(t0 + direction * h0, y1)
    diff = tuple(b - a for a, b in zip(f0, f1, strict=True))
    d2 = _error_norm(diff, y0, zeros, rtol, atol) / h0
    if max(d1, d2) <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** 0.2
    return min(100.0 * h0, h1)


def dopri5(
    func: Callable[[float, Tensors], Tensors],
    t0: float,
    t1: float,
    y0: Tensors,
    rtol: float = 1e-5,
    atol: float = 1e-10,
    max_steps: int = 10_000,
) -> tuple[Tensors, int]:
    """Integrate dy/dt = func(t, y) for a tuple of tensors from t0 to t1; returns (y(t1), nfe)."""
    if t0 == t1:
        return y0, 0
    direction = 1.0 if t1 > t0 else -1.0
    span = abs(t1 - t0)
    f0 = func(t0, y0)
    nfe = 1
    h = min(span, _initial_step(func, t0, y0, f0, direction, rtol, atol))
    nfe += 1
    t, y, k1 = t0, y0, f0
    steps = 0
    while direction * (t1 - t) > 1e-12 * max(1.0, span):
        steps += 1
        if steps > max_steps:
            raise StepLimitError(f"dopri5 exceeded {max_steps} steps at t={t:.6g}")
        h = min(h, abs(t1 - t))
        hs = direction * h
        ks: list[Tensors] = [k1]
        for stage in range(1, 6):
            ys = _combine(y, hs, _A[stage], ks)
            ks.append(func(t + _C[stage] * hs, ys))
        y_new = _combine(y, hs, _B5, ks)
        k7 = func(t + hs, y_new)
        nfe += 6
        ks.append(k7)
        err = tuple(
            sum((hs * e) * k[i] for e, k in zip(_E, ks, strict=True) if e != 0.0)
            for i in range(len(y))
        )
        norm = _error_norm(err, y, y_new, rtol, atol)
        if norm <= 1.0:
            t, y, k1 = t + hs, y_new, k7
        factor = 10.0 if norm == 0.0 else min(10.0, max(0.2, 0.9 * norm ** (-0.2)))
        h = h * factor
    return y, nfe


class _AdjointSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, integrator, t0, t1, x0, *params):  # type: ignore[override]
        dynamics = integrator.dynamics

        def f(t: float, y: Tensors) -> Tensors:
            v, div = dynamics(torch.tensor(t, dtype=x0.dtype, device=x0.device), y[0])
            return v, div

        with torch.no_grad():
            logdet0 = torch.zeros(x0.shape[0], dtype=x0.dtype, device=x0.device)
            (x1, logdet), nfe = dopri5(f, t0, t1, (x0, logdet0), integrator.rtol, integrator.atol,
                                       integrator.max_steps)
        integrator.nfe_forward = nfe
        ctx.integrator, ctx.t0, ctx.t1 = integrator, t0, t1
        ctx.save_for_backward(x1, *params)
        return x1, logdet

    @staticmethod
    def backward(ctx, grad_x1, grad_logdet):  # type: ignore[override]
        x1, *params = ctx.saved_tensors
        integrator = ctx.integrator
        dynamics = integrator.dynamics
        grad_x1 = torch.zeros_like(x1) if grad_x1 is None else grad_x1
        grad_logdet = (
            torch.zeros(x1.shape[0], dtype=x1.dtype, device=x1.device)
            if grad_logdet is None else grad_logdet
        )

        def aug(t: float, state: Tensors) -> Tensors:
            x, a_x, a_l = state[0], state[1], state[2]
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                v, div = dynamics(torch.tensor(t, dtype=x.dtype, device=x.device), xg)
                grads = torch.autograd.grad(
                    (v, div), (xg, *params), grad_outputs=(a_x, a_l), allow_unused=True
                )
            vjp_x = grads[0] if grads[0] is not None else torch.zeros_like(x)
            vjp_p = [
                torch.zeros_like(p) if g is None else g
                for g, p in zip(grads[1:], params, strict=True)
            ]
            return (v.detach(), -vjp_x, torch.zeros_like(a_l), *[-g for g in vjp_p])

        state0 = (x1, grad_x1, grad_logdet, *[torch.zeros_like(p) for p in params])
        with torch.no_grad():
            state, nfe = dopri5(aug, ctx.t1, ctx.t0, state0, integrator.rtol, integrator.atol,
                                integrator.max_steps)
        integrator.nfe_backward = nfe
        return (None, None, None, state[1], *state[3:])


class AdjointDopri5(nn.Module):
    """Adaptive dopri5 integrator with adjoint gradients; same interface as ``RK4Integrator``."""

    def __init__(
        self, dynamics: nn.Module, rtol: float = 1e-5, atol: float = 1e-10, max_steps: int = 10_000
    ) -> None:
        super().__init__()
        if rtol <= 0 or atol <= 0:
            raise ValueError("rtol and atol must be positive")
        self.dynamics = dynamics
        self.rtol = rtol
        self.atol = atol
        self.max_steps = max_steps
        self.nfe_forward = 0
        self.nfe_backward = 0

    def forward(self, x: torch.Tensor, t0: float, t1: float) -> tuple[torch.Tensor, torch.Tensor]:
        """x(t1) and int_t0^t1 div dt (batch,), differentiable by the adjoint method."""
        params = tuple(p for p in self.dynamics.parameters() if p.requires_grad)
        return _AdjointSolve.apply(self, float(t0), float(t1), x, *params)
