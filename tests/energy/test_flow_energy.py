"""FlowEnergy: energy = kT * (-log p), confinement outside the support, replicas, export."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flowff._torchscript import quiet_jit
from flowff.energy.confinement import SmoothBoxConfinement, smooth_step_quadratic
from flowff.energy.flow_energy import IC_WALL_SCALE, kT_kJ_per_mol


def test_energy_is_kT_times_negative_log_density(small_energy, ala_structure) -> None:
    _, pos = ala_structure
    x = torch.tensor(pos)[None]
    h, log_det_ic = small_energy.ic(x)
    log_p_h = small_energy.flow.log_prob(h)
    expected = -kT_kJ_per_mol(300.0) * (log_p_h + log_det_ic)
    energy = small_energy(torch.tensor(pos))
    assert energy.item() == pytest.approx(expected.item(), rel=1e-12)
    assert kT_kJ_per_mol(300.0) == pytest.approx(2.494339, rel=1e-6)


def test_positions_are_cast_and_checked(small_energy, ala_structure) -> None:
    _, pos = ala_structure
    e64 = small_energy(torch.tensor(pos, dtype=torch.float64))
    e32 = small_energy(torch.tensor(pos, dtype=torch.float32))
    assert e64.dtype == torch.float64 and e32.dtype == torch.float64
    assert e32.item() == pytest.approx(e64.item(), abs=1e-2)
    with pytest.raises(ValueError, match="not a multiple of the model's 22 atoms"):
        small_energy(torch.zeros(21, 3, dtype=torch.float64))
    bad = torch.tensor(pos)
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        small_energy(bad)


def test_replicas_get_independent_forces(small_energy, ala_structure) -> None:
    _, pos = ala_structure
    gen = torch.Generator().manual_seed(1)
    base = torch.tensor(pos)
    replicas = torch.stack([base + 0.005 * torch.randn(base.shape, generator=gen,
                                                       dtype=base.dtype) for _ in range(3)])
    x = replicas.reshape(-1, 3).clone().requires_grad_(True)
    total = small_energy(x)
    (grad,) = torch.autograd.grad(total, x)
    singles = []
    for r in range(3):
        xr = replicas[r].clone().requires_grad_(True)
        er = small_energy(xr)
        (gr,) = torch.autograd.grad(er, xr)
        singles.append((er.item(), gr))
    assert total.item() == pytest.approx(sum(e for e, _ in singles), rel=1e-12)
    for r in range(3):
        torch.testing.assert_close(grad.reshape(3, 22, 3)[r], singles[r][1], rtol=1e-10,
                                   atol=1e-10)


def test_forces_match_finite_differences(small_energy, ala_structure) -> None:
    _, pos = ala_structure
    x = torch.tensor(pos, requires_grad=True)
    (grad,) = torch.autograd.grad(small_energy(x), x)
    eps = 1e-6
    for atom, axis in [(0, 0), (8, 1), (14, 2), (21, 0)]:
        dx = torch.zeros_like(x)
        dx[atom, axis] = eps
        with torch.no_grad():
            fd = (small_energy(x + dx) - small_energy(x - dx)) / (2 * eps)
        assert grad[atom, axis].item() == pytest.approx(fd.item(), rel=1e-5, abs=1e-4)


def test_scripted_energy_matches_eager(small_energy, ala_structure) -> None:
    _, pos = ala_structure
    with quiet_jit():
        scripted = torch.jit.script(small_energy)
    x = torch.tensor(pos)
    assert scripted(x).item() == pytest.approx(small_energy(x).item(), rel=1e-13)


def test_confinement_is_zero_inside_smooth_and_confining() -> None:
    u = torch.linspace(-0.5, 0.5, 2001, dtype=torch.float64, requires_grad=True)
    s = smooth_step_quadratic(u, torch.tensor(0.01, dtype=u.dtype))
    assert torch.all(s[u <= 0] == 0)
    (d1,) = torch.autograd.grad(s.sum(), u, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), u, create_graph=True)
    (d3,) = torch.autograd.grad(d2.sum(), u)
    assert torch.isfinite(d1).all() and torch.isfinite(d2).all() and torch.isfinite(d3).all()
    # C-infinity at 0: every derivative tends to 0 from the right.
    small = torch.tensor([1e-4], dtype=torch.float64, requires_grad=True)
    width = torch.tensor(0.01, dtype=small.dtype)
    (g,) = torch.autograd.grad(smooth_step_quadratic(small, width).sum(), small)
    assert abs(g.item()) < 1e-30
    wall = SmoothBoxConfinement(torch.tensor([True, False]))
    z = torch.tensor([[0.5, 3.0], [1.02, 0.5], [-0.05, 0.5], [1.2, 0.5]], dtype=torch.float64)
    e = wall(z)
    assert e[0].item() == 0.0  # inside; circular coordinate 3.0 has no wall
    assert 0 < e[1].item() < e[3].item()  # grows outside
    assert e[2].item() > 0
    assert e[3].item() == pytest.approx(1e4 * 0.2**2 * math.exp(-0.01 / 0.2), rel=1e-12)


def test_energy_and_forces_finite_and_continuous_outside_the_support(
    small_energy, ala_structure
) -> None:
    """Stretch a bond through its upper bound (0.3 nm): energy finite, forces continuous."""
    _, pos = ala_structure
    ic = small_energy.ic
    h0, _ = ic(torch.tensor(pos)[None])
    hi = ic.bounds["bond_nm"][1]
    lengths = np.linspace(hi - 0.01, hi + 0.05, 121)
    energies, forces = [], []
    for length in lengths:
        h = h0.clone()
        col = ic.n_bonds - 1  # a terminal bond
        h[0, col] = (length - ic.bounds["bond_nm"][0]) / (hi - ic.bounds["bond_nm"][0])
        x, _ = ic.inverse(h)
        x = x[0].clone().requires_grad_(True)
        e = small_energy(x)
        (g,) = torch.autograd.grad(e, x)
        energies.append(e.item())
        forces.append(g.norm().item())
    energies, forces = np.array(energies), np.array(forces)
    assert np.isfinite(energies).all() and np.isfinite(forces).all()
    assert energies[-1] > energies[np.searchsorted(lengths, hi)] + 10.0  # confined
    # No jumps: successive differences are small compared with the range.
    assert np.abs(np.diff(energies)).max() < 0.1 * (energies.max() - energies.min()) + 1.0
    assert np.abs(np.diff(forces)).max() < 0.2 * forces.max()


def test_wall_on_internal_coordinates_holds_a_stretched_bond(small_energy, ala_structure) -> None:
    """Past a bond's upper bound the energy rises at least by the wall on h itself, whatever
    the flow's slope there (its identity share would shrink a wall on z alone ~c^2 times)."""
    _, pos = ala_structure
    ic = small_energy.ic
    h0, _ = ic(torch.tensor(pos)[None])
    lo, hi = ic.bounds["bond_nm"]
    col = ic.n_bonds - 1
    energies = []
    for length in (hi, hi + 0.05):
        h = h0.clone()
        h[0, col] = (length - lo) / (hi - lo)
        x, _ = ic.inverse(h)
        energies.append(small_energy(x[0]).item())
    excess = 0.05 / (hi - lo)
    wall_kjmol = kT_kJ_per_mol(300.0) * IC_WALL_SCALE * 1e4 * excess**2 * math.exp(-0.01 / excess)
    assert energies[1] - energies[0] > 0.9 * wall_kjmol


def test_wall_on_internal_coordinates_is_one_physical_wall_for_any_interval() -> None:
    """Per-column intervals change the wall's parameters in h, not its energy per nm or rad
    past the interval's end (IC_WALL_REFERENCE_WIDTHS are the layer's defaults)."""
    from flowff.energy.flow_energy import IC_WALL_REFERENCE_WIDTHS, ic_wall_parameters
    from flowff.ic.layer import InternalCoordinates
    from flowff.ic.zmatrix import ZMatrix

    zmatrix = ZMatrix.alanine_dipeptide()
    shared = InternalCoordinates(zmatrix)
    assert (shared.bond_width[0].item(), shared.angle_width[0].item()) == pytest.approx(
        IC_WALL_REFERENCE_WIDTHS)
    narrow = InternalCoordinates(
        zmatrix, [(0.1 + 0.001 * i, 0.13 + 0.002 * i) for i in range(21)], (1.5, 2.2))
    excess = torch.tensor([0.004, 0.02, 0.05], dtype=torch.float64)  # nm / rad past the top
    for column in (0, 20, shared.n_bonds + 3):
        walls = []
        for ic in (shared, narrow):
            strength, width, *_ = ic_wall_parameters(ic)
            wall = SmoothBoxConfinement(~ic.circular_mask, strength, width, persistent=False)
            h = torch.full((3, ic.dim), 0.5, dtype=torch.float64)
            h[:, column] = 1.0 + excess / ic.column_widths()[column]
            walls.append(wall(h))
        torch.testing.assert_close(walls[1], walls[0], rtol=1e-12, atol=0)
        assert bool((walls[0] > 0).all())
    strength, *_ = ic_wall_parameters(shared)
    assert float(strength[0]) == pytest.approx(IC_WALL_SCALE * 1e4)
    assert float(strength[-1]) == pytest.approx(IC_WALL_SCALE * 1e4)  # masked: torsions


def test_wall_bounds_start_the_wall_inside_the_interval() -> None:
    """ic_wall_bounds move where the wall starts, in physical units, and nothing else."""
    from flowff.energy.flow_energy import ic_wall_parameters
    from flowff.ic.layer import InternalCoordinates
    from flowff.ic.zmatrix import ZMatrix

    ic = InternalCoordinates(ZMatrix.alanine_dipeptide())
    bonds = [(0.09 + 0.001 * i, 0.16 + 0.001 * i) for i in range(ic.n_bonds)]
    bounds = {"bond_nm": bonds, "angle_rad": (1.5, 2.3)}
    strength, width, lower, upper = ic_wall_parameters(ic, wall_bounds=bounds)
    plain = ic_wall_parameters(ic)
    torch.testing.assert_close(strength, plain[0])
    torch.testing.assert_close(width, plain[1])
    wall = SmoothBoxConfinement(~ic.circular_mask, strength, width, persistent=False,
                                lower=lower, upper=upper)
    reference = SmoothBoxConfinement(~ic.circular_mask, *plain[:2], persistent=False)
    column = 5  # a bond: the same wall as the interval's, shifted to the new upper bound
    h = torch.full((3, ic.dim), 0.5, dtype=torch.float64)
    h[:, ic.bond_slice] = (torch.tensor([b[0] for b in bonds], dtype=torch.float64) + 0.02
                           - ic.bond_lo) / ic.bond_width  # inside the new bounds
    assert float(wall(h).abs().max()) == 0.0
    excess = torch.tensor([0.001, 0.01, 0.05], dtype=torch.float64)
    h[:, column] = (bonds[column][1] + excess - 0.05) / 0.25
    shifted = h.clone()
    shifted[:, column] = 1.0 + excess / 0.25
    shifted[:, ic.bond_slice.start:column] = 0.5
    shifted[:, column + 1:ic.bond_slice.stop] = 0.5
    torch.testing.assert_close(wall(h), reference(shifted), rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="wall bounds 'bond_nm'"):
        ic_wall_parameters(ic, wall_bounds={"bond_nm": [(0.1, 0.2)] * 3})
