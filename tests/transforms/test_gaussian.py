"""Truncated-Gaussian CDF mixtures: analytic derivatives, harmonic energy, curvature bound."""

from __future__ import annotations

import pytest
import torch

from flowff._torchscript import quiet_jit
from flowff.flows.implicit import InversionSettings, implicit_inverse
from flowff.transforms import GaussianMixtureTransform, make_transform


def _params(transform: GaussianMixtureTransform, shape: tuple[int, ...], seed: int,
            scale: float = 2.0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return scale * torch.randn(*shape, transform.num_params, generator=generator, dtype=dtype)


@pytest.mark.parametrize("components", [1, 3])
def test_forward_with_derivatives_matches_autograd(components: int) -> None:
    transform = GaussianMixtureTransform(components)
    x = (torch.linspace(-0.6, 1.6, 45, dtype=torch.float64).reshape(15, 3)).requires_grad_(True)
    params = _params(transform, (15, 3), seed=11).requires_grad_(True)
    y, log_slope = transform(x, params)
    y2, log_slope2, slope, d_log_slope_dx, dy_dparams, d_log_slope_dparams = (
        transform.forward_with_derivatives(x, params))
    torch.testing.assert_close(y2, y, rtol=0, atol=1e-15)
    torch.testing.assert_close(log_slope2, log_slope, rtol=0, atol=1e-13)
    dy_dx, dy_dp = torch.autograd.grad(y.sum(), (x, params), retain_graph=True)
    dl_dx, dl_dp = torch.autograd.grad(log_slope.sum(), (x, params))
    torch.testing.assert_close(slope, dy_dx, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(d_log_slope_dx, dl_dx, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(dy_dparams, dy_dp, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(d_log_slope_dparams, dl_dp, rtol=1e-12, atol=1e-10)


def _energy_curvature(transform: GaussianMixtureTransform, x: torch.Tensor,
                      params: torch.Tensor) -> torch.Tensor:
    """d^2/dx^2 of -log f' by autograd."""
    x = x.clone().requires_grad_(True)
    _, log_slope = transform(x, params)
    (first,) = torch.autograd.grad(-log_slope.sum(), x, create_graph=True)
    (second,) = torch.autograd.grad(first.sum(), x)
    return second


def test_one_component_energy_is_exactly_harmonic() -> None:
    transform = GaussianMixtureTransform(1)
    params = _params(transform, (1, 1), seed=12).expand(200, 1, -1)
    x = torch.linspace(-1.0, 2.0, 200, dtype=torch.float64).unsqueeze(-1)
    _, means, widths = transform.constrained_params(params)
    curvature = _energy_curvature(transform, x, params)
    torch.testing.assert_close(curvature, (1.0 / widths**2).squeeze(-1).expand_as(curvature),
                               rtol=1e-9, atol=0)
    _, log_slope = transform(x, params)
    parabola = 0.5 * ((x - means.squeeze(-1)) / widths.squeeze(-1))**2
    offset = -log_slope - parabola  # a constant: -log f' is the parabola plus log(sigma Z)
    torch.testing.assert_close(offset, offset[0].expand_as(offset), rtol=0, atol=1e-9)


def test_curvature_never_exceeds_the_stiffest_allowed_component() -> None:
    # d^2(-log f')/dx^2 = E_r[1/sigma^2] - Var_r[u/sigma] <= 1/min_width^2, on and off [0, 1]
    transform = GaussianMixtureTransform(4, min_width=0.02)
    params = _params(transform, (300, 1), seed=13, scale=4.0)
    x = torch.rand(300, 1, dtype=torch.float64,
                   generator=torch.Generator().manual_seed(14)) * 3.0 - 1.0
    curvature = _energy_curvature(transform, x, params)
    assert float(curvature.max()) <= 1.0 / 0.02**2 * (1 + 1e-9)
    assert float(curvature.max()) > 0.2 / 0.02**2  # the bound is reached, not vacuous


def test_energy_keeps_rising_beyond_the_interval() -> None:
    # no density floor: -log f' grows quadratically away from the data (unlike a bump mixture)
    transform = GaussianMixtureTransform(2, min_width=0.01, max_width=0.5)
    params = _params(transform, (1, 1), seed=15).expand(4, 1, -1)
    x = torch.tensor([[1.5], [2.0], [3.0], [5.0]], dtype=torch.float64)
    _, log_slope = transform(x, params)
    energy = -log_slope.squeeze(-1)
    assert bool((torch.diff(energy) > 0).all())
    assert float(torch.diff(energy)[-1]) > float(torch.diff(energy)[0])


@pytest.mark.parametrize("components", [1, 3])
def test_bisection_inverse_round_trip_and_gradients(components: int) -> None:
    transform = GaussianMixtureTransform(components, min_width=0.01)
    params = _params(transform, (40, 2), seed=16).requires_grad_(True)
    y = torch.rand(40, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(17))
    x, log_slope = implicit_inverse(transform, y, params, InversionSettings())
    y_back, log_forward = transform(x, params)
    torch.testing.assert_close(y_back, y, rtol=0, atol=1e-8)  # bisection tol on x times f'
    torch.testing.assert_close(log_slope, -log_forward, rtol=1e-12, atol=1e-12)
    # implicit gradient dx/dtheta = -(df/dtheta) / f' at the root
    (grad,) = torch.autograd.grad(x.sum(), params)
    _, _, slope, _, dy_dparams, _ = transform.forward_with_derivatives(x.detach(),
                                                                        params.detach())
    torch.testing.assert_close(grad, -dy_dparams / slope.unsqueeze(-1), rtol=1e-8, atol=1e-10)


def test_torchscript_float32_derivatives() -> None:
    transform = GaussianMixtureTransform(2)
    x = torch.rand(8, 3)
    params = _params(transform, (8, 3), seed=18, dtype=torch.float32)
    with quiet_jit():
        scripted = torch.jit.script(transform)
    eager = transform.forward_with_derivatives(x, params)
    compiled = scripted.forward_with_derivatives(x, params)
    for a, b in zip(eager, compiled, strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(b, a)


def test_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match="intervals only"):
        make_transform("gaussian", circular=True)
    with pytest.raises(ValueError, match="num_components"):
        GaussianMixtureTransform(0)
    with pytest.raises(ValueError, match="min_width"):
        GaussianMixtureTransform(1, min_width=0.5, max_width=0.1)
    transform = make_transform("gaussian", circular=False, num_components=2, min_width=0.02)
    weights, means, widths = transform.constrained_params(
        torch.linspace(-50, 50, 6, dtype=torch.float64).unsqueeze(-1).expand(-1, 6))
    assert float(widths.min()) >= 0.02 * (1 - 1e-12) and float(widths.max()) <= 10.0 * 1.000001
    assert float(means.min()) >= 0.0 and float(means.max()) <= 1.0
    torch.testing.assert_close(weights.sum(-1), torch.ones(6, dtype=torch.float64))
