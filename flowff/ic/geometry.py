"""Differentiable, numerically safe geometry: distances, angles, dihedrals and NeRF placement.

All functions are TorchScript-compatible, broadcast over leading dimensions, take vectors of
shape (..., 3) in nm and compute in the inputs' dtype. Near-degenerate geometry stays finite:

* norms carry a floor ``sqrt(|v|^2 + NORM_FLOOR_SQ)`` (finite derivative at |v| = 0),
* angles use ``atan2(|u x v|, u . v)`` with the floored cross-product norm (no acos),
* dihedrals use ``atan2`` and a double ``where`` at the fully degenerate point (p1, p2) = (0, 0)
  (three collinear atoms), where the dihedral is undefined and its derivative is set to zero.

The floors are far below any resolvable change of a molecular geometry in float64 (they change
a 0.1 nm distance by ~1e-29 nm) and representable in float32.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Floor added to squared norms, nm^2 for distances and nm^4 for cross-product norms.
NORM_FLOOR_SQ: float = 1.0e-30
#: Below this value of p1^2 + p2^2 (nm^8) the dihedral's atan2 arguments count as (0, 0).
DIHEDRAL_DEGENERATE_SQ: float = 1.0e-60


def floored_norm(v: Tensor, floor_sq: float = NORM_FLOOR_SQ) -> Tensor:
    """sqrt(|v|^2 + floor_sq): v (..., 3) -> (...,), smooth everywhere."""
    return torch.sqrt((v * v).sum(dim=-1) + floor_sq)


def distance(p: Tensor, q: Tensor) -> Tensor:
    """|p - q| in nm: p, q (..., 3) -> (...,)."""
    return floored_norm(p - q)


def angle_and_log_sin(p: Tensor, vertex: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
    """Angle p-vertex-q in [0, pi] (rad) and log(sin angle): (..., 3) each -> two (...,).

    sin is computed from the same floored cross-product norm as the angle, so
    log_sin == log(sin(angle)) to rounding and stays finite for collinear atoms.
    """
    u = p - vertex
    v = q - vertex
    cross_norm = floored_norm(torch.linalg.cross(u, v, dim=-1))
    dot = (u * v).sum(dim=-1)
    angle = torch.atan2(cross_norm, dot)
    log_sin = torch.log(cross_norm) - 0.5 * torch.log(cross_norm * cross_norm + dot * dot)
    return angle, log_sin


def dihedral(
    p0: Tensor, p1: Tensor, p2: Tensor, p3: Tensor,
    degenerate_sq: float = DIHEDRAL_DEGENERATE_SQ,
) -> Tensor:
    """Dihedral p0-p1-p2-p3 in [-pi, pi] (rad), IUPAC sign (as mdtraj): (..., 3) each -> (...,).

    Symmetric under reversal: dihedral(p0, p1, p2, p3) == dihedral(p3, p2, p1, p0).
    """
    b1 = p1 - p0
    b2 = p2 - p1
    b3 = p3 - p2
    c1 = torch.linalg.cross(b2, b3, dim=-1)
    c2 = torch.linalg.cross(b1, b2, dim=-1)
    y = (b1 * c1).sum(dim=-1) * floored_norm(b2)
    x = (c1 * c2).sum(dim=-1)
    degenerate = x * x + y * y <= degenerate_sq
    safe_x = torch.where(degenerate, torch.ones_like(x), x)
    safe_y = torch.where(degenerate, torch.zeros_like(y), y)
    return torch.where(degenerate, torch.zeros_like(x), torch.atan2(safe_y, safe_x))


def _unit(v: Tensor) -> Tensor:
    return v / floored_norm(v).unsqueeze(-1)


def place_atom(
    bond_partner: Tensor,
    angle_partner: Tensor,
    torsion_partner: Tensor,
    bond: Tensor,
    angle: Tensor,
    torsion: Tensor,
) -> Tensor:
    """NeRF: the position p with |p - b| = bond, angle p-b-a = angle, dihedral p-b-a-t = torsion.

    bond_partner b, angle_partner a, torsion_partner t: (..., 3) nm; bond (...,) nm, angle and
    torsion (...,) rad. Returns p (..., 3) nm.
    """
    axis = _unit(bond_partner - angle_partner)
    normal = _unit(torch.linalg.cross(angle_partner - torsion_partner, axis, dim=-1))
    in_plane = torch.linalg.cross(normal, axis, dim=-1)
    radial = bond * torch.sin(angle)
    local_x = -bond * torch.cos(angle)
    local_y = radial * torch.cos(torsion)
    local_z = radial * torch.sin(torsion)
    return (
        bond_partner
        + local_x.unsqueeze(-1) * axis
        + local_y.unsqueeze(-1) * in_plane
        + local_z.unsqueeze(-1) * normal
    )
