"""InternalCoordinates.forward_with_derivatives: values as forward, derivatives as autograd."""

from __future__ import annotations

from collections.abc import Callable

import torch

from flowff._torchscript import quiet_jit
from flowff.ic import InternalCoordinates, ZMatrix


def _contract(ic: InternalCoordinates, slots: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_j weights_j * d(term_j)/dx from the (batch, dim, 4, 3) derivative slots."""
    terms = (weights.unsqueeze(-1).unsqueeze(-1) * slots).flatten(1, 2)
    zeros = torch.zeros(slots.size(0), ic.n_atoms, 3, dtype=slots.dtype)
    return zeros.index_add(1, ic.derivative_atoms.flatten(), terms)


def _check(ic: InternalCoordinates, x: torch.Tensor) -> None:
    h, log_det, dh_dx, dlog_det_dx = ic.forward_with_derivatives(x)
    xr = x.clone().requires_grad_(True)
    h_ref, log_det_ref = ic(xr)
    torch.testing.assert_close(h, h_ref.detach(), rtol=0.0, atol=1e-15)
    torch.testing.assert_close(log_det, log_det_ref.detach(), rtol=1e-14, atol=1e-13)
    generator = torch.Generator().manual_seed(3)
    weights = torch.randn(h.shape, generator=generator, dtype=h.dtype)
    (expected,) = torch.autograd.grad((weights * h_ref).sum() + 0.7 * log_det_ref.sum(), xr)
    got = _contract(ic, dh_dx, weights) + _contract(ic, dlog_det_dx, torch.full_like(h, 0.7))
    torch.testing.assert_close(got, expected, rtol=0.0, atol=1e-12 * float(expected.abs().max()))
    # log-det slots of torsions are zero; unused slots of bonds and angles too
    assert bool((dlog_det_dx[:, ic.torsion_slice] == 0).all())
    assert bool((dh_dx[:, ic.bond_slice, 2:] == 0).all())
    assert bool((dh_dx[:, ic.angle_slice, 3] == 0).all())


def test_alanine_derivatives_match_autograd(
    alanine_zmatrix: ZMatrix, make_configurations: Callable[..., torch.Tensor]
) -> None:
    ic = InternalCoordinates(alanine_zmatrix)
    _check(ic, make_configurations(ic, 5, seed=11))


def test_small_molecule_derivatives_match_autograd(
    small_zmatrix: ZMatrix, make_configurations: Callable[..., torch.Tensor]
) -> None:
    ic = InternalCoordinates(small_zmatrix)
    _check(ic, make_configurations(ic, 3, seed=12))


def test_outside_the_support_and_degenerate_geometry(
    alanine_zmatrix: ZMatrix, alanine_positions: torch.Tensor
) -> None:
    ic = InternalCoordinates(alanine_zmatrix)
    stretched = alanine_positions.clone()
    stretched[ic.zmatrix.rows[0][0]] += 0.4  # a bond far beyond 0.3 nm: h > 1
    _check(ic, stretched.unsqueeze(0))
    # three collinear atoms: the torsions through them are undefined; everything stays finite
    collinear = alanine_positions.clone()
    i, b, a, _ = ic.zmatrix.rows[-1]
    collinear[i] = collinear[b] + 0.7 * (collinear[b] - collinear[a])
    outputs = ic.forward_with_derivatives(collinear.unsqueeze(0))
    assert all(bool(torch.isfinite(t).all()) for t in outputs)


def test_torchscript_and_float32(
    alanine_zmatrix: ZMatrix, make_configurations: Callable[..., torch.Tensor]
) -> None:
    ic = InternalCoordinates(alanine_zmatrix)
    x = make_configurations(ic, 2, seed=13)
    with quiet_jit():
        scripted = torch.jit.script(ic)
    for got, want in zip(scripted.forward_with_derivatives(x), ic.forward_with_derivatives(x),
                         strict=True):
        torch.testing.assert_close(got, want, rtol=0.0, atol=0.0)
    for got, want in zip(ic.forward_with_derivatives(x.float()), ic.forward_with_derivatives(x),
                         strict=True):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4 * float(
            want.abs().max()))
