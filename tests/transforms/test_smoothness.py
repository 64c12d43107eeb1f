"""The paper's point: bump mixtures are C-infinity, rational-quadratic splines only C^1.

At a point x0, ``jump = |f''(x0 + h) - f''(x0 - h)|``. For a C^3 map the mean value theorem gives
``jump <= 2 h sup |f'''|`` near x0; a spline's f'' jumps at its knots, so there the ratio
``jump / (2 h sup |f'''|)`` is huge, while for the bump mixture it stays <= 1 (up to sampling).
"""

from __future__ import annotations

import types

import torch

from flowff.transforms import (
    ElementwiseTransform,
    RationalQuadraticSplineTransform,
    SmoothMixtureTransform,
)

STEP = 1e-6


def _jump_ratio(
    transform: ElementwiseTransform,
    params: torch.Tensor,
    points: torch.Tensor,
    helpers: types.SimpleNamespace,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Second-derivative jumps at ``points`` (n,) and their ratio to 2 h sup|f'''| nearby."""
    offsets = torch.linspace(-STEP, STEP, 21, dtype=torch.float64)
    x = points.unsqueeze(-1) + offsets
    expanded = params.expand(*x.shape, -1)
    _, (_, second, third) = helpers.x_derivatives(transform, x, expanded)
    jump = (second[:, -1] - second[:, 0]).abs().detach()
    bound = 2.0 * STEP * third.abs().amax(dim=-1).detach()
    return jump, jump / (bound + 1e-300)


def test_spline_second_derivative_jumps_at_knots_mixture_does_not(
    helpers: types.SimpleNamespace,
) -> None:
    spline = RationalQuadraticSplineTransform(6, circular=False)
    spline_params = helpers.random_params(spline, (), seed=21)
    x_knots, _, _ = spline.spline_params(spline_params)
    spline_jump, spline_ratio = _jump_ratio(spline, spline_params, x_knots[1:-1], helpers)
    assert float(spline_jump.min()) > 1e-3  # f'' is discontinuous at every interior knot
    assert float(spline_ratio.min()) > 100.0

    mixture = SmoothMixtureTransform(4, beta=1, circular=False)
    mixture_params = helpers.random_params(mixture, (), scale=0.7, seed=22)
    _, a, b, _, _, _ = mixture.constrained_params(mixture_params)
    support_edges = torch.cat([b - 0.5 / a, b + 0.5 / a])
    points = torch.cat([x_knots[1:-1], support_edges, torch.tensor([0.0, 1.0])]).double()
    _, mixture_ratio = _jump_ratio(mixture, mixture_params, points, helpers)
    assert float(mixture_ratio.max()) < 1.5


def test_circle_spline_is_not_c2_at_the_wrap_mixture_is(helpers: types.SimpleNamespace) -> None:
    wrap = torch.tensor([0.0, 1.0], dtype=torch.float64)
    spline = RationalQuadraticSplineTransform(6, circular=True)
    spline_jump, spline_ratio = _jump_ratio(
        spline, helpers.random_params(spline, (), seed=23), wrap, helpers
    )
    assert float(spline_jump.min()) > 1e-3 and float(spline_ratio.min()) > 100.0
    mixture = SmoothMixtureTransform(4, beta=2, circular=True)
    _, mixture_ratio = _jump_ratio(
        mixture, helpers.random_params(mixture, (), scale=0.7, seed=24), wrap, helpers
    )
    assert float(mixture_ratio.max()) < 1.5
