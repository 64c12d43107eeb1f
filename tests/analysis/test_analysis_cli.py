"""``flowff evaluate``: split from the model metadata, a real model file, the summary table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

import flowff.analysis.evaluate as evaluate_module
import flowff.cli.evaluate as cli
from flowff.analysis.evaluate import REPORT_FILE, SplitSpec
from flowff.data.reference import load_reference_data, split_by_time_blocks
from flowff.energy.model_file import file_digest, save_model


def test_split_from_metadata_variants() -> None:
    spec, source, sizes = cli.split_from_metadata({})
    assert spec == SplitSpec() and "defaults" in source and sizes is None
    meta = {"training": {"split": [0.7, 0.2, 0.1], "block_ps": 500.0, "seed": 4,
                         "max_frames_per_replica": 300}}
    spec, source, sizes = cli.split_from_metadata(meta)
    assert spec == SplitSpec((0.7, 0.2, 0.1), 500.0, 4, 300) and sizes is None
    # The trainer records split sizes under "split": fractions fall back to the defaults.
    meta = {"training": {"split": {"train": 8, "val": 1, "test": 1}, "block_ps": 2.0,
                         "seed": 3}}
    spec, source, sizes = cli.split_from_metadata(meta)
    assert spec == SplitSpec((0.8, 0.1, 0.1), 2.0, 3, None)
    assert sizes == {"train": 8, "val": 1, "test": 1} and "not recorded" in source
    meta["training"]["split_fractions"] = [0.5, 0.25, 0.25]
    assert cli.split_from_metadata(meta)[0].fractions == (0.5, 0.25, 0.25)
    # runs since split_seed existed: that seed, not the training seed, chose the blocks
    meta["training"]["split_seed"] = 0
    assert cli.split_from_metadata(meta)[0].seed == 0


def test_register_parses_arguments() -> None:
    parser = argparse.ArgumentParser(prog="flowff")
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["evaluate", "--model", "m.pt", "--data", "d", "--out", "o"])
    assert (args.samples, args.frames, args.seed, args.func) == (10_000, None, 0, cli.run)
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "--model", "m.pt", "--data", "d", "--out", "o",
                           "--samples", "0"])


def test_cli_end_to_end(tiny_data: Path, stand_in, sampler, tmp_path: Path, monkeypatch,
                        capsys) -> None:
    data = load_reference_data(tiny_data)
    train, val, test = split_by_time_blocks(data, (0.6, 0.2, 0.2), 0.02, 1)
    training = {"split": [0.6, 0.2, 0.2], "block_ps": 0.02, "seed": 1,
                "max_frames_per_replica": None}
    model_path = save_model(stand_in, tmp_path / "model.pt", {"training": training})
    monkeypatch.setattr(cli, "load_model", lambda path: stand_in)
    monkeypatch.setattr(evaluate_module, "flow_sampler", sampler)
    out = tmp_path / "eval"
    status = cli.main(["evaluate", "--model", str(model_path), "--data", str(tiny_data),
                       "--out", str(out), "--samples", "12", "--frames", "1", "--quiet",
                       "--save-samples"])
    assert status == 0
    assert np.load(out / "flow_samples.npz")["log_weight"].shape == (12,)
    printed = capsys.readouterr().out
    assert "test NLL (kT)" in printed and "Kish ESS / N" in printed
    report = json.loads((out / REPORT_FILE).read_text())
    assert report["model"]["path"] == str(model_path)
    assert report["model"]["sha256_16"] == file_digest(model_path)
    assert len(report["model"]["sha256_16"]) == 16
    # a flow with internal coordinates also gets the error split, worst coordinates first
    columns = [{"type": "torsions", "atoms": [7, 6, 4, 0], "cartesian_rmse": 15.6},
               {"type": "bonds", "atoms": [1, 4], "cartesian_rmse": 2.0},
               {"type": "angles", "atoms": [7, 6, 4], "cartesian_rmse": 12.1}]
    report["md_test_frames"]["force_error_by_ic_type"] = {
        "torsions": {"cartesian_rmse": 15.6, "relative": 0.4}, "columns": columns}
    table = cli.summary_table(report)
    assert "force RMSE from torsions (kT/nm; relative)  15.6; 0.400" in table
    assert "torsion 7-6-4-0: 15.6, angle 7-6-4: 12.1, bond 1-4: 2" in table
    split = report["data"]["split"]
    assert split["block_ps"] == 0.02 and split["seed"] == 1
    assert split["sizes"] == {"train": len(train), "val": len(val), "test": len(test)}
    assert report["md_test_frames"]["n_frames"] == 1
    assert report["flow_samples"]["n_samples"] == 12
    assert "basin beta_C7eq" in printed
    share = report["ramachandran"]["importance_by_basin"]["beta_C7eq"]["inverse_ess_share"]
    assert "  share of N / ESS " in printed and f"{share:.2f}" in printed
    by_phi = report["ramachandran"]["importance_by_phi"]
    worst = max(by_phi, key=lambda r: r["inverse_ess_share"] / r["samples"])
    low, high = worst["phi_deg"]
    assert f"costliest phi bins: N/ESS share (samples)  {low:.0f}..{high:.0f} deg: " in printed


def test_later_frame_indices_per_replica() -> None:
    import numpy as np

    time_ps = np.array([5.0, 6.0, 7.0, 8.0, 100.0, 101.0, 102.0])
    replica = np.array([0, 0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(cli.later_frame_indices(time_ps, replica, 2.0), [2, 3, 6])
    assert cli.later_frame_indices(time_ps, replica, 50.0).size == 0


def test_cli_on_later_frames(tiny_data: Path, stand_in, sampler, tmp_path: Path, monkeypatch,
                             capsys) -> None:
    import numpy as np

    data = load_reference_data(tiny_data)
    model_path = save_model(stand_in, tmp_path / "model.pt", {"training": {}})
    monkeypatch.setattr(cli, "load_model", lambda path: stand_in)
    monkeypatch.setattr(evaluate_module, "flow_sampler", sampler)
    after = float(np.median(data.time_ps - data.time_ps.min()))
    expected = cli.later_frame_indices(data.time_ps, data.replica, after)
    assert 0 < expected.size < len(data)
    out = tmp_path / "eval"
    status = cli.main(["evaluate", "--model", str(model_path), "--data", str(tiny_data),
                       "--out", str(out), "--samples", "12", "--quiet",
                       "--test-after-ps", str(after)])
    assert status == 0
    report = json.loads((out / REPORT_FILE).read_text())
    assert report["md_test_frames"]["n_frames"] == expected.size
    assert "at least" in report["data"]["split"]["source"]
    assert "test NLL (kT)" in capsys.readouterr().out
    status = cli.main(["evaluate", "--model", str(model_path), "--data", str(tiny_data),
                       "--out", str(out), "--quiet", "--test-after-ps", "1e9"])
    assert status == 2 and "no frames" in capsys.readouterr().err
