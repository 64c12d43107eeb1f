"""Implicit gradients of the numerical inverse: first and higher order, incl. conditioner input."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from flowff.flows.conditioner import Conditioner
from flowff.flows.implicit import InversionSettings, implicit_inverse
from flowff.transforms import RationalQuadraticSplineTransform, SmoothMixtureTransform

#: Tight roots, so finite differences (eps 1e-6) see no bisection noise.
TIGHT = InversionSettings(num_bins=8, tol=1e-14)


def make_transform(toys, name: str) -> torch.nn.Module:
    return {
        "logistic": lambda: toys.LogisticMixture(2),
        "sine-circle": lambda: toys.SineCircleMap(2),
        "smooth-interval": lambda: SmoothMixtureTransform(2, circular=False),
        "smooth-circle": lambda: SmoothMixtureTransform(2, circular=True),
    }[name]()


TRANSFORMS = ["logistic", "sine-circle", "smooth-interval", "smooth-circle"]
#: The bump mixtures are costly to evaluate: check them on random Jacobian projections.
FAST_MODE = {"smooth-interval": True, "smooth-circle": True}


def random_inputs(transform: torch.nn.Module, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    y = (0.05 + 0.9 * torch.rand(2, 2, generator=generator)).double().requires_grad_()
    params = torch.randn(2, 2, transform.num_params, generator=generator).double()
    return y, params.requires_grad_()


@pytest.mark.parametrize("name", TRANSFORMS)
def test_inverse_and_log_det_are_consistent(toys, name: str) -> None:
    transform = make_transform(toys, name)
    y, params = random_inputs(transform)
    x, log_det = implicit_inverse(transform, y, params, TIGHT)
    y_again, log_slope = transform(x, params)
    if transform.circular:
        assert ((x >= 0) & (x < 1)).all()
        residual = y_again - y
        residual = residual - torch.round(residual)
    else:
        residual = y_again - y
    assert residual.abs().max() < 1e-12
    torch.testing.assert_close(log_det, -log_slope)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_gradcheck_and_gradgradcheck_wrt_y_and_params(toys, name: str) -> None:
    transform = make_transform(toys, name)
    y, params = random_inputs(transform, seed=1)

    def inverse(y: torch.Tensor, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return implicit_inverse(transform, y, params, TIGHT)

    fast = FAST_MODE.get(name, False)
    assert gradcheck(inverse, (y, params), fast_mode=fast)
    assert gradgradcheck(inverse, (y, params), fast_mode=fast)


@pytest.mark.parametrize("name", ["logistic", "smooth-circle"])
def test_gradients_reach_the_conditioner_input(toys, name: str) -> None:
    transform = make_transform(toys, name)
    conditioner = Conditioner(
        torch.tensor([False, True]), [(2, transform.identity_params())], hidden=(6,)
    ).double()
    toys.randomize_parameters(conditioner, std=0.7)
    y, _ = random_inputs(transform, seed=2)
    context = torch.rand(2, 2, dtype=torch.float64, requires_grad=True)

    def inverse(y: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (params,) = conditioner(context)
        return implicit_inverse(transform, y, params, TIGHT)

    fast = FAST_MODE.get(name, False)
    assert gradcheck(inverse, (y, context), fast_mode=fast)
    assert gradgradcheck(inverse, (y, context), fast_mode=fast)
    # And a nonzero gradient really arrives there.
    x, log_det = inverse(y, context)
    (grad,) = torch.autograd.grad((x.sum() + log_det.sum()), context)
    assert grad.abs().min() > 0


def test_third_derivatives_match_analytic_inverse(toys) -> None:
    """The backward is differentiable to any order: compare d^3/dy^3 and mixed derivatives."""
    transform = toys.ExponentialMap()
    y = torch.tensor([0.1, 0.45, 0.9], dtype=torch.float64, requires_grad=True)
    params = torch.tensor([[0.3], [-1.0], [2.0]], dtype=torch.float64, requires_grad=True)

    def derivatives(inverse_fn) -> list[torch.Tensor]:
        x, log_det = inverse_fn(y, params)
        out = (x**2).sum() + (log_det * x).sum()
        (d1,) = torch.autograd.grad(out, y, create_graph=True)
        (d2,) = torch.autograd.grad(d1.sum(), y, create_graph=True)
        d3y, d3p = torch.autograd.grad(d2.sum(), (y, params))
        return [d1, d2, d3y, d3p]

    numerical = derivatives(lambda y, p: implicit_inverse(transform, y, p, TIGHT))
    analytic = derivatives(transform.analytic_inverse)
    for got, expected in zip(numerical, analytic, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-8, atol=1e-10)


def test_matches_analytic_spline_inverse_gradients() -> None:
    transform = RationalQuadraticSplineTransform(5, circular=False)
    generator = torch.Generator().manual_seed(5)
    params = torch.randn(4, 3, transform.num_params, generator=generator).double()
    params.requires_grad_()
    y = torch.rand(4, 3, generator=generator).double().requires_grad_()

    def gradients(inverse_fn) -> tuple[torch.Tensor, ...]:
        x, log_det = inverse_fn(y, params)
        loss = (torch.sin(3 * x) + log_det**2).sum()
        return (x, log_det, *torch.autograd.grad(loss, (y, params)))

    numerical = gradients(lambda y, p: implicit_inverse(transform, y, p, TIGHT))
    analytic = gradients(transform.analytic_inverse)
    for got, expected in zip(numerical, analytic, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-10)


def test_first_order_backward_keeps_no_graph(toys) -> None:
    transform = toys.LogisticMixture(2)
    y, params = random_inputs(transform, seed=3)
    x, _ = implicit_inverse(transform, y, params, TIGHT)
    x.sum().backward()
    assert y.grad is not None and not y.grad.requires_grad
    assert params.grad is not None and not params.grad.requires_grad
    assert params.grad.abs().sum() > 0


def test_float32_without_nan() -> None:
    transform = SmoothMixtureTransform(4, circular=True)
    generator = torch.Generator().manual_seed(6)
    params = torch.randn(64, 3, transform.num_params, generator=generator).requires_grad_()
    y = torch.rand(64, 3, generator=generator).requires_grad_()
    x, log_det = implicit_inverse(transform, y, params)
    assert x.dtype == torch.float32
    (x.sum() + log_det.sum()).backward()
    assert torch.isfinite(x).all() and torch.isfinite(log_det).all()
    assert torch.isfinite(y.grad).all() and torch.isfinite(params.grad).all()
    y_again, _ = transform(x.detach(), params.detach())
    residual = y_again - y.detach()
    assert (residual - torch.round(residual)).abs().max() < 1e-4
