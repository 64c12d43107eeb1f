r"""Cartesian positions <-> normalised internal coordinates, with the exact log-Jacobian.

Layout of ``h`` (batch, 3n-6), defined by a :class:`~flowff.ic.zmatrix.ZMatrix` with frame
(f0, f1, f2) and rows (i, b_i, a_i, t_i)::

    [ bonds (n-1)  | angles (n-2)  | torsions (n-3) ]
      d(f0,f1), d(f1,f2), d(i,b_i)...
                     angle(f0,f1,f2), angle(i,b_i,a_i)...
                                     dihedral(i,b_i,a_i,t_i)...

normalised as h_bond = (d - bond_lo) / w_b, h_angle = (theta - angle_lo) / w_a with
w_b = bond_hi - bond_lo, w_a = angle_hi - angle_lo, and h_torsion = (phi + pi) / (2 pi) mod 1.
Defaults: bonds [0.05, 0.3] nm, angles [0.15 pi, pi] rad, the same for every column; each bond
and each angle may instead have its own interval (e.g. fitted to data,
:func:`flowff.ic.bounds.fit_ic_bounds`), so that the flow's support ends just beyond the data.

Outside the support
-------------------
A bond or angle outside its interval gives h outside [0, 1]: forward does not clamp, so h,
log_det and their derivatives stay finite and informative there. The energy module
(:mod:`flowff.energy`) continues the density smoothly outside [0, 1] (a confining wall); this
layer only has to stay finite. ``inverse`` is a bijection onto the support for h whose bonds are
positive and whose angles lie in (0, pi) (all of [0, 1]^d with the default intervals).

Jacobian (derivation)
---------------------
Write the configuration x in R^{3n} as (translation T = x_f0, rotation R in SO(3), internal
coordinates q). Placing the atoms one after another in spherical coordinates gives

* f0: x_f0 = T, volume dT;
* f1: x_f1 = x_f0 + d_1 u with u in S^2, volume d_1^2 dd_1 dOmega(u);
* f2: spherical coordinates around f1 with polar axis x_f0 - x_f1: polar angle = the frame angle
  theta_1, azimuth psi about that axis; volume d_2^2 sin(theta_1) dd_2 dtheta_1 dpsi;
* each row atom i: spherical coordinates around b_i with polar axis a_i - b_i and azimuth the
  dihedral; volume d_i^2 sin(theta_i) dd_i dtheta_i dphi_i.

(u, psi) parametrise the rotation R, and dOmega(u) dpsi is the Haar measure on SO(3) (in ZYZ
Euler angles sin(beta) dalpha dbeta dgamma), of total volume 4 pi * 2 pi = 8 pi^2. Hence

    dx = dT dR J(q) dq,    J(q) = prod_{all n-1 bonds} d^2 * prod_{all n-2 angles} sin(theta).

A density over Cartesian space *per unit rigid-body volume* is p_x(x) = p_q(q) / (8 pi^2 J(q)):
it integrates to one over a unit volume of translations, all rotations (normalised Haar measure
dR / 8 pi^2) and all internal coordinates. With dq = w_b^{n-1} w_a^{n-2} (2 pi)^{n-3} dh,

    log p_x(x) = log p_h(h) + log_det,
    log_det = -[ sum_bonds 2 log d + sum_angles log sin(theta)
                 + sum_bonds log w_b + sum_angles log w_a + (n-3) log(2 pi) + log(8 pi^2) ].

Every constant appears exactly once. Tested against the brute-force determinant of the square
map x -> (h, x_f0, ZYZ Euler angles of the frame): log|det| there equals
log_det - log sin(beta) + log(8 pi^2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from flowff.ic.geometry import (
    DIHEDRAL_DEGENERATE_SQ,
    NORM_FLOOR_SQ,
    angle_and_log_sin,
    dihedral,
    distance,
    place_atom,
)
from flowff.ic.zmatrix import ZMatrix

#: Default bond interval in nm.
DEFAULT_BOND_BOUNDS_NM: tuple[float, float] = (0.05, 0.3)
#: Default angle interval in rad.
DEFAULT_ANGLE_BOUNDS_RAD: tuple[float, float] = (0.15 * math.pi, 1.0 * math.pi)
#: log of the Haar volume of SO(3) (8 pi^2).
LOG_ROTATION_VOLUME: float = math.log(8.0 * math.pi**2)


def check_positions(x: Any, n_atoms: int) -> None:
    """Raise ValueError unless x is a finite float tensor of shape (batch, n_atoms, 3) in nm."""
    if not isinstance(x, Tensor):
        raise TypeError(f"positions must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"positions must be a floating-point tensor (nm), got {x.dtype}")
    if x.dim() != 3 or x.size(-1) != 3:
        raise ValueError(
            f"positions must have shape (batch, {n_atoms}, 3) in nm, got {tuple(x.shape)}"
        )
    if x.size(1) != n_atoms:
        raise ValueError(
            f"wrong atom count: expected {n_atoms} atoms, got {x.size(1)} "
            f"(positions of shape {tuple(x.shape)})"
        )
    finite = torch.isfinite(x).all(dim=-1)
    if not bool(finite.all()):
        bad = (~finite).nonzero()
        frames = sorted({int(i) for i in bad[:, 0]})
        atoms = sorted({int(i) for i in bad[:, 1]})
        raise ValueError(
            f"positions contain NaN or inf: {bad.shape[0]} atom position(s) in configuration(s) "
            f"{frames[:10]}{'...' if len(frames) > 10 else ''}, atoms "
            f"{atoms[:10]}{'...' if len(atoms) > 10 else ''}"
        )


def _check_bounds(name: str, bounds: Any, count: int, lowest: float, highest: float
                  ) -> tuple[Tensor, Tensor]:
    """Per-column (lo, hi) as float64 tensors of shape (count,) from one (lo, hi) pair shared by
    all columns or from ``count`` pairs; raises ValueError unless lowest <= lo < hi <= highest."""
    table = torch.as_tensor(bounds, dtype=torch.float64)
    if table.shape == (2,):
        table = table.expand(count, 2)
    if table.shape != (count, 2):
        raise ValueError(
            f"{name} bounds must be one (lo, hi) pair or {count} pairs (one per {name}), got "
            f"shape {tuple(table.shape)}"
        )
    lo, hi = table.unbind(-1)
    bad = ~(torch.isfinite(table).all(-1) & (lo >= lowest) & (lo < hi) & (hi <= highest))
    if bool(bad.any()):
        column = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"{name} bounds must satisfy {lowest} <= lo < hi <= {highest}, got "
            f"({float(lo[column])}, {float(hi[column])}) for {name} {column}"
        )
    return lo.clone(), hi.clone()


def _compact(lo: Tensor, hi: Tensor) -> list[float] | list[list[float]]:
    """One [lo, hi] pair when every column shares it, else one pair per column."""
    if bool((lo == lo[0]).all()) and bool((hi == hi[0]).all()):
        return [float(lo[0]), float(hi[0])]
    return [[float(a), float(b)] for a, b in zip(lo.tolist(), hi.tolist(), strict=True)]


class InternalCoordinates(nn.Module):
    """x (batch, n, 3) nm <-> h (batch, 3n-6) normalised bonds | angles | torsions.

    ``forward(x) -> (h, log_det)`` with ``log p_x(x) = log p_h(h) + log_det`` (see the module
    docstring); ``inverse(h) -> (x, log_det_inverse)`` places atoms by NeRF in the canonical frame
    (f0 at the origin, f1 on +x, f2 in the xy plane with y > 0), log_det_inverse = -log_det.
    Computes in the input's dtype (float32 or float64); TorchScript-compatible forward.
    """

    __jit_unused_properties__ = [
        "bounds", "bond_slice", "angle_slice", "torsion_slice", "phi_column", "psi_column",
    ]
    __jit_ignored_attributes__ = ["zmatrix", "_bounds"]

    def __init__(
        self,
        zmatrix: ZMatrix,
        bond_bounds_nm: Sequence[float] = DEFAULT_BOND_BOUNDS_NM,
        angle_bounds_rad: Sequence[float] = DEFAULT_ANGLE_BOUNDS_RAD,
    ) -> None:
        super().__init__()
        if not isinstance(zmatrix, ZMatrix):
            raise TypeError(f"expected a ZMatrix, got {type(zmatrix).__name__}")
        self.zmatrix = zmatrix
        n = zmatrix.n_atoms
        self.n_atoms = n
        self.n_bonds = n - 1
        self.n_angles = n - 2
        self.n_torsions = n - 3
        self.dim = 3 * n - 6
        # Per-column intervals (float64 here, cast with the module); not in state dicts: the
        # model config holds them.
        bond_lo, bond_hi = _check_bounds("bond", bond_bounds_nm, self.n_bonds, 0.0, math.inf)
        angle_lo, angle_hi = _check_bounds("angle", angle_bounds_rad, self.n_angles, 0.0,
                                           math.pi)
        for name, value in (("bond_lo", bond_lo), ("bond_width", bond_hi - bond_lo),
                            ("angle_lo", angle_lo), ("angle_width", angle_hi - angle_lo)):
            self.register_buffer(name, value, persistent=False)
        self._bounds = {"bond_nm": _compact(bond_lo, bond_hi),
                        "angle_rad": _compact(angle_lo, angle_hi)}
        self.log_normalizer = float(
            torch.log(bond_hi - bond_lo).sum() + torch.log(angle_hi - angle_lo).sum()
            + self.n_torsions * math.log(2.0 * math.pi) + LOG_ROTATION_VOLUME
        )
        long = torch.long
        self.register_buffer("bond_atoms", torch.tensor(zmatrix.bonds, dtype=long).reshape(-1, 2),
                             persistent=False)
        self.register_buffer("angle_atoms",
                             torch.tensor(zmatrix.angles, dtype=long).reshape(-1, 3),
                             persistent=False)
        self.register_buffer("torsion_atoms",
                             torch.tensor(zmatrix.torsions, dtype=long).reshape(-1, 4),
                             persistent=False)
        mask = torch.zeros(self.dim, dtype=torch.bool)
        mask[self.n_bonds + self.n_angles:] = True
        self.register_buffer("circular_mask", mask, persistent=False)
        # forward_with_derivatives: the atoms of every term in one gather, and the atoms of the
        # (dim, 4) local derivative slots (bonds use 2, angles 3, torsions 4; unused slots point
        # at atom 0 with zero derivatives)
        self.register_buffer(
            "term_atoms",
            torch.cat([self.bond_atoms.flatten(), self.angle_atoms.flatten(),
                       self.torsion_atoms.flatten()]),
            persistent=False,
        )
        slots = torch.zeros(self.dim, 4, dtype=long)
        slots[: self.n_bonds, :2] = self.bond_atoms
        slots[self.n_bonds : self.n_bonds + self.n_angles, :3] = self.angle_atoms
        slots[self.n_bonds + self.n_angles :] = self.torsion_atoms
        self.register_buffer("derivative_atoms", slots, persistent=False)
        self.norm_floor_sq = NORM_FLOOR_SQ
        self.dihedral_degenerate_sq = DIHEDRAL_DEGENERATE_SQ
        self._placement_levels = _placement_levels(zmatrix)

    # --------------------------------------------------------------------------- descriptions

    @property
    def bond_slice(self) -> slice:
        """Columns of h holding the n-1 bonds."""
        return slice(0, self.n_bonds)

    @property
    def angle_slice(self) -> slice:
        """Columns of h holding the n-2 angles."""
        return slice(self.n_bonds, self.n_bonds + self.n_angles)

    @property
    def torsion_slice(self) -> slice:
        """Columns of h holding the n-3 torsions (circular)."""
        return slice(self.n_bonds + self.n_angles, self.dim)

    @property
    def phi_column(self) -> int:
        """Column of h holding the backbone phi (single-phi molecules such as alanine dipeptide)."""
        return self.torsion_slice.start + self.zmatrix.phi_index

    @property
    def psi_column(self) -> int:
        """Column of h holding the backbone psi (single-psi molecules such as alanine dipeptide)."""
        return self.torsion_slice.start + self.zmatrix.psi_index

    @property
    def bounds(self) -> dict[str, list[float]]:
        """Physical intervals mapped onto [0, 1] (plain lists, for model metadata): one
        [lo, hi] pair per coordinate type, or one pair per column where they differ."""
        return {**self._bounds, "torsion_rad": [-math.pi, math.pi]}

    def column_widths(self) -> Tensor:
        """Physical width of every column's interval, (dim,) float64: bonds in nm, angles and
        torsions (2 pi) in rad."""
        return torch.cat([self.bond_width.double(), self.angle_width.double(),
                          torch.full((self.n_torsions,), 2.0 * math.pi, dtype=torch.float64)])

    def column_lows(self) -> Tensor:
        """Lower end of every column's interval, (dim,) float64 (torsions: -pi)."""
        return torch.cat([self.bond_lo.double(), self.angle_lo.double(),
                          torch.full((self.n_torsions,), -math.pi, dtype=torch.float64)])

    def to_metadata(self) -> dict[str, Any]:
        """JSON-compatible description that :meth:`from_metadata` rebuilds the layer from."""
        return {"zmatrix": self.zmatrix.to_dict(), "bounds": self.bounds}

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> InternalCoordinates:
        """Inverse of :meth:`to_metadata`."""
        bounds = metadata["bounds"]
        return cls(
            ZMatrix.from_dict(metadata["zmatrix"]),
            bond_bounds_nm=bounds["bond_nm"],
            angle_bounds_rad=bounds["angle_rad"],
        )

    def check_positions(self, x: Any) -> None:
        """Raise ValueError unless x is a finite float tensor (batch, n_atoms, 3) (eager only)."""
        check_positions(x, self.n_atoms)

    def extra_repr(self) -> str:
        def span(lo: Tensor, width: Tensor) -> str:
            low, high = float(lo.min()), float((lo + width).max())
            shared = bool((lo == lo[0]).all()) and bool((width == width[0]).all())
            return f"[{low:g}, {high:g}]" if shared else f"per column within [{low:g}, {high:g}]"

        return (
            f"n_atoms={self.n_atoms}, bonds={span(self.bond_lo, self.bond_width)} nm, "
            f"angles={span(self.angle_lo, self.angle_width)} rad"
        )

    # ------------------------------------------------------------------------------ analytic

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (batch, n_atoms, 3) nm -> h (batch, 3n-6), log_det (batch,) in x's dtype."""
        if x.dim() != 3 or x.size(2) != 3:
            raise ValueError(
                f"positions must have shape (batch, {self.n_atoms}, 3) in nm, got {x.shape}"
            )
        if x.size(1) != self.n_atoms:
            raise ValueError(
                f"wrong atom count: expected {self.n_atoms} atoms, got {x.size(1)}"
            )
        if not x.is_floating_point():
            raise ValueError(f"positions must be a floating-point tensor, got {x.dtype}")
        bond_points, angle_points, torsion_points = self._term_points(x)
        p0, p1 = bond_points.unbind(2)
        bonds = distance(p0, p1)
        p, vertex, q = angle_points.unbind(2)
        angles, log_sin = angle_and_log_sin(p, vertex, q)
        t0, t1, t2, t3 = torsion_points.unbind(2)
        torsions = dihedral(t0, t1, t2, t3)
        return self._normalised(bonds, angles, torsions, log_sin)

    def _normalised(
        self, bonds: Tensor, angles: Tensor, torsions: Tensor, log_sin: Tensor
    ) -> tuple[Tensor, Tensor]:
        """h (batch, dim) in [0, 1] per coordinate and log|det| (batch,) from the physical
        bonds (nm), angles and torsions (rad) and the angles' log sin."""
        h = torch.cat(
            [
                (bonds - self.bond_lo.to(bonds.dtype)) / self.bond_width.to(bonds.dtype),
                (angles - self.angle_lo.to(angles.dtype)) / self.angle_width.to(angles.dtype),
                torch.remainder(torsions + math.pi, 2.0 * math.pi) / (2.0 * math.pi),
            ],
            dim=-1,
        )
        log_det = -(2.0 * torch.log(bonds).sum(dim=-1) + log_sin.sum(dim=-1)) - self.log_normalizer
        return h, log_det

    def _term_points(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Positions of the atoms of every bond, angle and torsion, gathered at once:
        (batch, n_bonds, 2, 3), (batch, n_angles, 3, 3), (batch, n_torsions, 4, 3)."""
        n_bonds, n_angles, n_torsions = self.n_bonds, self.n_angles, self.n_torsions
        points = x.index_select(1, self.term_atoms)
        return (
            points.narrow(1, 0, 2 * n_bonds).unflatten(1, [n_bonds, 2]),
            points.narrow(1, 2 * n_bonds, 3 * n_angles).unflatten(1, [n_angles, 3]),
            points.narrow(1, 2 * n_bonds + 3 * n_angles, 4 * n_torsions).unflatten(
                1, [n_torsions, 4]
            ),
        )

    @torch.jit.export
    def forward_with_derivatives(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """:meth:`forward` plus its derivatives w.r.t. the positions, without autograd.

        Args:
            x: (batch, n_atoms, 3) nm.

        Returns:
            ``(h (batch, dim), log_det (batch,), dh_dx (batch, dim, 4, 3),
            dlog_det_dx (batch, dim, 4, 3))``: ``dh_dx[:, j, m]`` is dh_j / d x[atom] (per nm)
            for ``atom = derivative_atoms[j, m]``, and ``dlog_det_dx[:, j, m]`` the same for the
            log-det term of coordinate j (bonds and angles; zero for torsions and unused slots).
            h and log_det equal :meth:`forward`'s to rounding.
        """
        if x.dim() != 3 or x.size(2) != 3 or x.size(1) != self.n_atoms:
            raise ValueError(
                f"positions must have shape (batch, {self.n_atoms}, 3) in nm, got {x.shape}"
            )
        batch = x.size(0)
        n_bonds, n_angles, n_torsions = self.n_bonds, self.n_angles, self.n_torsions
        bond_points, angle_points, torsion_points = self._term_points(x)
        derivatives = x.new_zeros(batch, self.dim, 2, 4, 3)  # [dh, dlog_det] per slot

        # bonds: d = |p0 - p1|, log-det term -2 log d
        p0, p1 = bond_points.unbind(2)
        bond_vector = p0 - p1
        bonds = torch.sqrt((bond_vector * bond_vector).sum(dim=-1) + self.norm_floor_sq)
        unit = bond_vector / bonds.unsqueeze(-1)
        unit_pair = torch.stack([unit, -unit], dim=-2)  # d d / d(p0, p1)
        bond_slots = derivatives.narrow(1, 0, n_bonds).narrow(3, 0, 2)
        bond_slots[:, :, 0] = unit_pair / self.bond_width.to(x.dtype).unsqueeze(-1).unsqueeze(-1)
        bond_slots[:, :, 1] = unit_pair * (-2.0 / bonds).unsqueeze(-1).unsqueeze(-1)

        # angles: theta = atan2(n, m), n = |u x v|, m = u . v; log-det term -log sin theta
        p, vertex, q = angle_points.unbind(2)
        u = p - vertex
        v = q - vertex
        cross = torch.linalg.cross(u, v, dim=-1)
        cross_norm = torch.sqrt((cross * cross).sum(dim=-1) + self.norm_floor_sq)
        dot = (u * v).sum(dim=-1)
        angles = torch.atan2(cross_norm, dot)
        squared = cross_norm * cross_norm + dot * dot
        log_sin = torch.log(cross_norm) - 0.5 * torch.log(squared)
        # dn/d(u, v) = (v x c, c x u) / n and dm/d(u, v) = (v, u)
        d_norm = torch.linalg.cross(
            torch.stack([v, cross], dim=-2), torch.stack([cross, u], dim=-2), dim=-1
        ) / cross_norm.unsqueeze(-1).unsqueeze(-1)
        d_dot = torch.stack([v, u], dim=-2)
        inv_squared = squared.reciprocal().unsqueeze(-1).unsqueeze(-1)
        m = dot.unsqueeze(-1).unsqueeze(-1)
        n = cross_norm.unsqueeze(-1).unsqueeze(-1)
        d_angle = (m * d_norm - n * d_dot) * inv_squared  # d theta / d(u, v)
        # log sin = log n - log(n^2 + m^2) / 2
        d_log_sin = d_norm / n - (n * d_norm + m * d_dot) * inv_squared
        angle_slots = derivatives.narrow(1, n_bonds, n_angles).narrow(3, 0, 3)
        angle_width = self.angle_width.to(x.dtype).unsqueeze(-1).unsqueeze(-1)
        for slot, d_uv in ((0, d_angle / angle_width), (1, -d_log_sin)):
            d_u, d_v = d_uv.unbind(-2)
            angle_slots[:, :, slot] = torch.stack([d_u, -(d_u + d_v), d_v], dim=-2)

        # torsions: phi = atan2(y, x), y = (b1 . (b2 x b3)) |b2|, x = (b2 x b3) . (b1 x b2)
        t0, t1, t2, t3 = torsion_points.unbind(2)
        b1 = t1 - t0
        b2 = t2 - t1
        b3 = t3 - t2
        c1 = torch.linalg.cross(b2, b3, dim=-1)
        c2 = torch.linalg.cross(b1, b2, dim=-1)
        b2_norm = torch.sqrt((b2 * b2).sum(dim=-1) + self.norm_floor_sq)
        triple = (b1 * c1).sum(dim=-1)
        y = triple * b2_norm
        x_dih = (c1 * c2).sum(dim=-1)
        squared_yx = x_dih * x_dih + y * y
        degenerate = squared_yx <= self.dihedral_degenerate_sq
        safe_x = torch.where(degenerate, torch.ones_like(x_dih), x_dih)
        safe_y = torch.where(degenerate, torch.zeros_like(y), y)
        torsions = torch.where(degenerate, torch.zeros_like(x_dih), torch.atan2(safe_y, safe_x))
        # dy/db_k and dx/db_k, k = 1, 2, 3
        crosses = torch.linalg.cross(
            torch.stack([b3, b2, b3, c1, c2], dim=-2), torch.stack([b1, c1, c2, b1, b2], dim=-2),
            dim=-1,
        )
        b3_b1, b2_c1, b3_c2, c1_b1, c2_b2 = crosses.unbind(-2)
        norm = b2_norm.unsqueeze(-1)
        d_y = torch.stack([norm * c1, norm * b3_b1 + (triple.unsqueeze(-1) / norm) * b2,
                           norm * c2], dim=-2)
        d_x = torch.stack([b2_c1, b3_c2 + c1_b1, c2_b2], dim=-2)
        scale = torch.where(degenerate, torch.zeros_like(squared_yx),
                            (1.0 / (2.0 * math.pi)) / torch.where(degenerate,
                                                                   torch.ones_like(squared_yx),
                                                                   squared_yx))
        d_phi = (safe_x.unsqueeze(-1).unsqueeze(-1) * d_y
                 - safe_y.unsqueeze(-1).unsqueeze(-1) * d_x) * scale.unsqueeze(-1).unsqueeze(-1)
        d_b1, d_b2, d_b3 = d_phi.unbind(-2)
        derivatives.narrow(1, n_bonds + n_angles, n_torsions)[:, :, 0] = torch.stack(
            [-d_b1, d_b1 - d_b2, d_b2 - d_b3, d_b3], dim=-2
        )

        h, log_det = self._normalised(bonds, angles, torsions, log_sin)
        return h, log_det, derivatives.select(2, 0), derivatives.select(2, 1)

    # ----------------------------------------------------------------------------- sampling

    def physical(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """h (batch, 3n-6) -> bonds (batch, n-1) nm, angles (batch, n-2) rad,
        torsions (batch, n-3) rad in [-pi, pi)."""
        self._check_h(h)
        bonds = self.bond_lo.to(h.dtype) + self.bond_width.to(h.dtype) * h[:, self.bond_slice]
        angles = (self.angle_lo.to(h.dtype)
                  + self.angle_width.to(h.dtype) * h[:, self.angle_slice])
        torsions = 2.0 * math.pi * torch.remainder(h[:, self.torsion_slice], 1.0) - math.pi
        return bonds, angles, torsions

    def inverse(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """h (batch, 3n-6) -> x (batch, n_atoms, 3) nm in the canonical frame, log_det_inverse.

        log_det_inverse (batch,) = -log_det of forward at x, i.e.
        log p_h(h) = log p_x(x) + log_det_inverse.
        """
        bonds, angles, torsions = self.physical(h)
        batch = h.shape[0]
        f0, f1, f2 = self.zmatrix.frame
        zero = torch.zeros_like(bonds[:, 0])
        p1 = torch.stack([bonds[:, 0], zero, zero], dim=-1)
        p2 = p1 + bonds[:, 1:2] * torch.stack(
            [-torch.cos(angles[:, 0]), torch.sin(angles[:, 0]), zero], dim=-1
        )
        frame_positions = torch.stack([torch.zeros_like(p1), p1, p2], dim=1)
        x = h.new_zeros(batch, self.n_atoms, 3)
        device = h.device
        x = x.index_copy(1, torch.tensor([f0, f1, f2], device=device), frame_positions)
        for rows in self._placement_levels:
            row_index = torch.tensor(rows, device=device)
            atom, b, a, t = self.torsion_atoms[row_index].unbind(-1)
            placed = place_atom(
                x[:, b], x[:, a], x[:, t],
                bonds[:, row_index + 2], angles[:, row_index + 1], torsions[:, row_index],
            )
            x = x.index_copy(1, atom, placed)
        log_sin = torch.log(torch.abs(torch.sin(angles)))
        log_det_inverse = (
            2.0 * torch.log(torch.abs(bonds)).sum(dim=-1) + log_sin.sum(dim=-1)
            + self.log_normalizer
        )
        return x, log_det_inverse

    def _check_h(self, h: Any) -> None:
        if not isinstance(h, Tensor) or not h.is_floating_point():
            raise ValueError("internal coordinates must be a floating-point torch.Tensor")
        if h.dim() != 2 or h.size(1) != self.dim:
            raise ValueError(
                f"internal coordinates must have shape (batch, {self.dim}) for "
                f"{self.n_atoms} atoms, got {tuple(h.shape)}"
            )


def _placement_levels(zmatrix: ZMatrix) -> list[list[int]]:
    """Rows grouped so each group depends only on the frame and earlier groups (row indices)."""
    level = dict.fromkeys(zmatrix.frame, 0)
    groups: dict[int, list[int]] = {}
    for k, (atom, *partners) in enumerate(zmatrix.rows):
        level[atom] = 1 + max(level[p] for p in partners)
        groups.setdefault(level[atom], []).append(k)
    return [groups[key] for key in sorted(groups)]
