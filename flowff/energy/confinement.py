"""Smooth confinement of the base space: what the energy does outside the flow's support.

The flow's base density is uniform on [0,1]^d, so log p = -inf for a bond or angle outside its
interval: an infinite wall that MD must never meet. We continue the energy smoothly instead:

    -log p0(z) = sum_j  k * [ s(z_j - 1) + s(-z_j) ]   over interval dimensions j,
    s(u) = u^2 exp(-w/u) for u > 0, and 0 otherwise,

which is exactly zero on [0,1] (so densities, NLL and sampling are unchanged), C-infinity on R
(every derivative of s vanishes at u = 0+), and grows quadratically far out. Circular dimensions
need no wall. ``k`` is in kT; ``w`` sets the width over which the wall switches on; both may
differ per dimension (the wall on internal coordinates keeps one physical stiffness whatever each
column's interval, see :func:`flowff.energy.flow_energy.ic_wall_parameters`).
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Default wall stiffness, kT per squared normalised unit (0.01 outside ~ 0.6 kT with w = 0.01).
WALL_STRENGTH_KT: float = 1.0e4
#: Default switching width of the wall in normalised units.
WALL_WIDTH: float = 0.01


def smooth_step_quadratic(u: Tensor, width: Tensor) -> Tensor:
    """s(u) = u^2 exp(-width/u) for u > 0, else 0; C-infinity, with finite derivatives at u <= 0.

    Uses the double-``where`` pattern so no NaN or inf reaches the gradient at u <= 0.
    """
    positive = u > 0
    safe_u = torch.where(positive, u, torch.ones_like(u))
    value = safe_u * safe_u * torch.exp(-width / safe_u)
    return torch.where(positive, value, torch.zeros_like(u))


class SmoothBoxConfinement(torch.nn.Module):
    """-log p0(z) of the uniform base on [0,1]^d with a smooth wall outside (in kT).

    ``interval_mask`` (d,) bool marks dimensions with walls (the non-circular ones);
    ``strength_kT`` and ``width``: one value, or one per dimension (d,); ``lower`` and ``upper``:
    where the walls start, default the box [0, 1], or one value per dimension (a wall inside
    the box cuts the density there off). ``persistent``: whether the mask goes into state dicts
    (False for walls rebuilt from a model config).
    forward(z (batch, d)) -> (batch,) energy in kT, zero between lower and upper.
    """

    def __init__(
        self, interval_mask: Tensor, strength_kT: Tensor | float = WALL_STRENGTH_KT,
        width: Tensor | float = WALL_WIDTH, persistent: bool = True,
        lower: Tensor | float = 0.0, upper: Tensor | float = 1.0,
    ) -> None:
        super().__init__()
        dim = interval_mask.shape[-1]

        def per_dim(value: Tensor | float) -> Tensor:
            return torch.as_tensor(value, dtype=torch.float64).expand(dim).clone()

        strength, widths, low, high = (per_dim(v) for v in (strength_kT, width, lower, upper))
        if not (bool((strength > 0).all()) and bool((widths > 0).all())):
            raise ValueError("wall strength and width must be positive")
        if not bool((low < high).all()):
            raise ValueError("walls must start at lower < upper in every dimension")
        self.register_buffer("interval_mask", interval_mask.to(torch.bool).clone(),
                             persistent=persistent)
        self.register_buffer("strength_kT", strength, persistent=False)
        self.register_buffer("width", widths, persistent=False)
        self.register_buffer("lower", low, persistent=False)
        self.register_buffer("upper", high, persistent=False)

    def forward(self, z: Tensor) -> Tensor:
        mask = self.interval_mask.to(z.dtype)
        width = self.width.to(z.dtype)
        wall = (smooth_step_quadratic(z - self.upper.to(z.dtype), width)
                + smooth_step_quadratic(self.lower.to(z.dtype) - z, width))
        return (self.strength_kT.to(z.dtype) * wall * mask).sum(dim=-1)
