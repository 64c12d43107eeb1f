"""Flow stacks and priors: bijectivity, log-dets, sampling, identity start, TorchScript, float32."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck
from torch.autograd.functional import jacobian

from flowff._torchscript import quiet_jit
from flowff.flows import (
    CouplingLayer,
    Flow,
    InversionSettings,
    UniformPrior,
    alternating_halves_schedule,
    build_coupling_flow,
)

MASK = torch.tensor([False, True, False, True, True])
TIGHT = InversionSettings(num_bins=8, tol=1e-13)


def make_flow(toys, kind: str, dtype: torch.dtype = torch.float64, seed: int = 0) -> Flow:
    """A randomised 5-d flow with interval and circular coordinates (4 coupling layers)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        if kind == "toy":
            layers = [
                CouplingLayer(MASK, transformed, conditioning, toys.LogisticMixture(2),
                              toys.SineCircleMap(2), hidden=(6,), inversion=TIGHT)
                for transformed, conditioning in alternating_halves_schedule(5, 4)
            ]
            flow = Flow(layers, UniformPrior(5))
        else:
            flow = build_coupling_flow(5, MASK, transform_kind=kind, num_components=3,
                                       hidden=(8, 8), inversion=TIGHT)
    return toys.randomize_parameters(flow.to(dtype), std=0.5, seed=seed)


def random_points(num: int, dim: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.rand(num, dim, generator=torch.Generator().manual_seed(seed)).double()


def test_alternating_halves_schedule() -> None:
    assert alternating_halves_schedule(5, 3) == [
        ([2, 3, 4], [0, 1]), ([0, 1], [2, 3, 4]), ([2, 3, 4], [0, 1])
    ]
    assert alternating_halves_schedule(1, 2) == [([0], []), ([0], [])]
    with pytest.raises(ValueError, match="num_layers"):
        alternating_halves_schedule(4, 0)


@pytest.mark.parametrize("kind", ["toy", "smooth", "spline"])
def test_flow_round_trip(toys, kind: str) -> None:
    flow = make_flow(toys, kind)
    h = random_points(32)
    z, log_det = flow(h)
    h_again, log_det_inverse = flow.inverse(z)
    assert (h_again - h).abs().max() < 1e-10
    assert (log_det + log_det_inverse).abs().max() < 1e-8
    assert log_det.abs().max() > 1e-2
    assert ((z[:, MASK] >= 0) & (z[:, MASK] < 1)).all()


@pytest.mark.parametrize("kind", ["smooth", "spline"])
def test_flow_log_det_matches_autograd_jacobian(toys, kind: str) -> None:
    flow = make_flow(toys, kind, seed=1)
    for h in random_points(2, seed=1):
        _, log_det = flow(h)
        expected = torch.linalg.slogdet(jacobian(lambda v: flow(v)[0], h))[1]
        torch.testing.assert_close(log_det, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["smooth", "spline"])
def test_flow_starts_near_identity(kind: str) -> None:
    flow = build_coupling_flow(5, MASK, transform_kind=kind).double()
    h = random_points(64)
    z, log_det = flow(h)
    # Bump mixtures: identity up to the transforms' documented density tolerance (1e-3 per layer).
    tolerance = 5e-3 if kind == "smooth" else 1e-8
    assert (z - h).abs().max() < tolerance
    assert log_det.abs().max() < 4 * tolerance
    torch.testing.assert_close(flow.log_prob(h), log_det)


@pytest.mark.parametrize("kind", ["toy", "smooth", "spline"])
def test_torchscript_matches_eager(toys, kind: str) -> None:
    flow = make_flow(toys, kind)
    with quiet_jit():
        scripted = torch.jit.script(flow)
    h = random_points(16, seed=2)
    z, log_det = flow(h)
    z_scripted, log_det_scripted = scripted(h)
    torch.testing.assert_close(z_scripted, z, rtol=0, atol=1e-14)
    torch.testing.assert_close(log_det_scripted, log_det, rtol=0, atol=1e-12)
    torch.testing.assert_close(scripted.log_prob(h), flow.log_prob(h), rtol=0, atol=1e-12)
    # Forces through the scripted density match too.
    h_grad = h.clone().requires_grad_()
    (force_scripted,) = torch.autograd.grad(scripted.log_prob(h_grad).sum(), h_grad)
    h_grad = h.clone().requires_grad_()
    (force,) = torch.autograd.grad(flow.log_prob(h_grad).sum(), h_grad)
    torch.testing.assert_close(force_scripted, force, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["toy", "smooth", "spline"])
def test_sample_log_prob_is_consistent(toys, kind: str) -> None:
    flow = make_flow(toys, kind)
    h, log_prob = flow.sample(64, generator=torch.Generator().manual_seed(3))
    assert h.shape == (64, 5) and log_prob.shape == (64,)
    assert ((h >= -1e-12) & (h <= 1 + 1e-12)).all()
    assert ((h[:, MASK] >= 0) & (h[:, MASK] < 1)).all()
    torch.testing.assert_close(log_prob, flow.log_prob(h.detach()), rtol=1e-8, atol=1e-8)


def test_gradcheck_through_stacked_inverse(toys) -> None:
    """Gradients flow across layers through each conditioner's input (a known public bug)."""
    flow = make_flow(toys, "toy")
    flow.layers = flow.layers[:2]  # 2 layers: each conditions on the other's output
    z = (0.05 + 0.9 * random_points(1, seed=4)).requires_grad_()
    assert gradcheck(flow.inverse, (z,))
    assert gradgradcheck(flow.inverse, (z,))


def test_force_matching_gradient_through_inverse(toys) -> None:
    """Second-order use: d/dtheta of |d log p(h(z))/dz|^2 with h from the numerical inverse."""
    flow = make_flow(toys, "smooth")
    z = random_points(8, seed=5).requires_grad_()
    h, log_det = flow.inverse(z)
    (score,) = torch.autograd.grad(log_det.sum() + (h**2).sum(), z, create_graph=True)
    (score**2).sum().backward()
    gradients = [p.grad for p in flow.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in gradients)
    assert all(g.abs().sum() > 0 for g in gradients)


@pytest.mark.parametrize("kind", ["smooth", "spline"])
def test_every_parameter_gets_a_gradient_from_identity_start(kind: str) -> None:
    """From the identity start, one NLL step makes every weight trainable (no constant outputs).

    At the start the zero last layers block gradients to the hidden layers (by design); after
    one Adam step every parameter entry receives a nonzero gradient, in both directions. The
    loss involves z (or h) itself, not only log p: with a uniform prior the NLL alone does not
    depend on the last layer's circular rotations.
    """
    torch.manual_seed(7)
    flow = build_coupling_flow(5, MASK, transform_kind=kind, num_components=3, hidden=(8, 8))
    flow = flow.double()
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-2)
    data = random_points(64, seed=6) ** 2  # non-uniform data
    (-flow.log_prob(data).mean()).backward()
    optimizer.step()
    for direction in ("forward", "inverse"):
        optimizer.zero_grad()
        if direction == "forward":
            z, log_det = flow(data)
            loss = (torch.sin(4 * z).sum(-1) - log_det).mean()
        else:
            h, log_prob = flow.sample(64, generator=torch.Generator().manual_seed(8))
            loss = (torch.sin(4 * h).sum(-1) + log_prob).mean()
        loss.backward()
        for name, parameter in flow.named_parameters():
            assert parameter.grad is not None, (direction, name)
            assert parameter.grad.abs().min() > 0, (direction, name)


@pytest.mark.parametrize("num_bins", [2, 16, 256])
def test_sampling_is_independent_of_num_bins(toys, num_bins: int) -> None:
    flow = make_flow(toys, "toy")
    z = random_points(16, seed=9)
    flow.configure_inversion(num_bins=3, tol=1e-12)
    reference, _ = flow.inverse(z)
    flow.configure_inversion(num_bins=num_bins)
    h, _ = flow.inverse(z)
    assert all(layer.inversion.num_bins == num_bins for layer in flow.layers)
    assert (h - reference).abs().max() < 1e-10


@pytest.mark.parametrize("kind", ["smooth", "spline"])
def test_float32_without_nan(toys, kind: str) -> None:
    flow = make_flow(toys, kind, dtype=torch.float32)
    flow.configure_inversion(tol=1e-6)
    h, log_prob = flow.sample(256, generator=torch.Generator().manual_seed(10))
    assert h.dtype == torch.float32
    (log_prob.mean() + h.sum()).backward()
    assert torch.isfinite(h).all() and torch.isfinite(log_prob).all()
    assert all(torch.isfinite(p.grad).all() for p in flow.parameters())
    z, log_det = flow(h.detach())
    h_again, _ = flow.inverse(z)
    difference = h_again - h.detach()
    difference[:, MASK] -= torch.round(difference[:, MASK])
    assert difference.abs().max() < 1e-4
    assert torch.isfinite(log_det).all()


def test_uniform_prior() -> None:
    prior = UniformPrior(3).double()
    z = torch.tensor([[0.0, 0.5, 1.0], [0.2, -1e-9, 0.3], [0.2, 0.3, 1.5]], dtype=torch.float64)
    assert prior.log_prob(z).tolist() == [0.0, -math.inf, -math.inf]
    samples = prior.sample(1000, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (1000, 3) and samples.dtype == torch.float64
    assert ((samples >= 0) & (samples < 1)).all()
    assert (samples.mean(0) - 0.5).abs().max() < 0.05
    with pytest.raises(ValueError, match=r"expected shape \(\.\.\., 3\)"):
        prior.log_prob(torch.rand(4, 2))
    with pytest.raises(ValueError, match="dimension"):
        UniformPrior(0)


def test_out_of_domain_points_are_not_hidden(toys) -> None:
    flow = make_flow(toys, "spline")
    h = random_points(3)
    h[1, 0] = -0.5  # an interval coordinate below its range
    log_prob = flow.log_prob(h)
    assert math.isinf(log_prob[1].item()) and torch.isfinite(log_prob[[0, 2]]).all()


def test_flow_validation(toys) -> None:
    layer = CouplingLayer(MASK, [0], [1], toys.LogisticMixture(2))
    with pytest.raises(ValueError, match="prior on 4"):
        Flow([layer], UniformPrior(4))
    with pytest.raises(ValueError, match="different circular_mask"):
        Flow([layer], UniformPrior(5), circular_mask=torch.zeros(5, dtype=torch.bool))
    flow = Flow([layer], UniformPrior(5))
    assert torch.equal(flow.circular_mask, MASK)
    with pytest.raises(ValueError, match=r"expected shape \(\.\.\., 5\)"):
        flow(torch.rand(2, 3))
    with pytest.raises(ValueError, match="unknown transform_kind"):
        build_coupling_flow(5, MASK, transform_kind="affine")
    with pytest.raises(ValueError, match="circular_mask has 4 entries"):
        build_coupling_flow(5, MASK[:4])


@pytest.mark.parametrize("kind", ["smooth", "spline"])
def test_one_dimensional_flow_without_conditioning_inputs(toys, kind: str) -> None:
    """dim = 1: unconditioned layers (trainable constant parameters), scripted and inverted."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        flow = build_coupling_flow(1, [True], transform_kind=kind, num_components=3,
                                   num_layers=2, inversion=TIGHT).double()
    toys.randomize_parameters(flow)
    with quiet_jit():
        scripted = torch.jit.script(flow)
    h = random_points(8, dim=1)
    z, log_det = flow(h)
    torch.testing.assert_close(scripted(h)[0], z, rtol=0, atol=1e-14)
    h_again, log_det_inverse = flow.inverse(z)
    difference = h_again - h
    assert (difference - torch.round(difference)).abs().max() < 1e-10
    assert (log_det + log_det_inverse).abs().max() < 1e-8
    assert log_det.abs().max() > 1e-3


def test_builder_creates_only_needed_transforms_with_per_kind_kwargs() -> None:
    flow = build_coupling_flow(
        4, [False, False, True, True], schedule=[([0, 1], [2, 3]), ([2, 3], [0, 1])],
        transform_kind="spline", num_components=5,
        interval_transform_kwargs={"learn_boundary_derivatives": True},
    )
    first, second = flow.layers
    assert [g.circular for g in first.groups] == [False]
    assert [g.circular for g in second.groups] == [True]
    assert first.groups[0].transform.learn_boundary_derivatives
    assert first.groups[0].transform.num_bins == 5 == second.groups[0].transform.num_bins
