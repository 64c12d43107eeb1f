"""Coupling layers: bijectivity, log-det vs autograd Jacobians, circular wrapping, gradients."""

from __future__ import annotations

import pytest
import torch
from torch.autograd.functional import jacobian

from flowff.flows import coupling as coupling_module
from flowff.flows.coupling import CouplingLayer
from flowff.flows.implicit import InversionSettings
from flowff.transforms import make_transform

MASK = torch.tensor([False, True, False, True, False])
TRANSFORMED = [0, 1, 3]
CONDITIONING = [2, 4]
TIGHT = InversionSettings(num_bins=8, tol=1e-13)


def make_layer(toys, kind: str, inversion: InversionSettings = TIGHT) -> CouplingLayer:
    if kind == "toy":
        interval, circle = toys.LogisticMixture(3), toys.SineCircleMap(2)
    else:
        size = {"num_components": 3} if kind == "smooth" else {"num_bins": 5}
        interval = make_transform(kind, circular=False, **size)
        circle = make_transform(kind, circular=True, **size)
    with torch.random.fork_rng():
        torch.manual_seed(0)  # same hidden-layer initialisation for every call
        layer = CouplingLayer(MASK, TRANSFORMED, CONDITIONING, interval, circle, hidden=(8, 8),
                              inversion=inversion).double()
    return toys.randomize_parameters(layer, std=0.6)


def random_h(num: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(num, 5, generator=torch.Generator().manual_seed(seed)).double()


@pytest.mark.parametrize("kind", ["toy", "smooth", "spline"])
def test_round_trip_and_log_dets(toys, kind: str) -> None:
    layer = make_layer(toys, kind)
    h = random_h(16)
    z, log_det = layer(h)
    h_again, log_det_inverse = layer.inverse(z)
    assert (h_again - h).abs().max() < 1e-10
    assert (log_det + log_det_inverse).abs().max() < 1e-8
    assert log_det.shape == (16,)
    assert log_det.abs().max() > 1e-2  # a real, non-identity transformation
    # Conditioning (and untouched) coordinates pass through exactly.
    assert torch.equal(z[:, CONDITIONING], h[:, CONDITIONING])


@pytest.mark.parametrize("kind", ["toy", "smooth", "spline"])
def test_log_det_matches_autograd_jacobian(toys, kind: str) -> None:
    layer = make_layer(toys, kind)
    for h in random_h(3, seed=1):
        z, log_det = layer(h)
        expected = torch.linalg.slogdet(jacobian(lambda v: layer(v)[0], h))[1]
        torch.testing.assert_close(log_det, expected, rtol=1e-10, atol=1e-10)
        _, log_det_inverse = layer.inverse(z)
        expected_inverse = torch.linalg.slogdet(jacobian(lambda v: layer.inverse(v)[0], z))[1]
        torch.testing.assert_close(log_det_inverse, expected_inverse, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("kind", ["toy", "smooth", "spline"])
def test_circular_outputs_in_unit_period(toys, kind: str) -> None:
    layer = make_layer(toys, kind)
    with torch.no_grad():  # rotate circle maps by several turns
        layer.conditioner.network[-1].bias.add_(2.7)
    edges = torch.tensor([0.0, 1e-17, 0.5, 1.0 - 1e-16], dtype=torch.float64)
    h = torch.cartesian_prod(edges, edges).repeat(1, 3)[:, :5].contiguous()
    h = torch.cat([h, random_h(32, seed=2)])
    z, _ = layer(h)
    circular = z[:, MASK]
    assert ((circular >= 0) & (circular < 1)).all()
    h_again, _ = layer.inverse(z)
    assert ((h_again[:, MASK] >= 0) & (h_again[:, MASK] < 1)).all()
    difference = h_again - h
    difference[:, MASK] -= torch.round(difference[:, MASK])  # 0 and 1 - 1e-16 are neighbours
    assert difference.abs().max() < 1e-10


def test_analytic_inverse_is_used_when_available(toys, monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("numerical inversion used for a spline")

    monkeypatch.setattr(coupling_module, "implicit_inverse", fail)
    layer = make_layer(toys, "spline")
    h = random_h(4)
    h_again, _ = layer.inverse(layer(h)[0])
    assert (h_again - h).abs().max() < 1e-12
    with pytest.raises(AssertionError, match="numerical inversion"):
        make_layer(toys, "toy").inverse(h)


@pytest.mark.parametrize("num_bins", [2, 7, 64])
def test_inverse_is_independent_of_num_bins(toys, num_bins: int) -> None:
    tol = 1e-12
    reference = make_layer(toys, "smooth", InversionSettings(num_bins=3, tol=tol))
    layer = make_layer(toys, "smooth", InversionSettings(num_bins=num_bins, tol=tol))
    z = random_h(16, seed=3)
    assert (layer.inverse(z)[0] - reference.inverse(z)[0]).abs().max() <= 2 * tol


@pytest.mark.parametrize("direction", ["forward", "inverse"])
@pytest.mark.parametrize("kind", ["toy", "smooth", "spline"])
def test_every_parameter_gets_a_gradient(toys, kind: str, direction: str) -> None:
    layer = make_layer(toys, kind)
    h = random_h(32, seed=4)
    out, log_det = layer(h) if direction == "forward" else layer.inverse(h)
    (torch.sin(5 * out).sum() + log_det.sum()).backward()
    for name, parameter in layer.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().min() > 0, name


def test_interval_only_and_unconditioned_layers(toys) -> None:
    mask = torch.zeros(3, dtype=torch.bool)
    layer = CouplingLayer(mask, [0, 1, 2], [], toys.LogisticMixture(2), inversion=TIGHT).double()
    toys.randomize_parameters(layer)
    h = random_h(6)[:, :3]
    z, log_det = layer(h)
    h_again, log_det_inverse = layer.inverse(z)
    assert (h_again - h).abs().max() < 1e-10
    assert (log_det + log_det_inverse).abs().max() < 1e-9
    assert len(layer.groups) == 1 and not layer.groups[0].circular


def test_invalid_layouts_raise(toys) -> None:
    interval, circle = toys.LogisticMixture(2), toys.SineCircleMap(2)
    with pytest.raises(ValueError, match="both transformed and conditioning"):
        CouplingLayer(MASK, [0, 2], [2, 4], interval, circle)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 5\)"):
        CouplingLayer(MASK, [0, 5], [2], interval, circle)
    with pytest.raises(ValueError, match="distinct"):
        CouplingLayer(MASK, [0, 0], [2], interval, circle)
    with pytest.raises(ValueError, match="at least one coordinate"):
        CouplingLayer(MASK, [], [2], interval, circle)
    with pytest.raises(ValueError, match="pass a circular_transform"):
        CouplingLayer(MASK, [1], [2], interval_transform=interval)
    with pytest.raises(ValueError, match="cannot transform interval coordinates"):
        CouplingLayer(MASK, [0], [2], interval_transform=circle)
    layer = CouplingLayer(MASK, TRANSFORMED, CONDITIONING, interval, circle)
    with pytest.raises(ValueError, match=r"expected shape \(\.\.\., 5\)"):
        layer(torch.rand(3, 4))
