"""Bond and angle intervals fitted to data (flowff.ic.bounds)."""

from __future__ import annotations

import math

import pytest
import torch

from flowff.ic.bounds import fit_ic_bounds
from flowff.ic.layer import InternalCoordinates
from flowff.ic.zmatrix import ZMatrix


def test_fitted_intervals_enclose_the_data_with_the_margin(alanine_zmatrix: ZMatrix,
                                                           alanine_positions: torch.Tensor
                                                           ) -> None:
    ic = InternalCoordinates(alanine_zmatrix)
    generator = torch.Generator().manual_seed(0)
    x = alanine_positions[None] + 0.004 * torch.randn(
        500, 22, 3, generator=generator, dtype=torch.float64)
    bonds, angles, _ = ic.physical(ic(x)[0])
    fitted = fit_ic_bounds(ic, x, ("bonds", "angles"), margin_std=2.0)
    bond_bounds = torch.tensor(fitted["bond_bounds_nm"], dtype=torch.float64)
    angle_bounds = torch.tensor(fitted["angle_bounds_rad"], dtype=torch.float64)
    assert bond_bounds.shape == (21, 2) and angle_bounds.shape == (20, 2)
    pad = 2.0 * bonds.std(0) + 0.5e-3
    torch.testing.assert_close(bond_bounds[:, 0], bonds.min(0).values - pad)
    torch.testing.assert_close(bond_bounds[:, 1], bonds.max(0).values + pad)
    assert bool((angle_bounds[:, 0] < angles.min(0).values).all())
    assert bool((angle_bounds[:, 1] > angles.max(0).values).all())
    assert float(angle_bounds.max()) <= math.pi
    # every frame lies inside the fitted layer's unit box
    narrow = InternalCoordinates(alanine_zmatrix, fitted["bond_bounds_nm"],
                                 fitted["angle_bounds_rad"])
    h = narrow(x)[0][:, : ic.n_bonds + ic.n_angles]
    assert bool(((h > 0) & (h < 1)).all())
    assert list(fit_ic_bounds(ic, x)) == ["bond_bounds_nm"]  # bonds only by default


def test_fit_rejects_bad_requests(alanine_zmatrix: ZMatrix,
                                  alanine_positions: torch.Tensor) -> None:
    ic = InternalCoordinates(alanine_zmatrix)
    x = alanine_positions[None].repeat(3, 1, 1)
    with pytest.raises(ValueError, match="torsions"):
        fit_ic_bounds(ic, x, ("torsions",))
    with pytest.raises(ValueError, match="margin_std"):
        fit_ic_bounds(ic, x, margin_std=-1.0)
    with pytest.raises(ValueError, match="frames >= 2"):
        fit_ic_bounds(ic, x[:1])
    # identical frames: zero spread, the minimum width keeps intervals valid
    fitted = fit_ic_bounds(ic, x)
    InternalCoordinates(alanine_zmatrix, fitted["bond_bounds_nm"])
