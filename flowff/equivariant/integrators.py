"""Fixed-grid fourth-order Runge-Kutta for a state and its log-density change.

Discretize-then-optimize (Gholami et al. 2019): the 20-step RK4 grid is unrolled and
backpropagated through like any network. ``RK4Integrator`` integrates the augmented system
dx/dt = v(x, t), dl/dt = div v(x, t) from t0 to t1 (either direction) and returns
(x(t1), l(t1) - l(t0)); l(t1) - l(t0) approximates log|det dx(t1)/dx(t0)|. It compiles with
``torch.jit.script`` when its dynamics does (the step count is fixed, so the loop is scriptable).
"""

from __future__ import annotations

import torch
from torch import nn


class RK4Integrator(nn.Module):
    """Classic RK4 with ``n_steps`` equal steps; dynamics(t, x) -> (v, div)."""

    def __init__(self, dynamics: nn.Module, n_steps: int = 20) -> None:
        super().__init__()
        if n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}")
        self.dynamics = dynamics
        self.n_steps = n_steps

    def forward(
        self, x: torch.Tensor, t0: float, t1: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Integrate x (batch, n, d) from t0 to t1; returns x(t1) and int_t0^t1 div dt (batch,)."""
        h = (t1 - t0) / self.n_steps
        logdet = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for step in range(self.n_steps):
            t = t0 + step * h
            ta = torch.full((), t, dtype=x.dtype, device=x.device)
            tb = torch.full((), t + 0.5 * h, dtype=x.dtype, device=x.device)
            tc = torch.full((), t + h, dtype=x.dtype, device=x.device)
            k1, d1 = self.dynamics(ta, x)
            k2, d2 = self.dynamics(tb, x + (0.5 * h) * k1)
            k3, d3 = self.dynamics(tb, x + (0.5 * h) * k2)
            k4, d4 = self.dynamics(tc, x + h * k3)
            x = x + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
            logdet = logdet + (h / 6.0) * (d1 + 2.0 * d2 + 2.0 * d3 + d4)
        return x, logdet
