"""Fixtures of the analysis tests: a tiny reference MD folder and a Gaussian stand-in flow.

The stand-in replaces the trained flow: reduced energy = isotropic harmonic restraint around the
shipped alanine dipeptide structure with its exact Gaussian normalisation, so u(x)/kT = -log q(x)
for the matching sampler x = x0 + sigma * N(0, 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from flowff.data.reference import ReferenceMDConfig, generate_reference_data
from flowff.energy.flow_energy import kT_kJ_per_mol
from flowff.openmm.classical import alanine_dipeptide_pdb_path, load_alanine_dipeptide

#: Standard deviation of the stand-in Gaussian per Cartesian coordinate (nm).
STAND_IN_SIGMA_NM = 0.01


class GaussianStandIn(torch.nn.Module):
    """-log of an isotropic Gaussian around ``reference_nm`` (n, 3): reduced energy in kT."""

    def __init__(self, reference_nm: np.ndarray, sigma_nm: float, temperature_K: float) -> None:
        super().__init__()
        self.register_buffer("reference", torch.as_tensor(reference_nm, dtype=torch.float64))
        self.sigma = float(sigma_nm)
        self.n_atoms = int(reference_nm.shape[0])
        self.temperature_K = float(temperature_K)
        self.kT = kT_kJ_per_mol(temperature_K)
        self.log_norm = 1.5 * self.n_atoms * math.log(2.0 * math.pi * self.sigma**2)

    def reduced_energy(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, n, 3) nm -> (batch,) kT."""
        d = x - self.reference
        return 0.5 * (d * d).sum(dim=(1, 2)) / (self.sigma * self.sigma) + self.log_norm

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        x = positions.to(torch.float64).reshape(-1, self.n_atoms, 3)
        return self.kT * self.reduced_energy(x).sum()


def gaussian_sampler(model: GaussianStandIn, n: int, generator: torch.Generator
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact samples of the stand-in and their log density (n,)."""
    eps = torch.randn(n, model.n_atoms, 3, generator=generator, dtype=torch.float64)
    x = model.reference + model.sigma * eps
    return x, -model.reduced_energy(x)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One replica, 2 chunks of 5 frames every 0.01 ps after 0.1 ps equilibration."""
    out = tmp_path_factory.mktemp("analysis_data")
    cfg = ReferenceMDConfig(frames_per_chunk=5, save_interval_ps=0.01, equilibration_ps=0.1)
    with alanine_dipeptide_pdb_path() as pdb:
        generate_reference_data(out, pdb, n_replicas=1, ns_per_replica=1.0e-4, config=cfg)
    return out


@pytest.fixture
def stand_in() -> GaussianStandIn:
    """The stand-in flow at 300 K around the shipped structure."""
    _, positions = load_alanine_dipeptide()
    return GaussianStandIn(positions, STAND_IN_SIGMA_NM, 300.0)


@pytest.fixture
def sampler() -> Callable[[GaussianStandIn, int, torch.Generator],
                          tuple[torch.Tensor, torch.Tensor]]:
    """The stand-in's exact sampler."""
    return gaussian_sampler
