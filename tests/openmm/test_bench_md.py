"""scripts/bench_md.py runs Amber on the Reference platform and writes its JSON table."""

from __future__ import annotations

import json
from pathlib import Path


def test_bench_amber_reference_writes_json(load_script, tmp_path: Path, capsys) -> None:
    bench = load_script("bench_md")
    out = tmp_path / "bench.json"
    assert bench.main(["--platforms", "Reference", "--seconds", "0.05", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["potential"], r["platform"]) for r in rows] == [("amber", "Reference")]
    assert rows[0]["steps_per_s"] > 10 and rows[0]["ratio_to_amber"] == 1.0
    assert "mol-steps/s" in capsys.readouterr().out


def test_bench_rejects_unknown_platform(load_script, capsys) -> None:
    assert load_script("bench_md").main(["--platforms", "Warp"]) == 2
    assert "available" in capsys.readouterr().err
