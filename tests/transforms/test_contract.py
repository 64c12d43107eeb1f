"""Contract tests shared by every element-wise transform (docs/architecture.md)."""

from __future__ import annotations

import types

import pytest
import torch

from flowff._torchscript import quiet_jit
from flowff.transforms import (
    AffineTransform,
    ElementwiseTransform,
    RationalQuadraticSplineTransform,
    SmoothMixtureTransform,
    make_transform,
)


def test_torchscript_matches_eager(
    any_transform: ElementwiseTransform, helpers: types.SimpleNamespace
) -> None:
    transform = any_transform
    x = helpers.evaluation_grid(torch.float64).reshape(-1, 2)
    params = helpers.random_params(transform, tuple(x.shape), seed=1)
    with quiet_jit():
        scripted = torch.jit.script(transform)
    y, log_derivative = transform(x, params)
    y_scripted, log_derivative_scripted = scripted(x, params)
    torch.testing.assert_close(y_scripted, y, rtol=0.0, atol=1e-15)
    torch.testing.assert_close(log_derivative_scripted, log_derivative, rtol=0.0, atol=1e-15)
    if transform.has_analytic_inverse:
        x_back, log_back = transform.analytic_inverse(y, params)
        x_back_scripted, log_back_scripted = scripted.analytic_inverse(y, params)
        torch.testing.assert_close(x_back_scripted, x_back, rtol=0.0, atol=1e-15)
        torch.testing.assert_close(log_back_scripted, log_back, rtol=0.0, atol=1e-15)


def test_log_derivative_matches_autograd(
    any_transform: ElementwiseTransform, helpers: types.SimpleNamespace
) -> None:
    transform = any_transform
    x = helpers.evaluation_grid(torch.float64).reshape(-1, 2).requires_grad_(True)
    params = helpers.random_params(transform, tuple(x.shape), seed=2)
    y, log_derivative = transform(x, params)
    (dy_dx,) = torch.autograd.grad(y.sum(), x)
    assert log_derivative.shape == x.shape and y.shape == x.shape
    torch.testing.assert_close(torch.exp(log_derivative), dy_dx, rtol=1e-10, atol=1e-12)


def test_strictly_monotone_on_dense_grid(
    any_transform: ElementwiseTransform, helpers: types.SimpleNamespace
) -> None:
    transform = any_transform
    x = torch.linspace(-1.5, 2.5, 4001, dtype=torch.float64)
    params = helpers.random_params(transform, (1,), seed=3).expand(x.shape[0], -1)
    y, _ = transform(x, params)
    assert bool((torch.diff(y) > 0).all())


def test_interval_transforms_fix_zero_and_one(
    interval_transform: ElementwiseTransform, helpers: types.SimpleNamespace
) -> None:
    transform = interval_transform
    x = torch.tensor([0.0, 1.0], dtype=torch.float64).expand(50, 2)
    params = helpers.random_params(transform, (50, 2), scale=3.0, seed=4)
    y, _ = transform(x, params)
    torch.testing.assert_close(y, x, rtol=0.0, atol=1e-14)
    inside = torch.rand(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    y_inside, _ = transform(inside, params)
    assert bool(((y_inside >= 0) & (y_inside <= 1)).all())


def test_identity_params(any_transform: ElementwiseTransform) -> None:
    transform = any_transform
    assert transform.identity_params().dtype == torch.get_default_dtype()
    identity = transform.identity_params(torch.float64)
    assert identity.shape == (transform.num_params,) and identity.dtype == torch.float64
    x = torch.linspace(0.0, 1.0, 1001, dtype=torch.float64)
    y, log_derivative = transform(x, identity.expand(x.shape[0], -1))
    exact = isinstance(transform, (RationalQuadraticSplineTransform, AffineTransform))
    tolerance = 1e-14 if exact else 1e-3
    assert float((y - x).abs().max()) < tolerance
    assert float(log_derivative.abs().max()) < (1e-14 if exact else 1.1e-3)


def test_gradcheck_and_gradgradcheck(
    any_transform: ElementwiseTransform, helpers: types.SimpleNamespace
) -> None:
    transform = any_transform
    generator = torch.Generator().manual_seed(6)
    # Points away from integers (the circle lift jumps its branch there) and, for splines,
    # generically away from knots; some outside [0, 1].
    x = torch.tensor([[0.13, 0.87], [0.41, -0.35], [1.62, 0.58]], dtype=torch.float64)
    params = helpers.random_params(transform, tuple(x.shape), seed=7)
    params = params + 0.01 * torch.randn(params.shape, generator=generator, dtype=torch.float64)
    x.requires_grad_(True)
    params.requires_grad_(True)
    assert torch.autograd.gradcheck(transform, (x, params), fast_mode=True)
    assert torch.autograd.gradgradcheck(transform, (x, params), fast_mode=True)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("scale", [1.5, 8.0])
def test_three_derivatives_finite_on_dense_grid(
    bounded_transform: ElementwiseTransform,
    helpers: types.SimpleNamespace,
    scale: float,
    dtype: torch.dtype,
) -> None:
    transform = bounded_transform
    x = helpers.evaluation_grid(dtype).unsqueeze(-1)
    params = helpers.random_params(transform, tuple(x.shape), scale=scale, seed=8, dtype=dtype)
    for tensor in helpers.mixed_derivative_tower(transform, x, params, order=3):
        assert tensor.dtype == dtype
        assert bool(torch.isfinite(tensor).all())


def test_wrong_param_shape_is_rejected(any_transform: ElementwiseTransform) -> None:
    transform = any_transform
    x = torch.zeros(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="params must have shape"):
        transform(x, torch.zeros(4, 3, transform.num_params + 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="params must have shape"):
        transform(x, torch.zeros(4, 2, transform.num_params, dtype=torch.float64))


def test_smooth_transform_has_no_analytic_inverse() -> None:
    transform = SmoothMixtureTransform(2)
    assert not transform.has_analytic_inverse
    with pytest.raises(RuntimeError, match="no analytic inverse"):
        transform.analytic_inverse(torch.zeros(1, 1), torch.zeros(1, 1, transform.num_params))


def test_constructor_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match="num_components"):
        SmoothMixtureTransform(0)
    with pytest.raises(ValueError, match="beta"):
        SmoothMixtureTransform(4, beta=3)
    with pytest.raises(ValueError, match="num_bins"):
        RationalQuadraticSplineTransform(1)
    with pytest.raises(ValueError, match="learn_boundary_derivatives"):
        RationalQuadraticSplineTransform(4, circular=True, learn_boundary_derivatives=True)


def test_make_transform_builds_by_name() -> None:
    smooth = make_transform("smooth", circular=True, num_components=5, beta=2)
    assert isinstance(smooth, SmoothMixtureTransform)
    assert smooth.circular and smooth.num_components == 5 and smooth.beta == 2
    assert smooth.num_params == 4 * 5 + 2
    spline = make_transform("spline", circular=False, num_bins=6)
    assert isinstance(spline, RationalQuadraticSplineTransform) and not spline.circular
    assert spline.num_params == 3 * 6 - 1
    assert isinstance(make_transform("affine", circular=False), AffineTransform)
    with pytest.raises(ValueError, match="unknown transform kind"):
        make_transform("logistic", circular=False)
    with pytest.raises(ValueError, match="no circular version"):
        make_transform("affine", circular=True)
