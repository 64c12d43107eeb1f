"""Drift statistics, the drift protocol, comparisons, JSON and PNG output."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from flowff.openmm.classical import AmberPotential, load_alanine_dipeptide
from flowff.openmm.drift import (
    compare_drift,
    drift_statistics,
    energy_degrees_of_freedom,
    measure_drift,
    start_seed,
)
from flowff.openmm.drift_plot import plot_drift

SHORT = {"equilibrate_ps": 0.05, "nve_ps": 0.1, "progress": False}


@pytest.fixture(scope="module")
def starts() -> list[np.ndarray]:
    """Two different start structures (nm): the shipped one and a slightly displaced copy."""
    _, positions = load_alanine_dipeptide()
    shifted = positions + np.random.default_rng(0).normal(0.0, 0.002, size=positions.shape)
    return [positions, shifted]


def test_statistics_of_a_sinusoid_over_whole_periods() -> None:
    n, periods, amplitude, dof = 1000, 7, 0.6, 60
    time_ps = np.arange(n) * (5.0 / n)
    total = -12.0 + amplitude * np.sin(2 * np.pi * periods * np.arange(n) / n)
    stats = drift_statistics(time_ps, total, dof)
    assert stats["std_per_dof"] == pytest.approx(amplitude / math.sqrt(2) / dof, rel=1e-12)
    assert stats["max_excursion_kjmol"] == pytest.approx(amplitude, rel=1e-4)


def test_statistics_of_a_linear_drift() -> None:
    time_ps = np.linspace(0.0, 200.0, 2001)
    total = 3.0 + 0.012 * time_ps  # kJ/mol, 0.012 kJ/mol/ps = 12 kJ/mol/ns
    stats = drift_statistics(time_ps, total, 60)
    assert stats["slope_per_ns_per_dof"] == pytest.approx(12.0 / 60, rel=1e-9)
    assert stats["max_excursion_kjmol"] == pytest.approx(0.012 * 200.0, rel=1e-12)
    assert stats["std_per_dof"] == pytest.approx(np.std(total) / 60, rel=1e-12)


def test_statistics_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="equal length >= 2"):
        drift_statistics(np.zeros(1), np.zeros(1), 60)
    with pytest.raises(ValueError, match="degrees_of_freedom must be positive"):
        drift_statistics(np.arange(3.0), np.zeros(3), 0)


def test_degrees_of_freedom_follow_the_paper(ala) -> None:
    _, system, _, _ = ala
    assert energy_degrees_of_freedom(system) == 60


def test_start_seeds_are_shared_across_potentials_and_distinct_across_starts() -> None:
    assert start_seed(3, 0) == start_seed(3, 0)
    assert len({start_seed(3, i) for i in range(10)}) == 10
    assert start_seed(3, 0) != start_seed(4, 0)


def test_measure_drift_reports_finite_statistics(ala, starts) -> None:
    topology = ala[0]
    result = measure_drift(AmberPotential(), topology, starts, name="amber", seed=1, **SHORT)
    assert result.degrees_of_freedom == 60 and result.n_blowups == 0
    summary = result.to_dict()
    assert set(summary) == {"name", "degrees_of_freedom", "protocol", "aggregate", "starts"}
    assert set(summary["aggregate"]) == {
        "n_starts", "n_blowups", "std_per_dof_mean", "std_per_dof_median", "std_per_dof_max",
        "slope_per_ns_per_dof_mean", "abs_slope_per_ns_per_dof_mean", "max_excursion_kjmol",
    }
    for start in summary["starts"]:
        for key in ("std_per_dof", "slope_per_ns_per_dof", "max_excursion_kjmol"):
            assert math.isfinite(start[key])
        assert start["nve_steps_completed"] == 100 and not start["blew_up"]
        # Equilibrated at 300 K; 100 fs is short, so allow wide thermal fluctuations.
        assert 100.0 < start["mean_nve_temperature_K"] < 500.0
    # Amber at 1 fs conserves energy; these bounds fail for a 2 fs step or a thermostat.
    assert 0.0 < summary["aggregate"]["std_per_dof_max"] < 0.013
    assert summary["aggregate"]["std_per_dof_mean"] == pytest.approx(
        np.mean([s.std_per_dof for s in result.starts])
    )
    for start in result.starts:
        assert start.time_ps.shape == start.total_kjmol.shape == (101,)


def test_measure_drift_accepts_a_system_and_matches_the_potential(ala, starts) -> None:
    topology, system, _, _ = ala
    from_potential = measure_drift(AmberPotential(), topology, starts[:1], seed=2, **SHORT)
    from_system = measure_drift(system, topology, starts[:1], seed=2, **SHORT)
    np.testing.assert_allclose(
        from_system.starts[0].total_kjmol, from_potential.starts[0].total_kjmol, rtol=1e-9
    )


def test_compare_drift_same_protocol_gives_ratio_one_and_prints_table(ala, starts, capsys) -> None:
    topology = ala[0]
    comparison = compare_drift(
        {"amber": AmberPotential(), "amber_again": AmberPotential()}, topology, starts,
        seed=5, **SHORT,
    )
    assert comparison.ratios() == {"amber": 1.0, "amber_again": 1.0}
    table = capsys.readouterr().out
    assert "amber_again" in table and "ratio" in table and "0/2" in table


def test_blowups_are_counted_and_written_as_null(ala, starts, exploding_amber, tmp_path) -> None:
    topology = ala[0]
    comparison = compare_drift(
        {"amber": AmberPotential(), "broken": exploding_amber}, topology, starts,
        print_table=False, **SHORT,
    )
    broken = comparison.results["broken"]
    assert broken.n_blowups == 2
    assert all(start.blew_up and start.blowup_phase for start in broken.starts)
    assert broken.aggregate()["std_per_dof_mean"] is None
    assert comparison.ratios()["broken"] is None
    assert "n/a" in comparison.table()
    path = tmp_path / "drift.json"
    comparison.write_json(path)
    data = json.loads(path.read_text())
    assert data["potentials"]["broken"]["aggregate"]["n_blowups"] == 2
    assert data["potentials"]["broken"]["starts"][0]["std_per_dof"] is None
    assert data["ratios_std_per_dof_to_reference"]["amber"] == 1.0
    assert data["dof_convention"].startswith("3 * n_atoms")
    png = tmp_path / "plots" / "drift.png"
    plot_drift(comparison, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("**/*.tmp"))
    # blow-ups add a second row (log |E - E0|): the figure is taller than without them
    calm = tmp_path / "plots" / "calm.png"
    plot_drift(dataclasses.replace(comparison, results={"amber": comparison.results["amber"]}),
               calm)
    height = lambda p: int.from_bytes(p.read_bytes()[20:24], "big")  # noqa: E731 (PNG IHDR)
    assert height(png) > 1.8 * height(calm)


def test_drift_input_errors(ala, starts) -> None:
    topology = ala[0]
    with pytest.raises(ValueError, match="start_positions is empty"):
        measure_drift(AmberPotential(), topology, [], **SHORT)
    with pytest.raises(ValueError, match="nve_ps"):
        measure_drift(AmberPotential(), topology, starts, equilibrate_ps=0.0, nve_ps=0.001)
    with pytest.raises(TypeError, match="createSystem"):
        measure_drift(object(), topology, starts, **SHORT)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reference potential 'amber'"):
        compare_drift({"x": AmberPotential()}, topology, starts, **SHORT)
