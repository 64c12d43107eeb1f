"""Bond integrity: intact frames pass, a stretched or compressed bond is caught."""

from __future__ import annotations

import numpy as np

from flowff.analysis.bonds import bond_lengths, broken_frames
from flowff.openmm.classical import alanine_dipeptide_pdb_path


def test_stretched_and_compressed_bonds_are_caught(ala_structure) -> None:
    _, positions = ala_structure
    rng = np.random.default_rng(0)
    reference = positions[None] + 0.002 * rng.standard_normal((50, 22, 3))
    frames = np.repeat(positions[None], 3, axis=0).copy()
    with alanine_dipeptide_pdb_path() as pdb:
        ref_lengths = bond_lengths(reference, pdb)
        assert ref_lengths.shape == (50, 21)  # 22 atoms, a tree of 21 bonds
        d0 = np.linalg.norm(positions[1] - positions[0])
        frames[1, 0] += (positions[0] - positions[1]) / d0 * 0.5 * d0  # 1.5x longer
        frames[2, 0] -= (positions[0] - positions[1]) / d0 * 0.4 * d0  # 0.6x
        lengths = bond_lengths(frames, pdb)
    assert broken_frames(lengths, ref_lengths).tolist() == [False, True, True]
    assert not broken_frames(ref_lengths, ref_lengths).any()
