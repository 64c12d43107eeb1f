"""The mixture's vectorised forward and its analytic derivatives against slow references.

References are independent of the fast path: the generalized sigmoid as the direct ratio
rho(t) / (rho(t) + rho(1 - t)) of C-infinity ramps, the circular wrap with five shifts instead of
three, the parameter map written out again, and derivatives by autograd. All in float64.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from flowff._torchscript import quiet_jit
from flowff.transforms import SmoothMixtureTransform
from flowff.transforms.bumps import bounded_bump_steps, bump_step, saturation_floor
from flowff.transforms.mixture import A_MAX, ALPHA_MAX, ALPHA_MIN, C_MIN
from flowff.transforms.ramps import exp_ramp

CASES = [(circular, beta) for circular in (False, True) for beta in (1, 2)]


def _direct_sigmoid(t: Tensor, alpha: Tensor, beta: int) -> Tensor:
    rising = exp_ramp(t, alpha, beta)
    falling = exp_ramp(1.0 - t, alpha, beta)
    return rising / (rising + falling)


def reference_mixture(transform: SmoothMixtureTransform, x: Tensor, params: Tensor) -> Tensor:
    """f(x) (..., d) written out directly (differentiable by autograd)."""
    k = transform.num_components
    weights = torch.softmax(params[..., :k], dim=-1)
    a = torch.exp(math.log(A_MAX) * torch.sigmoid(params[..., k : 2 * k]))
    b = torch.sigmoid(params[..., 2 * k : 3 * k])
    alpha = ALPHA_MIN + (ALPHA_MAX - ALPHA_MIN) * torch.sigmoid(params[..., 3 * k : 4 * k])
    c = C_MIN + (1.0 - C_MIN) * torch.sigmoid(params[..., 4 * k])

    def g(points: Tensor) -> Tensor:
        return _direct_sigmoid(a * (points.unsqueeze(-1) - b) + 0.5, alpha, transform.beta)

    if transform.circular:
        turns = torch.floor(x).detach()
        r = x - turns
        zero = torch.zeros_like(r)
        bumps = sum(g(r + n) - g(zero + n) for n in range(-2, 3))
        return turns + (1.0 - c) * (weights * bumps).sum(-1) + c * r + params[..., -1]
    zero, one = torch.zeros_like(x), torch.ones_like(x)
    bumps = (g(x) - g(zero)) / (g(one) - g(zero))
    return (1.0 - c) * (weights * bumps).sum(-1) + c * x


def _inputs(transform: SmoothMixtureTransform, seed: int = 0) -> tuple[Tensor, Tensor]:
    """x on [-0.6, 1.6] (circle: [-1.3, 2.3], across wraps) for 3 dims, wide random params."""
    gen = torch.Generator().manual_seed(seed)
    n = 241
    lo, hi = (-1.3, 2.3) if transform.circular else (-0.6, 1.6)
    x = torch.linspace(lo, hi, n, dtype=torch.float64).unsqueeze(-1).repeat(1, 3)
    x[:, 1] = x[:, 1].flip(0)
    params = 2.0 * torch.randn(n, 3, transform.num_params, generator=gen, dtype=torch.float64)
    return x, params


@pytest.mark.parametrize(("circular", "beta"), CASES)
def test_forward_matches_direct_formula(circular: bool, beta: int) -> None:
    transform = SmoothMixtureTransform(4, beta=beta, circular=circular)
    x, params = _inputs(transform)
    y, log_slope = transform(x, params)
    xr = x.clone().requires_grad_(True)
    expected = reference_mixture(transform, xr, params)
    (slope,) = torch.autograd.grad(expected.sum(), xr)
    torch.testing.assert_close(y, expected.detach(), rtol=0.0, atol=1e-12)
    torch.testing.assert_close(log_slope, torch.log(slope), rtol=0.0, atol=1e-10)


@pytest.mark.parametrize("max_concentration", [1000.0, 30.0])
@pytest.mark.parametrize(("circular", "beta"), CASES)
def test_forward_with_derivatives_matches_autograd(
    circular: bool, beta: int, max_concentration: float
) -> None:
    transform = SmoothMixtureTransform(
        4, beta=beta, circular=circular, max_concentration=max_concentration
    )
    x, params = _inputs(transform, seed=1)
    xr, pr = x.clone().requires_grad_(True), params.clone().requires_grad_(True)
    y, log_slope = transform(xr, pr)
    dy_dx, dy_dp = torch.autograd.grad(y.sum(), (xr, pr), retain_graph=True)
    dlog_dx, dlog_dp = torch.autograd.grad(log_slope.sum(), (xr, pr))
    got = transform.forward_with_derivatives(x, params)
    expected = (y.detach(), log_slope.detach(), dy_dx, dlog_dx, dy_dp, dlog_dp)
    for name, value, reference in zip(
        ("y", "log f'", "f'", "dlog f'/dx", "dy/dparams", "dlog f'/dparams"), got, expected,
        strict=True,
    ):
        assert value.shape == reference.shape, name
        scale = float(reference.abs().max())
        torch.testing.assert_close(value, reference, rtol=0.0, atol=1e-12 * max(scale, 1.0),
                                   msg=lambda m, n=name: f"{n}: {m}")


def test_forward_with_derivatives_in_torchscript_and_float32() -> None:
    transform = SmoothMixtureTransform(3, circular=True)
    x, params = _inputs(transform, seed=2)
    with quiet_jit():
        scripted = torch.jit.script(transform)
    for got, want in zip(scripted.forward_with_derivatives(x, params),
                         transform.forward_with_derivatives(x, params), strict=True):
        torch.testing.assert_close(got, want, rtol=0.0, atol=0.0)
    single = transform.forward_with_derivatives(x.float(), params.float())
    for got, want in zip(single, transform.forward_with_derivatives(x, params), strict=True):
        assert got.dtype == torch.float32 and bool(torch.isfinite(got).all())
        torch.testing.assert_close(got.double(), want, rtol=1e-3, atol=1e-3 * float(
            want.abs().max()))


@pytest.mark.parametrize("beta", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_bounded_bump_steps_equal_the_masked_bump_step(beta: int, dtype: torch.dtype) -> None:
    """The clamp replaces generalized_sigmoid's masks without changing values or derivatives,
    including at the extreme admissible parameters and far outside the support."""
    a = torch.tensor([1.0, 1.5, 30.0, 1000.0], dtype=dtype).view(-1, 1, 1, 1)
    b = torch.tensor([0.0, 1e-9, 0.5, 1.0], dtype=dtype).view(1, -1, 1, 1)
    alpha = torch.tensor([ALPHA_MIN, 1.0, ALPHA_MAX], dtype=dtype).view(1, 1, -1, 1)
    x = torch.linspace(-1.5, 2.5, 801, dtype=dtype)
    points = torch.cat([x, torch.tensor([0.0, 1.0, 1e-12, 1.0 - 1e-7], dtype=dtype)])
    points = points.view(1, 1, 1, -1).requires_grad_(True)
    t_min = saturation_floor(ALPHA_MAX, beta)
    value, slope = bounded_bump_steps(points.unsqueeze(-1), a.unsqueeze(-1), b.unsqueeze(-1),
                                      alpha.unsqueeze(-1), beta, t_min)
    value, slope = value.squeeze(-1), slope.squeeze(-1)
    ref_value, ref_slope = bump_step(points, a, b, alpha, beta)
    tol = 1e-14 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(value, ref_value, rtol=0.0, atol=tol)
    scale = float(ref_slope.detach().max())
    torch.testing.assert_close(slope, ref_slope, rtol=tol, atol=tol * scale)
    (autograd_slope,) = torch.autograd.grad(value.sum(), points, create_graph=True)
    (second,) = torch.autograd.grad(slope.sum(), points)
    assert bool(torch.isfinite(autograd_slope).all()) and bool(torch.isfinite(second).all())


def test_saturation_floor_saturates_every_admissible_ramp() -> None:
    for beta in (1, 2):
        t_min = saturation_floor(ALPHA_MAX, beta)
        u = ((1.0 - t_min) ** -beta - t_min**-beta) / ALPHA_MAX
        assert u < -1000.0 and torch.sigmoid(torch.tensor(u, dtype=torch.float64)).item() == 0.0
    with pytest.raises(ValueError, match="alpha_max"):
        saturation_floor(0.0, 1)
