"""scripts/long_run_equilibrium.py: batched Langevin replicas, resume, bond and basin report."""

from __future__ import annotations

import json

import numpy as np


def test_long_run_resumes_and_reports(tiny_reference_data, small_model_file, tmp_path,
                                      load_script) -> None:
    script = load_script("long_run_equilibrium")
    out = tmp_path / "long"
    common = ["--model", str(small_model_file), "--data", str(tiny_reference_data),
              "--out", str(out), "--replicas", "2", "--save-ps", "0.002", "--chunk-ps", "0.004",
              "--equilibrate-ps", "0.002", "--seed", "3"]
    script.main([*common, "--ps", "0.002"])  # one chunk of 2 frames, the first discarded
    assert sorted(p.name for p in out.glob("chunk_*.npz")) == ["chunk_0000.npz"]
    first = np.load(out / "chunk_0000.npz")["positions"]
    script.main([*common, "--ps", "0.006"])  # resumed: one more chunk, the first untouched
    assert len(list(out.glob("chunk_*.npz"))) == 2
    np.testing.assert_array_equal(np.load(out / "chunk_0000.npz")["positions"], first)
    report = json.loads((out / "long_run.json").read_text())
    # 4 frames of 2 replicas, the first discarded: 3 x 0.002 ps kept per replica, x 2 replicas
    assert report["ps_per_replica_kept"] == 0.006
    assert abs(report["total_ns_kept"] - 1.2e-5) < 1e-12
    assert report["ramachandran"]["n_flow"] == 6
    stderr = report["ramachandran"]["basins_flow_replica_stderr_pp"]
    assert set(stderr) == set(report["ramachandran"]["basins_flow_percent"])
    assert all(v >= 0.0 for v in stderr.values())
    bonds = report["bond_integrity"]
    assert bonds["frames_broken_fraction"] == 0.0 and bonds["replicas_ever_broken"] == 0
    assert 0.09 < bonds["longest_bond_nm"] < 0.2
    assert 0.8 < bonds["max_compression_vs_reference_min"] <= bonds["max_stretch_vs_reference_max"]
    assert bonds["max_stretch_vs_reference_max"] < 1.25
    assert (out / "ramachandran.png").stat().st_size > 0
