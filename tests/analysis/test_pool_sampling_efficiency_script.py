"""scripts/pool_sampling_efficiency.py: pooled Kish ESS of one model's evaluation reports."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flowff.analysis.metrics import kish_ess, sample_metrics


def _report(seed: int, log_w: np.ndarray, digest: str | None = "abc") -> dict:
    n = log_w.size
    flow = sample_metrics(np.zeros(n), np.zeros((n, 1, 3)), np.zeros(n), np.zeros((n, 1, 3)),
                          -log_w, np.zeros((n, 1, 3)))
    report = {"seed": seed, "temperature_K": 300.0, "flow_samples": flow}
    if digest is not None:
        report["model"] = {"path": "model.pt", "sha256_16": digest}
    return report


def test_pools_reports_and_refuses_mixtures(load_script, tmp_path, capsys) -> None:
    script = load_script("pool_sampling_efficiency")
    rng = np.random.default_rng(3)
    weights = [rng.normal(0.0, s, 200) for s in (0.3, 2.0)]
    paths = []
    for seed, lw in enumerate(weights, start=1):
        paths.append(tmp_path / f"e{seed}.json")
        paths[-1].write_text(json.dumps(_report(seed, lw)))
    assert script.main([*map(str, paths), "--json", str(tmp_path / "pooled.json")]) == 0
    pooled = json.loads((tmp_path / "pooled.json").read_text())
    expected = kish_ess(np.concatenate(weights)) / 400
    assert pooled["pooled_kish_efficiency"] == pytest.approx(expected, rel=1e-10)
    assert pooled["n_samples"] == 400 and pooled["model_sha256_16"] == "abc"
    assert [row["seed"] for row in pooled["reports"]] == [1, 2]
    assert f"{100 * expected:5.1f} %" in capsys.readouterr().out

    with pytest.raises(ValueError, match="different model files"):
        script.pool_reports([_report(1, weights[0]), _report(2, weights[1], digest="other")])
    with pytest.raises(ValueError, match="repeated sampling seed"):
        script.pool_reports([_report(1, weights[0]), _report(1, weights[1])])
    hot = _report(2, weights[1])
    hot["temperature_K"] = 310.0
    with pytest.raises(ValueError, match="different temperatures"):
        script.pool_reports([_report(1, weights[0]), hot])
    # reports written before the model record existed still pool
    old = script.pool_reports([_report(1, weights[0], None), _report(2, weights[1], None)])
    assert old["pooled_kish_efficiency"] == pytest.approx(expected, rel=1e-10)
