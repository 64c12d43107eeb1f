"""Training: NLL decreases, ML + KL runs, augmentation preserves energies, minima dedup."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowff.equivariant.mcmc import reference_samples
from flowff.equivariant.minima import minimize, unique_minima
from flowff.equivariant.models import kernel_flow, mlp_flow, set_trace_method
from flowff.equivariant.particles import augment, rotate_and_permute
from flowff.equivariant.systems import dw4
from flowff.equivariant.training import TrainConfig, mean_nll, sample_flow, train_flow


@pytest.fixture(scope="module")
def dw4_data():
    train, _ = reference_samples(dw4(), 256, seed=11, n_chains=64)
    test, _ = reference_samples(dw4(), 256, seed=12, n_chains=64)
    return train, test


def test_kernel_flow_training_decreases_test_nll(dw4_data):
    train, test = dw4_data
    flow = kernel_flow("DW-4", seed=0, n_steps=5)
    before = mean_nll(flow, test)
    history = train_flow(flow, train, TrainConfig(n_iterations=40, seed=0), progress=False)
    after = mean_nll(flow, test)
    assert len(history["nll"]) == 40
    assert after < before - 1.0, (before, after)


def test_ml_kl_mixture_and_mlp_baseline_run(dw4_data):
    train, test = dw4_data
    flow = kernel_flow("DW-4", seed=1, n_steps=3)
    config = TrainConfig(n_iterations=4, kl_start=0.0, kl_end=0.5, kl_batch_size=16, seed=1)
    history = train_flow(flow, train, config, system=dw4(), progress=False)
    assert np.isnan(history["kl"][0]) and np.isfinite(history["kl"][-1])
    assert config.kl_weight(0) == 0.0 and config.kl_weight(3) == 0.5
    with pytest.raises(ValueError, match="KL"):
        train_flow(flow, train, config, system=None, progress=False)
    mlp = mlp_flow("DW-4", seed=0, n_steps=2, trace="hutchinson")
    hist = train_flow(mlp, train, TrainConfig(n_iterations=3, augment=True), progress=False)
    assert all(np.isfinite(hist["nll"]))
    set_trace_method(mlp, "exact")
    assert np.isfinite(mean_nll(mlp, test[:32]))
    x, log_q = sample_flow(flow, 10, batch_size=4, seed=3)
    assert x.shape == (10, 4, 2) and torch.isfinite(log_q).all()


def test_augmentation_preserves_energy(gen):
    x = 2.0 * torch.randn(16, 4, 2, generator=gen, dtype=torch.float64)
    y = augment(x, generator=gen)
    assert (y - x).abs().max() > 1e-3
    torch.testing.assert_close(dw4().energy(y), dw4().energy(x), rtol=1e-12, atol=1e-10)


def test_unique_minima_merges_symmetric_copies(gen, random_symmetry):
    system = dw4()
    start = 3.0 * torch.randn(40, 4, 2, generator=gen, dtype=torch.float64)
    pos, energies, ok = minimize(system, start)
    assert ok.all()
    rot, perm = random_symmetry(40, 4, 2, gen)
    copies = rotate_and_permute(torch.as_tensor(pos), rot, perm).numpy() + 1.5
    both = unique_minima(system, np.concatenate([pos, copies]), np.concatenate([energies] * 2))
    alone = unique_minima(system, pos, energies)
    assert len(both.energies) == len(alone.energies) >= 2
    assert both.counts.sum() == 80
    assert both.count_in_bins([(-np.inf, np.inf)]) == [len(alone.energies)]
