"""Coupling schedules (angle-angle couplings) and growing a trained model by new layers."""

from __future__ import annotations

import pytest
import torch

from flowff.energy.builder import (
    FlowModelConfig,
    angle_halves,
    build_energy,
    columns_with_new_transforms,
    coupling_schedule,
    load_matching_weights,
    rotor_halves,
)
from flowff.ic.zmatrix import ZMatrix
from flowff.openmm.classical import load_alanine_dipeptide
from flowff.transforms.mixture import IDENTITY_DENSITY_TOLERANCE

SMALL = dict(num_components=3, hidden=(16, 16), torsion_coupling_pairs=1)


def test_angle_halves_separate_angles_around_one_atom() -> None:
    zmatrix = ZMatrix.alanine_dipeptide()
    first, second = angle_halves(zmatrix)
    n_angles = zmatrix.n_atoms - 2
    assert sorted(first + second) == list(range(n_angles))
    assert abs(len(first) - len(second)) <= 1
    keys = [(zmatrix.frame[1], zmatrix.frame[0])] + [(b, a) for _, b, a, _ in zmatrix.rows]
    groups: dict = {}
    for column, key in enumerate(keys):
        groups.setdefault(key, []).append(column)
    methyl_like = [m for m in groups.values() if len(m) >= 2]
    assert methyl_like, "alanine dipeptide has angles sharing vertex and reference atom"
    for members in methyl_like:  # alternate: both halves hold members of every group
        assert {c in first for c in members} == {True, False}


def test_schedule_with_angle_couplings() -> None:
    model = build_energy(FlowModelConfig(**SMALL))
    ic = model.ic
    plain = coupling_schedule(ic, 1, 0)
    grown = coupling_schedule(ic, 1, 1)
    assert len(grown) == len(plain) + 2
    angles = set(range(ic.n_bonds, ic.n_bonds + ic.n_angles))
    torsions = set(range(ic.n_bonds + ic.n_angles, ic.dim))
    # density direction: bonds first, then the two angle couplings, then angles | torsions
    a2, a1 = grown[1], grown[2]
    assert set(a1[0]) | set(a2[0]) == angles and not set(a1[0]) & set(a2[0])
    assert set(a1[1]) == set(a2[0]) | torsions and set(a2[1]) == set(a1[0]) | torsions
    assert grown[3] == (sorted(angles), sorted(torsions))
    with pytest.raises(ValueError, match="angle_coupling_pairs must be >= 0"):
        FlowModelConfig(angle_coupling_pairs=-1)


def test_rotor_halves_separate_phi_from_psi_and_keep_rotors_whole() -> None:
    zmatrix = ZMatrix.alanine_dipeptide()
    first, second = rotor_halves(zmatrix)
    n_torsions = zmatrix.n_atoms - 3
    assert sorted(first + second) == list(range(n_torsions))
    assert abs(len(first) - len(second)) <= 5
    phi, psi = zmatrix.phi_index, zmatrix.psi_index
    assert (phi in first) != (psi in first)
    # the alternating split puts both in one half: the reason for rotor couplings
    assert phi % 2 == psi % 2
    bond_of = {c: frozenset(row[1:3]) for c, row in enumerate(zmatrix.rows)}
    for column in range(n_torsions):
        same_bond = [c for c in range(n_torsions) if bond_of[c] == bond_of[column]]
        assert all((c in first) == (column in first) for c in same_bond)
    rotors_first = {bond_of[c] for c in first}
    rotors_second = {bond_of[c] for c in second}
    assert len(rotors_first) >= 3 and len(rotors_second) >= 3


def test_schedule_with_rotor_couplings() -> None:
    model = build_energy(FlowModelConfig(**SMALL))
    ic = model.ic
    plain = coupling_schedule(ic, 1, 1)
    grown = coupling_schedule(ic, 1, 1, rotor_coupling_pairs=1)
    assert len(grown) == len(plain) + 2
    torsions = set(range(ic.n_bonds + ic.n_angles, ic.dim))
    # density direction: ... angles | torsions, then the two rotor couplings, then T2|T1, T1|T2
    r2, r1 = grown[-4], grown[-3]
    assert set(r1[0]) | set(r2[0]) == torsions and not set(r1[0]) & set(r2[0])
    assert set(r1[1]) == set(r2[0]) and set(r2[1]) == set(r1[0])
    assert grown[-2:] == plain[-2:] and grown[:-4] == plain[:-2]
    with pytest.raises(ValueError, match="rotor_coupling_pairs must be >= 0"):
        FlowModelConfig(rotor_coupling_pairs=-1)


def test_growing_by_rotor_couplings_keeps_the_energy(perturb) -> None:
    source = perturb(build_energy(FlowModelConfig(**SMALL)), seed=6).eval()
    target = build_energy(FlowModelConfig(**SMALL, rotor_coupling_pairs=1)).eval()
    assert len(load_matching_weights(target, source.state_dict())) == 2
    _, positions = load_alanine_dipeptide()
    x = torch.tensor(positions, dtype=torch.float64).unsqueeze(0).repeat(3, 1, 1)
    x = x + 0.004 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1),
                                dtype=torch.float64)
    n_torsions = 19
    gap = (source.reduced_energy(x) - target.reduced_energy(x)).abs().max()
    assert gap < 4 * n_torsions * IDENTITY_DENSITY_TOLERANCE


def test_growing_keeps_the_energy_and_forces(perturb) -> None:
    source = perturb(build_energy(FlowModelConfig(**SMALL)), seed=4).eval()
    target = build_energy(FlowModelConfig(**SMALL, angle_coupling_pairs=1)).eval()
    new_layers = load_matching_weights(target, source.state_dict())
    assert len(new_layers) == 2
    _, positions = load_alanine_dipeptide()
    generator = torch.Generator().manual_seed(0)
    x = torch.tensor(positions, dtype=torch.float64) + 0.004 * torch.randn(
        5, 22, 3, generator=generator, dtype=torch.float64
    )
    x.requires_grad_(True)
    e_source = source.reduced_energy(x)
    (f_source,) = torch.autograd.grad(e_source.sum(), x)
    e_target = target.reduced_energy(x)
    (f_target,) = torch.autograd.grad(e_target.sum(), x)
    # the new layers are within the identity tolerance of the identity (20 angles, 2 layers)
    n_angles = 20
    assert (e_source - e_target).abs().max() < 4 * n_angles * IDENTITY_DENSITY_TOLERANCE
    assert (e_source - e_target).abs().max() > 0.0  # near, not exactly, the identity
    assert (f_source - f_target).pow(2).mean().sqrt() < 1e-2 * f_source.pow(2).mean().sqrt()


def test_growing_refuses_a_source_with_layers_the_target_lacks() -> None:
    source = build_energy(FlowModelConfig(**SMALL, angle_coupling_pairs=1))
    target = build_energy(FlowModelConfig(**SMALL))
    with pytest.raises(ValueError, match="without a counterpart"):
        load_matching_weights(target, source.state_dict())
    wider = build_energy(FlowModelConfig(**{**SMALL, "hidden": (8, 8)}))
    with pytest.raises(ValueError, match="shape"):
        load_matching_weights(wider, target.state_dict())


def test_old_model_configs_default_to_the_paper_schedule() -> None:
    data = FlowModelConfig(**SMALL).to_dict()
    del data["angle_coupling_pairs"]
    assert FlowModelConfig.from_dict(data).angle_coupling_pairs == 0


def test_hydrogen_torsions_pick_the_zmatrix_of_a_new_model_only() -> None:
    sibling, chain = (build_energy(FlowModelConfig(**SMALL, hydrogen_torsions=kind)).ic.zmatrix
                      for kind in ("sibling", "chain"))
    assert sibling.rows != chain.rows and sibling.frame == chain.frame
    assert ZMatrix.alanine_dipeptide("chain").rows == chain.rows
    # a stored Z-matrix wins; a config written before the option existed says "chain"
    cfg = FlowModelConfig(**SMALL, hydrogen_torsions="chain")
    build_energy(cfg)
    old = cfg.to_dict()
    del old["hydrogen_torsions"]
    restored = FlowModelConfig.from_dict(old)
    assert restored.hydrogen_torsions == "chain"
    assert build_energy(restored).ic.zmatrix.rows == chain.rows
    with pytest.raises(ValueError, match="hydrogen_torsions must be one of"):
        FlowModelConfig(hydrogen_torsions="proper")


def test_bond_transform_options_reach_the_bond_layer_only(perturb) -> None:
    cfg = FlowModelConfig(**SMALL, angle_coupling_pairs=1,
                          bond_transform_options={"max_concentration": 30.0})
    model = build_energy(cfg)
    ic = model.ic
    caps = {tuple(layer.transformed_index.tolist()): layer.groups[0].transform.max_concentration
            for layer in model.flow.layers}
    assert caps[tuple(range(ic.n_bonds))] == 30.0
    assert {cap for key, cap in caps.items() if key[0] >= ic.n_bonds} == {1000.0}
    # the cap is part of the architecture: the config round trip rebuilds it, and a model
    # without it loads its weights (a different map, the same parameters)
    rebuilt = build_energy(FlowModelConfig.from_dict(cfg.to_dict()))
    assert rebuilt.flow.layers[0].groups[0].transform.max_concentration == 30.0
    plain = perturb(build_energy(FlowModelConfig(**SMALL, angle_coupling_pairs=1)), seed=3)
    assert load_matching_weights(model, plain.state_dict()) == []



def test_gaussian_bonds_and_angles_get_their_own_transforms(perturb) -> None:
    cfg = FlowModelConfig(**SMALL, angle_coupling_pairs=1, bond_transform="gaussian",
                          bond_transform_options={"min_width": 0.008},
                          angle_transform="gaussian")
    model = build_energy(cfg)
    ic = model.ic
    kinds = {tuple(layer.transformed_index.tolist()): type(layer.groups[0].transform).__name__
             for layer in model.flow.layers}
    bonds = tuple(range(ic.n_bonds))
    assert kinds[bonds] == "GaussianMixtureTransform"
    assert model.flow.layers[0].groups[0].transform.min_width == 0.008
    assert model.flow.layers[0].groups[0].transform.num_components == 1
    angle_layers = [k for k in kinds if ic.n_bonds <= k[0] < ic.n_bonds + ic.n_angles]
    assert len(angle_layers) == 3  # angles | torsions and one angle-angle pair
    assert {kinds[k] for k in angle_layers} == {"GaussianMixtureTransform"}
    torsion_layers = [k for k in kinds if k[0] >= ic.n_bonds + ic.n_angles]
    assert {kinds[k] for k in torsion_layers} == {"SmoothMixtureTransform"}
    with pytest.raises(ValueError, match="bond_transform must be"):
        FlowModelConfig(bond_transform="affine")


def test_a_new_bond_transform_restarts_the_bond_layer_only(perturb) -> None:
    old_cfg = FlowModelConfig(**SMALL, angle_coupling_pairs=1)
    new_cfg = FlowModelConfig(**SMALL, angle_coupling_pairs=1, bond_transform="gaussian")
    source = perturb(build_energy(old_cfg), seed=5)
    target = build_energy(new_cfg)
    changed = columns_with_new_transforms(old_cfg, new_cfg, target.ic)
    assert changed == set(range(target.ic.n_bonds))
    assert columns_with_new_transforms(old_cfg, old_cfg, target.ic) == set()
    with pytest.raises(ValueError, match="shape"):  # without being told: parameter shapes differ
        load_matching_weights(build_energy(new_cfg), source.state_dict())
    kept = load_matching_weights(target, source.state_dict(), new_transform_columns=changed)
    assert kept == [0]  # the bonds' layer (first in the density direction)
    for index in range(1, len(target.flow.layers)):
        torch.testing.assert_close(target.flow.layers[index].conditioner.state_dict(),
                                   source.flow.layers[index].conditioner.state_dict())


def test_torsion_transform_options_floor_the_torsions_only(tmp_path) -> None:
    from flowff.energy.builder import load_energy_and_config, save_energy_model
    from flowff.openmm.classical import alanine_dipeptide_pdb_path
    from flowff.transforms.mixture import C_MIN

    def floors(model) -> dict[bool, set[float]]:
        found: dict[bool, set[float]] = {False: set(), True: set()}
        for layer in model.flow.layers:
            for group in layer.groups:
                if hasattr(group.transform, "c_min"):
                    found[group.circular].add(group.transform.c_min)
        return found

    cfg = FlowModelConfig(**SMALL, angle_coupling_pairs=1,
                          torsion_transform_options={"min_identity_share": 0.01})
    model = build_energy(cfg)
    assert floors(model) == {True: {0.01}, False: {C_MIN}}  # angles keep the default
    with alanine_dipeptide_pdb_path() as pdb:
        path = save_energy_model(model, cfg, pdb, tmp_path / "model.pt")
    loaded, loaded_cfg = load_energy_and_config(path)
    assert loaded_cfg.torsion_transform_options == {"min_identity_share": 0.01}
    assert floors(loaded) == {True: {0.01}, False: {C_MIN}}
