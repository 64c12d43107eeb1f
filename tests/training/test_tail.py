"""Tail frames (perturbed MD frames with classical forces) and the relative force-matching loss."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from flowff.data.reference import load_reference_data
from flowff.energy.builder import FlowModelConfig, build_energy
from flowff.training.losses import flow_forces_kT, relative_force_matching_loss
from flowff.training.tail import TAIL_CLAMP, TailFrames

SMALL = {"num_components": 2, "hidden": [16, 16], "torsion_coupling_pairs": 1}


@pytest.fixture(scope="module")
def setup(tiny_reference_data):
    import openmm.app as app

    from flowff.data.reference import build_classical_system
    from flowff.energy.openmm_energy import OpenMMEnergyEvaluator

    data = load_reference_data(tiny_reference_data)
    cfg = json.loads((tiny_reference_data / "config.json").read_text())["config"]
    pdb = app.PDBFile(str(data.topology_pdb))
    evaluator = OpenMMEnergyEvaluator(
        build_classical_system(pdb.topology, tuple(cfg["forcefield"]))
    )
    model = build_energy(FlowModelConfig.from_dict(SMALL), topology_pdb=data.topology_pdb)
    x = torch.as_tensor(data.positions[:40], dtype=torch.float64)
    return model.double(), evaluator, x


def test_tail_frames_perturb_a_fraction_and_carry_the_classical_forces(setup) -> None:
    model, evaluator, x = setup
    tail = TailFrames(model.ic, evaluator, sigma=(0.003, 0.26, 0.26), fraction=0.2, seed=3)
    tx, tf = tail(x)
    assert tx.shape == x.shape and tf.shape == x.shape and tx.dtype == x.dtype
    with torch.no_grad():
        h0, _ = model.ic(x)
        h1, _ = model.ic(tx)
    moved = (h1 - h0).abs() > 1e-9
    assert abs(float(moved.double().mean()) - 0.2) < 0.05  # ~ the asked fraction
    interval = ~model.ic.circular_mask
    assert float(h1[:, interval].min()) >= TAIL_CLAMP[0] - 1e-9
    assert float(h1[:, interval].max()) <= TAIL_CLAMP[1] + 1e-9
    # per-type widths: angle moves ~ 0.26 rad, bond moves ~ 0.003 nm (physical units)
    bonds0, angles0, _ = model.ic.physical(h0)
    bonds1, angles1, _ = model.ic.physical(h1)
    bond_moves = (bonds1 - bonds0)[moved[:, model.ic.bond_slice]]
    angle_moves = (angles1 - angles0)[moved[:, model.ic.angle_slice]]
    assert 0.0015 < float(bond_moves.std()) < 0.006
    assert 0.12 < float(angle_moves.std()) < 0.4
    # labels are the force field's forces at the perturbed positions
    _, direct = evaluator(tx.numpy())
    np.testing.assert_allclose(tf.numpy(), direct, rtol=1e-12, atol=1e-9)
    again = TailFrames(model.ic, evaluator, sigma=(0.003, 0.26, 0.26), fraction=0.2, seed=3)
    torch.testing.assert_close(again(x)[0], tx, rtol=0, atol=0)  # seeded


def test_tail_frames_drop_non_finite_energies(setup) -> None:
    model, evaluator, x = setup

    def forces(positions: np.ndarray):
        energies, f = evaluator(positions)
        energies[1] = np.inf
        return energies, f

    tx, tf = TailFrames(model.ic, forces, seed=0)(x[:4])
    assert tx.shape[0] == 3 and tf.shape[0] == 3


def test_tail_frames_drop_non_finite_forces(setup) -> None:
    model, evaluator, x = setup

    def forces(positions: np.ndarray):
        energies, f = evaluator(positions)
        f[2, 5, 1] = np.nan
        return energies, f

    tx, tf = TailFrames(model.ic, forces, seed=0)(x[:4])
    assert tx.shape[0] == 3 and bool(torch.isfinite(tf).all())


def test_relative_force_matching_loss_survives_clash_forces_in_float32(setup) -> None:
    """A near-overlap in a tail frame (|f| ~ 6e19 kJ/mol/nm, met at step 18,211 of a real run)
    squares past float32's range; the loss must stay finite and equal the float64 formula."""
    import copy

    model, _, x = setup
    x = x[:4]
    gen = torch.Generator().manual_seed(1)
    ref = torch.randn(x.shape, generator=gen, dtype=x.dtype) * 3000.0
    ref[1] *= 1e16  # one clash frame
    pred = flow_forces_kT(model, x, create_graph=False).detach()
    r = ref / model.kT
    expected = (((pred - r) ** 2).sum((-1, -2)) / (r**2).sum((-1, -2))).mean()
    model32 = copy.deepcopy(model).float()
    loss = relative_force_matching_loss(model32, x.float(), ref.float())
    assert math.isfinite(float(loss.detach()))
    assert math.isclose(float(loss.detach()), float(expected), rel_tol=1e-4)
    grads = torch.autograd.grad(loss, list(model32.parameters()), allow_unused=True)
    assert all(bool(torch.isfinite(g).all()) for g in grads if g is not None)


def test_tail_frames_validate_arguments(setup) -> None:
    model, evaluator, _ = setup
    with pytest.raises(ValueError, match="sigma"):
        TailFrames(model.ic, evaluator, sigma=(0.1, -1.0, 0.1))
    with pytest.raises(ValueError, match="fraction"):
        TailFrames(model.ic, evaluator, fraction=0.0)


def test_relative_force_matching_loss_formula_and_zero(setup) -> None:
    model, _, x = setup
    x = x[:5]
    own = flow_forces_kT(model, x, create_graph=False).detach() * model.kT  # kJ/mol/nm
    assert float(relative_force_matching_loss(model, x, own).detach()) < 1e-20
    gen = torch.Generator().manual_seed(0)
    ref = torch.randn(x.shape, generator=gen, dtype=x.dtype) * 500.0
    loss = relative_force_matching_loss(model, x, ref).detach()
    pred = own / model.kT
    expected = (((pred - ref / model.kT) ** 2).sum((-1, -2))
                / ((ref / model.kT) ** 2).sum((-1, -2))).mean()
    assert math.isclose(float(loss), float(expected), rel_tol=1e-10)
    assert float(relative_force_matching_loss(model, x[:0], ref[:0])) == 0.0


def test_relative_force_matching_gradient_is_a_descent_direction(setup) -> None:
    model, evaluator, x = setup
    tx, tf = TailFrames(model.ic, evaluator, seed=1)(x[:8])
    params = list(model.parameters())
    loss0 = relative_force_matching_loss(model, tx, tf)
    grads = torch.autograd.grad(loss0, params)
    norm2 = sum(float((g * g).sum()) for g in grads)
    assert norm2 > 0
    step = 1e-4 * float(loss0.detach()) / norm2
    with torch.no_grad():
        for p, g in zip(params, grads, strict=True):
            p.sub_(step * g)
    loss1 = float(relative_force_matching_loss(model, tx, tf).detach())
    with torch.no_grad():
        for p, g in zip(params, grads, strict=True):
            p.add_(step * g)
    assert loss1 < float(loss0.detach())
