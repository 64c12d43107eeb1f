"""MDFlowEnergy (analytic forces) equals FlowEnergy and its autograd forces, in float64.

Covers the paper's architecture and a small one, replicas (each replica's forces equal a
single-molecule evaluation), configurations outside the flow's support (confining wall active),
the TorchScript export and an OpenMM TorchForce running it.
"""

from __future__ import annotations

import numpy as np
import openmm
import openmm.unit as unit
import pytest
import torch

from flowff.energy.builder import FlowModelConfig, build_energy
from flowff.energy.md_energy import MDFlowEnergy, export_for_md
from flowff.openmm.classical import load_alanine_dipeptide
from flowff.openmm.torchforce import create_torch_force

SMALL = FlowModelConfig(num_components=3, hidden=(16, 16), torsion_coupling_pairs=1)


def _energy(cfg: FlowModelConfig, seed: int) -> torch.nn.Module:
    """A FlowEnergy with every parameter moved off its near-identity initialisation."""
    torch.manual_seed(seed)
    model = build_energy(FlowModelConfig(**cfg.to_dict()))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator,
                                             dtype=parameter.dtype))
    return model.eval()


@pytest.fixture(scope="module")
def small_energy() -> torch.nn.Module:
    return _energy(SMALL, seed=1)


@pytest.fixture(scope="module")
def paper_energy() -> torch.nn.Module:
    return _energy(FlowModelConfig(), seed=2)


def _replicas(count: int, seed: int, outside: bool = False) -> torch.Tensor:
    """(count * 22, 3) nm: jittered alanine dipeptides; with ``outside`` the last replica has a
    bond stretched past the IC interval (h > 1), so the confining wall contributes."""
    _, positions = load_alanine_dipeptide()
    base = torch.tensor(positions, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    x = base + 0.003 * torch.randn(count, 22, 3, generator=generator, dtype=torch.float64)
    if outside:
        x[-1, 1] += torch.tensor([0.35, 0.0, 0.0], dtype=torch.float64)
    return x.reshape(-1, 3)


def _energy_and_gradient(module, positions: torch.Tensor) -> tuple[float, torch.Tensor]:
    x = positions.clone().requires_grad_(True)
    energy = module(x)
    (gradient,) = torch.autograd.grad(energy, x)
    return energy.item(), gradient


@pytest.fixture(scope="module")
def angle_coupled_energy() -> torch.nn.Module:
    return _energy(FlowModelConfig(**{**SMALL.to_dict(), "angle_coupling_pairs": 1}), seed=5)


@pytest.fixture(scope="module")
def per_column_energy() -> torch.nn.Module:
    """Every bond and angle on its own interval around the alanine dipeptide's values."""
    _, positions = load_alanine_dipeptide()
    ic = build_energy(FlowModelConfig(**SMALL.to_dict())).ic
    bonds, angles, _ = ic.physical(ic(torch.tensor(positions, dtype=torch.float64)[None])[0])
    spread = torch.linspace(0.01, 0.03, ic.n_bonds, dtype=torch.float64)
    bond_bounds = torch.stack([bonds[0] - spread, bonds[0] + 1.5 * spread], dim=-1)
    turn = torch.linspace(0.2, 0.4, ic.n_angles, dtype=torch.float64)
    angle_bounds = torch.stack([angles[0] - turn, (angles[0] + turn).clamp(max=3.1)], dim=-1)
    cfg = {**SMALL.to_dict(), "bond_bounds_nm": bond_bounds.tolist(),
           "angle_bounds_rad": angle_bounds.tolist()}
    return _energy(FlowModelConfig(**cfg), seed=6)


@pytest.fixture(scope="module")
def walled_energy() -> torch.nn.Module:
    """The default intervals with the wall starting inside them, per bond and for all angles."""
    _, positions = load_alanine_dipeptide()
    ic = build_energy(FlowModelConfig(**SMALL.to_dict())).ic
    bonds, _, _ = ic.physical(ic(torch.tensor(positions, dtype=torch.float64)[None])[0])
    walls = {"bond_nm": torch.stack([bonds[0] - 0.01, bonds[0] + 0.015], -1).tolist(),
             "angle_rad": [1.2, 2.4]}
    return _energy(FlowModelConfig(**{**SMALL.to_dict(), "ic_wall_bounds": walls}), seed=7)


@pytest.fixture(scope="module")
def gaussian_energy() -> torch.nn.Module:
    """Bonds and angles by truncated-Gaussian CDF mixtures (2 components for the angles)."""
    cfg = {**SMALL.to_dict(), "angle_coupling_pairs": 1, "bond_transform": "gaussian",
           "angle_transform": "gaussian", "angle_transform_options": {"num_components": 2}}
    return _energy(FlowModelConfig(**cfg), seed=9)


@pytest.mark.parametrize(
    "which", ["small", "paper", "angle_coupled", "per_column", "walled", "gaussian"])
def test_energy_and_forces_equal_flow_energy(which: str, small_energy, paper_energy,
                                             angle_coupled_energy, per_column_energy,
                                             walled_energy, gaussian_energy) -> None:
    energy = {"small": small_energy, "paper": paper_energy,
              "angle_coupled": angle_coupled_energy, "per_column": per_column_energy,
              "walled": walled_energy, "gaussian": gaussian_energy}[which]
    positions = _replicas(3, seed=3, outside=True)
    expected_energy, expected_gradient = _energy_and_gradient(energy, positions)
    got_energy, got_gradient = _energy_and_gradient(MDFlowEnergy(energy), positions)
    assert got_energy == pytest.approx(expected_energy, rel=1e-12, abs=1e-10)
    scale = float(expected_gradient.abs().max())
    torch.testing.assert_close(got_gradient, expected_gradient, rtol=0.0, atol=1e-11 * scale)
    # the wall is active: the stretched replica's energy is far above the others
    singles = [energy(p).item() for p in positions.reshape(3, 22, 3)]
    assert singles[-1] > max(singles[:-1]) + 100.0


def test_replicas_get_the_forces_of_single_molecules(paper_energy) -> None:
    module = export_for_md(paper_energy)
    positions = _replicas(4, seed=4)
    total, gradient = _energy_and_gradient(module, positions)
    singles = [_energy_and_gradient(module, p) for p in positions.reshape(4, 22, 3)]
    assert total == pytest.approx(sum(e for e, _ in singles), rel=1e-12)
    for replica, (_, single_gradient) in enumerate(singles):
        torch.testing.assert_close(gradient.reshape(4, 22, 3)[replica], single_gradient,
                                   rtol=0.0, atol=1e-10)


def _autograd_nodes(tensor: torch.Tensor) -> int:
    seen: set = set()
    stack = [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and node not in seen:
            seen.add(node)
            stack += [parent for parent, _ in node.next_functions]
    return len(seen)


def test_exported_module_stays_analytic_when_frozen(small_energy) -> None:
    """openmm-torch freezes the module; freezing deletes detach(). The forces must stay exact and
    autograd must still see only the last few operations, not the whole analytic computation."""
    from flowff._torchscript import quiet_jit

    exported = export_for_md(small_energy)
    with quiet_jit():
        frozen = torch.jit.freeze(export_for_md(small_energy))
    positions = _replicas(2, seed=8)
    _, expected = _energy_and_gradient(small_energy, positions)
    for module in (exported, frozen):
        for _ in range(3):  # past TorchScript's profiling runs
            _, gradient = _energy_and_gradient(module, positions)
        torch.testing.assert_close(gradient, expected, rtol=0.0,
                                   atol=1e-11 * float(expected.abs().max()))
        energy = module(positions.clone().requires_grad_(True))
        assert _autograd_nodes(energy) <= 10


@pytest.mark.parametrize("which", ["paper", "per_column", "walled", "gaussian"])
def test_export_runs_in_openmm_with_replicas(which: str, paper_energy, per_column_energy,
                                             walled_energy, gaussian_energy) -> None:
    """TorchForce with the exported module: OpenMM forces are FlowEnergy's autograd forces."""
    paper_energy = {"paper": paper_energy, "per_column": per_column_energy,
                    "walled": walled_energy, "gaussian": gaussian_energy}[which]
    replicas = 2
    positions = _replicas(replicas, seed=5, outside=which != "paper")
    _, expected_gradient = _energy_and_gradient(paper_energy, positions)
    system = openmm.System()
    for _ in range(replicas * 22):
        system.addParticle(12.0)
    system.addForce(create_torch_force(export_for_md(paper_energy), replicas * 22))
    context = openmm.Context(system, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions.numpy() * unit.nanometer)
    state = context.getState(getEnergy=True, getForces=True)
    forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    assert energy == pytest.approx(paper_energy(positions).item(), rel=1e-12)
    np.testing.assert_allclose(np.asarray(forces), -expected_gradient.numpy(), rtol=0.0,
                               atol=1e-9 * float(expected_gradient.abs().max()))


def test_float32_energy(small_energy) -> None:
    single = build_energy(FlowModelConfig(**SMALL.to_dict()))
    single.load_state_dict(small_energy.state_dict())
    single = single.to(torch.float32).eval()
    single.dtype = torch.float32
    positions = _replicas(2, seed=6)
    energy, gradient = _energy_and_gradient(MDFlowEnergy(single), positions)
    expected_energy, expected_gradient = _energy_and_gradient(small_energy, positions)
    assert gradient.dtype == torch.float64  # autograd casts back to the positions' dtype
    assert energy == pytest.approx(expected_energy, rel=1e-4, abs=1e-2)
    torch.testing.assert_close(gradient, expected_gradient, rtol=0.0,
                               atol=1e-3 * float(expected_gradient.abs().max()))


def test_energy_only_inputs_errors_and_snapshot(small_energy) -> None:
    module = MDFlowEnergy(small_energy)
    positions = _replicas(1, seed=7)
    energy = module(positions)
    assert not energy.requires_grad
    assert energy.item() == pytest.approx(small_energy(positions).item(), rel=1e-12)
    with pytest.raises(ValueError, match="not a multiple"):
        module(torch.zeros(21, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        module(torch.zeros(22, 2, dtype=torch.float64))
    bad = positions.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        module(bad)
    # a snapshot: the source keeps trainable parameters, later changes do not reach the copy
    assert all(p.requires_grad for p in small_energy.parameters())
    assert not any(p.requires_grad for p in module.parameters())
    with pytest.raises(TypeError, match="FlowEnergy"):
        MDFlowEnergy(small_energy.flow)
    spline = build_energy(FlowModelConfig(transform="spline", num_components=4, hidden=(8,),
                                          torsion_coupling_pairs=1))
    with pytest.raises(TypeError, match="mixture transforms only"):
        MDFlowEnergy(spline)
