"""FlowEnergy: positions (nm) -> potential energy u(x) = -kT log p_f(x) in kJ/mol.

    h, log_det_ic = ic(x)            internal coordinates in [0,1] (torsions circular)
    z, log_det_flow = flow(h)        analytic (density) direction of the flow
    u(x) = kT * ( confinement(z) + ic_wall(h) - log_det_flow - log_det_ic )

with the uniform base density on [0,1]^d (log p0 = 0 inside) continued by a smooth wall outside
(:mod:`flowff.energy.confinement`). The wall acts on h as well as on z: outside [0, 1] a mixture
transform continues with its identity share as slope (z - 1 ~ c (h - 1), c ~ 1e-3), so a wall
on z alone grows c^2 times slower in h, and MD could stretch a bond to nanometres for a few tens
of kT. Both walls are exactly zero inside the box (h in [0,1] iff z in [0,1]). The wall on h
has one physical stiffness per coordinate type whatever the column's interval: that of
IC_WALL_SCALE x the base wall on the default intervals (bonds 0.25 nm wide: 1.6e4 kT/nm^2,
switching over 2.5e-3 nm; angles 0.85 pi wide: 140 kT/rad^2 over 0.027 rad). At full strength
(IC_WALL_SCALE = 1) its curvature along a bond (8e5 kJ/mol/nm^2) exceeds a C-H bond's and 2 fs
Verlet steps blew up on it.
Forces are -du/dx by autograd (OpenMM's TorchForce does this).
The module accepts positions of R replicas of the molecule at once, shape (R * n_atoms, 3), and
returns the summed energy, so each replica receives its own independent forces.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from flowff.energy.confinement import WALL_STRENGTH_KT, WALL_WIDTH, SmoothBoxConfinement

#: Strength of the wall on the internal coordinates relative to the base-space wall, on the
#: reference intervals below.
IC_WALL_SCALE: float = 0.1
#: Interval widths on which the IC wall has strength IC_WALL_SCALE x WALL_STRENGTH_KT per
#: squared normalised unit: bonds (nm), angles (rad); the defaults of the IC layer.
IC_WALL_REFERENCE_WIDTHS: tuple[float, float] = (0.25, 0.85 * math.pi)

#: Molar gas constant in kJ/(mol K).
MOLAR_GAS_CONSTANT_KJ_PER_MOL_K: float = 8.314462618e-3


def kT_kJ_per_mol(temperature_K: float) -> float:
    """Thermal energy kT in kJ/mol at ``temperature_K``."""
    return MOLAR_GAS_CONSTANT_KJ_PER_MOL_K * float(temperature_K)


def replica_positions(positions: Tensor, n_atoms: int, dtype: torch.dtype) -> Tensor:
    """Check OpenMM's positions (R * n_atoms, 3) nm and return them as (R, n_atoms, 3) in dtype.

    Raises ValueError for a wrong shape, an atom count that is not a multiple of n_atoms, and
    NaN or infinite positions (TorchScript-compatible).
    """
    if positions.dim() != 2 or positions.size(1) != 3:
        raise ValueError(
            f"positions must have shape (R * {n_atoms}, 3), got {list(positions.shape)}"
        )
    if positions.size(0) % n_atoms != 0:
        raise ValueError(
            f"wrong atom count: {positions.size(0)} positions is not a multiple of the "
            f"model's {n_atoms} atoms"
        )
    if not bool(torch.isfinite(positions).all()):
        raise ValueError("positions contain NaN or infinite values")
    return positions.to(dtype).reshape(-1, n_atoms, 3)


def ic_wall_parameters(
    ic: torch.nn.Module, wall_strength_kT: float = WALL_STRENGTH_KT,
    wall_width: float = WALL_WIDTH, wall_bounds: dict[str, Any] | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-column strength (kT per squared normalised unit), switching width, and where the
    wall starts (lower, upper; normalised units), each (dim,) float64, of the wall on h: the
    same physical wall for every bond and every angle, whatever its interval width w
    (strength ~ w^2, width ~ 1/w). By default the walls start at the interval's ends;
    ``wall_bounds`` ``{"bond_nm": ..., "angle_rad": ...}`` (one (lo, hi) pair per type or one per
    column, physical units) moves them, e.g. to just beyond the training data."""
    dim = int(ic.circular_mask.numel())
    strength = torch.full((dim,), IC_WALL_SCALE * wall_strength_kT, dtype=torch.float64)
    width = torch.full((dim,), float(wall_width), dtype=torch.float64)
    lower = torch.zeros(dim, dtype=torch.float64)
    upper = torch.ones(dim, dtype=torch.float64)
    widths = ic.column_widths()
    relative = widths.clone()
    relative[ic.bond_slice] /= IC_WALL_REFERENCE_WIDTHS[0]
    relative[ic.angle_slice] /= IC_WALL_REFERENCE_WIDTHS[1]
    relative[ic.torsion_slice] = 1.0  # no wall on circular columns
    for key, columns, low_end in (("bond_nm", ic.bond_slice, ic.bond_lo),
                                  ("angle_rad", ic.angle_slice, ic.angle_lo)):
        if not wall_bounds or wall_bounds.get(key) is None:
            continue
        table = torch.as_tensor(wall_bounds[key], dtype=torch.float64)
        count = columns.stop - columns.start
        table = table.expand(count, 2) if table.shape == (2,) else table
        if table.shape != (count, 2) or not bool((table[:, 0] < table[:, 1]).all()):
            raise ValueError(f"wall bounds {key!r} must be one (lo, hi) pair or {count} pairs "
                             f"with lo < hi, got shape {tuple(table.shape)}")
        lower[columns] = (table[:, 0] - low_end.double()) / widths[columns]
        upper[columns] = (table[:, 1] - low_end.double()) / widths[columns]
    return strength * relative**2, width / relative, lower, upper


class FlowEnergy(torch.nn.Module):
    """Flow potential energy of one molecule (or R replicas of it), in kJ/mol.

    ``ic``: module x (batch, n_atoms, 3) nm -> (h (batch, d), log_det (batch,)), with a
    ``circular_mask`` (d,) attribute; ``flow``: module h -> (z, log|dz/dh|) (batch,).
    ``forward(positions (R * n_atoms, 3) nm, any float dtype) -> scalar energy (kJ/mol)`` summed
    over replicas, computed in ``dtype`` (float64 by default; positions are cast inside).
    ``ic_wall_bounds``: where the wall on h starts (see :func:`ic_wall_parameters`); a wall
    inside the interval cuts off the flow's density floor beyond the data (the energy is then
    -kT log p_f only up to the floor's probability mass).
    """

    def __init__(
        self,
        ic: torch.nn.Module,
        flow: torch.nn.Module,
        n_atoms: int,
        temperature_K: float,
        wall_strength_kT: float = WALL_STRENGTH_KT,
        wall_width: float = WALL_WIDTH,
        dtype: torch.dtype = torch.float64,
        ic_wall_bounds: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if temperature_K <= 0:
            raise ValueError(f"temperature must be positive kelvin, got {temperature_K}")
        self.ic = ic
        self.flow = flow
        self.n_atoms = int(n_atoms)
        self.temperature_K = float(temperature_K)
        self.kT = kT_kJ_per_mol(temperature_K)
        circular = torch.as_tensor(ic.circular_mask, dtype=torch.bool)
        self.confinement = SmoothBoxConfinement(~circular, wall_strength_kT, wall_width)
        strength, width, lower, upper = ic_wall_parameters(ic, wall_strength_kT, wall_width,
                                                           ic_wall_bounds)
        self.ic_wall = SmoothBoxConfinement(~circular, strength, width, persistent=False,
                                            lower=lower, upper=upper)
        self.dtype = dtype
        self.to(dtype)

    def reduced_energy(self, x: Tensor) -> Tensor:
        """Energy in kT per configuration: x (batch, n_atoms, 3) nm -> (batch,)."""
        h, log_det_ic = self.ic(x)
        z, log_det_flow = self.flow(h)
        return self.confinement(z) + self.ic_wall(h) - log_det_flow - log_det_ic

    def forward(self, positions: Tensor) -> Tensor:
        x = replica_positions(positions, self.n_atoms, self.dtype)
        return self.kT * self.reduced_energy(x).sum()
