"""Shared transform configurations and derivative helpers for tests/transforms.

Tests run in pytest's importlib mode, so they reach these through fixtures: ``any_transform``,
``bounded_transform``, ``interval_transform``, ``circle_transform`` (one test per configuration)
and ``helpers`` (a namespace of the functions below).
"""

from __future__ import annotations

import types
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from flowff.transforms import (
    AffineTransform,
    ElementwiseTransform,
    GaussianMixtureTransform,
    RationalQuadraticSplineTransform,
    SmoothMixtureTransform,
)

#: name -> constructor, small sizes to keep gradchecks fast.
TRANSFORM_CASES: dict[str, Callable[[], ElementwiseTransform]] = {
    "smooth-interval-beta1": lambda: SmoothMixtureTransform(3, beta=1, circular=False),
    "smooth-interval-beta2": lambda: SmoothMixtureTransform(3, beta=2, circular=False),
    "smooth-circle-beta1": lambda: SmoothMixtureTransform(3, beta=1, circular=True),
    "smooth-circle-beta2": lambda: SmoothMixtureTransform(3, beta=2, circular=True),
    "spline-interval": lambda: RationalQuadraticSplineTransform(4, circular=False),
    "spline-interval-learned-boundary": lambda: RationalQuadraticSplineTransform(
        4, circular=False, learn_boundary_derivatives=True
    ),
    "spline-circle": lambda: RationalQuadraticSplineTransform(4, circular=True),
    "gaussian-interval-1": lambda: GaussianMixtureTransform(1),
    "gaussian-interval-3": lambda: GaussianMixtureTransform(3),
    "affine": AffineTransform,
}

BOUNDED_CASES = [name for name in TRANSFORM_CASES if name != "affine"]
INTERVAL_CASES = [name for name in BOUNDED_CASES if "interval" in name]
CIRCLE_CASES = [name for name in BOUNDED_CASES if "circle" in name]


def random_params(
    transform: ElementwiseTransform,
    shape: tuple[int, ...],
    scale: float = 1.5,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Unconstrained parameters of shape ``shape + (num_params,)``, normal with std ``scale``."""
    generator = torch.Generator().manual_seed(seed)
    return scale * torch.randn(*shape, transform.num_params, generator=generator, dtype=dtype)


def evaluation_grid(dtype: torch.dtype) -> Tensor:
    """Dense grid on [-1.5, 2.5] plus 0, 1, 2, -1 and points a tiny distance on either side."""
    tiny = 1e-300 if dtype == torch.float64 else 1e-30
    eps = float(torch.finfo(dtype).eps)
    special = [0.0, 1.0, -1.0, 2.0, tiny, -tiny, eps, -eps, 1.0 - eps, 1.0 + 2 * eps, 0.5]
    dense = torch.linspace(-1.5, 2.5, 801, dtype=torch.float64)
    return torch.cat([dense, torch.tensor(special, dtype=torch.float64)]).to(dtype)


def x_derivatives(
    transform: ElementwiseTransform, x: Tensor, params: Tensor, order: int = 3
) -> tuple[Tensor, list[Tensor]]:
    """Values f(x) and the element-wise derivatives d^k f / dx^k, k = 1..order, by autograd."""
    x = x.detach().clone().requires_grad_(True)
    y, _ = transform(x, params)
    derivatives = []
    current = y
    for _ in range(order):
        (current,) = torch.autograd.grad(
            current.sum(), x, create_graph=True, materialize_grads=True
        )
        derivatives.append(current)
    return y, derivatives


def mixed_derivative_tower(
    transform: ElementwiseTransform, x: Tensor, params: Tensor, order: int = 3
) -> list[Tensor]:
    """Gradients w.r.t. x and params of y and of log|dy/dx|, iterated ``order`` times.

    Level k holds d/dx and d/dparams of the level-(k-1) quantity, the all-ones directional
    derivative ``sum(d/dx) + sum(d/dparams)`` of the level below: every partial derivative of order
    <= ``order`` enters some returned tensor, so a non-finite partial shows up as a non-finite
    entry.
    """
    x = x.detach().clone().requires_grad_(True)
    params = params.detach().clone().requires_grad_(True)
    y, log_derivative = transform(x, params)
    gathered = [y, log_derivative]
    for output in (y, log_derivative):
        current = output.sum()
        for _ in range(order):
            grad_x, grad_params = torch.autograd.grad(
                current, (x, params), create_graph=True, materialize_grads=True
            )
            gathered.extend([grad_x, grad_params])
            current = grad_x.sum() + grad_params.sum()
    return gathered


@pytest.fixture(params=list(TRANSFORM_CASES))
def any_transform(request: pytest.FixtureRequest) -> ElementwiseTransform:
    """Every configuration, affine included."""
    return TRANSFORM_CASES[request.param]()


@pytest.fixture(params=BOUNDED_CASES)
def bounded_transform(request: pytest.FixtureRequest) -> ElementwiseTransform:
    """Interval and circle configurations."""
    return TRANSFORM_CASES[request.param]()


@pytest.fixture(params=INTERVAL_CASES)
def interval_transform(request: pytest.FixtureRequest) -> ElementwiseTransform:
    """Interval configurations (f(0) = 0, f(1) = 1)."""
    return TRANSFORM_CASES[request.param]()


@pytest.fixture(params=CIRCLE_CASES)
def circle_transform(request: pytest.FixtureRequest) -> ElementwiseTransform:
    """Circle configurations (f(x + 1) = f(x) + 1)."""
    return TRANSFORM_CASES[request.param]()


@pytest.fixture
def helpers() -> types.SimpleNamespace:
    """The helper functions of this conftest, for tests to call."""
    return types.SimpleNamespace(
        random_params=random_params,
        evaluation_grid=evaluation_grid,
        x_derivatives=x_derivatives,
        mixed_derivative_tower=mixed_derivative_tower,
    )
