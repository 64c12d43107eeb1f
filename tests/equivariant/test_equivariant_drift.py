"""`flowff equivariant drift`: an LJ-13 flow potential beside LJ-13 itself in OpenMM."""

from __future__ import annotations

import json

import pytest

from flowff.cli import main


@pytest.mark.slow
def test_equivariant_drift_runs_flow_beside_lj13(tmp_path) -> None:
    data, model, out = tmp_path / "lj.npz", tmp_path / "lj.pt", tmp_path / "drift.json"
    assert main(["equivariant", "mcmc", "--system", "lj13", "--samples", "2", "--chains", "2",
                 "--out", str(data)]) == 0
    assert main(["equivariant", "train", "--system", "lj13", "--data", str(data), "--out",
                 str(model), "--iterations", "1", "--batch-size", "2"]) == 0
    assert main(["equivariant", "drift", "--model", str(model), "--data", str(data),
                 "--starts", "1", "--equilibrate-ps", "0.005", "--nve-ps", "0.01",
                 "--json", str(out), "--no-progress"]) == 0
    report = json.loads(out.read_text())
    assert list(report["potentials"]) == ["lj13", "flow"]
    for result in report["potentials"].values():
        assert result["aggregate"]["n_blowups"] == 0
        assert result["aggregate"]["std_per_dof_mean"] >= 0.0
    with pytest.raises(ValueError, match="LJ-13 kernel-flow model"):
        dw = tmp_path / "dw.pt"
        import torch

        torch.save({"system": "dw4", "model": "eq", "state": {}}, dw)
        main(["equivariant", "drift", "--model", str(dw), "--data", str(data)])
