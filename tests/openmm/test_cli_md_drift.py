"""``flowff md`` and ``flowff drift`` smoke tests through a parser with just these subcommands."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import pytest

from flowff.cli import drift as drift_cli
from flowff.cli import md as md_cli


def run_cli(argv: list[str]) -> int:
    """Parse ``argv`` with a fresh ``flowff`` parser holding md and drift, and run it."""
    parser = argparse.ArgumentParser(prog="flowff")
    subparsers = parser.add_subparsers()
    md_cli.register(subparsers)
    drift_cli.register(subparsers)
    args = parser.parse_args(argv)
    return int(args.func(args))


@pytest.fixture
def no_shipped_model(monkeypatch):
    """Pretend the package ships no model (as before one was trained)."""
    import flowff.models

    def missing():
        raise FileNotFoundError("the shipped alanine dipeptide model is missing (test)")

    monkeypatch.setattr(flowff.models, "default_model_path", missing)


def test_drift_smoke_runs_amber_alone_without_a_model(tmp_path: Path, capsys,
                                                      no_shipped_model) -> None:
    json_path, png_path = tmp_path / "drift.json", tmp_path / "drift.png"
    status = run_cli([
        "drift", "--starts", "2", "--equilibrate-ps", "0.05", "--nve-ps", "0.1",
        "--start-spacing-ps", "0.05", "--json", str(json_path), "--png", str(png_path),
        "--no-progress",
    ])
    out = capsys.readouterr().out
    assert status == 0
    flow_lines = [line for line in out.splitlines() if "flow potential is not available" in line]
    assert len(flow_lines) == 1 and "running amber alone" in flow_lines[0]
    data = json.loads(json_path.read_text())
    assert list(data["potentials"]) == ["amber"]
    amber = data["potentials"]["amber"]
    assert amber["protocol"]["nve_ps"] == 0.1 and len(amber["starts"]) == 2
    assert amber["aggregate"]["n_blowups"] == 0
    assert 0.0 < amber["aggregate"]["std_per_dof_mean"] < 0.013
    assert png_path.read_bytes()[:4] == b"\x89PNG"


def test_drift_rejects_unknown_potentials_and_missing_model_file(tmp_path: Path, capsys) -> None:
    assert run_cli(["drift", "--potentials", "amber,gaff", "--no-progress"]) == 2
    missing = tmp_path / "missing.pt"
    assert run_cli(["drift", "--model", str(missing), "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_drift_long_and_nve_ps_are_exclusive() -> None:
    with pytest.raises(SystemExit):
        run_cli(["drift", "--long", "--nve-ps", "1"])


def test_md_smoke_nve_writes_csv_and_trajectory(tmp_path: Path, capsys) -> None:
    csv_path, traj_path = tmp_path / "e.csv", tmp_path / "t.dcd"
    status = run_cli([
        "md", "--integrator", "verlet", "--ps", "0.05", "--report-interval", "5",
        "--out-csv", str(csv_path), "--out-traj", str(traj_path), "--no-progress",
    ])
    assert status == 0
    out = capsys.readouterr().out
    assert "removed 1 CMMotionRemover" in out and "kJ/mol/dof" in out
    with open(csv_path) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 11 and rows[-1]["step"] == "50"
    status = run_cli([
        "md", "--start", f"{traj_path}:4", "--steps", "20", "--report-interval", "10",
        "--no-progress",
    ])
    assert status == 0


def test_md_blowup_exits_1_and_bad_platform_exits_2(capsys, no_shipped_model) -> None:
    assert run_cli(["md", "--timestep-fs", "20", "--steps", "500", "--no-progress"]) == 1
    assert "blew up" in capsys.readouterr().err
    assert run_cli(["md", "--steps", "5", "--platform", "Nope", "--no-progress"]) == 2
    assert "available platforms" in capsys.readouterr().err
    assert run_cli(["md", "--potential", "flow", "--steps", "5", "--no-progress"]) == 2


def test_drift_runs_flow_beside_amber(tmp_path: Path, capsys, small_model_file) -> None:
    json_path = tmp_path / "drift.json"
    status = run_cli([
        "drift", "--potentials", "amber,flow", "--model", str(small_model_file), "--starts", "2",
        "--equilibrate-ps", "0.02", "--nve-ps", "0.05", "--start-spacing-ps", "0.05",
        "--timestep-fs", "0.5", "--json", str(json_path), "--no-progress",
    ])
    assert status == 0
    data = json.loads(json_path.read_text())
    assert list(data["potentials"]) == ["amber", "flow"]
    flow = data["potentials"]["flow"]
    assert len(flow["starts"]) == 2 and flow["aggregate"]["n_blowups"] == 0
    assert flow["aggregate"]["std_per_dof_mean"] > 0.0
