"""Energy profiles along single internal coordinates: how fast an energy rises when one bond
is stretched (or one angle opened) with every other internal coordinate held.

Used to check that a flow potential confines bonds and angles like the force field it learned
(a flow whose density has a floor outside the data gives a plateau instead of a wall, and MD on
it breaks bonds; docs/training.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor


def column_scan(
    ic: torch.nn.Module, positions: Tensor, column: int, offsets: Sequence[float]
) -> Tensor:
    """Configurations (frames, len(offsets), n_atoms, 3) nm: ``positions`` (frames, n, 3) with
    the physical value of IC ``column`` (a bond in nm or an angle in rad) moved by each offset,
    every other internal coordinate unchanged (rebuilt by ``ic.inverse``, canonical frame)."""
    if not 0 <= column < ic.n_bonds + ic.n_angles:
        raise ValueError(f"column must be a bond or an angle (0..{ic.n_bonds + ic.n_angles - 1})"
                         f", got {column}")
    with torch.no_grad():
        h, _ = ic(positions.to(torch.float64))
        width = ic.column_widths()[column]
        shift = torch.as_tensor(np.asarray(offsets, dtype=np.float64)) / width
        scanned = h[:, None, :].repeat(1, len(offsets), 1)
        scanned[:, :, column] += shift
        x, _ = ic.inverse(scanned.flatten(0, 1))
    return x.unflatten(0, (h.shape[0], len(offsets)))


def energy_rise(
    energy_kT: Callable[[Tensor], np.ndarray], ic: torch.nn.Module, positions: Tensor,
    column: int, offsets: Sequence[float],
) -> np.ndarray:
    """Median over frames of u(scanned) - u(frame) in kT, shape (len(offsets),).

    ``energy_kT`` maps configurations (batch, n_atoms, 3) nm to energies (batch,) in kT.
    """
    x = column_scan(ic, positions, column, list(offsets) + [0.0])
    energies = np.asarray(energy_kT(x.flatten(0, 1))).reshape(x.shape[0], x.shape[1])
    return np.median(energies[:, :-1] - energies[:, -1:], axis=0)


def max_curvature(
    energy_kT: Callable[[Tensor], np.ndarray], ic: torch.nn.Module, positions: Tensor,
    column: int, window: tuple[float, float], step: float,
) -> np.ndarray:
    """Per frame, the largest |d^2u/dq^2| along IC ``column`` (kT/nm^2 for bonds, kT/rad^2 for
    angles) over q in [q_frame + window[0], q_frame + window[1]], by central second differences
    with spacing ``step``; shape (frames,). Sharp bends of the energy (a bump's support ending
    beyond the data) show here long before MD blows up on them."""
    if not step > 0 or not window[0] < window[1]:
        raise ValueError(f"need step > 0 and window[0] < window[1], got {step}, {window}")
    offsets = np.arange(window[0], window[1] + 0.5 * step, step)
    x = column_scan(ic, positions, column, list(offsets))
    energies = np.asarray(energy_kT(x.flatten(0, 1))).reshape(x.shape[0], x.shape[1])
    second = (energies[:, 2:] - 2.0 * energies[:, 1:-1] + energies[:, :-2]) / step**2
    return np.abs(second).max(axis=1)
