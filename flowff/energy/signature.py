"""Topology signatures: what a model file records of its molecule, and the check against it."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import openmm.app as app


class TopologyMismatchError(ValueError):
    """The topology does not match the molecule a model was trained on."""


def _as_openmm(topology: Any) -> app.Topology:
    if isinstance(topology, app.Topology):
        return topology
    if hasattr(topology, "to_openmm"):  # mdtraj.Topology
        return topology.to_openmm()
    raise TypeError(f"expected an openmm.app.Topology or mdtraj.Topology, got {type(topology)}")


def topology_signature(topology: Any) -> dict[str, Any]:
    """Atom count, elements, atom and residue names, bonds and their SHA-256 fingerprint."""
    top = _as_openmm(topology)
    atoms = list(top.atoms())
    sig: dict[str, Any] = {
        "n_atoms": len(atoms),
        "elements": [a.element.symbol if a.element is not None else "X" for a in atoms],
        "atom_names": [a.name for a in atoms],
        "residue_names": [a.residue.name for a in atoms],
        "bonds": sorted(sorted((b[0].index, b[1].index)) for b in top.bonds()),
    }
    payload = json.dumps([sig["elements"], sig["atom_names"], sig["residue_names"], sig["bonds"]])
    sig["fingerprint"] = hashlib.sha256(payload.encode()).hexdigest()
    return sig


def check_topology(expected: dict[str, Any], topology: Any, atoms: list[int] | None = None
                   ) -> None:
    """Raise :class:`TopologyMismatchError` naming the first difference from ``expected``.

    ``atoms`` selects the topology atoms (in model order) that the model applies to.
    """
    sig = topology_signature(topology)
    index = list(range(sig["n_atoms"])) if atoms is None else list(atoms)
    if len(index) != expected["n_atoms"]:
        raise TopologyMismatchError(
            f"wrong atom count: the model was trained on {expected['n_atoms']} atoms, "
            f"the topology {'selection ' if atoms is not None else ''}has {len(index)}"
        )
    for model_i, top_i in enumerate(index):
        if not 0 <= top_i < sig["n_atoms"]:
            raise TopologyMismatchError(f"atom index {top_i} is outside the topology")
        if sig["elements"][top_i] != expected["elements"][model_i]:
            raise TopologyMismatchError(
                f"element mismatch at model atom {model_i} (topology atom {top_i}, "
                f"{sig['residue_names'][top_i]}:{sig['atom_names'][top_i]}): model expects "
                f"{expected['elements'][model_i]}, topology has {sig['elements'][top_i]}; "
                "the atom order or the molecule differs"
            )
    if atoms is None and sig["fingerprint"] != expected["fingerprint"]:
        names_differ = [
            i for i in range(len(index))
            if sig["atom_names"][i] != expected["atom_names"][i]
            or sig["residue_names"][i] != expected["residue_names"][i]
        ]
        detail = (
            f"atom {names_differ[0]} is {sig['residue_names'][names_differ[0]]}:"
            f"{sig['atom_names'][names_differ[0]]}, the model expects "
            f"{expected['residue_names'][names_differ[0]]}:"
            f"{expected['atom_names'][names_differ[0]]}"
            if names_differ else "the bonds differ"
        )
        raise TopologyMismatchError(f"topology does not match the model's molecule: {detail}")
