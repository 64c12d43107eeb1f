"""Bond integrity of MD frames: are the molecule's covalent bonds still where the reference
MD keeps them? (A flow potential confines bonds only as far as its density falls, so long MD on
it can stretch or compress bonds far beyond anything in the data.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: A frame is broken when a bond is shorter than LOW x or longer than HIGH x the shortest or
#: longest length of that bond in the reference data.
LOW, HIGH = 0.8, 1.25


def bond_lengths(positions_nm: np.ndarray, topology_pdb: str | Path) -> np.ndarray:
    """Lengths (N, n_bonds) nm of the PDB's covalent bonds in frames (N, n_atoms, 3) nm (mdtraj)."""
    import mdtraj as md

    topology = md.load_topology(str(topology_pdb))
    pairs = np.array([[b.atom1.index, b.atom2.index] for b in topology.bonds])
    traj = md.Trajectory(np.asarray(positions_nm, dtype=np.float32), topology)
    return md.compute_distances(traj, pairs, periodic=False).astype(np.float64)


def broken_frames(lengths: np.ndarray, reference_lengths: np.ndarray,
                  low: float = LOW, high: float = HIGH) -> np.ndarray:
    """(N,) bool: frames with a bond outside [low x reference min, high x reference max]."""
    lo = low * reference_lengths.min(axis=0)
    hi = high * reference_lengths.max(axis=0)
    return ((lengths < lo) | (lengths > hi) | ~np.isfinite(lengths)).any(axis=1)
