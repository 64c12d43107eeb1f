"""Shared fixtures: one torch thread per test, small flow energies of alanine dipeptide and
their model files."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from flowff.energy.builder import FlowModelConfig, build_energy, save_energy_model
from flowff.openmm.classical import alanine_dipeptide_pdb_path, load_alanine_dipeptide


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    """Run each test with one torch thread (tiny tensors on small shared machines: faster than
    contending threads), restoring the previous setting afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _perturbed(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Move every parameter off its (near-identity) initialisation so the flow is non-trivial."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model


@pytest.fixture(scope="session")
def perturb():
    """The function (model, seed) -> model with every parameter moved off its initialisation."""
    return _perturbed


@pytest.fixture(scope="session")
def small_config() -> FlowModelConfig:
    return FlowModelConfig(num_components=2, hidden=(16, 16), torsion_coupling_pairs=1)


@pytest.fixture(scope="session")
def small_energy(small_config):
    return _perturbed(build_energy(small_config), seed=0).eval()


@pytest.fixture(scope="session")
def small_model_file(tmp_path_factory, small_energy, small_config):
    path = tmp_path_factory.mktemp("model") / "small.pt"
    with alanine_dipeptide_pdb_path() as pdb:
        save_energy_model(small_energy, small_config, pdb, path)
    return path


@pytest.fixture(scope="session")
def ala_structure():
    """(topology, positions (22, 3) nm) of the shipped alanine dipeptide."""
    return load_alanine_dipeptide()


@pytest.fixture(scope="session")
def tiny_reference_data(tmp_path_factory):
    """A reference data folder of 2 replicas x 30 frames, 0.01 ps apart (seconds to make)."""
    from flowff.data.reference import ReferenceMDConfig, generate_reference_data

    out = tmp_path_factory.mktemp("tiny_ref")
    cfg = ReferenceMDConfig(frames_per_chunk=10, save_interval_ps=0.01, equilibration_ps=0.1)
    with alanine_dipeptide_pdb_path() as pdb:
        generate_reference_data(out, pdb, n_replicas=2, ns_per_replica=3e-4, config=cfg)
    return out


@pytest.fixture(scope="session")
def load_script():
    """Import a file of ``scripts/`` by name (e.g. ``load_script("bench_md")``) as a module."""
    import importlib.util
    import sys
    from pathlib import Path

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module

    return load
