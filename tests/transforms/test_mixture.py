"""Smooth bump mixtures: identity floor, affine tails, parameter map and gradient flow."""

from __future__ import annotations

import math
import types

import pytest
import torch

from flowff.transforms import SmoothMixtureTransform
from flowff.transforms.mixture import A_MAX, ALPHA_MAX, ALPHA_MIN, C_MIN


@pytest.mark.parametrize("circular", [False, True])
def test_derivative_bounded_below_by_identity_share(
    circular: bool, helpers: types.SimpleNamespace
) -> None:
    transform = SmoothMixtureTransform(4, beta=1, circular=circular)
    x = helpers.evaluation_grid(torch.float64).unsqueeze(-1)
    params = helpers.random_params(transform, tuple(x.shape), scale=8.0, seed=31)
    _, log_derivative = transform(x, params)
    *_, c, _ = transform.constrained_params(params)
    assert bool((log_derivative >= torch.log(c.squeeze(-1)) - 1e-12).all())
    assert float(c.min()) >= C_MIN


def test_interval_mixture_is_affine_with_slope_c_far_outside() -> None:
    transform = SmoothMixtureTransform(3, beta=2, circular=False)
    generator = torch.Generator().manual_seed(33)
    params = torch.randn(1, transform.num_params, generator=generator, dtype=torch.float64)
    x = torch.tensor([-7.0, -2.0, 3.0, 9.0], dtype=torch.float64)
    y, log_derivative = transform(x, params.expand(4, -1))
    *_, c, _ = transform.constrained_params(params)
    c = c.squeeze()
    # every support lies inside [-1/2, 3/2]: f(x) = c x below it and 1 + c (x - 1) above it
    expected = torch.where(x < 0, c * x, 1.0 + c * (x - 1.0))
    torch.testing.assert_close(y, expected, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(log_derivative, torch.log(c).expand(4), rtol=1e-14, atol=1e-14)


def test_parameter_map_respects_bounds() -> None:
    transform = SmoothMixtureTransform(5, beta=1, circular=True)
    params = torch.linspace(-60.0, 60.0, 7, dtype=torch.float64)
    params = params.unsqueeze(-1).expand(-1, transform.num_params)
    weights, a, b, alpha, c, one_minus_c = transform.constrained_params(params)
    torch.testing.assert_close(weights.sum(-1), torch.ones(7, dtype=torch.float64))
    assert float(a.min()) >= 1.0 and float(a.max()) <= A_MAX * (1 + 1e-12)
    assert float(b.min()) >= 0.0 and float(b.max()) <= 1.0
    assert float(alpha.min()) >= ALPHA_MIN and float(alpha.max()) <= ALPHA_MAX
    torch.testing.assert_close(c + one_minus_c, torch.ones_like(c), rtol=0, atol=1e-15)


@pytest.mark.parametrize("circular", [False, True])
def test_max_concentration_caps_a_and_keeps_identity_init(circular: bool) -> None:
    for cap in (30.0, 3.0):  # 3 < K/2: the identity init must move its a inside the cap
        transform = SmoothMixtureTransform(8, beta=1, circular=circular, max_concentration=cap)
        params = torch.linspace(-60.0, 60.0, 7, dtype=torch.float64)
        _, a, _, _, _, _ = transform.constrained_params(
            params.unsqueeze(-1).expand(-1, transform.num_params))
        assert float(a.min()) >= 1.0 and float(a.max()) <= cap * (1 + 1e-12)
        assert float(a.max()) > 0.99 * cap
        x = torch.linspace(0.0, 1.0, 101, dtype=torch.float64).unsqueeze(-1)
        identity = transform.identity_params(torch.float64).expand(101, 1, -1)
        y, _ = transform(x, identity)
        assert float((y - x).abs().max()) < 0.05
        assert f"max_concentration={cap:g}" in repr(transform)
    for bad in (1.0, 0.5, 2000.0):
        with pytest.raises(ValueError, match="max_concentration"):
            SmoothMixtureTransform(4, max_concentration=bad)


@pytest.mark.parametrize("circular", [False, True])
def test_every_parameter_receives_gradient(circular: bool) -> None:
    transform = SmoothMixtureTransform(4, beta=1, circular=circular)
    generator = torch.Generator().manual_seed(32)
    x = torch.rand(256, 1, generator=generator, dtype=torch.float64)
    params = 0.3 * torch.randn(
        256, 1, transform.num_params, generator=generator, dtype=torch.float64
    )
    params.requires_grad_(True)
    y, log_derivative = transform(x, params)
    loss = (log_derivative**2).sum() + (y**2).sum()
    (grad,) = torch.autograd.grad(loss, params)
    per_parameter = grad.abs().sum(dim=(0, 1))
    assert bool((per_parameter > 1e-8).all()), per_parameter


@pytest.mark.parametrize("circular", [False, True])
def test_full_gradcheck_and_gradgradcheck(circular: bool) -> None:
    """Full (not fast-mode) checks on a tiny case, complementing the contract tests."""
    transform = SmoothMixtureTransform(2, beta=1, circular=circular)
    x = torch.tensor([0.31], dtype=torch.float64, requires_grad=True)
    generator = torch.Generator().manual_seed(34)
    params = torch.randn(1, transform.num_params, generator=generator, dtype=torch.float64)
    params.requires_grad_(True)
    assert torch.autograd.gradcheck(transform, (x, params))
    assert torch.autograd.gradgradcheck(transform, (x, params))


@pytest.mark.parametrize("circular", [False, True])
def test_min_identity_share_floors_the_density(circular: bool) -> None:
    floor = 0.02
    transform = SmoothMixtureTransform(4, beta=1, circular=circular, min_identity_share=floor)
    x = torch.linspace(-0.2, 1.2, 141, dtype=torch.float64).unsqueeze(-1)
    params = torch.zeros(141, 1, transform.num_params, dtype=torch.float64)
    params[..., 4 * 4] = -60.0  # c logit far down: c at its floor, bumps narrow and apart
    params[..., 4:8] = 60.0
    _, log_derivative = transform(x, params)
    assert float(log_derivative.min()) >= math.log(floor) - 1e-12
    assert float(log_derivative.min()) < math.log(floor) + 1e-6  # reached between the bumps
    default = SmoothMixtureTransform(4, beta=1, circular=circular)
    _, log_default = default(x, params)
    assert float(log_default.min()) < math.log(1e-5)  # without the floor: a near-empty gap
    identity = transform.identity_params(torch.float64).expand(141, 1, -1)
    y, _ = transform(x, identity)
    inside = (x >= 0) & (x <= 1)
    assert float((y - x)[inside].abs().max()) < 0.05
    assert f"min_identity_share={floor:g}" in repr(transform)
    x1 = torch.tensor([0.31], dtype=torch.float64, requires_grad=True)
    p1 = torch.randn(1, transform.num_params, generator=torch.Generator().manual_seed(35),
                     dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(transform, (x1, p1))
    assert torch.autograd.gradgradcheck(transform, (x1, p1))
    for bad in (0.0, 1e-7, 0.5, 0.9):
        with pytest.raises(ValueError, match="min_identity_share"):
            SmoothMixtureTransform(4, min_identity_share=bad)
