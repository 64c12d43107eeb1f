"""Energy profiles along one internal coordinate (flowff.analysis.ic_profiles)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowff.analysis.ic_profiles import column_scan, energy_rise, max_curvature
from flowff.ic.layer import InternalCoordinates
from flowff.ic.zmatrix import ZMatrix


@pytest.fixture(scope="module")
def ic_and_frames(ala_structure):
    _, positions = ala_structure
    ic = InternalCoordinates(ZMatrix.alanine_dipeptide()).to(torch.float64)
    generator = torch.Generator().manual_seed(0)
    x = torch.tensor(positions, dtype=torch.float64)[None] + 0.002 * torch.randn(
        4, 22, 3, generator=generator, dtype=torch.float64)
    return ic, x


@pytest.mark.parametrize("column", [0, 7, 25, 40])
def test_scan_moves_one_coordinate_by_the_offset(ic_and_frames, column: int) -> None:
    ic, x = ic_and_frames
    offsets = [-0.02, 0.0, 0.05]
    scanned = column_scan(ic, x, column, offsets)
    assert scanned.shape == (4, 3, 22, 3)
    h0, _ = ic(x)
    h, _ = ic(scanned.flatten(0, 1))
    change = (h.unflatten(0, (4, 3)) - h0[:, None]) * ic.column_widths()
    want = torch.zeros_like(change)
    want[:, :, column] = torch.tensor(offsets, dtype=torch.float64)
    torch.testing.assert_close(change, want, rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="bond or an angle"):
        column_scan(ic, x, ic.dim - 1, offsets)


def test_rise_of_a_harmonic_bond_energy(ic_and_frames) -> None:
    ic, x = ic_and_frames
    atoms = ic.bond_atoms[3]

    def harmonic(xs: torch.Tensor) -> np.ndarray:  # 1e4 kT/nm^2 around 0.15 nm, bond 3 only
        d = (xs[:, atoms[0]] - xs[:, atoms[1]]).norm(dim=-1)
        return (1e4 * (d - 0.15) ** 2).numpy()

    d0 = (x[:, atoms[0]] - x[:, atoms[1]]).norm(dim=-1).numpy()
    offsets = [0.01, 0.1]
    want = np.median([[1e4 * ((d + o - 0.15) ** 2 - (d - 0.15) ** 2) for o in offsets]
                      for d in d0], axis=0)
    np.testing.assert_allclose(energy_rise(harmonic, ic, x, 3, offsets), want, rtol=1e-8)
    assert np.abs(energy_rise(harmonic, ic, x, 4, offsets)).max() < 1e-8  # other bond: flat


def test_max_curvature_finds_the_stiffness_and_a_kink(ic_and_frames) -> None:
    ic, x = ic_and_frames
    atoms = ic.bond_atoms[3]

    def length(xs: torch.Tensor) -> torch.Tensor:
        return (xs[:, atoms[0]] - xs[:, atoms[1]]).norm(dim=-1)

    def harmonic(xs: torch.Tensor) -> np.ndarray:  # curvature 2e4 kT/nm^2 everywhere
        return (1e4 * (length(xs) - 0.15) ** 2).numpy()

    stiffness = max_curvature(harmonic, ic, x, 3, (-0.01, 0.02), 1e-3)
    assert stiffness.shape == (4,)
    np.testing.assert_allclose(stiffness, 2e4, rtol=1e-5)
    d0 = float(length(x).max())

    def kinked(xs: torch.Tensor) -> np.ndarray:  # + a slope change of 10 kT/nm, 5 pm out
        d = length(xs)
        return (1e4 * (d - 0.15) ** 2 + 10.0 * torch.relu(d - d0 - 0.005)).numpy()

    # a slope jump s seen by second differences with spacing h: up to s / h
    assert max_curvature(kinked, ic, x, 3, (-0.01, 0.02), 1e-3).max() > 5e3 + 2e4
    with pytest.raises(ValueError, match="step"):
        max_curvature(harmonic, ic, x, 3, (0.02, -0.01), 1e-3)
