"""FlowPotential in OpenMM: both backends, replicas, serialization, topology checks, NVE."""

from __future__ import annotations

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import pytest
import torch

from flowff.energy.signature import TopologyMismatchError
from flowff.openmm.potential import FlowPotential


def _state(system: openmm.System, positions: np.ndarray, platform: str = "Reference"):
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001),
                         openmm.Platform.getPlatformByName(platform))
    ctx.setPositions(positions)
    st = ctx.getState(getEnergy=True, getForces=True)
    return (st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
            np.asarray(st.getForces(asNumpy=True).value_in_unit(
                unit.kilojoule_per_mole / unit.nanometer)))


def _module_energy_forces(energy_module, positions: np.ndarray):
    x = torch.tensor(positions, dtype=torch.float64, requires_grad=True)
    e = energy_module(x)
    (g,) = torch.autograd.grad(e, x)
    return e.item(), -g.numpy()


@pytest.mark.parametrize("platform", ["Reference", "CPU"])
def test_torchforce_equals_module(small_model_file, small_energy, ala_structure, platform) -> None:
    topology, pos = ala_structure
    system = FlowPotential(small_model_file).createSystem(topology)
    assert any(isinstance(f, openmm.CMMotionRemover) for f in system.getForces())
    e_mm, f_mm = _state(system, pos, platform)
    e_ref, f_ref = _module_energy_forces(small_energy, pos)
    assert e_mm == pytest.approx(e_ref, rel=1e-10)
    np.testing.assert_allclose(f_mm, f_ref, rtol=1e-8, atol=1e-8 * np.abs(f_ref).max())


@pytest.mark.parametrize("mode", ["eager", "script"])
def test_pythonforce_equals_torchforce(small_model_file, ala_structure, mode) -> None:
    topology, pos = ala_structure
    e_t, f_t = _state(FlowPotential(small_model_file).createSystem(topology), pos)
    py = FlowPotential(small_model_file, backend="pythonforce", pythonforceMode=mode)
    e_p, f_p = _state(py.createSystem(topology), pos)
    assert e_p == pytest.approx(e_t, rel=1e-10)
    np.testing.assert_allclose(f_p, f_t, rtol=1e-8, atol=1e-8 * np.abs(f_t).max())


def test_openmm_forces_are_minus_gradient_of_openmm_energy(small_model_file, ala_structure
                                                           ) -> None:
    topology, pos = ala_structure
    system = FlowPotential(small_model_file).createSystem(topology, removeCMMotion=False)
    _, forces = _state(system, pos)
    eps = 1e-5
    for atom, axis in [(1, 0), (6, 2), (10, 1), (18, 0)]:
        plus, minus = pos.copy(), pos.copy()
        plus[atom, axis] += eps
        minus[atom, axis] -= eps
        fd = -(_state(system, plus)[0] - _state(system, minus)[0]) / (2 * eps)
        assert forces[atom, axis] == pytest.approx(fd, rel=1e-5, abs=1e-3)


def test_replicas_evaluate_independent_copies(small_model_file, small_energy, ala_structure
                                              ) -> None:
    topology, pos = ala_structure
    rng = np.random.default_rng(0)
    copies = [pos + 0.003 * rng.standard_normal(pos.shape) for _ in range(4)]
    system = FlowPotential(small_model_file).createSystem(topology, replicas=4)
    assert system.getNumParticles() == 88
    e_mm, f_mm = _state(system, np.concatenate(copies))
    singles = [_module_energy_forces(small_energy, c) for c in copies]
    assert e_mm == pytest.approx(sum(e for e, _ in singles), rel=1e-10)
    for r, (_, f_ref) in enumerate(singles):
        np.testing.assert_allclose(f_mm[22 * r:22 * (r + 1)], f_ref, rtol=1e-8,
                                   atol=1e-8 * np.abs(f_ref).max())


def test_pythonforce_system_survives_xml_round_trip(small_model_file, ala_structure) -> None:
    topology, pos = ala_structure
    system = FlowPotential(small_model_file, backend="pythonforce").createSystem(topology)
    clone = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    e0, f0 = _state(system, pos)
    e1, f1 = _state(clone, pos)
    assert e1 == pytest.approx(e0, rel=1e-12)
    np.testing.assert_allclose(f1, f0, rtol=1e-10, atol=1e-10)


_DESERIALIZE = """
import sys, numpy as np, openmm, openmmtorch
xml = open(sys.argv[1]).read()
system = openmm.XmlSerializer.deserialize(xml)
ctx = openmm.Context(system, openmm.VerletIntegrator(0.001),
                     openmm.Platform.getPlatformByName("Reference"))
ctx.setPositions(np.load(sys.argv[2]))
print(repr(ctx.getState(getEnergy=True).getPotentialEnergy()._value))
"""


def test_torchforce_system_xml_round_trip(small_model_file, ala_structure, tmp_path) -> None:
    """The XML embeds the TorchScript model; deserializing it crashes in the pinned
    acellera-openmmtorch-cpu 1.10 build (segfault in TorchForceProxy::deserialize ->
    SerializationNode::getStringProperty, an ABI mismatch with OpenMM 8.6.1), so it runs in a
    subprocess and is an expected failure while that defect lasts."""
    import subprocess
    import sys

    topology, pos = ala_structure
    system = FlowPotential(small_model_file).createSystem(topology)
    xml = openmm.XmlSerializer.serialize(system)
    assert "encodedFileContents" in xml  # the model travels inside the XML
    (tmp_path / "system.xml").write_text(xml)
    np.save(tmp_path / "pos.npy", pos)
    run = subprocess.run([sys.executable, "-c", _DESERIALIZE, str(tmp_path / "system.xml"),
                          str(tmp_path / "pos.npy")], capture_output=True, text=True)
    if run.returncode == -11:
        pytest.xfail("TorchForce XML deserialization segfaults in acellera-openmmtorch-cpu 1.10")
    assert run.returncode == 0, run.stderr
    e0, _ = _state(system, pos)
    assert float(run.stdout.strip().splitlines()[-1]) == pytest.approx(e0, rel=1e-12)


def test_add_forces_to_a_subset_of_a_larger_system(small_model_file, small_energy, ala_structure
                                                   ) -> None:
    topology, pos = ala_structure
    # Two molecules in one topology: the model applies to the second one only.
    modeller = app.Modeller(topology, pos * unit.nanometer)
    modeller.add(topology, (pos + 2.0) * unit.nanometer)
    system = openmm.System()
    for atom in modeller.topology.atoms():
        system.addParticle(atom.element.mass)
    FlowPotential(small_model_file).addForces(modeller.topology, system,
                                               atoms=list(range(22, 44)))
    e_mm, f_mm = _state(system, np.concatenate([pos, pos + 2.0]))
    e_ref, f_ref = _module_energy_forces(small_energy, pos + 2.0)
    assert e_mm == pytest.approx(e_ref, rel=1e-10)
    assert np.abs(f_mm[:22]).max() == 0.0
    np.testing.assert_allclose(f_mm[22:], f_ref, rtol=1e-8, atol=1e-8 * np.abs(f_ref).max())


def test_topology_mismatches_are_refused(small_model_file, ala_structure) -> None:
    topology, _ = ala_structure
    potential = FlowPotential(small_model_file)
    shorter = app.Modeller(topology, np.zeros((22, 3)) * unit.nanometer)
    shorter.delete([list(shorter.topology.atoms())[-1]])
    with pytest.raises(TopologyMismatchError, match="wrong atom count: .* 22 atoms, .* has 21"):
        potential.createSystem(shorter.topology)
    swapped = app.Topology()
    chain = swapped.addChain()
    atoms = list(topology.atoms())
    order = [1, 0] + list(range(2, 22))  # swap the first H and C
    for i in order:
        res = swapped.addResidue(atoms[i].residue.name, chain)
        swapped.addAtom(atoms[i].name, atoms[i].element, res)
    with pytest.raises(TopologyMismatchError, match="element mismatch at model atom 0"):
        potential.createSystem(swapped)
    with pytest.raises(ValueError, match="backend must be one of"):
        FlowPotential(small_model_file, backend="cuda-magic")


def test_nan_positions_give_a_clear_error(small_model_file, ala_structure) -> None:
    topology, pos = ala_structure
    system = FlowPotential(small_model_file).createSystem(topology)
    bad = pos.copy()
    bad[5, 0] = np.nan
    with pytest.raises(openmm.OpenMMException, match="NaN"):
        _state(system, bad)


def test_short_nve_run_stays_finite(small_model_file, ala_structure) -> None:
    from flowff.openmm.md import run_md

    topology, pos = ala_structure
    system = FlowPotential(small_model_file).createSystem(topology, removeCMMotion=False)
    result = run_md(system, topology, pos, steps=40, integrator="verlet", timestep_fs=0.5,
                    temperature_K=100.0, report_interval=10, seed=1, progress=False)
    assert not result.blew_up
    assert result.steps_completed == 40
    assert np.isfinite(result.total_kjmol).all() and len(result.total_kjmol) == 5
