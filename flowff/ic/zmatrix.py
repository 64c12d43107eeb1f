"""Z-matrix: the order in which atoms are placed and the partners each placement refers to.

A Z-matrix of n >= 3 atoms has

* a *frame* ``(f0, f1, f2)``: a bonded chain ``f0 - f1 - f2`` of three atoms that carries the global
  position and orientation (internal coordinates d(f0, f1), d(f1, f2) and the angle f0-f1-f2), and
* ``n - 3`` *rows* ``(atom, bond_partner, angle_partner, torsion_partner)``: ``atom`` sits at
  distance d(atom, bond_partner), makes the angle atom-bond_partner-angle_partner at
  ``bond_partner`` and the dihedral atom-bond_partner-angle_partner-torsion_partner
  (IUPAC sign convention, as :func:`mdtraj.compute_dihedrals` for the same four indices).

Every partner is placed before the atom it serves. :meth:`ZMatrix.from_topology` builds one from the
bond graph: heavy atoms first, breadth-first from a peripheral heavy atom, then every hydrogen
after its heavy atom; partners are bonded neighbours so each torsion is a real dihedral along
bonds where the graph allows (otherwise an improper one around the bond partner).
"""

from __future__ import annotations

import importlib.resources
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Format tag written by :meth:`ZMatrix.to_dict`.
ZMATRIX_FORMAT = "flowff-zmatrix"
ZMATRIX_FORMAT_VERSION = 1

#: Packaged alanine dipeptide structure (ACE-ALA-NME, 22 atoms, Angstrom).
ALANINE_DIPEPTIDE_PDB = "alanine-dipeptide.pdb"

#: How hydrogens' torsion partners are chosen (:meth:`ZMatrix.from_topology`).
HYDROGEN_TORSION_CHOICES = ("sibling", "chain")


class TopologyError(ValueError):
    """A topology cannot be turned into a Z-matrix (no bonds, disconnected, too few atoms)."""


@dataclass(frozen=True)
class _Atoms:
    """What the Z-matrix builder needs to know of a topology, as plain Python data."""

    names: tuple[str, ...]
    elements: tuple[str, ...]
    residue_indices: tuple[int, ...]
    residue_names: tuple[str, ...]
    bonds: tuple[tuple[int, int], ...]


def _read_topology(topology: Any) -> _Atoms:
    """Atoms, elements, residues and bonds of an openmm.app.Topology or mdtraj.Topology."""
    import mdtraj
    import openmm.app

    if isinstance(topology, openmm.app.Topology):
        atoms = list(topology.atoms())
        bonds = [(b[0].index, b[1].index) for b in topology.bonds()]
    elif isinstance(topology, mdtraj.Topology):
        atoms = list(topology.atoms)
        bonds = [(a.index, b.index) for a, b in topology.bonds]
    else:
        raise TypeError(
            f"expected an openmm.app.Topology or mdtraj.Topology, got {type(topology).__name__}"
        )
    for position, atom in enumerate(atoms):
        if atom.index != position:
            raise TopologyError(f"atom indices are not 0..n-1 in order (atom {atom.index} "
                                f"at position {position})")
    return _Atoms(
        names=tuple(a.name for a in atoms),
        elements=tuple(a.element.symbol if a.element is not None else "X" for a in atoms),
        residue_indices=tuple(a.residue.index for a in atoms),
        residue_names=tuple(a.residue.name for a in atoms),
        bonds=tuple(bonds),
    )


def _adjacency(n_atoms: int, bonds: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Sorted neighbour lists of the bond graph."""
    neighbours: list[set[int]] = [set() for _ in range(n_atoms)]
    for i, j in bonds:
        if i == j:
            raise TopologyError(f"atom {i} is bonded to itself")
        neighbours[i].add(j)
        neighbours[j].add(i)
    return [sorted(s) for s in neighbours]


def _bfs_distances(start: int, neighbours: Sequence[Sequence[int]],
                   allowed: set[int]) -> dict[int, int]:
    """Graph distances from ``start`` to every atom reachable through ``allowed`` atoms."""
    distance = {start: 0}
    queue = deque([start])
    while queue:
        i = queue.popleft()
        for j in neighbours[i]:
            if j in allowed and j not in distance:
                distance[j] = distance[i] + 1
                queue.append(j)
    return distance


def _components(neighbours: Sequence[Sequence[int]]) -> list[list[int]]:
    """Connected components of the bond graph, each sorted, ordered by their first atom."""
    seen: set[int] = set()
    components = []
    everything = set(range(len(neighbours)))
    for i in range(len(neighbours)):
        if i not in seen:
            component = sorted(_bfs_distances(i, neighbours, everything))
            seen.update(component)
            components.append(component)
    return components


def _placement_order(
    neighbours: Sequence[Sequence[int]], is_hydrogen: Sequence[bool], root: int | None
) -> tuple[list[int], dict[int, int]]:
    """Atom placement order and each atom's spanning-tree parent (the root has none).

    Heavy atoms come first, breadth-first from ``root`` through heavy atoms (default: the heavy
    atom of largest eccentricity in the heavy-atom graph, lowest index on ties, i.e. one end of
    the molecule's longest heavy-atom chain); then the remaining atoms (hydrogens, or heavy atoms
    reachable only through hydrogens), breadth-first from what is placed, neighbours by index.
    """
    n_atoms = len(neighbours)
    heavy = {i for i in range(n_atoms) if not is_hydrogen[i]}
    if root is None:
        if heavy:
            eccentricity = {
                i: max(_bfs_distances(i, neighbours, heavy).values()) for i in sorted(heavy)
            }
            largest = max(eccentricity.values())
            root = min(i for i, e in eccentricity.items() if e == largest)
        else:
            root = 0
    if not 0 <= root < n_atoms:
        raise TopologyError(f"root atom {root} is not an atom index (0..{n_atoms - 1})")
    order = [root]
    parent: dict[int, int] = {}
    placed = {root}
    # Stage 1: heavy atoms reachable through heavy atoms (only if the root is heavy).
    queue = deque([root] if root in heavy else [])
    while queue:
        i = queue.popleft()
        for j in neighbours[i]:
            if j in heavy and j not in placed:
                placed.add(j)
                parent[j] = i
                order.append(j)
                queue.append(j)
    # Stage 2: everything else, breadth-first from the placed atoms in placement order.
    queue = deque(order)
    while queue:
        i = queue.popleft()
        for j in neighbours[i]:
            if j not in placed:
                placed.add(j)
                parent[j] = i
                order.append(j)
                queue.append(j)
    return order, parent


def _choose_partners(
    atom: int,
    bond_partner: int,
    neighbours: Sequence[Sequence[int]],
    parent: dict[int, int],
    rank: dict[int, int],
    is_hydrogen: Sequence[bool],
    hydrogen_torsions: str = "sibling",
) -> tuple[int, int]:
    """Angle and torsion partners of ``atom``, among atoms placed before it (rank < its rank).

    Preference: a proper dihedral atom-b-a-t along bonds; the angle partner a is b's tree parent
    if possible, then heavy atoms, then the earliest placed; likewise t. Without any proper choice,
    t is another placed neighbour of b (an improper dihedral around b). With
    ``hydrogen_torsions="sibling"`` a hydrogen whose bond partner b already carries another placed
    neighbour s (besides a) takes s as torsion partner: its dihedral H-b-a-s about the b-a axis is
    the near-constant offset (~ +-120 deg) from s, not a copy of s's rotor torsion.
    """
    limit = rank[atom]

    def placed_neighbours(i: int, exclude: set[int]) -> list[int]:
        return [j for j in neighbours[i] if rank[j] < limit and j not in exclude]

    def preference(of: int) -> Any:
        return lambda j: (j != parent.get(of), is_hydrogen[j], rank[j])

    b = bond_partner
    angle_candidates = sorted(placed_neighbours(b, {atom}), key=preference(b))
    if hydrogen_torsions == "sibling" and is_hydrogen[atom] and angle_candidates:
        a = angle_candidates[0]
        siblings = sorted(placed_neighbours(b, {atom, a}), key=lambda j: (is_hydrogen[j], rank[j]))
        if siblings:
            return a, siblings[0]
    for a in angle_candidates:
        proper = sorted(placed_neighbours(a, {atom, b}), key=preference(a))
        if proper:
            return a, proper[0]
    for a in angle_candidates:
        improper = sorted(placed_neighbours(b, {atom, a}), key=preference(b))
        if improper:
            return a, improper[0]
    raise TopologyError(f"no angle and torsion partners among placed neighbours for atom {atom}")


@dataclass(frozen=True)
class ZMatrix:
    """Placement order of a molecule's atoms with bond, angle and torsion partners.

    ``frame``: (f0, f1, f2), bonded chain f0-f1-f2 carrying the global frame.
    ``rows``: (atom, bond_partner, angle_partner, torsion_partner) for the other n - 3 atoms, in
    placement order. ``atom_names``, ``residue_indices``, ``residue_names``, ``elements``: optional
    per-atom labels (used for lookups by name and for phi/psi).

    Internal coordinates in the order used by :class:`flowff.ic.InternalCoordinates`:
    bonds (n-1) = d(f0,f1), d(f1,f2), then d(atom, bond_partner) per row;
    angles (n-2) = angle(f0,f1,f2) at f1, then angle(atom, bond_partner, angle_partner) per row;
    torsions (n-3) = dihedral(atom, bond_partner, angle_partner, torsion_partner) per row.
    """

    frame: tuple[int, int, int]
    rows: tuple[tuple[int, int, int, int], ...]
    atom_names: tuple[str, ...] = field(default=())
    residue_indices: tuple[int, ...] = field(default=())
    residue_names: tuple[str, ...] = field(default=())
    elements: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "frame", tuple(int(i) for i in self.frame))
        object.__setattr__(self, "rows", tuple(tuple(int(i) for i in r) for r in self.rows))
        for name in ("atom_names", "residue_names", "elements"):
            object.__setattr__(self, name, tuple(str(v) for v in getattr(self, name)))
        object.__setattr__(self, "residue_indices", tuple(int(v) for v in self.residue_indices))
        self._validate()

    def _validate(self) -> None:
        if len(self.frame) != 3:
            raise ValueError(f"the frame must name 3 atoms, got {len(self.frame)}")
        n_atoms = self.n_atoms
        for row in self.rows:
            if len(row) != 4:
                raise ValueError(f"each Z-matrix row needs 4 atom indices, got {row}")
        placed = list(self.frame) + [row[0] for row in self.rows]
        if sorted(placed) != list(range(n_atoms)):
            raise ValueError(
                "the frame and the rows' first atoms must name every atom 0..n-1 exactly once, "
                f"got {placed}"
            )
        if len(set(self.frame)) != 3:
            raise ValueError(f"frame atoms must be distinct, got {self.frame}")
        rank = {atom: position for position, atom in enumerate(placed)}
        for row in self.rows:
            if len(set(row)) != 4:
                raise ValueError(f"Z-matrix row {row} repeats an atom")
            for partner in row[1:]:
                if rank[partner] >= rank[row[0]]:
                    raise ValueError(
                        f"Z-matrix row {row}: partner {partner} is placed after atom {row[0]}"
                    )
        for label in ("atom_names", "residue_indices", "residue_names", "elements"):
            values = getattr(self, label)
            if values and len(values) != n_atoms:
                raise ValueError(f"{label} has {len(values)} entries for {n_atoms} atoms")

    # ----------------------------------------------------------------------------- construction

    @classmethod
    def from_topology(cls, topology: Any, root: int | None = None,
                      hydrogen_torsions: str = "sibling") -> ZMatrix:
        """Z-matrix from the bonds of an ``openmm.app.Topology`` or ``mdtraj.Topology``.

        ``root``: the first frame atom (default: one end of the longest heavy-atom chain).
        ``hydrogen_torsions``: "sibling" (default) measures a hydrogen's torsion from an atom on
        the same bond partner when one is placed (methyl H2 and H3 from H1, HA from a backbone
        atom), so the torsions of atoms around one rotor are not near-copies of each other;
        "chain" uses proper dihedrals along bonds wherever possible (as in model files whose
        config has no ``hydrogen_torsions``).
        Raises :class:`TopologyError` for fewer than 3 atoms, no bonds, or a bond graph with more
        than one connected component.
        """
        if hydrogen_torsions not in HYDROGEN_TORSION_CHOICES:
            raise ValueError(f"hydrogen_torsions must be one of {HYDROGEN_TORSION_CHOICES}, "
                             f"got {hydrogen_torsions!r}")
        atoms = _read_topology(topology)
        n_atoms = len(atoms.names)
        if n_atoms < 3:
            raise TopologyError(f"a Z-matrix needs at least 3 atoms, the topology has {n_atoms}")
        if not atoms.bonds:
            raise TopologyError(
                f"the topology has {n_atoms} atoms but no bonds; a Z-matrix is built from the "
                "bond graph (load a PDB with CONECT records or standard residues, or add bonds)"
            )
        neighbours = _adjacency(n_atoms, atoms.bonds)
        components = _components(neighbours)
        if len(components) > 1:
            sizes = [len(c) for c in components]
            first_atoms = [c[0] for c in components]
            raise TopologyError(
                f"the bond graph has {len(components)} disconnected components (sizes {sizes}, "
                f"starting at atoms {first_atoms}); a Z-matrix needs one connected molecule"
            )
        is_hydrogen = [e == "H" for e in atoms.elements]
        order, parent = _placement_order(neighbours, is_hydrogen, root)
        frame = _frame_chain(order[:3], neighbours)
        order = list(frame) + order[3:]
        rank = {atom: position for position, atom in enumerate(order)}
        rows = []
        for atom in order[3:]:
            bond_partner = parent[atom]
            angle_partner, torsion_partner = _choose_partners(
                atom, bond_partner, neighbours, parent, rank, is_hydrogen, hydrogen_torsions
            )
            rows.append((atom, bond_partner, angle_partner, torsion_partner))
        return cls(
            frame=frame,
            rows=tuple(rows),
            atom_names=atoms.names,
            residue_indices=atoms.residue_indices,
            residue_names=atoms.residue_names,
            elements=atoms.elements,
        )

    @classmethod
    def alanine_dipeptide(cls, hydrogen_torsions: str = "sibling") -> ZMatrix:
        """Z-matrix of the packaged alanine dipeptide (ACE-ALA-NME, 22 atoms, PDB atom order).

        Its torsions include the backbone phi (C-N-CA-C) and psi (N-CA-C-N):
        :attr:`phi_index`, :attr:`psi_index`.
        """
        zmatrix = cls.from_topology(alanine_dipeptide_topology(),
                                    hydrogen_torsions=hydrogen_torsions)
        zmatrix.phi_index  # noqa: B018 -- raises if phi is not a Z-matrix torsion
        zmatrix.psi_index  # noqa: B018
        return zmatrix

    # ------------------------------------------------------------------------------ properties

    @property
    def n_atoms(self) -> int:
        """Number of atoms."""
        return 3 + len(self.rows)

    @property
    def placement_order(self) -> tuple[int, ...]:
        """Atoms in the order they are placed (frame first)."""
        return tuple(self.frame) + tuple(row[0] for row in self.rows)

    @property
    def bonds(self) -> tuple[tuple[int, int], ...]:
        """(n-1) atom pairs whose distances are the bond coordinates, in IC order."""
        f0, f1, f2 = self.frame
        return ((f0, f1), (f1, f2)) + tuple((r[0], r[1]) for r in self.rows)

    @property
    def angles(self) -> tuple[tuple[int, int, int], ...]:
        """(n-2) atom triples (i, vertex, k) of the angle coordinates, in IC order."""
        return (tuple(self.frame),) + tuple((r[0], r[1], r[2]) for r in self.rows)

    @property
    def torsions(self) -> tuple[tuple[int, int, int, int], ...]:
        """(n-3) atom quadruples of the torsion (dihedral) coordinates, in IC order."""
        return tuple(self.rows)

    # -------------------------------------------------------------------------------- lookups

    def torsion_index_of(self, atoms: Sequence[int] | Sequence[str]) -> int:
        """Position (0..n-4) among the torsions of the dihedral over ``atoms``, either direction.

        ``atoms``: four atom indices, or four atom names (must match exactly one torsion; names
        alone can be ambiguous, prefer indices or :attr:`phi_index` / :attr:`psi_index`).
        Raises KeyError when no torsion (or, for names, more than one) matches.
        """
        atoms = tuple(atoms)
        if len(atoms) != 4:
            raise ValueError(f"a torsion has 4 atoms, got {len(atoms)}")
        if all(isinstance(a, str) for a in atoms):
            if not self.atom_names:
                raise ValueError("this Z-matrix carries no atom names")
            labels = [tuple(self.atom_names[i] for i in row) for row in self.rows]
        else:
            atoms = tuple(int(a) for a in atoms)
            labels = list(self.rows)
        matches = [k for k, row in enumerate(labels) if row in (atoms, atoms[::-1])]
        if len(matches) != 1:
            what = "no torsion" if not matches else f"{len(matches)} torsions ({matches})"
            raise KeyError(f"{what} of the Z-matrix runs over atoms {atoms}")
        return matches[0]

    def _backbone_dihedrals(self, kind: str) -> list[tuple[int, int, int, int]]:
        """Atom quadruples of every phi (C'-N-CA-C) or psi (N-CA-C-N') by residue."""
        if not (self.atom_names and self.residue_indices):
            raise ValueError("this Z-matrix carries no atom names or residues")
        by_residue: dict[int, dict[str, int]] = {}
        for i, (name, residue) in enumerate(zip(self.atom_names, self.residue_indices,
                                                strict=True)):
            by_residue.setdefault(residue, {})[name] = i
        residues = sorted(by_residue)
        found = []
        for before, here, after in zip([None, *residues[:-1]], residues, [*residues[1:], None],
                                       strict=True):
            own = by_residue[here]
            if not {"N", "CA", "C"} <= own.keys():
                continue
            if kind == "phi" and before is not None and "C" in by_residue[before]:
                found.append((by_residue[before]["C"], own["N"], own["CA"], own["C"]))
            if kind == "psi" and after is not None and "N" in by_residue[after]:
                found.append((own["N"], own["CA"], own["C"], by_residue[after]["N"]))
        return found

    @property
    def phi_indices(self) -> list[int]:
        """Torsion positions of the backbone phi angles (C'-N-CA-C), by residue."""
        return [self.torsion_index_of(q) for q in self._backbone_dihedrals("phi")]

    @property
    def psi_indices(self) -> list[int]:
        """Torsion positions of the backbone psi angles (N-CA-C-N'), by residue."""
        return [self.torsion_index_of(q) for q in self._backbone_dihedrals("psi")]

    @property
    def phi_index(self) -> int:
        """Torsion position of the single backbone phi (e.g. alanine dipeptide)."""
        return _single(self.phi_indices, "phi")

    @property
    def psi_index(self) -> int:
        """Torsion position of the single backbone psi (e.g. alanine dipeptide)."""
        return _single(self.psi_indices, "psi")

    # -------------------------------------------------------------------------- serialization

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict (lists, ints, strings) for model metadata."""
        return {
            "format": ZMATRIX_FORMAT,
            "format_version": ZMATRIX_FORMAT_VERSION,
            "n_atoms": self.n_atoms,
            "frame": list(self.frame),
            "rows": [list(row) for row in self.rows],
            "atom_names": list(self.atom_names),
            "residue_indices": list(self.residue_indices),
            "residue_names": list(self.residue_names),
            "elements": list(self.elements),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ZMatrix:
        """Inverse of :meth:`to_dict`; validates format, version and consistency."""
        if data.get("format") != ZMATRIX_FORMAT:
            raise ValueError(f"not a flowff Z-matrix dict (format {data.get('format')!r})")
        if data.get("format_version") != ZMATRIX_FORMAT_VERSION:
            raise ValueError(
                f"Z-matrix dict version {data.get('format_version')}, this flowff reads "
                f"{ZMATRIX_FORMAT_VERSION}"
            )
        zmatrix = cls(
            frame=tuple(data["frame"]),
            rows=tuple(tuple(r) for r in data["rows"]),
            atom_names=tuple(data.get("atom_names", ())),
            residue_indices=tuple(data.get("residue_indices", ())),
            residue_names=tuple(data.get("residue_names", ())),
            elements=tuple(data.get("elements", ())),
        )
        if data.get("n_atoms", zmatrix.n_atoms) != zmatrix.n_atoms:
            raise ValueError(
                f"Z-matrix dict says n_atoms={data['n_atoms']} but has {zmatrix.n_atoms} atoms"
            )
        return zmatrix


def _single(indices: list[int], kind: str) -> int:
    if len(indices) != 1:
        raise ValueError(f"expected exactly one backbone {kind}, found {len(indices)}")
    return indices[0]


def _frame_chain(first_three: Sequence[int], neighbours: Sequence[Sequence[int]]
                 ) -> tuple[int, int, int]:
    """Reorder the first three placed atoms into a bonded chain f0 - f1 - f2."""
    a, b, c = first_three
    if c in neighbours[b]:
        return (a, b, c)
    if c in neighbours[a]:  # b and c both hang off a: the chain is b - a - c
        return (b, a, c)
    raise TopologyError(f"the first three placed atoms {tuple(first_three)} are not a chain")


def alanine_dipeptide_topology() -> Any:
    """``openmm.app.Topology`` of the packaged alanine dipeptide (with standard-residue bonds)."""
    return alanine_dipeptide_pdb().topology


def alanine_dipeptide_pdb() -> Any:
    """``openmm.app.PDBFile`` of the packaged alanine dipeptide (positions in the file's frame)."""
    import openmm.app

    resource = importlib.resources.files("flowff.resources").joinpath(ALANINE_DIPEPTIDE_PDB)
    with importlib.resources.as_file(resource) as path:
        return openmm.app.PDBFile(str(path))
