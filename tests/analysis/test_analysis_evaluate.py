"""evaluate_model end to end with the Gaussian stand-in flow on a tiny reference MD folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from flowff.analysis.evaluate import REPORT_FILE, SAMPLES_FILE, SplitSpec, evaluate_model
from flowff.data.reference import load_reference_data

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _numbers(obj, path: str = ""):
    """Every (path, value) leaf of a JSON object."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{path}[{i}]")
    else:
        yield path, obj


def test_evaluate_model_end_to_end(tiny_data: Path, stand_in, sampler, tmp_path: Path) -> None:
    data = load_reference_data(tiny_data)
    assert len(data) == 10
    test = np.arange(6, 10)
    broken_index = 3

    def sampler_with_one_broken_sample(model, n, generator):
        x, log_q = sampler(model, n, generator)
        if sampler_with_one_broken_sample.first:
            x[broken_index, 0, 0] = float("nan")
            sampler_with_one_broken_sample.first = False
        return x, log_q

    sampler_with_one_broken_sample.first = True
    report = evaluate_model(stand_in, data, tmp_path, test_indices=test, n_samples=40,
                            batch_size=16, seed=3, sampler=sampler_with_one_broken_sample,
                            progress=False)
    on_disk = json.loads((tmp_path / REPORT_FILE).read_text())
    assert on_disk == report
    leaves = dict(_numbers(on_disk))
    assert None not in leaves.values(), [k for k, v in leaves.items() if v is None]
    for key, value in leaves.items():
        if isinstance(value, float):
            assert math.isfinite(value), key
    for name in ("ramachandran.png", "energies.png", "forces.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_SIGNATURE

    md = report["md_test_frames"]
    kT = report["kT_kJ_per_mol"]
    assert md["n_frames"] == 4 and md["n_nonfinite"] == 0
    x_test = torch.as_tensor(data.positions[test], dtype=torch.float64)
    assert md["nll_kT"] == pytest.approx(stand_in.reduced_energy(x_test).mean().item(), rel=1e-9)
    flow_f = -(x_test - stand_in.reference).numpy() / stand_in.sigma**2
    fme = ((flow_f - data.forces[test] / kT) ** 2).sum(-1).mean()
    assert md["fme_kT2_per_nm2"] == pytest.approx(fme, rel=1e-6)
    # the weights at the MD frames use the flow samples' log Z
    at_md = md["importance_at_md_frames"]
    u_f_test = stand_in.reduced_energy(x_test).detach().numpy()
    lw_md = -data.potential_energy[test] / kT + u_f_test
    log_z = report["flow_samples"]["log_z_estimate"]
    assert at_md["n_frames"] == 4
    log_mean = np.log(np.mean(np.exp(lw_md - lw_md.max()))) + lw_md.max() - log_z
    assert at_md["log_mean_weight_over_z"] == pytest.approx(log_mean, rel=1e-9, abs=1e-9)
    assert at_md["kish_efficiency_from_md_frames"] == pytest.approx(
        np.exp(np.clip(-log_mean, -700, 700)), rel=1e-9)

    s = report["flow_samples"]
    assert s["n_samples"] == 40
    assert s["n_nonfinite_positions"] == 1 and s["n_broken"] == 1 and s["n_finite"] == 39
    # Exact sampler: log q = -u_f at every sample.
    assert s["log_q_consistency_max_abs_kT"] < 1e-9
    assert 0.0 < s["kish_efficiency"] <= 39 / 40
    assert report["ramachandran"]["n_flow"] == 39 and report["ramachandran"]["n_md"] == 4
    pops = report["ramachandran"]["basins_flow_percent"]
    assert sum(pops.values()) == pytest.approx(100.0)
    by_basin = report["ramachandran"]["importance_by_basin"]
    assert sum(b["reweighted_percent"] for b in by_basin.values()) == pytest.approx(100.0)
    assert {k: b["samples_percent"] for k, b in by_basin.items()} == pytest.approx(pops)
    assert sum(b["inverse_ess_share"] for b in by_basin.values()) == pytest.approx(1.0)
    # N / ESS splits by basin: sum_b W_b^2 / (n_b ESS_b) over basins with samples (N: the 39
    # finite samples the basins count; kish_efficiency divides by all 40)
    parts = [(b["reweighted_percent"] / 100) ** 2
             / (b["samples_percent"] / 100 * b["kish_efficiency_within"])
             for b in by_basin.values() if b["samples_percent"] > 0]
    assert sum(parts) == pytest.approx(39 / 40 / s["kish_efficiency"], rel=1e-9)
    by_phi = report["ramachandran"]["importance_by_phi"]
    assert sum(r["samples"] for r in by_phi) == 39
    assert sum(r["weight_share"] for r in by_phi) == pytest.approx(1.0)
    assert sum(r["inverse_ess_share"] for r in by_phi) == pytest.approx(1.0)
    assert report["data"]["n_test_frames_used"] == 4
    assert report["data"]["forcefield"] == ["amber99sbildn.xml", "amber99_obc.xml"]


def test_saved_samples_reproduce_the_reported_weights(tiny_data: Path, stand_in, sampler,
                                                     tmp_path: Path) -> None:
    from flowff.analysis.metrics import kish_ess, pareto_khat

    data = load_reference_data(tiny_data)

    def one_broken(model, n, generator):
        x, log_q = sampler(model, n, generator)
        x[2, 1, 0] = float("nan")
        return x, log_q

    report = evaluate_model(stand_in, data, tmp_path, test_indices=np.arange(6, 10),
                            n_samples=60, batch_size=60, seed=5, sampler=one_broken,
                            progress=False, make_plots=False, save_samples=True)
    assert report["samples_file"] == SAMPLES_FILE
    saved = np.load(tmp_path / SAMPLES_FILE)
    assert saved["positions_nm"].shape == (60, data.positions.shape[1], 3)
    assert saved["positions_nm"].dtype == np.float32 and int(saved["seed"]) == 5
    for key in ("log_q", "u_target_kT", "u_flow_kT", "log_weight", "phi_rad", "psi_rad"):
        assert saved[key].shape == (60,), key
    lw = saved["log_weight"]
    assert lw[2] == -np.inf and np.isnan(saved["phi_rad"][2])
    np.testing.assert_allclose(lw[3:], -saved["u_target_kT"][3:] - saved["log_q"][3:])
    s = report["flow_samples"]
    assert kish_ess(lw) == pytest.approx(s["ess"], rel=1e-12)
    assert pareto_khat(lw) == pytest.approx(s["importance_pareto_khat"], rel=1e-12)
    phi_flow = saved["phi_rad"][np.isfinite(saved["phi_rad"])]
    assert phi_flow.size == report["ramachandran"]["n_flow"] == 59
    # without the flag nothing extra is written
    evaluate_model(stand_in, data, tmp_path / "plain", test_indices=np.arange(6, 10),
                   n_samples=8, sampler=sampler, progress=False, make_plots=False)
    assert not (tmp_path / "plain" / SAMPLES_FILE).exists()


def test_evaluate_model_from_folder_with_split(tiny_data: Path, stand_in, sampler,
                                              tmp_path: Path) -> None:
    # 10 frames over 0.09 ps in blocks of 0.02 ps: about 5 blocks, one of them the test block.
    spec = SplitSpec(fractions=(0.6, 0.2, 0.2), block_ps=0.02, seed=1)
    report = evaluate_model(stand_in, tiny_data, tmp_path, split=spec, n_samples=8,
                            max_test_frames=1, seed=0, sampler=sampler, make_plots=False,
                            progress=False)
    assert report["figures"] == {} and not list(tmp_path.glob("*.png"))
    split = report["data"]["split"]
    assert split["sizes"]["test"] >= 1 and sum(split["sizes"].values()) == 10
    assert report["data"]["n_test_frames_available"] == split["sizes"]["test"]
    assert report["data"]["n_test_frames_used"] == 1
    with pytest.raises(ValueError, match="empty"):
        evaluate_model(stand_in, tiny_data, tmp_path, n_samples=8, sampler=sampler,
                       progress=False)


def test_evaluate_model_rejects_bad_input(tiny_data: Path, stand_in, sampler,
                                          tmp_path: Path) -> None:
    data = load_reference_data(tiny_data)
    with pytest.raises(ValueError, match="test_indices"):
        evaluate_model(stand_in, data, tmp_path, sampler=sampler)
    stand_in.temperature_K = 310.0
    with pytest.raises(ValueError, match="temperature"):
        evaluate_model(stand_in, data, tmp_path, test_indices=np.arange(2), sampler=sampler)
    stand_in.temperature_K = 300.0

    def wrong_shape(model, n, generator):
        x, log_q = sampler(model, n, generator)
        return x[:, :5], log_q

    with pytest.raises(ValueError, match="sampler returned shapes"):
        evaluate_model(stand_in, data, tmp_path, test_indices=np.arange(2), n_samples=4,
                       sampler=wrong_shape, progress=False)


def test_report_splits_the_force_error_of_a_flow_energy(tiny_data: Path, small_energy,
                                                       tmp_path: Path) -> None:
    from flowff.cli.evaluate import summary_table

    report = evaluate_model(small_energy, load_reference_data(tiny_data), tmp_path,
                            test_indices=np.arange(6, 10),
                            n_samples=4, batch_size=4, seed=0, make_plots=False,
                            progress=False)
    md = report["md_test_frames"]
    split = md["force_error_by_ic_type"]
    assert split["n_frames"] == 4
    assert split["total_rmse"] == pytest.approx(md["force_rmse_kT_per_nm"], rel=1e-6)
    assert split["unexplained_rmse"] < 1e-3 * split["total_rmse"]
    assert all(split[k]["cartesian_rmse"] > 0 for k in ("bonds", "angles", "torsions"))
    assert "force RMSE from angles" in summary_table(report)


def test_flow_with_internal_coordinates_gets_the_importance_by_coordinate(
        tiny_data: Path, stand_in, sampler, tmp_path: Path) -> None:
    from flowff.cli.evaluate import summary_table
    from flowff.ic.layer import InternalCoordinates
    from flowff.ic.zmatrix import ZMatrix

    stand_in.ic = InternalCoordinates(ZMatrix.alanine_dipeptide()).to(torch.float64)
    report = evaluate_model(stand_in, load_reference_data(tiny_data), tmp_path,
                            test_indices=np.arange(2), n_samples=40, seed=5, sampler=sampler,
                            make_plots=False, progress=False)
    s = report["flow_samples"]
    by_ic = s["importance_by_internal_coordinate"]
    assert by_ic["kish_efficiency"] == pytest.approx(s["kish_efficiency"])
    assert by_ic["n_samples"] == 40 and len(by_ic["columns"]) == 10
    gains = [c["gain"] for c in by_ic["columns"]]
    assert gains == sorted(gains, reverse=True)
    assert all(c["efficiency_if_matched"] == pytest.approx(by_ic["kish_efficiency"] + c["gain"])
               for c in by_ic["columns"])
    labels = {(c["type"], tuple(c["atoms"])) for c in by_ic["columns"]}
    assert len(labels) == 10 and {t for t, _ in labels} <= {"bond", "angle", "torsion"}
    assert "ESS/N if one IC's marginal matched" in summary_table(report)
