"""Kernel dynamics: closed-form divergence, equivariance, parameter registration, traces."""

from __future__ import annotations

import pytest
import torch

from flowff.equivariant.dynamics import (
    AutogradTrace,
    MLPDynamics,
    exact_trace,
    kernel_dynamics_for,
)
from flowff.equivariant.particles import rotate_and_permute
from flowff.equivariant.rbf import GaussianRBF

SHAPES = {"DW-4": (4, 2), "LJ-13": (13, 3)}


def strong_kernel(name, gen):
    """Kernel dynamics with O(1) weights so every term of the divergence matters."""
    dyn = kernel_dynamics_for(name, generator=gen, init_scale=3.0).double()
    return dyn


def configurations(name, b, gen):
    n, d = SHAPES[name]
    scale = 2.0 if name == "DW-4" else 1.0
    return scale * torch.randn(b, n, d, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("name", ["DW-4", "LJ-13"])
@pytest.mark.parametrize("t", [0.0, 0.37, 1.0])
def test_closed_form_divergence_equals_autograd_trace(name, t, gen):
    dyn = strong_kernel(name, gen)
    x = configurations(name, 5, gen).requires_grad_(True)
    v, div = dyn(torch.tensor(t, dtype=torch.float64), x)
    brute = exact_trace(v, x, create_graph=False)
    assert div.abs().max() > 1e-3  # the check is not trivially 0 == 0
    torch.testing.assert_close(div, brute, rtol=1e-10, atol=1e-11)


def test_rbf_contract_matches_kernels_and_autograd(gen):
    rbf = GaussianRBF(torch.linspace(0, 8, 50, dtype=torch.float64),
                      0.3 + torch.rand(50, generator=gen, dtype=torch.float64))
    s = (10 * torch.rand(40, generator=gen, dtype=torch.float64)).requires_grad_(True)
    c = torch.randn(50, generator=gen, dtype=torch.float64)
    k, dk = rbf(s)
    kc, dkc = rbf.contract(s, c)
    torch.testing.assert_close(kc, k @ c, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(dkc, dk @ c, rtol=1e-8, atol=1e-10)
    (auto,) = torch.autograd.grad(kc.sum(), s)
    torch.testing.assert_close(dkc, auto, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(k.sum(-1), torch.ones(40, dtype=torch.float64))


@pytest.mark.parametrize("name", ["DW-4", "LJ-13"])
def test_velocity_is_equivariant_and_divergence_invariant(name, gen, random_symmetry):
    dyn = strong_kernel(name, gen)
    n, d = SHAPES[name]
    x = configurations(name, 6, gen)
    rot, perm = random_symmetry(6, n, d, gen)
    t = torch.tensor(0.6, dtype=torch.float64)
    v, div = dyn(t, x)
    shift = torch.randn(6, 1, d, generator=gen, dtype=torch.float64)
    v_moved, div_moved = dyn(t, rotate_and_permute(x, rot, perm) + shift)
    torch.testing.assert_close(v_moved, rotate_and_permute(v, rot, perm), rtol=1e-10,
                               atol=1e-10)
    torch.testing.assert_close(div_moved, div, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(v.sum(dim=1), torch.zeros(6, d, dtype=torch.float64),
                               rtol=0, atol=1e-10)


def test_rbf_means_and_bandwidths_are_registered(gen):
    dyn = kernel_dynamics_for("DW-4", generator=gen)
    names = set(dict(dyn.named_parameters()))
    assert {"distance_rbf.means", "distance_rbf.log_bandwidths", "time_rbf.means",
            "time_rbf.log_bandwidths", "weight"} <= names
    state = dyn.state_dict()
    assert "distance_rbf.means" in state and "time_rbf.log_bandwidths" in state
    dyn32 = dyn.to(torch.float32)
    assert dyn32.distance_rbf.means.dtype == torch.float32
    assert dyn32.time_rbf.log_bandwidths.dtype == torch.float32
    frozen = GaussianRBF(torch.arange(3.0), torch.tensor(0.5), trainable_means=False,
                         trainable_bandwidths=False)
    assert set(dict(frozen.named_buffers())) == {"means", "log_bandwidths"}
    assert frozen.to(torch.float64).means.dtype == torch.float64


def test_every_parameter_receives_gradient(gen):
    dyn = strong_kernel("DW-4", gen)
    x = configurations("DW-4", 8, gen)
    v, div = dyn(torch.tensor(0.4, dtype=torch.float64), x)
    (v.pow(2).sum() + div.sum()).backward()
    for name, p in dyn.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 0, name


def test_hutchinson_is_unbiased_and_exact_trace_matches_jacobian(gen):
    torch.manual_seed(0)
    mlp = MLPDynamics(4, 2, hidden=(16,)).double()
    x = configurations("DW-4", 3, gen)
    t = torch.tensor(0.2, dtype=torch.float64)
    exact = AutogradTrace(mlp, "exact")
    _, div = exact(t, x)
    for b in range(3):
        jac = torch.autograd.functional.jacobian(lambda xi: mlp.velocity(t, xi[None])[0], x[b])
        assert div[b].item() == pytest.approx(torch.einsum("ijij->", jac).item(), rel=1e-10)
    hutch = AutogradTrace(mlp, "hutchinson")
    reps = 4000
    xs = x.repeat(reps, 1, 1)
    hutch.set_noise(torch.randn(xs.shape, generator=gen, dtype=xs.dtype))
    _, est = hutch(t, xs)
    est = est.reshape(reps, 3)
    stderr = est.std(dim=0) / reps**0.5
    assert ((est.mean(dim=0) - div).abs() < 5 * stderr).all()
    with pytest.raises(ValueError, match="method"):
        AutogradTrace(mlp, "bogus")
