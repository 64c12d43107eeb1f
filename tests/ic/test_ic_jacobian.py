"""log_det of the IC layer against a brute-force autograd determinant, and gradchecks."""

from __future__ import annotations

import math
import types

import torch

from flowff.ic import InternalCoordinates, ZMatrix


def augmented_map(ic: InternalCoordinates, x_flat: torch.Tensor,
                  helpers: types.SimpleNamespace) -> torch.Tensor:
    """Square map R^{3n} -> R^{3n}: x -> (h, x_f0, ZYZ Euler angles of the frame)."""
    x = x_flat.reshape(1, ic.n_atoms, 3)
    h, _ = ic(x)
    f0 = ic.zmatrix.frame[0]
    euler = helpers.zyz_euler(helpers.frame_rotation(x[0], ic.zmatrix.frame))
    return torch.cat([h[0], x[0, f0], euler])


def brute_force_log_det(ic: InternalCoordinates, x: torch.Tensor,
                        helpers: types.SimpleNamespace) -> torch.Tensor:
    """log_det implied by the autograd determinant of the augmented map, per configuration.

    dx = dT sin(beta) dalpha dbeta dgamma J dq, so log|det d(h,T,euler)/dx| = log_det
    - log sin(beta) + log(8 pi^2); solve for log_det.
    """
    values = []
    for configuration in x:
        flat = configuration.reshape(-1)
        jacobian = torch.autograd.functional.jacobian(lambda v: augmented_map(ic, v, helpers), flat)
        assert jacobian.shape == (flat.numel(), flat.numel())
        _, log_abs_det = torch.linalg.slogdet(jacobian)
        beta = helpers.zyz_euler(helpers.frame_rotation(configuration, ic.zmatrix.frame))[1]
        values.append(log_abs_det + torch.log(torch.sin(beta)) - math.log(8.0 * math.pi**2))
    return torch.stack(values)


def test_log_det_matches_brute_force_small_molecules(small_zmatrix: ZMatrix,
                                                     make_configurations,
        ic_helpers: types.SimpleNamespace) -> None:
    ic = InternalCoordinates(small_zmatrix)
    x = make_configurations(ic, 3, seed=1)
    _, log_det = ic(x)
    torch.testing.assert_close(log_det, brute_force_log_det(ic, x, ic_helpers), rtol=0, atol=1e-9)


def test_log_det_matches_brute_force_alanine_dipeptide(alanine_zmatrix: ZMatrix,
                                                       alanine_positions: torch.Tensor,
                                                       make_configurations,
        ic_helpers: types.SimpleNamespace) -> None:
    ic = InternalCoordinates(alanine_zmatrix)
    generator = torch.Generator().manual_seed(0)
    # The packaged structure, perturbed and turned out of its xy plane (beta = 0 is singular).
    pdb = alanine_positions + 0.005 * torch.randn(22, 3, generator=generator, dtype=torch.float64)
    pdb = pdb @ ic_helpers.random_rotation(generator).T
    x = torch.cat([pdb[None], make_configurations(ic, 2, seed=2)])
    _, log_det = ic(x)
    torch.testing.assert_close(log_det, brute_force_log_det(ic, x, ic_helpers), rtol=0, atol=1e-8)


def test_log_det_matches_brute_force_with_other_bounds(small_zmatrix: ZMatrix,
                                                       make_configurations,
        ic_helpers: types.SimpleNamespace) -> None:
    """The interval widths enter once: change them and the brute force follows."""
    ic = InternalCoordinates(small_zmatrix, bond_bounds_nm=(0.1, 0.17),
                             angle_bounds_rad=(0.5, 2.9))
    x = make_configurations(InternalCoordinates(small_zmatrix), 2, seed=3)
    _, log_det = ic(x)
    torch.testing.assert_close(log_det, brute_force_log_det(ic, x, ic_helpers), rtol=0, atol=1e-9)


def test_log_det_matches_brute_force_outside_the_support(small_zmatrix: ZMatrix,
                                                         make_configurations,
        ic_helpers: types.SimpleNamespace) -> None:
    """Stretch every bond far beyond the interval: h leaves [0,1], log_det stays exact."""
    ic = InternalCoordinates(small_zmatrix)
    x = 3.0 * make_configurations(ic, 2, seed=4)
    h, log_det = ic(x)
    assert (h[:, ic.bond_slice] > 1.0).any()
    torch.testing.assert_close(log_det, brute_force_log_det(ic, x, ic_helpers), rtol=0, atol=1e-9)


def test_inverse_log_det_is_minus_forward(alanine_zmatrix: ZMatrix,
                                          make_configurations) -> None:
    ic = InternalCoordinates(alanine_zmatrix)
    x = make_configurations(ic, 4, seed=5)
    h, log_det = ic(x)
    _, log_det_inverse = ic.inverse(h)
    torch.testing.assert_close(log_det_inverse, -log_det, rtol=0, atol=1e-10)
    h_random = torch.rand(5, ic.dim, generator=torch.Generator().manual_seed(6),
                          dtype=torch.float64)
    x_random, log_det_inverse = ic.inverse(h_random)
    _, log_det_forward = ic(x_random)
    torch.testing.assert_close(log_det_inverse, -log_det_forward, rtol=0, atol=1e-10)


def test_log_det_inverse_matches_inverse_jacobian(small_zmatrix: ZMatrix,
        ic_helpers: types.SimpleNamespace) -> None:
    """Independent check of the inverse: its Jacobian (h, T, euler) -> x is square too."""
    ic = InternalCoordinates(small_zmatrix)
    h = 0.1 + 0.8 * torch.rand(2, ic.dim, generator=torch.Generator().manual_seed(7),
                               dtype=torch.float64)
    euler = torch.tensor([[0.3, 1.1, -2.0], [2.5, 2.2, 0.7]], dtype=torch.float64)
    shift = torch.tensor([0.2, -0.1, 0.4], dtype=torch.float64)

    def rz(a: torch.Tensor) -> torch.Tensor:
        c, s, o, z = torch.cos(a), torch.sin(a), torch.ones_like(a), torch.zeros_like(a)
        return torch.stack([torch.stack([c, -s, z]), torch.stack([s, c, z]),
                            torch.stack([z, z, o])])

    def ry(a: torch.Tensor) -> torch.Tensor:
        c, s, o, z = torch.cos(a), torch.sin(a), torch.ones_like(a), torch.zeros_like(a)
        return torch.stack([torch.stack([c, z, s]), torch.stack([z, o, z]),
                            torch.stack([-s, z, c])])

    def placed(v: torch.Tensor) -> torch.Tensor:
        x, _ = ic.inverse(v[: ic.dim][None])
        rotation = rz(v[ic.dim + 3]) @ ry(v[ic.dim + 4]) @ rz(v[ic.dim + 5])
        return (x[0] @ rotation.T + v[ic.dim: ic.dim + 3]).reshape(-1)

    for k in range(2):
        v = torch.cat([h[k], shift, euler[k]])
        _, log_abs_det = torch.linalg.slogdet(torch.autograd.functional.jacobian(placed, v))
        _, log_det_inverse = ic.inverse(h[k: k + 1])
        expected = log_abs_det - torch.log(torch.sin(euler[k, 1])) + math.log(8.0 * math.pi**2)
        torch.testing.assert_close(log_det_inverse[0], expected, rtol=0, atol=1e-9)
        # The Euler angles recovered from the placed positions are the ones we put in.
        x = placed(v).reshape(ic.n_atoms, 3)
        torch.testing.assert_close(
            ic_helpers.zyz_euler(ic_helpers.frame_rotation(x, ic.zmatrix.frame)), euler[k]
        )


def test_gradcheck_forward_small_molecules(small_zmatrix: ZMatrix, make_configurations) -> None:
    ic = InternalCoordinates(small_zmatrix)
    x = make_configurations(ic, 2, seed=8).requires_grad_(True)
    assert torch.autograd.gradcheck(ic, (x,), eps=1e-6, atol=1e-6)
    # Second derivatives (force matching differentiates forces): fast mode, one configuration.
    one = x[:1].detach().requires_grad_(True)
    assert torch.autograd.gradgradcheck(ic, (one,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_gradcheck_forward_alanine_dipeptide(alanine_zmatrix: ZMatrix,
                                             make_configurations) -> None:
    ic = InternalCoordinates(alanine_zmatrix)
    x = make_configurations(ic, 2, seed=8).requires_grad_(True)
    assert torch.autograd.gradcheck(ic, (x,), eps=1e-6, atol=1e-6)


def test_gradcheck_inverse(small_zmatrix: ZMatrix) -> None:
    ic = InternalCoordinates(small_zmatrix)
    h = 0.1 + 0.8 * torch.rand(2, ic.dim, generator=torch.Generator().manual_seed(9),
                               dtype=torch.float64)
    assert torch.autograd.gradcheck(ic.inverse, (h.requires_grad_(True),), eps=1e-6, atol=1e-6)


def test_log_det_matches_brute_force_with_per_column_bounds(small_zmatrix: ZMatrix,
                                                            make_configurations,
        ic_helpers: types.SimpleNamespace) -> None:
    """One interval per bond and per angle: each width enters once, in its own column."""
    shared = InternalCoordinates(small_zmatrix)
    x = make_configurations(shared, 2, seed=5)
    bond_lo = torch.linspace(0.02, 0.06, shared.n_bonds, dtype=torch.float64)
    bond_bounds = torch.stack([bond_lo, bond_lo + torch.linspace(
        0.3, 0.6, shared.n_bonds, dtype=torch.float64)], dim=-1)
    angle_lo = torch.linspace(0.2, 0.4, shared.n_angles, dtype=torch.float64)
    angle_bounds = torch.stack([angle_lo, torch.full_like(angle_lo, 3.0)], dim=-1)
    ic = InternalCoordinates(small_zmatrix, bond_bounds_nm=bond_bounds.tolist(),
                             angle_bounds_rad=angle_bounds.tolist())
    h, log_det = ic(x)
    torch.testing.assert_close(log_det, brute_force_log_det(ic, x, ic_helpers), rtol=0, atol=1e-9)
    bonds, angles, _ = ic.physical(h)
    torch.testing.assert_close(bonds, shared.physical(shared(x)[0])[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(angles, shared.physical(shared(x)[0])[1], rtol=0, atol=1e-12)
    x_back, log_det_inverse = ic.inverse(h)
    torch.testing.assert_close(ic(x_back)[0], h, rtol=0, atol=1e-10)
    torch.testing.assert_close(log_det_inverse, -log_det, rtol=0, atol=1e-10)
