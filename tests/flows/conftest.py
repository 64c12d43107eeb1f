"""Fixtures for tests/flows: toy element-wise transforms and single-threaded torch.

The toy transforms test flowff.flows independently of flowff.transforms. They follow the
ElementwiseTransform contract of docs/architecture.md and compile with TorchScript. Shapes:
x (..., d), params (..., d, num_params) -> (y (..., d), log|dy/dx| (..., d)).
Tests run in pytest's importlib mode, so they reach these through the ``toys`` fixture.
"""

from __future__ import annotations

import math
import types

import pytest
import torch
from torch import Tensor, nn


class LogisticMixture(nn.Module):
    """Interval map c x + (1 - c) sum_k w_k L_k(x), L_k rescaled logistic CDFs with L_k(0)=0,
    L_k(1)=1; strictly increasing on R (slope >= c), f(0) = 0, f(1) = 1. No analytic inverse."""

    circular: bool = False
    has_analytic_inverse: bool = False

    def __init__(self, num_components: int = 3) -> None:
        super().__init__()
        self.num_components = num_components
        self.num_params = 3 * num_components + 1

    def identity_params(self, dtype: torch.dtype | None = None) -> Tensor:
        params = torch.zeros(self.num_params, dtype=dtype)
        params[-1] = 6.0  # c = 0.01 + 0.99 sigmoid(6) ~ 0.998: near identity
        return params

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        m = self.num_components
        weights = torch.softmax(params[..., :m], dim=-1)
        slope = 1.0 + nn.functional.softplus(params[..., m : 2 * m]) * 8.0
        center = torch.sigmoid(params[..., 2 * m : 3 * m])
        floor = 0.01 + 0.99 * torch.sigmoid(params[..., 3 * m])
        s = torch.sigmoid(slope * (x.unsqueeze(-1) - center))
        s0 = torch.sigmoid(-slope * center)
        s1 = torch.sigmoid(slope * (1.0 - center))
        scale = s1 - s0
        mixture = (weights * (s - s0) / scale).sum(-1)
        mixture_slope = (weights * slope * s * (1.0 - s) / scale).sum(-1)
        y = floor * x + (1.0 - floor) * mixture
        dy = floor + (1.0 - floor) * mixture_slope
        return y, torch.log(dy)


class SineCircleMap(nn.Module):
    """Circle map f(x) = x + shift + sum_k e_k sin(2 pi (x - p_k)) / (2 pi), |sum e_k| <= 0.9:
    f(x + 1) = f(x) + 1, f' >= 0.1. Identity at zero parameters. No analytic inverse."""

    circular: bool = True
    has_analytic_inverse: bool = False

    def __init__(self, num_components: int = 2) -> None:
        super().__init__()
        self.num_components = num_components
        self.num_params = 2 * num_components + 1

    def identity_params(self, dtype: torch.dtype | None = None) -> Tensor:
        return torch.zeros(self.num_params, dtype=dtype)

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        m = self.num_components
        amplitude = 0.9 * torch.tanh(params[..., :m]) / m
        phase = 2.0 * math.pi * (x.unsqueeze(-1) - params[..., m : 2 * m])
        shift = params[..., 2 * m]
        y = x + shift + (amplitude * torch.sin(phase)).sum(-1) / (2.0 * math.pi)
        dy = 1.0 + (amplitude * torch.cos(phase)).sum(-1)
        return y, torch.log(dy)


class ExponentialMap(nn.Module):
    """Interval map f(x) = expm1(a x) / expm1(a), a = 0.5 + softplus(p) > 0: increasing on R,
    f(0) = 0, f(1) = 1, with an analytic inverse x = log1p(y expm1(a)) / a (y > -1/expm1(a))."""

    circular: bool = False
    has_analytic_inverse: bool = True
    num_params: int = 1

    def identity_params(self, dtype: torch.dtype | None = None) -> Tensor:
        return torch.full((1,), -3.0, dtype=dtype)

    def _rate(self, params: Tensor) -> Tensor:
        return 0.5 + nn.functional.softplus(params[..., 0])

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        a = self._rate(params)
        y = torch.expm1(a * x) / torch.expm1(a)
        return y, torch.log(a / torch.expm1(a)) + a * x

    def analytic_inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        a = self._rate(params)
        x = torch.log1p(y * torch.expm1(a)) / a
        return x, -(torch.log(a / torch.expm1(a)) + a * x)


def randomize_parameters(module: nn.Module, std: float = 0.5, seed: int = 0) -> nn.Module:
    """Add N(0, std^2) noise to every parameter: moves a flow away from its identity start
    (zero last layers become random) while the transforms' parameters stay near their
    identity values, so compactly supported bumps still overlap the data."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            draw = torch.randn(parameter.shape, generator=generator, dtype=torch.float64)
            parameter.add_(std * draw.to(parameter.dtype))
    return module


@pytest.fixture
def toys() -> types.SimpleNamespace:
    """Namespace with the toy transforms and helpers of this folder."""
    return types.SimpleNamespace(
        LogisticMixture=LogisticMixture,
        SineCircleMap=SineCircleMap,
        ExponentialMap=ExponentialMap,
        randomize_parameters=randomize_parameters,
    )

