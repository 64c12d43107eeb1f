"""Multi-bin bisection: accuracy, K-independence, bracket expansion, failure reporting."""

from __future__ import annotations

import math

import pytest
import torch

from flowff.flows.inversion import (
    InversionError,
    bisect_monotone,
    circular_lift,
    default_tolerance,
    solve_transform,
)
from flowff.transforms import SmoothMixtureTransform


def cubic(x: torch.Tensor) -> torch.Tensor:
    """Increasing on R with f(0) = 0, f(1) = 1 and an explicit inverse (for checking)."""
    return 0.5 * (x**3 + x)


def cubic_inverse(y: torch.Tensor) -> torch.Tensor:
    """Real root of x^3 + x - 2 y = 0 (Cardano)."""
    q = -2.0 * y
    root = torch.sqrt(q**2 / 4.0 + 1.0 / 27.0)
    return torch.sign(-q / 2.0 + root) * (-q / 2.0 + root).abs() ** (1 / 3) + torch.sign(
        -q / 2.0 - root
    ) * (-q / 2.0 - root).abs() ** (1 / 3)


@pytest.mark.parametrize("num_bins", [2, 3, 4, 16, 256])
def test_bisection_matches_closed_form_inverse(num_bins: int) -> None:
    y = torch.linspace(0.0, 1.0, 41, dtype=torch.float64).reshape(41, 1)
    result = bisect_monotone(cubic, y, num_bins=num_bins)
    assert result.converged.all()
    assert (result.x - cubic_inverse(y)).abs().max() <= default_tolerance(torch.float64)
    assert result.max_half_width <= default_tolerance(torch.float64)


def test_iterations_shrink_with_log_k() -> None:
    y = torch.rand(10, dtype=torch.float64)
    counts = {k: bisect_monotone(cubic, y, num_bins=k).iterations for k in (2, 4, 16, 256)}
    needed = math.log2(1.0 / (2 * default_tolerance(torch.float64)))
    for k, count in counts.items():
        assert count == math.ceil(needed / math.log2(k))


def test_result_is_bracket_midpoint_not_left_end() -> None:
    # With a huge tolerance the answer is one bisection step: the midpoint of the bin.
    y = torch.tensor([0.3, 0.7], dtype=torch.float64)
    result = bisect_monotone(lambda x: x, y, num_bins=2, tol=0.25)
    assert result.iterations == 1
    torch.testing.assert_close(result.x, torch.tensor([0.25, 0.75], dtype=torch.float64))


def test_default_tolerances() -> None:
    assert default_tolerance(torch.float32) == 1e-6
    assert default_tolerance(torch.float64) == 1e-10
    with pytest.raises(TypeError, match="floating-point"):
        default_tolerance(torch.int64)


def test_float32_reaches_its_tolerance() -> None:
    y = torch.rand(200, generator=torch.Generator().manual_seed(1))
    result = bisect_monotone(cubic, y, num_bins=8)
    assert result.x.dtype == torch.float32
    assert result.converged.all()
    expected = cubic_inverse(y.double())
    assert (result.x.double() - expected).abs().max() <= 1.5e-6


def test_targets_outside_the_unit_interval_expand_the_bracket() -> None:
    y = torch.tensor([-40.0, -1.0, -1e-9, 1.0 + 1e-9, 3.0, 500.0], dtype=torch.float64)
    result = bisect_monotone(cubic, y, num_bins=4)
    assert result.converged.all()
    assert ((cubic(result.x) - y).abs() / y.abs().clamp_min(1.0)).max() < 1e-8
    torch.testing.assert_close(result.x, cubic_inverse(y), rtol=1e-10, atol=1e-10)


def test_too_few_iterations_raise_with_reason() -> None:
    y = torch.rand(5, dtype=torch.float64)
    with pytest.raises(InversionError, match="max_iterations=3"):
        bisect_monotone(cubic, y, num_bins=2, max_iterations=3)


def test_failure_can_be_reported_by_flag() -> None:
    y = torch.tensor([0.2, 0.4], dtype=torch.float64)
    result = bisect_monotone(cubic, y, num_bins=2, max_iterations=3, raise_on_failure=False)
    assert not result.converged.any()
    assert result.max_half_width == pytest.approx(2.0**-4)


def test_unreachable_target_is_not_bracketed() -> None:
    y = torch.tensor([0.5, 1.5], dtype=torch.float64)  # a sigmoid never reaches 1.5
    with pytest.raises(InversionError, match="not bracketed"):
        bisect_monotone(torch.sigmoid, y)
    result = bisect_monotone(torch.sigmoid, y, raise_on_failure=False)
    assert result.converged.tolist() == [True, False]
    assert torch.sigmoid(result.x[0]).item() == pytest.approx(0.5, abs=1e-10)


def test_decreasing_function_is_reported() -> None:
    y = torch.tensor([0.25], dtype=torch.float64)
    with pytest.raises(InversionError, match="not bracketed"):
        bisect_monotone(lambda x: 1.0 - x, y)


def test_nan_values_are_reported() -> None:
    y = torch.tensor([0.25, 0.75], dtype=torch.float64)

    def nan_above_half(x: torch.Tensor) -> torch.Tensor:
        return torch.where((x > 0.5) & (x < 1.0), torch.full_like(x, float("nan")), x)

    with pytest.raises(InversionError, match="NaN"):
        bisect_monotone(nan_above_half, y)


def test_bad_arguments_raise() -> None:
    y = torch.rand(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="num_bins"):
        bisect_monotone(cubic, y, num_bins=1)
    with pytest.raises(ValueError, match="tol"):
        bisect_monotone(cubic, y, tol=0.0)
    with pytest.raises(InversionError, match="non-finite"):
        bisect_monotone(cubic, torch.tensor([0.5, float("nan")], dtype=torch.float64))


def test_solve_transform_checks_parameter_shape(toys) -> None:
    transform = toys.LogisticMixture(2)
    with pytest.raises(ValueError, match="params must have shape"):
        solve_transform(transform, torch.rand(4, 3), torch.rand(4, 3))


@pytest.mark.parametrize("num_bins", [2, 8, 64])
def test_solve_transform_inverts_smooth_mixture(num_bins: int) -> None:
    generator = torch.Generator().manual_seed(3)
    transform = SmoothMixtureTransform(4, circular=False)
    params = 1.5 * torch.randn(6, 3, transform.num_params, generator=generator).double()
    y = torch.rand(6, 3, generator=generator).double()
    result = solve_transform(transform, y, params, num_bins=num_bins, tol=1e-12)
    values, _ = transform(result.x, params)
    assert (values - y).abs().max() < 1e-9
    assert ((result.x >= 0) & (result.x <= 1)).all()


def test_circular_lift_puts_root_in_unit_period(toys) -> None:
    generator = torch.Generator().manual_seed(4)
    transform = toys.SineCircleMap(2)
    params = torch.randn(50, 2, transform.num_params, generator=generator).double()
    params[..., -1] = 3.0 * params[..., -1]  # rotations of several turns
    y = torch.rand(50, 2, generator=generator).double()
    lift = circular_lift(transform, y, params)
    assert torch.equal(lift, torch.round(lift))
    result = solve_transform(transform, y + lift, params)
    assert ((result.x > -1e-10) & (result.x < 1 + 1e-10)).all()
    values, _ = transform(result.x, params)
    assert (values - y - lift).abs().max() < 1e-9


@pytest.mark.parametrize("kind", ["smooth", "spline"])
def test_real_interval_transforms_invert_outside_unit_interval(kind: str) -> None:
    """Interval transforms continue monotonically beyond [0, 1]; the bracket follows."""
    from flowff.transforms import make_transform

    transform = make_transform(kind, circular=False)
    generator = torch.Generator().manual_seed(7)
    params = torch.randn(4, 2, transform.num_params, generator=generator).double()
    y = torch.tensor([[-0.3, 1.7], [-5.0, 12.0], [1e-3, 0.999], [-1e-12, 1.0 + 1e-12]]).double()
    result = solve_transform(transform, y, params, num_bins=4, tol=1e-12)
    values, _ = transform(result.x, params)
    assert ((values - y).abs() / y.abs().clamp_min(1.0)).max() < 1e-9
    assert (result.x[:2] < 0).sum() == 2 and (result.x[:2] > 1).sum() == 2
