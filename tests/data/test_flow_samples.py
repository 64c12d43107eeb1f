"""Importance-resampled flow samples as training frames: weights, resampling, folder, resume."""

from __future__ import annotations

import json

import numpy as np
import openmm.app as app
import pytest

from flowff.data.flow_samples import (
    generate_resampled_flow_data,
    systematic_resample,
    truncated_weights,
)
from flowff.data.reference import build_classical_system, load_reference_data
from flowff.energy.flow_energy import kT_kJ_per_mol
from flowff.energy.openmm_energy import OpenMMEnergyEvaluator
from flowff.openmm.classical import alanine_dipeptide_pdb_path


def test_truncated_weights_cap_at_mean_times_sqrt_n() -> None:
    log_w = np.array([0.0, 0.0, 0.0, 10.0, -np.inf, 0.0, 0.0, 0.0, 0.0])
    w = truncated_weights(log_w)
    assert np.isclose(w.sum(), 1.0) and w[4] == 0.0
    assert w.max() <= 1.0 / 3.0 + 1e-12  # 1/sqrt(9): the heavy sample is capped ...
    assert w[3] == w.max() and np.allclose(w[[0, 1, 2, 5, 6, 7, 8]], w[0])  # ... others equal
    balanced = truncated_weights(np.log([1.0, 2.0, 1.0, 2.0]))  # no weight over the cap
    np.testing.assert_allclose(balanced, [1 / 6, 2 / 6, 1 / 6, 2 / 6])
    with pytest.raises(ValueError, match="NaN"):
        truncated_weights(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="every importance weight is zero"):
        truncated_weights(np.array([-np.inf, -np.inf]))


def test_systematic_resampling_counts_are_floor_or_ceil() -> None:
    rng = np.random.default_rng(0)
    w = rng.random(50)
    w /= w.sum()
    index = systematic_resample(w, 200, rng)
    counts = np.bincount(index, minlength=50)
    assert np.all(np.abs(counts - 200 * w) < 1.0) and counts.sum() == 200
    assert np.all(np.diff(index) >= 0)
    with pytest.raises(ValueError, match="sums to 1"):
        systematic_resample(np.array([0.5, 0.6]), 3, rng)


@pytest.fixture(scope="module")
def resampled(small_model_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("resampled")
    with alanine_dipeptide_pdb_path() as pdb:
        summary = generate_resampled_flow_data(small_model_file, out, pdb, n_samples=30,
                                               seed=3, chunk_size=10, progress=False)
    return out, summary


def test_resampled_frames_are_pool_samples_with_classical_forces(resampled) -> None:
    out, summary = resampled
    data = load_reference_data(out)  # reads like MD data (no resume states needed)
    assert len(data) == 30 and summary["frames"] == 30
    pool = [np.load(out / "pool" / f"pool_{k:05d}.npz") for k in range(3)]
    x = np.concatenate([p["positions"] for p in pool])
    index = [int(np.argmin(np.abs(x - frame).reshape(len(x), -1).max(axis=1)))
             for frame in data.positions]
    np.testing.assert_allclose(x[index], data.positions, atol=1e-6)
    assert len(set(index)) == summary["unique_frames"]
    # weights exp(-u/kT)/q recomputed from the pool: the heaviest sample is resampled most
    log_q = np.concatenate([p["log_q"] for p in pool])
    energy = np.concatenate([p["potential_energy"] for p in pool])
    log_w = -energy / kT_kJ_per_mol(300.0) - log_q
    log_w[~np.isfinite(log_w)] = -np.inf
    assert np.bincount(index, minlength=30).argmax() == int(np.argmax(log_w))
    with alanine_dipeptide_pdb_path() as pdb:
        system = build_classical_system(app.PDBFile(str(pdb)).topology,
                                        ("amber99sbildn.xml", "amber99_obc.xml"))
    # at the pool's float64 positions (the frames store float32: a 1e-8 nm rounding moves a
    # stiff bond's force by ~0.03 kJ/mol/nm, more than a float32 force's own rounding)
    e, f = OpenMMEnergyEvaluator(system)(x[index[:5]])
    np.testing.assert_allclose(data.potential_energy[:5], e, rtol=1e-6)
    np.testing.assert_allclose(data.forces[:5], f, rtol=1e-5, atol=1e-3)
    origin = json.loads((out / "config.json").read_text())["origin"]
    assert origin["seed"] == 3 and origin["n_samples"] == 30


def test_interrupted_pool_resumes_to_the_same_frames(resampled, small_model_file,
                                                     tmp_path) -> None:
    out, summary = resampled
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(out, copy)
    (copy / "pool" / "pool_00001.npz").unlink()  # as if killed before the second chunk
    with alanine_dipeptide_pdb_path() as pdb:
        again = generate_resampled_flow_data(small_model_file, copy, pdb, n_samples=30,
                                             seed=3, chunk_size=10, progress=False)
        assert again == summary
        np.testing.assert_array_equal(load_reference_data(copy).positions,
                                      load_reference_data(out).positions)
        with pytest.raises(ValueError, match="other settings"):
            generate_resampled_flow_data(small_model_file, copy, pdb, n_samples=30, seed=4,
                                         chunk_size=10, progress=False)


def test_wrong_topology_is_refused(small_model_file, tmp_path) -> None:
    from flowff.energy.signature import TopologyMismatchError

    pdb = tmp_path / "water.pdb"
    atom = "HETATM    1  O   HOH A   1       0.000   0.000   0.000  1.00  0.00           O"
    pdb.write_text(atom + "\nEND\n")
    with pytest.raises(TopologyMismatchError, match="wrong atom count"):
        generate_resampled_flow_data(small_model_file, tmp_path / "o", pdb, n_samples=4,
                                     progress=False)


def test_a_model_fine_tunes_on_its_resampled_frames(resampled, small_model_file,
                                                    tmp_path) -> None:
    import torch

    from flowff.energy.builder import load_energy_module
    from flowff.training.config import TrainConfig
    from flowff.training.trainer import Trainer

    out, _ = resampled
    start = load_energy_module(small_model_file)
    cfg = TrainConfig(data_dir=str(out), out_dir=str(tmp_path / "run"),
                      model={"num_components": 2, "hidden": [16, 16],
                             "torsion_coupling_pairs": 1},
                      init_from=str(small_model_file), batch_size=8, max_steps=3,
                      block_ps=5.0, val_frames=10, dtype="float64", lr=1e-3)
    trainer = Trainer(cfg, progress=False)  # 30 frames 1 ps apart: six 5-ps blocks
    assert trainer.split_sizes["train"] > 0 and trainer.split_sizes["val"] > 0
    for p, q in zip(trainer.model.parameters(), start.parameters(), strict=True):
        torch.testing.assert_close(p, q)  # fine-tuning starts at the sampled model
    path = trainer.train()
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["final"] and np.isfinite(record["val_nll"]) and path.exists()
