"""scripts/bench_md.py runs Amber on the Reference platform and writes its JSON table."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_md.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_md", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_bench_amber_reference_writes_json(tmp_path: Path, capsys) -> None:
    bench = load_script()
    out = tmp_path / "bench.json"
    assert bench.main(["--platforms", "Reference", "--seconds", "0.05", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["potential"], r["platform"]) for r in rows] == [("amber", "Reference")]
    assert rows[0]["steps_per_s"] > 10 and rows[0]["ratio_to_amber"] == 1.0
    assert "mol-steps/s" in capsys.readouterr().out


def test_bench_rejects_unknown_platform(capsys) -> None:
    assert load_script().main(["--platforms", "Warp"]) == 2
    assert "available" in capsys.readouterr().err
