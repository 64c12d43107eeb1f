"""InternalCoordinates: round trips, canonical frame, TorchScript, dtypes, degenerate geometry."""

from __future__ import annotations

import io
import json
import math
import types

import pytest
import torch

from flowff._torchscript import quiet_jit
from flowff.ic import InternalCoordinates, ZMatrix, check_positions


def test_layout_mask_and_slices(alanine_zmatrix: ZMatrix) -> None:
    ic = InternalCoordinates(alanine_zmatrix)
    assert (ic.n_atoms, ic.dim) == (22, 60)
    assert (ic.bond_slice, ic.angle_slice, ic.torsion_slice) == (
        slice(0, 21), slice(21, 41), slice(41, 60)
    )
    assert ic.circular_mask.dtype == torch.bool and ic.circular_mask.shape == (60,)
    assert ic.circular_mask.nonzero().flatten().tolist() == list(range(41, 60))
    assert ic.phi_column == 41 + alanine_zmatrix.phi_index
    assert ic.psi_column == 41 + alanine_zmatrix.psi_index
    assert ic.bounds == {
        "bond_nm": [0.05, 0.3], "angle_rad": [0.15 * math.pi, math.pi],
        "torsion_rad": [-math.pi, math.pi],
    }


def test_round_trip_x_h_x_up_to_rigid_motion(small_zmatrix: ZMatrix,
                                              make_configurations,
        ic_helpers: types.SimpleNamespace) -> None:
    ic = InternalCoordinates(small_zmatrix)
    x = make_configurations(ic, 4, seed=10)
    h, _ = ic(x)
    x_back, _ = ic.inverse(h)
    # Pairwise distances agree, and x_back is x expressed in the canonical frame.
    assert (torch.cdist(x_back, x_back) - torch.cdist(x, x)).abs().max() < 1e-10
    f0 = small_zmatrix.frame[0]
    rotation = ic_helpers.frame_rotation(x, small_zmatrix.frame)
    canonical = (x - x[:, f0: f0 + 1]) @ rotation
    assert (x_back - canonical).abs().max() < 1e-10


def test_round_trip_alanine_dipeptide(alanine_zmatrix: ZMatrix, alanine_positions: torch.Tensor,
                                      make_configurations) -> None:
    ic = InternalCoordinates(alanine_zmatrix)
    x = torch.cat([alanine_positions[None], make_configurations(ic, 3, seed=11)])
    h, _ = ic(x)
    x_back, _ = ic.inverse(h)
    assert (torch.cdist(x_back, x_back) - torch.cdist(x, x)).abs().max() < 1e-10


def test_canonical_frame_of_inverse(alanine_zmatrix: ZMatrix) -> None:
    ic = InternalCoordinates(alanine_zmatrix)
    h = torch.rand(3, ic.dim, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    x, _ = ic.inverse(h)
    f0, f1, f2 = alanine_zmatrix.frame
    assert x[:, f0].abs().max() == 0
    assert (x[:, f1, 1:].abs().max(), bool((x[:, f1, 0] > 0).all())) == (0, True)
    assert (x[:, f2, 2].abs().max(), bool((x[:, f2, 1] > 0).all())) == (0, True)


def test_round_trip_h_x_h(small_zmatrix: ZMatrix, alanine_zmatrix: ZMatrix,
        ic_helpers: types.SimpleNamespace) -> None:
    """h -> x -> h over all of [0,1)^d, including the torsion wrap and the interval ends."""
    for zmatrix in (small_zmatrix, alanine_zmatrix):
        ic = InternalCoordinates(zmatrix)
        h = torch.rand(16, ic.dim, generator=torch.Generator().manual_seed(13),
                       dtype=torch.float64)
        h[0, ic.torsion_slice] = 0.0
        h[1, ic.torsion_slice] = 1.0 - 1e-14
        h[2, ic.bond_slice] = 1.0
        h[2, ic.angle_slice] = 0.0
        h[3, ic.angle_slice] = 0.999
        h_back, _ = ic(ic.inverse(h)[0])
        mask = ic.circular_mask
        assert (h_back[:, ~mask] - h[:, ~mask]).abs().max() < 1e-10
        assert (ic_helpers.circular_difference(h_back[:, mask], h[:, mask]) < 1e-10).all()
        assert ((h_back[:, mask] >= 0) & (h_back[:, mask] < 1)).all()


def test_physical_units(alanine_zmatrix: ZMatrix, alanine_positions: torch.Tensor) -> None:
    """ic.physical(h) gives nm and rad; C=O and N-CA bond lengths of the packaged structure."""
    ic = InternalCoordinates(alanine_zmatrix)
    h, _ = ic(alanine_positions[None])
    bonds, angles, torsions = ic.physical(h)
    bond_lengths = dict(zip(alanine_zmatrix.bonds, bonds[0].tolist(), strict=True))
    x = alanine_positions
    for pair, length in bond_lengths.items():
        assert length == pytest.approx(float((x[pair[0]] - x[pair[1]]).norm()), abs=1e-12)
    assert 0.09 < min(bond_lengths.values()) and max(bond_lengths.values()) < 0.16
    assert angles.min() > 0.5 and angles.max() < math.pi
    assert torsions.min() >= -math.pi and torsions.max() < math.pi


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torchscript_matches_eager(alanine_zmatrix: ZMatrix, make_configurations,
                                   dtype: torch.dtype) -> None:
    ic = InternalCoordinates(alanine_zmatrix)
    with quiet_jit():
        scripted = torch.jit.script(ic)
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
        buffer.seek(0)
        loaded = torch.jit.load(buffer)
    x = make_configurations(ic, 5, seed=14).to(dtype)
    h, log_det = ic(x)
    assert h.dtype == dtype and log_det.dtype == dtype
    for module in (scripted, loaded):
        h_s, log_det_s = module(x)
        assert h_s.dtype == dtype
        torch.testing.assert_close(h_s, h, rtol=0, atol=0)
        torch.testing.assert_close(log_det_s, log_det, rtol=0, atol=0)
    x_grad = x.clone().requires_grad_(True)
    (grad_eager,) = torch.autograd.grad(ic(x_grad)[1].sum(), x_grad)
    (grad_scripted,) = torch.autograd.grad(scripted(x_grad)[1].sum(), x_grad)
    torch.testing.assert_close(grad_scripted, grad_eager)


def test_scripted_forward_rejects_wrong_atom_count(alanine_zmatrix: ZMatrix) -> None:
    ic = InternalCoordinates(alanine_zmatrix)
    with quiet_jit():
        scripted = torch.jit.script(ic)
    with pytest.raises(torch.jit.Error, match="expected 22 atoms, got 21"):
        scripted(torch.zeros(2, 21, 3))


def test_float32_agrees_with_float64(alanine_zmatrix: ZMatrix, make_configurations,
        ic_helpers: types.SimpleNamespace) -> None:
    ic = InternalCoordinates(alanine_zmatrix)
    x = make_configurations(ic, 5, seed=15)
    h64, log_det64 = ic(x)
    h32, log_det32 = ic(x.float())
    mask = ic.circular_mask
    assert (h32.double()[:, ~mask] - h64[:, ~mask]).abs().max() < 1e-5
    assert ic_helpers.circular_difference(h32.double()[:, mask], h64[:, mask]).max() < 1e-5
    assert (log_det32.double() - log_det64).abs().max() < 1e-3


def test_outside_intervals_h_leaves_unit_box_with_live_gradients(small_zmatrix: ZMatrix,
                                                                 make_configurations) -> None:
    """No clamping: bonds/angles outside their intervals move h outside [0,1] with the full
    slope (d h_bond / d x has norm sqrt(2) / width over the two atoms)."""
    ic = InternalCoordinates(small_zmatrix)
    base = make_configurations(ic, 1, seed=16)[0]
    for scale in (0.1, 4.0):  # every bond to ~0.01-0.03 nm, then to ~0.2-1.2 nm
        x = (scale * base)[None].requires_grad_(True)
        h, log_det = ic(x)
        bonds = h[0, ic.bond_slice]
        assert ((bonds < 0) | (bonds > 1)).any()
        assert torch.isfinite(h).all() and torch.isfinite(log_det).all()
        for column in range(ic.n_bonds):
            (grad,) = torch.autograd.grad(h[0, column], x, retain_graph=True)
            assert float(grad.norm()) == pytest.approx(math.sqrt(2.0) / ic.bond_width, rel=1e-10)
        (grad,) = torch.autograd.grad(log_det.sum(), x)
        assert torch.isfinite(grad).all() and grad.abs().max() > 0


def test_small_angle_outside_interval(alanine_zmatrix: ZMatrix,
                                      alanine_positions: torch.Tensor) -> None:
    """Fold a hydrogen onto its angle partner: angle below 0.15 pi gives h_angle < 0."""
    ic = InternalCoordinates(alanine_zmatrix)
    row = next(k for k, r in enumerate(alanine_zmatrix.rows) if alanine_zmatrix.elements[r[0]]
               == "H")
    atom, bond_partner, angle_partner, _ = alanine_zmatrix.rows[row]
    x = alanine_positions.clone()
    direction = x[angle_partner] - x[bond_partner]
    x[atom] = x[bond_partner] + 0.109 * direction / direction.norm() + torch.tensor(
        [0.0, 0.0, 0.01], dtype=torch.float64
    )
    x = x[None].requires_grad_(True)
    h, log_det = ic(x)
    assert float(h[0, ic.angle_slice][row + 1].detach()) < 0
    (grad,) = torch.autograd.grad(h[0, ic.angle_slice][row + 1] + log_det[0], x)
    assert torch.isfinite(grad).all() and grad[0, atom].norm() > 1


@pytest.mark.parametrize("offset", [0.0, 1e-9, 1e-6])
def test_near_collinear_geometry_is_finite(alanine_zmatrix: ZMatrix,
                                           alanine_positions: torch.Tensor,
                                           offset: float) -> None:
    """Frame angle at (or next to) pi, a row atom collinear with its partners, a zero bond:
    h, log_det and all first derivatives stay finite."""
    ic = InternalCoordinates(alanine_zmatrix)
    x = alanine_positions.clone()
    f0, f1, f2 = alanine_zmatrix.frame
    x[f2] = x[f1] + 0.12 * (x[f1] - x[f0]) / (x[f1] - x[f0]).norm()
    x[f2, 2] += offset
    atom, bond_partner, angle_partner, _ = alanine_zmatrix.rows[5]
    x[atom] = x[bond_partner] + 0.7 * (x[bond_partner] - x[angle_partner])
    x[atom, 0] += offset
    hydrogen, carbon, _, _ = alanine_zmatrix.rows[-1]
    x[hydrogen] = x[carbon]  # a zero bond: hydrogen on top of its carbon
    x = x[None].requires_grad_(True)
    h, log_det = ic(x)
    assert torch.isfinite(h).all() and torch.isfinite(log_det).all()
    assert float(h[0, ic.angle_slice][0].detach()) == pytest.approx(1.0, abs=1e-5)
    (grad,) = torch.autograd.grad(h.sum() + log_det.sum(), x)
    assert torch.isfinite(grad).all()


def test_metadata_round_trip(alanine_zmatrix: ZMatrix, make_configurations) -> None:
    ic = InternalCoordinates(alanine_zmatrix, bond_bounds_nm=(0.04, 0.35),
                             angle_bounds_rad=(0.2, 3.1))
    rebuilt = InternalCoordinates.from_metadata(json.loads(json.dumps(ic.to_metadata())))
    x = make_configurations(ic, 2, seed=17)
    for a, b in zip(ic(x), rebuilt(x), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_per_column_bounds_metadata_and_derivatives(alanine_zmatrix: ZMatrix,
                                                    make_configurations) -> None:
    shared = InternalCoordinates(alanine_zmatrix)
    x = make_configurations(shared, 3, seed=21)
    bonds, angles, _ = shared.physical(shared(x)[0])
    bond_bounds = torch.stack([bonds.min(0).values - 0.01, bonds.max(0).values + 0.02], -1)
    angle_bounds = torch.stack([angles.min(0).values - 0.1, angles.max(0).values + 0.1], -1)
    ic = InternalCoordinates(alanine_zmatrix, bond_bounds_nm=bond_bounds.tolist(),
                             angle_bounds_rad=angle_bounds.tolist())
    assert ic.to_metadata()["bounds"]["bond_nm"] == bond_bounds.tolist()
    assert shared.to_metadata()["bounds"]["bond_nm"] == [0.05, 0.3]  # shared: one pair
    rebuilt = InternalCoordinates.from_metadata(json.loads(json.dumps(ic.to_metadata())))
    for a, b in zip(ic(x), rebuilt(x), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    h, log_det = ic(x)
    assert bool(((h > 0) & (h < 1)).all())
    torch.testing.assert_close(ic.column_widths()[ic.bond_slice],
                               bond_bounds[:, 1] - bond_bounds[:, 0])
    # analytic derivatives against autograd, column by column
    _, _, dh_dx, dlog_dx = ic.forward_with_derivatives(x)
    xg = x.clone().requires_grad_(True)
    hg, log_det_g = ic(xg)
    for column in (0, ic.n_bonds - 1, ic.n_bonds, ic.dim - ic.n_torsions - 1):
        (want,) = torch.autograd.grad(hg[:, column].sum(), xg, retain_graph=True)
        got = torch.zeros_like(x).index_add(1, ic.derivative_atoms[column], dh_dx[:, column])
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    (want,) = torch.autograd.grad(log_det_g.sum(), xg)
    got = torch.zeros_like(x).index_add(1, ic.derivative_atoms.flatten(), dlog_dx.flatten(1, 2))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    with quiet_jit():
        scripted = torch.jit.script(ic)
    torch.testing.assert_close(scripted(x)[0], h, rtol=0, atol=0)


def test_wrong_inputs_raise_clear_errors(alanine_zmatrix: ZMatrix,
                                         alanine_positions: torch.Tensor) -> None:
    ic = InternalCoordinates(alanine_zmatrix)
    x = alanine_positions[None]
    with pytest.raises(ValueError, match="expected 22 atoms, got 21"):
        ic(x[:, :21])
    with pytest.raises(ValueError, match="expected 22 atoms, got 21"):
        ic.check_positions(x[:, :21])
    with pytest.raises(ValueError, match=r"shape \(batch, 22, 3\)"):
        ic(alanine_positions)
    with pytest.raises(ValueError, match="floating-point"):
        ic(x.long())
    bad = x.clone()
    bad[0, 7, 1] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or inf.*atoms \[7\]"):
        ic.check_positions(bad)
    with pytest.raises(ValueError, match=r"NaN or inf"):
        check_positions(bad, 22)
    ic.check_positions(x)  # valid input passes
    with pytest.raises(ValueError, match=r"shape \(batch, 60\)"):
        ic.inverse(torch.zeros(2, 59, dtype=torch.float64))
    with pytest.raises(ValueError, match="angle bounds"):
        InternalCoordinates(alanine_zmatrix, angle_bounds_rad=(0.1, 3.5))
    with pytest.raises(ValueError, match="bond bounds"):
        InternalCoordinates(alanine_zmatrix, bond_bounds_nm=(0.3, 0.05))
    with pytest.raises(ValueError, match="one \\(lo, hi\\) pair or 21 pairs"):
        InternalCoordinates(alanine_zmatrix, bond_bounds_nm=[(0.1, 0.2)] * 20)
    with pytest.raises(ValueError, match=r"\(0.2, 0.1\) for bond 3"):
        InternalCoordinates(alanine_zmatrix,
                            bond_bounds_nm=[(0.1, 0.2)] * 3 + [(0.2, 0.1)] + [(0.1, 0.2)] * 17)
