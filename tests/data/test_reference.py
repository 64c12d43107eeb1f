"""Reference MD data: generation, resume, loading and time-block splits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flowff.data.reference import (
    ReferenceData,
    ReferenceMDConfig,
    generate_reference_data,
    load_reference_data,
    split_by_time_blocks,
)
from flowff.openmm.classical import alanine_dipeptide_pdb_path

TINY = ReferenceMDConfig(frames_per_chunk=4, save_interval_ps=0.01, equilibration_ps=0.05)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    with alanine_dipeptide_pdb_path() as pdb:
        generate_reference_data(out, pdb, n_replicas=2, ns_per_replica=8e-5, config=TINY)
    return out


def test_generated_frames_are_consistent_with_openmm(tiny_data) -> None:
    data = load_reference_data(tiny_data)
    assert len(data) == 2 * 8  # 0.08 ps / 0.01 ps = 8 frames = 2 chunks per replica
    assert data.positions.shape == (16, 22, 3) and data.forces.shape == (16, 22, 3)
    assert np.isfinite(data.positions).all() and np.isfinite(data.forces).all()
    # Bonded C-H distances in nm (0.1 nm): positions really are in nm.
    ch = np.linalg.norm(data.positions[:, 0] - data.positions[:, 1], axis=-1)
    assert np.all((ch > 0.09) & (ch < 0.13))
    # Times are increasing within each replica, spaced by the save interval.
    for r in (0, 1):
        t = data.time_ps[data.replica == r]
        np.testing.assert_allclose(np.diff(t), 0.01, atol=1e-9)
    # Forces recomputed by OpenMM for a stored frame equal the stored ones (float32 storage).
    import openmm
    import openmm.app as app

    from flowff.data.reference import build_classical_system

    top = app.PDBFile(str(data.topology_pdb)).topology
    system = build_classical_system(top, TINY.forcefield)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001),
                         openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(data.positions[5].astype(np.float64))
    f = ctx.getState(getForces=True).getForces(asNumpy=True)._value
    np.testing.assert_allclose(f, data.forces[5], rtol=1e-3, atol=0.5)
    assert data.to_mdtraj().n_frames == 16


def test_resume_extends_without_redoing(tiny_data) -> None:
    first = load_reference_data(tiny_data)
    stamp = (tiny_data / "replica_00" / "chunk_00000.npz").stat().st_mtime_ns
    with alanine_dipeptide_pdb_path() as pdb:
        generate_reference_data(tiny_data, pdb, n_replicas=2, ns_per_replica=12e-5, config=TINY)
    more = load_reference_data(tiny_data)
    assert len(more) == 24
    assert (tiny_data / "replica_00" / "chunk_00000.npz").stat().st_mtime_ns == stamp
    keep = np.isin(np.arange(len(more)), np.flatnonzero(more.time_ps <= first.time_ps.max()))
    np.testing.assert_array_equal(more.positions[keep][: len(first)], first.positions)
    # A resumed replica continues in time.
    t = more.time_ps[more.replica == 0]
    np.testing.assert_allclose(np.diff(t), 0.01, atol=1e-9)


def test_other_protocol_in_same_folder_is_refused(tiny_data) -> None:
    other = ReferenceMDConfig(frames_per_chunk=4, save_interval_ps=0.01, equilibration_ps=0.05,
                              temperature_K=350.0)
    with alanine_dipeptide_pdb_path() as pdb, pytest.raises(ValueError, match="another protocol"):
        generate_reference_data(tiny_data, pdb, 2, 8e-5, other)


def test_missing_and_wrong_version_folders(tmp_path, tiny_data) -> None:
    with pytest.raises(FileNotFoundError, match="not a flowff reference data folder"):
        load_reference_data(tmp_path)
    cfg = json.loads((tiny_data / "config.json").read_text())
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({**cfg, "format_version": 99}))
    with pytest.raises(ValueError, match="data format 99"):
        load_reference_data(bad)


def _fake_data(n_replicas: int, frames: int) -> ReferenceData:
    reps = np.repeat(np.arange(n_replicas), frames)
    times = np.tile(np.arange(frames, dtype=float), n_replicas)
    zeros = np.zeros((len(reps), 1, 3))
    return ReferenceData(zeros, zeros, np.zeros(len(reps)), reps, times, 300.0, None)


def test_split_uses_contiguous_blocks_and_is_seeded() -> None:
    data = _fake_data(n_replicas=3, frames=1000)
    train, val, test = split_by_time_blocks(data, (0.8, 0.1, 0.1), block_ps=100.0, seed=3)
    assert len(train) + len(val) + len(test) == len(data)
    assert not (set(train) & set(val) or set(train) & set(test) or set(val) & set(test))
    assert len(test) == 3 * 100 and len(val) == 3 * 100  # 30 blocks: 3 test, 3 val
    for idx in (val, test):  # each set is a union of whole blocks
        block = data.replica[idx] * 1000 + (data.time_ps[idx] // 100).astype(int)
        for b in np.unique(block):
            assert (block == b).sum() == 100
    again = split_by_time_blocks(data, (0.8, 0.1, 0.1), block_ps=100.0, seed=3)
    np.testing.assert_array_equal(again[2], test)
    other = split_by_time_blocks(data, (0.8, 0.1, 0.1), block_ps=100.0, seed=4)
    assert not np.array_equal(other[2], test)
    with pytest.raises(ValueError, match="sum to 1"):
        split_by_time_blocks(data, (0.5, 0.1, 0.1))


def test_replica_written_by_another_process_is_refused(tiny_data) -> None:
    from flowff.utils.locking import FolderLockedError, exclusive_folder_lock

    def listing() -> list[str]:
        return sorted(str(p.relative_to(tiny_data)) for p in tiny_data.rglob("*.npz"))

    before = listing()
    with exclusive_folder_lock(tiny_data / "replica_00", "test holder"):
        with alanine_dipeptide_pdb_path() as pdb, pytest.raises(
            FolderLockedError, match="replica 0 of the reference data"
        ):
            generate_reference_data(tiny_data, pdb, 2, 40e-5, TINY)
    assert listing() == before
