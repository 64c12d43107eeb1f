"""scripts/bench_energy.py times FlowEnergy variants and writes its JSON table."""

from __future__ import annotations

import json
from pathlib import Path


def test_bench_writes_rows_with_consistent_forces(load_script, tmp_path: Path, capsys) -> None:
    out = tmp_path / "energy.json"
    status = load_script("bench_energy").main([
        "--replicas", "2", "--dtypes", "float64", "--variants", "eager,md-script",
        "--warmup", "1", "--repeats", "3", "--max-seconds", "0.1", "--json", str(out),
    ])
    assert status == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["variant"], r["replicas"]) for r in rows] == [("eager", 2), ("md-script", 2)]
    assert all(r["calls"] >= 3 and r["cpu_median_ms"] > 0 for r in rows)
    assert rows[0]["ratio_to_first"] == 1.0
    assert rows[1]["max_force_deviation"] < 1e-8  # analytic forces equal autograd's
    assert "ms/replica" in capsys.readouterr().out


def test_bench_rejects_unknown_choices(load_script, capsys) -> None:
    bench = load_script("bench_energy")
    assert bench.main(["--variants", "turbo"]) == 2
    assert bench.main(["--replicas", "0"]) == 2
    assert "unknown" in capsys.readouterr().err
