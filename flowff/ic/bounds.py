"""Bond and angle intervals fitted to data: for the flow's support, or for where the wall on the
internal coordinates starts.

With one wide interval for every bond ([0.05, 0.3] nm) the flow must put the density of a bond
that fluctuates by ~3 pm into a sliver of [0, 1]; outside the sliver its density cannot fall
below the mixture's identity share, so the energy plateaus ~10 kT above the minimum all the way
to the interval's end, and long MD runs stretch bonds until they break. Fitted intervals end a
few standard deviations beyond the data; past them the wall on h takes over
(:func:`flowff.energy.flow_energy.ic_wall_parameters`). Narrow intervals make every bump of
the flow's mixtures (W / w)^2 times stiffer in nm, though: the edges of the bumps' supports
become kinks of ~1e8 kT/nm^2 that MD cannot integrate. :func:`wall_bounds` keeps the wide
interval for the flow and starts the wall just beyond the data instead.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor

#: Default margin beyond the data's extremes, in standard deviations of each coordinate.
DEFAULT_MARGIN_STD: float = 3.0
#: Default margin of walls fitted to data, in standard deviations.
DEFAULT_WALL_MARGIN_STD: float = 2.0
#: Smallest interval width allowed, bonds in nm and angles in rad (guards constant columns).
MIN_WIDTH: tuple[float, float] = (1e-3, 1e-2)


def fit_ic_bounds(
    ic: torch.nn.Module, positions: Tensor, kinds: tuple[str, ...] = ("bonds",),
    margin_std: float = DEFAULT_MARGIN_STD, batch_size: int = 4096,
) -> dict[str, list[list[float]]]:
    """Per-column intervals [min - m sigma, max + m sigma] of the bonds (nm) and/or angles (rad)
    of ``positions`` (frames, n_atoms, 3) nm, for the kinds named in ``kinds``.

    Returns ``{"bond_bounds_nm": [[lo, hi], ...], "angle_bounds_rad": ...}`` (only the fitted
    kinds), ready for :class:`flowff.energy.builder.FlowModelConfig`; angles are clipped to
    [0, pi] and bonds to non-negative lengths.
    """
    unknown = set(kinds) - {"bonds", "angles"}
    if unknown:
        raise ValueError(f"kinds must be 'bonds' and/or 'angles', got {sorted(unknown)}")
    if margin_std < 0 or not math.isfinite(margin_std):
        raise ValueError(f"margin_std must be a non-negative number, got {margin_std}")
    if positions.dim() != 3 or positions.shape[0] < 2:
        raise ValueError(
            f"need positions of shape (frames >= 2, n_atoms, 3), got {tuple(positions.shape)}"
        )
    ic64 = copy.deepcopy(ic).to(torch.float64)
    bonds, angles = [], []
    with torch.no_grad():
        for start in range(0, positions.shape[0], batch_size):
            x = positions[start:start + batch_size].to(torch.float64)
            b, a, _ = ic64.physical(ic64(x)[0])
            bonds.append(b)
            angles.append(a)
    result: dict[str, list[list[float]]] = {}
    for kind, values, key, floor, ceiling, min_width in (
        ("bonds", torch.cat(bonds), "bond_bounds_nm", 0.0, math.inf, MIN_WIDTH[0]),
        ("angles", torch.cat(angles), "angle_bounds_rad", 0.0, math.pi, MIN_WIDTH[1]),
    ):
        if kind not in kinds:
            continue
        pad = margin_std * values.std(dim=0) + 0.5 * min_width
        lo = (values.min(dim=0).values - pad).clamp(min=floor)
        hi = (values.max(dim=0).values + pad).clamp(max=ceiling)
        result[key] = [[float(a), float(b)] for a, b in zip(lo.tolist(), hi.tolist(),
                                                              strict=True)]
    return result


def wall_bounds(fitted: dict[str, list[list[float]]]) -> dict[str, list[list[float]]]:
    """:func:`fit_ic_bounds`' result as ``ic_wall_bounds`` of a model config
    (``{"bond_nm": ..., "angle_rad": ...}``)."""
    names = {"bond_bounds_nm": "bond_nm", "angle_bounds_rad": "angle_rad"}
    return {names[key]: value for key, value in fitted.items()}
