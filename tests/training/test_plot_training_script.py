"""scripts/plot_training.py: logs in order with continuing steps, a PNG."""

from __future__ import annotations

import json


def test_logs_continue_and_plot(load_script, tmp_path) -> None:
    script = load_script("plot_training")
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text("\n".join(json.dumps(r) for r in [
        {"step": 1, "nll": -1.0, "fm": 10.0}, {"step": 2, "nll": -2.0, "fm": 9.0,
                                               "val_nll": -2.1, "val_force_rmse": 3.0},
        {"step": 2, "final": True, "val_nll": -2.2}]))
    second.write_text("\n".join(json.dumps(r) for r in [
        {"step": 1, "nll": -3.0, "fm": 8.0, "fm_tail": 0.3},
        {"step": 2, "nll": -3.5, "fm": 7.0, "fm_tail": 0.2, "val_nll": -3.6,
         "val_force_rmse": 2.5}]))
    records = script.read_log([first, second])
    assert [r["step"] for r in records] == [1, 2, 3, 4]  # finals skipped, steps continue
    out = tmp_path / "curve.png"
    assert script.main([str(first), str(second), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
