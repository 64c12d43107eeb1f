"""Loss pieces: flow forces, the differentiable OpenMM energy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowff.data.reference import build_classical_system
from flowff.energy.openmm_energy import OpenMMEnergyEvaluator, openmm_energy
from flowff.training.losses import LossWeights, flow_forces_kT


def test_openmm_energy_gradient_is_minus_forces(ala_structure) -> None:
    topology, pos = ala_structure
    evaluator = OpenMMEnergyEvaluator(build_classical_system(
        topology, ("amber99sbildn.xml", "amber99_obc.xml")))
    gen = np.random.default_rng(0)
    x = torch.tensor(np.stack([pos, pos + 0.002 * gen.standard_normal(pos.shape)]),
                     requires_grad=True)
    e = openmm_energy(x, evaluator)
    (grad,) = torch.autograd.grad((e * torch.tensor([1.0, 2.0], dtype=e.dtype)).sum(), x)
    eps = 1e-6
    for b, atom, axis in [(0, 3, 1), (1, 10, 0)]:
        dx = torch.zeros_like(x)
        dx[b, atom, axis] = eps
        with torch.no_grad():
            fd = (openmm_energy(x + dx, evaluator) - openmm_energy(x - dx, evaluator))[b] / (
                2 * eps)
        assert grad[b, atom, axis].item() == pytest.approx((1.0 + b) * fd.item(), rel=1e-4,
                                                           abs=1e-3)
    bad = x.detach().clone()
    bad[1, 0, 0] = float("nan")
    assert torch.isinf(openmm_energy(bad, evaluator)[1])
    with pytest.raises(ValueError, match=r"shape \(batch, 22, 3\)"):
        evaluator(np.zeros((2, 21, 3)))


def test_flow_forces_are_minus_gradient(small_energy, ala_structure) -> None:
    _, pos = ala_structure
    x = torch.tensor(pos)[None]
    f = flow_forces_kT(small_energy, x, create_graph=False)
    xx = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(small_energy.reduced_energy(xx).sum(), xx)
    torch.testing.assert_close(f, -g)


def test_loss_weights_are_validated() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        LossWeights(nll=-1.0)
    with pytest.raises(ValueError, match="positive"):
        LossWeights(nll=0.0, kl=0.0, fm=0.0)
