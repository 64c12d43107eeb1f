"""Flows: RK4 round trip, log-det vs brute-force Jacobian, equivariance, normalisation."""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch

from flowff.equivariant.adjoint import AdjointDopri5, dopri5
from flowff.equivariant.dynamics import kernel_dynamics_for
from flowff.equivariant.flow import ContinuousFlow
from flowff.equivariant.integrators import RK4Integrator
from flowff.equivariant.models import kernel_flow, mlp_flow
from flowff.equivariant.particles import remove_mean, rotate_and_permute
from flowff.equivariant.prior import MeanFreeNormal


def subspace_basis(n, d):
    """Orthonormal basis (n d, (n - 1) d) of the mean-free subspace, particle-major layout."""
    centring = torch.eye(n, dtype=torch.float64) - 1.0 / n
    a = torch.kron(centring, torch.eye(d, dtype=torch.float64))
    eigval, eigvec = torch.linalg.eigh(a)
    return eigvec[:, eigval > 0.5]


def strong_flow(name, gen, n_steps=20):
    dyn = kernel_dynamics_for(name, generator=gen, init_scale=2.0).double()
    n, d = dyn.n_particles, dyn.n_dims
    return ContinuousFlow(RK4Integrator(dyn, n_steps), MeanFreeNormal(n, d))


@pytest.mark.parametrize("name", ["DW-4", "LJ-13"])
def test_rk4_round_trip(name, gen):
    """z -> x -> z closes up to the RK4 error, which shrinks ~16x when the steps double."""
    errors = []
    for n_steps in (20, 40):
        flow = strong_flow(name, torch.Generator().manual_seed(7), n_steps=n_steps)
        z = flow.prior.sample(8, generator=torch.Generator().manual_seed(8))
        x, logdet_x = flow.inverse(z)
        z_back, logdet_z = flow.forward(x)
        assert (x - z).abs().max() > 1e-2  # the map is not the identity
        errors.append(max((z_back - z).abs().max().item(),
                          (logdet_x + logdet_z).abs().max().item()))
    assert errors[0] < 1e-3
    assert errors[1] < errors[0] / 8


def test_integrated_divergence_is_log_det_on_subspace(gen):
    flow = strong_flow("DW-4", gen, n_steps=40)
    basis = subspace_basis(4, 2)
    z = flow.prior.sample(2, generator=gen)
    for zi in z:
        jac = torch.autograd.functional.jacobian(lambda v: flow.inverse(v.reshape(1, 4, 2))[0]
                                                 .reshape(-1), zi.reshape(-1))
        sub = basis.T @ jac @ basis
        _, logdet = flow.inverse(zi[None])
        assert torch.linalg.slogdet(sub).logabsdet.item() == pytest.approx(logdet.item(),
                                                                          abs=1e-6)


@pytest.mark.parametrize("name", ["DW-4", "LJ-13"])
def test_flow_is_equivariant_and_density_invariant(name, gen, random_symmetry):
    flow = strong_flow(name, gen, n_steps=10)
    n, d = flow.n_particles, flow.n_dims
    x = flow.prior.sample(4, generator=gen) * (2.0 if name == "DW-4" else 1.0)
    rot, perm = random_symmetry(4, n, d, gen)
    z, _ = flow.forward(x)
    z_moved, _ = flow.forward(rotate_and_permute(x, rot, perm))
    torch.testing.assert_close(z_moved, rotate_and_permute(z, rot, perm), rtol=1e-9, atol=1e-9)
    shifted = rotate_and_permute(x, rot, perm) + 5.0
    torch.testing.assert_close(flow.log_prob(shifted), flow.log_prob(x), rtol=1e-9, atol=1e-9)


def test_prior_normaliser_matches_scipy(gen):
    prior = MeanFreeNormal(5, 3, std=1.7)
    basis = subspace_basis(5, 3)
    x = prior.sample(6, generator=gen)
    coords = x.reshape(6, -1) @ basis
    expected = scipy.stats.multivariate_normal(mean=torch.zeros(12).numpy(),
                                               cov=1.7**2).logpdf(coords.numpy())
    torch.testing.assert_close(prior.log_prob(x), torch.as_tensor(expected), rtol=1e-12,
                               atol=1e-12)
    torch.testing.assert_close(x.mean(dim=1), torch.zeros(6, 3, dtype=torch.float64),
                               rtol=0, atol=1e-12)


def test_flow_density_integrates_to_one_on_dw2_subspace(gen):
    """DW-2's mean-free subspace is 2-D: integrate exp(log p) over a grid of it."""
    flow = ContinuousFlow(
        RK4Integrator(kernel_dynamics_for("DW-2", generator=gen, init_scale=2.0).double(), 10),
        MeanFreeNormal(2, 2),
    )
    h = 0.1
    grid = torch.arange(-7.0, 7.0 + h / 2, h, dtype=torch.float64)
    yy = torch.cartesian_prod(grid, grid)  # orthonormal coordinates y = sqrt(2) x_1
    x = torch.stack([yy / math.sqrt(2), -yy / math.sqrt(2)], dim=1)
    with torch.no_grad():
        total = torch.exp(flow.log_prob(x)).sum().item() * h * h
    assert total == pytest.approx(1.0, abs=2e-3)


def test_dopri5_solves_linear_ode():
    y0 = (torch.tensor([1.0, 2.0], dtype=torch.float64),)
    (y1,), nfe = dopri5(lambda t, y: (-0.5 * y[0] * (1 + t),), 0.0, 2.0, y0, rtol=1e-8,
                        atol=1e-12)
    exact = y0[0] * math.exp(-0.5 * (2.0 + 2.0))
    torch.testing.assert_close(y1, exact, rtol=1e-7, atol=0)
    (yb,), _ = dopri5(lambda t, y: (-0.5 * y[0] * (1 + t),), 2.0, 0.0, (y1,), rtol=1e-8,
                      atol=1e-12)
    torch.testing.assert_close(yb, y0[0], rtol=1e-7, atol=0)
    assert nfe > 6


def test_adjoint_gradients_match_discretize_then_optimize(gen):
    dyn = kernel_dynamics_for("DW-4", generator=gen, init_scale=2.0).double()
    x = 2.0 * remove_mean(torch.randn(5, 4, 2, generator=gen, dtype=torch.float64))
    target = torch.randn(5, 4, 2, generator=gen, dtype=torch.float64)

    def loss_and_grads(integrator):
        xg = x.clone().requires_grad_(True)
        z, logdet = integrator(xg, 1.0, 0.0)
        loss = (z * target).sum() + logdet.pow(2).sum()
        params = [xg, *dyn.parameters()]
        return loss.detach(), torch.autograd.grad(loss, params)

    adjoint = AdjointDopri5(dyn, rtol=1e-9, atol=1e-11)
    loss_a, grads_a = loss_and_grads(adjoint)
    loss_d, grads_d = loss_and_grads(RK4Integrator(dyn, 200))
    assert adjoint.nfe_forward > 0 and adjoint.nfe_backward > 0
    torch.testing.assert_close(loss_a, loss_d, rtol=1e-7, atol=1e-9)
    for ga, gd in zip(grads_a, grads_d, strict=True):
        torch.testing.assert_close(ga, gd, rtol=1e-5, atol=1e-8)


def test_autograd_trace_flows_agree_with_closed_form(gen):
    closed = kernel_flow("DW-4", seed=3, n_steps=5)
    brute = kernel_flow("DW-4", seed=3, n_steps=5, trace="exact")
    x = 2.0 * torch.randn(4, 4, 2, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(brute.log_prob(x), closed.log_prob(x), rtol=1e-10, atol=1e-10)
    mlp = mlp_flow("DW-4", n_steps=3)
    assert torch.isfinite(mlp.log_prob(x)).all()
    with pytest.raises(ValueError, match="solver"):
        kernel_flow("DW-4", solver="euler")
