"""Tail frames for force matching: MD frames perturbed in internal coordinates, with forces.

Why: NLL and force matching on MD frames only shape the flow where the data are. Beyond the
data a smooth mixture's density falls to its identity share (a constant), so the flow energy
goes flat a few kT above the minimum; MD on it drifts into unphysical shapes (an H-C-C angle
at 175 degrees, found in the shipped model's NVE blow-ups). The force-field forces are exact
anywhere, so force matching can also be done on configurations next to the data: here, the
batch's bonds, angles and torsions plus Gaussian noise (per-type widths), rebuilt to Cartesian
positions by the IC layer and labelled with the classical forces from OpenMM.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

#: Default noise widths: bonds 0.003 nm, angles 15 degrees, torsions 20 degrees.
DEFAULT_TAIL_SIGMA: tuple[float, float, float] = (0.003, 0.26, 0.35)
#: Default probability that a coordinate is perturbed.
DEFAULT_TAIL_FRACTION: float = 0.1
#: Perturbed interval coordinates are kept inside [lo, hi] of their normalised range (angles
#: below ~170 degrees, away from the torsions' degenerate straight angle).
TAIL_CLAMP: tuple[float, float] = (0.02, 0.93)


class TailFrames:
    """Perturbed copies of MD frames and their reference forces.

    Args:
        ic: the model's :class:`flowff.ic.layer.InternalCoordinates`.
        forces: callable, positions (batch, n, 3) nm float64 numpy -> (energies kJ/mol,
            forces kJ/mol/nm), e.g. :class:`flowff.energy.openmm_energy.OpenMMEnergyEvaluator`.
        sigma: noise widths (bonds nm, angles rad, torsions rad).
        fraction: probability that a coordinate is perturbed (sparse noise: a few coordinates
            per frame go far, instead of all a little; moving every torsion at once mostly
            makes clashes).
        seed: seed of the noise generator (its state is checkpointed by the trainer).
    """

    def __init__(
        self,
        ic: torch.nn.Module,
        forces: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
        sigma: tuple[float, float, float] = DEFAULT_TAIL_SIGMA,
        fraction: float = DEFAULT_TAIL_FRACTION,
        seed: int = 0,
    ) -> None:
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        self.fraction = float(fraction)
        if len(sigma) != 3 or min(sigma) < 0:
            raise ValueError(f"sigma must be 3 non-negative widths (nm, rad, rad), got {sigma}")
        self.ic = ic
        self.forces = forces
        scale = torch.empty(ic.dim, dtype=torch.float64)
        scale[ic.bond_slice] = sigma[0] / ic.bond_width
        scale[ic.angle_slice] = sigma[1] / ic.angle_width
        scale[ic.circular_mask] = sigma[2] / (2.0 * np.pi)
        self.scale = scale
        self.generator = torch.Generator().manual_seed(int(seed))

    def __call__(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Perturbed positions (m, n, 3) nm and forces (m, n, 3) kJ/mol/nm, in positions' dtype.

        Frames whose classical energy or forces are not finite are dropped (m <= batch).
        """
        with torch.no_grad():
            h, _ = self.ic(positions.to(torch.float64))
            noise = torch.randn(h.shape, generator=self.generator, dtype=torch.float64)
            chosen = torch.rand(h.shape, generator=self.generator, dtype=torch.float64)
            h = h + torch.where(chosen < self.fraction, noise * self.scale, 0.0)
            circular = self.ic.circular_mask
            h = torch.where(circular, h - torch.floor(h), h.clamp(*TAIL_CLAMP))
            x, _ = self.ic.inverse(h)
        energies, forces = self.forces(x.numpy())
        keep = torch.as_tensor(np.isfinite(energies) & np.isfinite(forces).all(axis=(1, 2)))
        return (x[keep].to(positions.dtype),
                torch.as_tensor(forces, dtype=positions.dtype)[keep])
