"""ZMatrix: construction from OpenMM and mdtraj topologies, structure, lookups, serialization."""

from __future__ import annotations

import importlib.resources
import json
import types

import mdtraj
import numpy as np
import openmm.app as app
import pytest

from flowff.ic import TopologyError, ZMatrix, alanine_dipeptide_topology


def bonded_pairs(topology: app.Topology) -> set[frozenset[int]]:
    return {frozenset((a.index, b.index)) for a, b in topology.bonds()}


def test_openmm_and_mdtraj_topologies_give_the_same_zmatrix(alanine_zmatrix: ZMatrix) -> None:
    resource = importlib.resources.files("flowff.resources").joinpath("alanine-dipeptide.pdb")
    with importlib.resources.as_file(resource) as path:
        md_topology = mdtraj.load(str(path)).topology
    from_mdtraj = ZMatrix.from_topology(md_topology)
    assert (from_mdtraj.frame, from_mdtraj.rows) == (alanine_zmatrix.frame, alanine_zmatrix.rows)
    assert from_mdtraj.phi_index == alanine_zmatrix.phi_index
    assert from_mdtraj.psi_index == alanine_zmatrix.psi_index


@pytest.mark.parametrize("hydrogen_torsions", ["sibling", "chain"])
def test_alanine_dipeptide_structure(hydrogen_torsions: str) -> None:
    """Heavy atoms first from a methyl end; partners along bonds; hydrogens' torsion partners."""
    topology = alanine_dipeptide_topology()
    bonds = bonded_pairs(topology)
    z = ZMatrix.alanine_dipeptide(hydrogen_torsions)
    assert z.n_atoms == 22 and len(z.rows) == 19
    assert sorted(z.placement_order) == list(range(22))
    order = z.placement_order
    is_h = [z.elements[i] == "H" for i in order]
    assert is_h == sorted(is_h), "all heavy atoms are placed before any hydrogen"
    assert z.atom_names[z.frame[0]] == "CH3" and z.residue_names[z.frame[0]] == "ACE"
    f0, f1, f2 = z.frame
    assert {frozenset((f0, f1)), frozenset((f1, f2))} <= bonds
    improper = []
    for atom, b, a, t in z.rows:
        assert frozenset((atom, b)) in bonds and frozenset((b, a)) in bonds
        if frozenset((a, t)) not in bonds:
            assert frozenset((b, t)) in bonds
            improper.append((z.residue_names[atom], z.atom_names[atom]))
        if z.elements[atom] == "H":
            assert z.elements[b] != "H", "hydrogens hang on their heavy atom"
    # Chain: only the first heavy atom after the frame lacks a proper chain (its neighbours come
    # later). Sibling: also every hydrogen whose heavy atom already carries a placed atom besides
    # the angle partner (methyl H2/H3 from H1; HA, the amide H from a heavy neighbour).
    expected = [("ALA", "N")]
    if hydrogen_torsions == "sibling":
        expected += [("ACE", "H2"), ("ACE", "H3"), ("ALA", "H"), ("ALA", "HA"), ("ALA", "HB2"),
                     ("ALA", "HB3"), ("NME", "H"), ("NME", "H2"), ("NME", "H3")]
    assert sorted(improper) == sorted(expected)


def test_sibling_torsion_is_the_difference_of_chain_torsions() -> None:
    """H-b-a-s (s on b) is the rotation from s to H about the a-b axis: the chain torsions'
    difference, so methyl H2/H3 sit near +-120 degrees from H1 whatever the rotor does."""
    sibling, chain = ZMatrix.alanine_dipeptide("sibling"), ZMatrix.alanine_dipeptide("chain")
    assert sibling.placement_order == chain.placement_order
    resource = importlib.resources.files("flowff.resources").joinpath("alanine-dipeptide.pdb")
    with importlib.resources.as_file(resource) as path:
        trajectory = mdtraj.load(str(path))
    t_sib = mdtraj.compute_dihedrals(trajectory, np.array(sibling.torsions))[0]
    t_chain = mdtraj.compute_dihedrals(trajectory, np.array(chain.torsions))[0]
    row_of = {row[0]: k for k, row in enumerate(chain.rows)}
    changed = 0
    for k, (atom, _b, _a, s) in enumerate(sibling.rows):
        if chain.rows[k][3] == s:
            assert t_sib[k] == pytest.approx(t_chain[k])
            continue
        changed += 1
        difference = np.angle(np.exp(1j * (t_chain[k] - t_chain[row_of[s]])))
        assert t_sib[k] == pytest.approx(difference, abs=1e-5)
        if sibling.elements[atom] == sibling.elements[s] == "H":
            assert abs(abs(t_sib[k]) - 2 * np.pi / 3) < 0.2  # methyl: ~ +-120 degrees
    assert changed == 9


def test_hydrogen_torsions_choice_is_checked() -> None:
    with pytest.raises(ValueError, match="hydrogen_torsions must be one of"):
        ZMatrix.from_topology(alanine_dipeptide_topology(), hydrogen_torsions="proper")


def test_phi_and_psi_are_torsions(alanine_zmatrix: ZMatrix) -> None:
    z = alanine_zmatrix
    names = {(z.residue_names[i], z.atom_names[i]): i for i in range(z.n_atoms)}
    phi = (names["ACE", "C"], names["ALA", "N"], names["ALA", "CA"], names["ALA", "C"])
    psi = (names["ALA", "N"], names["ALA", "CA"], names["ALA", "C"], names["NME", "N"])
    assert set(z.torsions[z.phi_index]) == set(phi)
    assert set(z.torsions[z.psi_index]) == set(psi)
    assert z.torsion_index_of(phi) == z.phi_index == z.torsion_index_of(phi[::-1])
    assert z.torsion_index_of(psi) == z.psi_index
    assert z.torsion_index_of(("C", "N", "CA", "C")) == z.phi_index
    assert z.torsion_index_of(("N", "CA", "C", "N")) == z.psi_index
    assert (z.phi_indices, z.psi_indices) == ([z.phi_index], [z.psi_index])
    with pytest.raises(KeyError, match="no torsion"):
        z.torsion_index_of((0, 1, 2, 3))


def test_dict_round_trip(alanine_zmatrix: ZMatrix) -> None:
    data = json.loads(json.dumps(alanine_zmatrix.to_dict()))
    assert ZMatrix.from_dict(data) == alanine_zmatrix


def test_from_dict_rejects_inconsistent_data(alanine_zmatrix: ZMatrix) -> None:
    good = alanine_zmatrix.to_dict()
    with pytest.raises(ValueError, match="format"):
        ZMatrix.from_dict({**good, "format": "something-else"})
    rows = [list(r) for r in good["rows"]]
    rows[0][1] = rows[5][0]  # first row's bond partner is placed later
    with pytest.raises(ValueError, match="placed after"):
        ZMatrix.from_dict({**good, "rows": rows})
    rows = [list(r) for r in good["rows"]]
    rows[3][0] = rows[4][0]  # an atom twice, another missing
    with pytest.raises(ValueError, match="exactly once"):
        ZMatrix.from_dict({**good, "rows": rows})
    with pytest.raises(ValueError, match="n_atoms"):
        ZMatrix.from_dict({**good, "n_atoms": 21})
    with pytest.raises(ValueError, match="atom_names has 21 entries"):
        ZMatrix.from_dict({**good, "atom_names": good["atom_names"][:21]})


def test_small_molecules(small_zmatrix: ZMatrix, ic_helpers: types.SimpleNamespace) -> None:
    """Every molecule gets a valid Z-matrix whose partners are bonded neighbours."""
    z = small_zmatrix
    elements = z.elements
    name = next(k for k, (els, _) in ic_helpers.SMALL_MOLECULES.items() if tuple(els) == elements)
    bonds = {frozenset(b) for b in ic_helpers.SMALL_MOLECULES[name][1]}
    assert frozenset(z.frame[:2]) in bonds and frozenset(z.frame[1:]) in bonds
    for atom, b, a, t in z.rows:
        assert frozenset((atom, b)) in bonds and frozenset((b, a)) in bonds
        assert frozenset((a, t)) in bonds or frozenset((b, t)) in bonds


def test_explicit_root(ic_helpers: types.SimpleNamespace) -> None:
    elements, bonds = ic_helpers.SMALL_MOLECULES["chain4"]
    topology = ic_helpers.build_topology(elements, bonds)
    assert ZMatrix.from_topology(topology).frame == (0, 1, 2)
    assert ZMatrix.from_topology(topology, root=3).frame == (3, 2, 1)
    assert ZMatrix.from_topology(topology, root=1).frame in {(0, 1, 2), (2, 1, 0)}
    with pytest.raises(TopologyError, match="root atom 9"):
        ZMatrix.from_topology(topology, root=9)


def test_bad_topologies_raise_clear_errors(ic_helpers: types.SimpleNamespace) -> None:
    build = ic_helpers.build_topology
    with pytest.raises(TopologyError, match="no bonds"):
        ZMatrix.from_topology(build(["C", "C", "C", "C"], []))
    with pytest.raises(TopologyError, match="2 disconnected components"):
        ZMatrix.from_topology(build(["O", "H", "H", "O", "H", "H"],
                                    [(0, 1), (0, 2), (3, 4), (3, 5)]))
    with pytest.raises(TopologyError, match="at least 3 atoms"):
        ZMatrix.from_topology(build(["H", "H"], [(0, 1)]))
    with pytest.raises(TypeError, match="openmm.app.Topology or mdtraj.Topology"):
        ZMatrix.from_topology("not a topology")
