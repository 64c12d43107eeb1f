"""Circle transforms (periodicity of values and derivatives) and spline inversion."""

from __future__ import annotations

import types

import pytest
import torch

from flowff.transforms import (
    ElementwiseTransform,
    RationalQuadraticSplineTransform,
    SmoothMixtureTransform,
)


def test_circle_lift_satisfies_f_of_x_plus_one(
    circle_transform: ElementwiseTransform, helpers: types.SimpleNamespace
) -> None:
    x = torch.linspace(-2.0, 2.0, 241, dtype=torch.float64).unsqueeze(-1)
    params = helpers.random_params(circle_transform, tuple(x.shape), seed=11)
    # The spline is only C^1: its f'' differs across the wrap, where x and x + 1 may round to.
    order = 3 if isinstance(circle_transform, SmoothMixtureTransform) else 1
    y, derivatives = helpers.x_derivatives(circle_transform, x, params, order)
    y_next, derivatives_next = helpers.x_derivatives(circle_transform, x + 1.0, params, order)
    torch.testing.assert_close(y_next - y, torch.ones_like(y), rtol=0.0, atol=1e-12)
    for here, there in zip(derivatives, derivatives_next, strict=True):
        torch.testing.assert_close(here, there, rtol=1e-9, atol=1e-9)


def test_circle_lift_across_the_wrap(
    circle_transform: ElementwiseTransform, helpers: types.SimpleNamespace
) -> None:
    """f at (1 - eps, 1, 1 + eps) equals f at (-eps, 0, eps) plus 1, with equal derivatives."""
    eps = 1e-9
    upper = torch.tensor([1.0 - eps, 1.0, 1.0 + eps], dtype=torch.float64)
    lower = torch.tensor([-eps, 0.0, eps], dtype=torch.float64)
    params = helpers.random_params(circle_transform, (1,), seed=12).expand(3, -1)
    y_upper, derivatives_upper = helpers.x_derivatives(circle_transform, upper, params)
    y_lower, derivatives_lower = helpers.x_derivatives(circle_transform, lower, params)
    torch.testing.assert_close(
        y_upper - y_lower, torch.ones(3, dtype=torch.float64), atol=1e-12, rtol=0
    )
    order = 3 if isinstance(circle_transform, SmoothMixtureTransform) else 1
    for k in range(order):
        torch.testing.assert_close(derivatives_upper[k], derivatives_lower[k], rtol=1e-9, atol=1e-9)
        # continuity through the wrap point: values at +-eps agree to O(eps)
        torch.testing.assert_close(
            derivatives_lower[k][0], derivatives_lower[k][2], rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize(
    "spline",
    [
        RationalQuadraticSplineTransform(5, circular=False),
        RationalQuadraticSplineTransform(5, circular=False, learn_boundary_derivatives=True),
        RationalQuadraticSplineTransform(5, circular=True),
    ],
    ids=["interval", "interval-learned-boundary", "circle"],
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_spline_inverse_round_trip(
    spline: RationalQuadraticSplineTransform, dtype: torch.dtype, helpers: types.SimpleNamespace
) -> None:
    x = helpers.evaluation_grid(dtype).unsqueeze(-1)
    params = helpers.random_params(spline, tuple(x.shape), scale=2.0, seed=13, dtype=dtype)
    y, log_forward = spline(x, params)
    x_back, log_inverse = spline.analytic_inverse(y, params)
    z = x  # the same grid used as outputs
    x_of_z, log_inverse_z = spline.analytic_inverse(z, params)
    z_back, _ = spline(x_of_z, params)
    if dtype == torch.float64:
        assert float((x_back - x).abs().max()) < 1e-10
        assert float((log_forward + log_inverse).abs().max()) < 1e-9
        assert float((z_back - z).abs().max()) < 1e-10
    else:
        # float32: f' spans ~1e-6..1e3 in squeezed/steep bins, so judge each round trip by its
        # backward error (the error in x scaled by f', the error in z scaled by 1/f').
        assert float(((x_back - x).abs() * torch.exp(log_forward)).max()) < 1e-5
        slope_at_x_of_z = torch.exp(-log_inverse_z).clamp(min=1.0)
        assert float(((z_back - z).abs() / slope_at_x_of_z).max()) < 1e-5
        assert bool(torch.isfinite(log_inverse).all())


def test_interval_spline_continues_linearly_outside() -> None:
    spline = RationalQuadraticSplineTransform(4, circular=False, learn_boundary_derivatives=True)
    params = torch.randn(1, spline.num_params, generator=torch.Generator().manual_seed(14))
    params = params.to(torch.float64).expand(6, -1)
    x = torch.tensor([-3.0, -1.0, -0.25, 1.25, 2.0, 4.0], dtype=torch.float64)
    y, log_derivative = spline(x, params)
    _, _, knot_derivatives = spline.spline_params(params)
    left, right = knot_derivatives[0, 0], knot_derivatives[0, -1]
    expected = torch.cat([left * x[:3], 1.0 + right * (x[3:] - 1.0)])
    torch.testing.assert_close(y, expected, rtol=1e-14, atol=1e-14)
    assert float((left - 1.0).abs()) > 1e-3 and float((right - 1.0).abs()) > 1e-3
    torch.testing.assert_close(
        log_derivative, torch.log(torch.stack([left] * 3 + [right] * 3)), rtol=1e-14, atol=0.0
    )


def test_unit_boundary_spline_has_unit_slope_at_the_ends() -> None:
    spline = RationalQuadraticSplineTransform(4, circular=False)
    params = torch.randn(4, spline.num_params, generator=torch.Generator().manual_seed(15))
    params = params.to(torch.float64)
    x = torch.tensor([0.0, 1.0, -0.5, 1.5], dtype=torch.float64)
    _, log_derivative = spline(x, params)
    torch.testing.assert_close(
        log_derivative, torch.zeros(4, dtype=torch.float64), atol=1e-15, rtol=0
    )


@pytest.mark.parametrize("circular", [False, True])
def test_spline_full_gradcheck_and_gradgradcheck(circular: bool) -> None:
    """Full (not fast-mode) checks on a tiny case, complementing the contract tests."""
    spline = RationalQuadraticSplineTransform(3, circular=circular)
    x = torch.tensor([0.31], dtype=torch.float64, requires_grad=True)
    generator = torch.Generator().manual_seed(16)
    params = torch.randn(1, spline.num_params, generator=generator, dtype=torch.float64)
    params.requires_grad_(True)
    assert torch.autograd.gradcheck(spline, (x, params))
    assert torch.autograd.gradgradcheck(spline, (x, params))
    y, _ = spline(x, params)
    assert torch.autograd.gradcheck(
        spline.analytic_inverse, (y.detach().requires_grad_(True), params)
    )
