"""Benchmark systems: analytic forces, symmetries, known minima."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flowff.equivariant.minima import minimize, unique_minima
from flowff.equivariant.particles import remove_mean, rotate_and_permute
from flowff.equivariant.systems import LennardJonesCluster, MultiDoubleWell, dw4, get_system, lj13


def spread_configurations(system, n, generator):
    """Random configurations without near-overlaps (LJ forces stay moderate)."""
    from flowff.equivariant.mcmc import initial_configurations

    x = initial_configurations(system, n, generator)
    return x + 0.1 * torch.randn(x.shape, generator=generator, dtype=x.dtype)


@pytest.mark.parametrize("name", ["dw2", "dw4", "lj13"])
def test_forces_are_minus_energy_gradient(name, gen):
    system = get_system(name)
    x = spread_configurations(system, 8, gen).requires_grad_(True)
    (grad,) = torch.autograd.grad(system.energy(x).sum(), x)
    torch.testing.assert_close(system.forces(x), -grad, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["dw4", "lj13"])
def test_energy_invariant_under_rotation_permutation_translation(name, gen, random_symmetry):
    system = get_system(name)
    x = spread_configurations(system, 6, gen)
    rot, perm = random_symmetry(6, system.n_particles, system.n_dims, gen)
    moved = rotate_and_permute(x, rot, perm) + torch.randn(6, 1, system.n_dims, generator=gen,
                                                           dtype=x.dtype)
    torch.testing.assert_close(system.energy(moved), system.energy(x), rtol=1e-12, atol=1e-10)


def test_double_well_pair_energy_matches_paper_formula():
    system = MultiDoubleWell(n_particles=2, a=0.3, b=-4.0, c=0.9, d0=4.0, tau=2.0)
    x = torch.tensor([[[0.0, 0.0], [3.0, 4.0]]], dtype=torch.float64)  # d = 5, s = 1
    expected = (0.3 * 1 - 4.0 * 1 + 0.9 * 1) / 2.0
    assert system.energy(x).item() == pytest.approx(expected, rel=1e-14)


def test_textbook_lj13_global_minimum_is_reached():
    """The icosahedral LJ-13 minimum is -44.326801 eps (Wales & Doye 1997)."""
    phi = (1 + math.sqrt(5)) / 2
    verts = []
    for a in (-1, 1):
        for b in (-phi, phi):
            verts += [[0, a, b], [a, b, 0], [b, 0, a]]
    ico = np.array(verts) / math.hypot(1, phi)
    x = np.concatenate([np.zeros((1, 3)), ico])[None] * 1.02
    textbook = LennardJonesCluster(pair_weight=1.0, tether=0.0)
    _, energies, ok = minimize(textbook, torch.tensor(x))
    assert ok.all()
    assert energies[0] == pytest.approx(-44.326801, abs=1e-6)
    # The paper's convention (pairs counted twice, plus the tether) puts it below -80 (Table 1).
    _, energies_paper, _ = minimize(lj13(), torch.tensor(x))
    assert energies_paper[0] < -80.0


def test_dw4_has_five_minima(gen):
    system = dw4()
    x = 3.0 * torch.randn(150, 4, 2, generator=gen, dtype=torch.float64)
    pos, energies, ok = minimize(system, x)
    found = unique_minima(system, pos[ok], energies[ok])
    assert len(found.energies) == 5
    assert found.counts.sum() == ok.sum()


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="shape"):
        dw4().energy(torch.zeros(3, 4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="unknown system"):
        get_system("lj55")
    with pytest.raises(ValueError, match="tau"):
        MultiDoubleWell(tau=0.0)


def test_remove_mean_is_projection(gen):
    x = torch.randn(3, 5, 3, generator=gen, dtype=torch.float64)
    y = remove_mean(x)
    torch.testing.assert_close(y.mean(dim=1), torch.zeros(3, 3, dtype=torch.float64))
    torch.testing.assert_close(remove_mean(y), y)
