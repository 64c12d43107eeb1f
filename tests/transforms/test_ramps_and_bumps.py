"""Ramps, generalized sigmoids and unimodal bump CDFs (Eqs. 6-7)."""

from __future__ import annotations

import math

import pytest
import torch

from flowff._torchscript import quiet_jit
from flowff.transforms.bumps import (
    bump_cdf,
    generalized_sigmoid,
    monomial_generalized_sigmoid,
    wrapped_bump_cdf,
)
from flowff.transforms.ramps import (
    LOG_UNDERFLOW,
    exp_ramp,
    exp_ramp_log_ratio,
    log_exp_ramp,
    log_monomial_ramp,
    monomial_ramp,
)

DTYPES = [torch.float64, torch.float32]


def _derivatives(function, x: torch.Tensor, order: int = 3) -> list[torch.Tensor]:
    """Element-wise d^k function / dx^k for k = 0..order by autograd."""
    x = x.detach().clone().requires_grad_(True)
    values = [function(x)]
    for _ in range(order):
        (derivative,) = torch.autograd.grad(
            values[-1].sum(), x, create_graph=True, materialize_grads=True
        )
        values.append(derivative)
    return values


def _points(dtype: torch.dtype) -> torch.Tensor:
    tiny = 1e-300 if dtype == torch.float64 else 1e-30
    eps = float(torch.finfo(dtype).eps)
    special = [0.0, -0.0, tiny, -tiny, eps, 1e-3, 0.5, 1.0 - eps, 1.0, 1.0 + eps, 2.0, -1.0]
    dense = torch.linspace(-0.5, 1.5, 401, dtype=torch.float64)
    return torch.cat([torch.tensor(special, dtype=torch.float64), dense]).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("beta", [1, 2])
@pytest.mark.parametrize("alpha", [0.1, 1.0, 10.0, 1e4])
def test_exp_ramp_derivatives_finite_everywhere(
    alpha: float, beta: int, dtype: torch.dtype
) -> None:
    x = _points(dtype)
    alpha_tensor = torch.tensor(alpha, dtype=dtype)
    for derivative in _derivatives(lambda v: exp_ramp(v, alpha_tensor, beta), x):
        assert bool(torch.isfinite(derivative).all())
    at_zero = _derivatives(lambda v: exp_ramp(v, alpha_tensor, beta), torch.zeros(1, dtype=dtype))
    assert all(float(derivative.detach()) == 0.0 for derivative in at_zero)


@pytest.mark.parametrize("beta", [1, 2])
def test_exp_ramp_values_and_derivative(beta: int) -> None:
    x = torch.linspace(-0.5, 2.0, 251, dtype=torch.float64)
    alpha = torch.tensor(0.7, dtype=torch.float64)
    expected = torch.where(x > 0, torch.exp(-1.0 / (alpha * x.clamp(min=1e-3) ** beta)), 0.0)
    torch.testing.assert_close(exp_ramp(x, alpha, beta), expected, rtol=1e-14, atol=0.0)
    _, first, *_ = _derivatives(lambda v: exp_ramp(v, alpha, beta), x, order=1)
    analytic = torch.where(
        x > 0, expected * beta / (alpha * x.clamp(min=1e-3) ** (beta + 1)), torch.zeros_like(x)
    )
    torch.testing.assert_close(first, analytic, rtol=1e-12, atol=1e-300)
    log_values = log_exp_ramp(x, alpha, beta)
    exponent = -1.0 / (alpha * x.clamp(min=1e-300) ** beta)
    representable = (x > 0) & (exponent >= -LOG_UNDERFLOW)
    assert bool(torch.isneginf(log_values[~representable]).all())
    assert bool(representable[x > 0.05].all())
    torch.testing.assert_close(
        log_values[representable], exponent[representable], rtol=1e-14, atol=0.0
    )


def test_log_ramps_have_zero_gradient_where_minus_infinity() -> None:
    x = torch.tensor([-1.0, 0.0, 0.25], dtype=torch.float64, requires_grad=True)
    alpha = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    value = log_exp_ramp(x, alpha, 1)
    (grad_x, grad_alpha) = torch.autograd.grad(value[2], (x, alpha))
    assert grad_x.tolist() == [0.0, 0.0, pytest.approx(1.0 / (2.0 * 0.25**2))]
    assert math.isfinite(float(grad_alpha))
    monomial = log_monomial_ramp(x, 3)
    assert bool(torch.isneginf(monomial[:2]).all())
    (grad_x,) = torch.autograd.grad(monomial[2], x)
    assert grad_x.tolist() == [0.0, 0.0, pytest.approx(3.0 / 0.25)]


def test_monomial_ramp() -> None:
    x = torch.tensor([-0.5, 0.0, 0.3, 1.0, 1.5], dtype=torch.float64)
    torch.testing.assert_close(
        monomial_ramp(x, 3), torch.tensor([0.0, 0.0, 0.027, 1.0, 1.0], dtype=torch.float64)
    )
    for derivative in _derivatives(lambda v: monomial_ramp(v, 3), _points(torch.float32)):
        assert bool(torch.isfinite(derivative).all())
    with pytest.raises(ValueError, match="order k"):
        monomial_ramp(x, 0)


@pytest.mark.parametrize("beta", [1, 2])
def test_log_ratio_derivative_matches_autograd(beta: int) -> None:
    t = torch.linspace(0.05, 0.95, 91, dtype=torch.float64, requires_grad=True)
    alpha = torch.tensor(1.3, dtype=torch.float64)
    u, du = exp_ramp_log_ratio(t, alpha, beta)
    (autograd_du,) = torch.autograd.grad(u.sum(), t)
    torch.testing.assert_close(du, autograd_du, rtol=1e-12, atol=0.0)
    direct = log_exp_ramp(t, alpha, beta) - log_exp_ramp(1.0 - t, alpha, beta)
    torch.testing.assert_close(u, direct, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("beta", [1, 2])
def test_generalized_sigmoid_matches_direct_ratio(beta: int) -> None:
    t = torch.linspace(-0.5, 1.5, 2001, dtype=torch.float64, requires_grad=True)
    alpha = torch.tensor(0.8, dtype=torch.float64)
    value, derivative = generalized_sigmoid(t, alpha, beta)
    rising = exp_ramp(t, alpha, beta)
    falling = exp_ramp(1.0 - t, alpha, beta)
    torch.testing.assert_close(value, rising / (rising + falling), rtol=1e-13, atol=1e-15)
    (autograd_derivative,) = torch.autograd.grad(value.sum(), t)
    torch.testing.assert_close(derivative, autograd_derivative, rtol=1e-10, atol=1e-14)
    mirrored, _ = generalized_sigmoid(1.0 - t.detach(), alpha, beta)
    torch.testing.assert_close(
        value.detach() + mirrored, torch.ones_like(value), atol=1e-15, rtol=0
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("beta", [1, 2])
@pytest.mark.parametrize("alpha", [0.01, 0.1, 1.0, 10.0])
def test_generalized_sigmoid_limits_and_finite_derivatives(
    alpha: float, beta: int, dtype: torch.dtype
) -> None:
    t = _points(dtype)
    alpha_tensor = torch.tensor(alpha, dtype=dtype)
    values = _derivatives(lambda v: generalized_sigmoid(v, alpha_tensor, beta)[0], t)
    for derivative in values:
        assert bool(torch.isfinite(derivative).all())
    value = values[0].detach()
    assert bool((value[t <= 0] == 0).all()) and bool((value[t >= 1] == 1).all())
    assert bool((torch.diff(value[12:]) >= 0).all())
    # the analytic derivative is itself differentiable to third order (forces of log f')
    slopes = _derivatives(lambda v: generalized_sigmoid(v, alpha_tensor, beta)[1], t)
    for derivative in slopes:
        assert bool(torch.isfinite(derivative).all())


def test_generalized_sigmoid_gradient_in_alpha_is_finite() -> None:
    t = torch.tensor([0.0, 1e-300, 1e-4, 0.3, 0.5, 1.0 - 1e-12, 1.0], dtype=torch.float64)
    alpha = torch.tensor([0.05], dtype=torch.float64, requires_grad=True)
    value, derivative = generalized_sigmoid(t, alpha, 1)
    first = torch.autograd.grad(value.sum() + derivative.sum(), alpha, create_graph=True)[0]
    second = torch.autograd.grad(first.sum(), alpha, create_graph=True)[0]
    third = torch.autograd.grad(second.sum(), alpha)[0]
    assert all(bool(torch.isfinite(g).all()) for g in (first, second, third))


def test_monomial_generalized_sigmoid() -> None:
    t = torch.linspace(-0.5, 1.5, 401, dtype=torch.float64, requires_grad=True)
    value, derivative = monomial_generalized_sigmoid(t, 3)
    inside = t.detach().clamp(0, 1)
    expected = inside**3 / (inside**3 + (1 - inside) ** 3)
    torch.testing.assert_close(value, expected, rtol=1e-14, atol=1e-15)
    (autograd_derivative,) = torch.autograd.grad(value.sum(), t)
    torch.testing.assert_close(derivative, autograd_derivative, rtol=1e-12, atol=1e-14)
    for order in _derivatives(lambda v: monomial_generalized_sigmoid(v, 3)[1], t):
        assert bool(torch.isfinite(order).all())
    with pytest.raises(ValueError, match="order k"):
        monomial_generalized_sigmoid(t, 0)


def _extreme_bump_parameters() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """a in [1, 1000], b in [0, 1] (ends included), alpha in [0.1, 10], as a grid (..., 1)."""
    a = torch.tensor([1.0, 1.5, 30.0, 1000.0], dtype=torch.float64)
    b = torch.tensor([0.0, 1e-9, 0.3, 0.5, 1.0 - 1e-9, 1.0], dtype=torch.float64)
    alpha = torch.tensor([0.1, 1.0, 10.0], dtype=torch.float64)
    grid = torch.cartesian_prod(a, b, alpha)
    return grid[:, 0:1], grid[:, 1:2], grid[:, 2:3]


@pytest.mark.parametrize("beta", [1, 2])
def test_bump_cdf_normalisation_never_degenerates(beta: int) -> None:
    a, b, alpha = _extreme_bump_parameters()
    g0, _ = generalized_sigmoid(a * (0.0 - b) + 0.5, alpha, beta)
    g1, _ = generalized_sigmoid(a * (1.0 - b) + 0.5, alpha, beta)
    assert float((g1 - g0).min()) >= 0.5
    ends = torch.tensor([0.0, 1.0], dtype=torch.float64)
    x = torch.cat([ends, torch.linspace(-1.0, 2.0, 301, dtype=torch.float64)])
    x = x.expand(a.shape[0], -1).clone().requires_grad_(True)
    cdf, density = bump_cdf(x, a, b, alpha, beta)
    torch.testing.assert_close(cdf[:, :2], ends.expand(a.shape[0], -1), atol=1e-15, rtol=0)
    (autograd_density,) = torch.autograd.grad(cdf.sum(), x)
    torch.testing.assert_close(density, autograd_density, rtol=1e-9, atol=1e-12)
    assert bool((density >= 0).all()) and bool(torch.isfinite(density).all())


@pytest.mark.parametrize("beta", [1, 2])
def test_wrapped_bump_cdf_needs_only_three_shifts(beta: int) -> None:
    a, b, alpha = _extreme_bump_parameters()
    x = torch.linspace(0.0, 1.0, 101, dtype=torch.float64).expand(a.shape[0], -1)
    cdf, density = wrapped_bump_cdf(x, a, b, alpha, beta)
    cdf_wide, density_wide = wrapped_bump_cdf(x, a, b, alpha, beta, reach=4)
    torch.testing.assert_close(cdf, cdf_wide, rtol=0.0, atol=1e-15)
    torch.testing.assert_close(density, density_wide, rtol=0.0, atol=1e-15)
    torch.testing.assert_close(cdf[:, 0], torch.zeros_like(cdf[:, 0]), rtol=0.0, atol=1e-15)
    torch.testing.assert_close(cdf[:, -1], torch.ones_like(cdf[:, -1]), rtol=0.0, atol=1e-14)


@pytest.mark.parametrize("beta", [1, 2])
def test_wrapped_bump_derivatives_periodic(beta: int) -> None:
    """H^(k)(0) = H^(k)(1) for k = 1..4, evaluated directly (no floor involved)."""
    a = torch.tensor([[1.0], [1.3], [4.0]], dtype=torch.float64)
    b = torch.tensor([[0.02], [0.97], [0.5]], dtype=torch.float64)
    alpha = torch.tensor([[0.5], [2.0], [1.0]], dtype=torch.float64)
    ends = torch.tensor([0.0, 1.0], dtype=torch.float64).expand(3, 2)
    orders = _derivatives(lambda v: wrapped_bump_cdf(v, a, b, alpha, beta)[0], ends, order=4)
    for derivative in orders[1:]:
        torch.testing.assert_close(derivative[:, 0], derivative[:, 1], rtol=1e-10, atol=1e-10)
    assert float(orders[1].detach().abs().max()) > 0.1  # the wrap is non-trivial for these bumps


def test_bump_functions_compile_with_torchscript() -> None:
    a, b, alpha = _extreme_bump_parameters()
    x = torch.linspace(-0.5, 1.5, 41, dtype=torch.float64).expand(a.shape[0], -1)
    with quiet_jit():
        scripted_cdf = torch.jit.script(bump_cdf)
        scripted_wrap = torch.jit.script(wrapped_bump_cdf)
        scripted_monomial = torch.jit.script(monomial_generalized_sigmoid)
    for scripted, eager in ((scripted_cdf, bump_cdf), (scripted_wrap, wrapped_bump_cdf)):
        for got, want in zip(scripted(x, a, b, alpha, 1), eager(x, a, b, alpha, 1), strict=True):
            torch.testing.assert_close(got, want, rtol=0.0, atol=0.0)
    for got, want in zip(scripted_monomial(x, 2), monomial_generalized_sigmoid(x, 2), strict=True):
        torch.testing.assert_close(got, want, rtol=0.0, atol=0.0)
