"""Start structures: evenly spaced trajectory frames, or frames of a short Amber run."""

from __future__ import annotations

from pathlib import Path

import mdtraj
import numpy as np
import pytest

from flowff.openmm.md import run_md
from flowff.openmm.starts import (
    make_start_frames,
    start_frames_from_md,
    start_frames_from_trajectory,
)


def test_frames_from_md_are_distinct_sane_structures(ala) -> None:
    topology, _, positions, _ = ala
    frames = start_frames_from_md(
        topology, positions, 3, warmup_ps=0.02, spacing_ps=0.05, seed=3
    )
    assert len(frames) == 3
    bonds = np.array([[b[0].index, b[1].index] for b in topology.bonds()])
    traj = mdtraj.Trajectory(np.stack(frames), mdtraj.Topology.from_openmm(topology))
    lengths = mdtraj.compute_distances(traj, bonds)
    assert lengths.min() > 0.08 and lengths.max() < 0.18  # intact molecule, nm
    for a, b in [(0, 1), (1, 2)]:
        assert np.abs(frames[a] - frames[b]).max() > 0.01  # 50 fs apart: atoms moved
    again = start_frames_from_md(topology, positions, 3, warmup_ps=0.02, spacing_ps=0.05, seed=3)
    np.testing.assert_array_equal(np.stack(again), np.stack(frames))


def test_frames_from_trajectory_are_evenly_spaced(ala, tmp_path: Path) -> None:
    topology, system, positions, _ = ala
    path = tmp_path / "ref.dcd"
    run = run_md(
        system, topology, positions, steps=50, report_interval=10, seed=0, progress=False,
        trajectory_path=path, record_positions=True,
    )
    assert run.positions_nm is not None
    frames = start_frames_from_trajectory(path, 3)
    for frame, index in zip(frames, [0, 2, 5], strict=True):  # round(linspace(0, 5, 3))
        np.testing.assert_allclose(frame, run.positions_nm[index], atol=1e-5)
    via_dispatch = make_start_frames(3, topology, positions, trajectory=path)
    np.testing.assert_array_equal(np.stack(via_dispatch), np.stack(frames))
    with pytest.raises(ValueError, match="fewer than the 7 starts"):
        start_frames_from_trajectory(path, 7)
    with pytest.raises(FileNotFoundError):
        start_frames_from_trajectory(tmp_path / "missing.dcd", 2)
