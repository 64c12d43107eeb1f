"""scripts/ic_energy_profiles.py: energy rise and bond curvature, force field vs a model."""

from __future__ import annotations

import json


def test_profiles_and_bond_curvature(tiny_reference_data, small_model_file, tmp_path,
                                     load_script) -> None:
    script = load_script("ic_energy_profiles")
    script.BOND_CURVATURE_STEP_NM = 5e-3  # a coarse scan keeps the test short
    out = tmp_path / "profiles.json"
    script.main(["--data", str(tiny_reference_data), "--model", f"small={small_model_file}",
                 "--frames", "2", "--curvature-frames", "1", "--json", str(out),
                 "--png", str(tmp_path / "profiles.png")])
    report = json.loads(out.read_text())
    assert (tmp_path / "profiles.png").stat().st_size > 0
    rise = report["bonds"]["force field"]["median_over_columns"]
    assert rise[-1] > 500.0  # +0.15 nm along a harmonic Amber bond
    curvature = report["bond_curvature"]
    assert len(curvature["small"]["per_bond_max"]) == 21
    # Amber's bonds: 2 k / kT between 1e5 (C-H) and 4e5 kT/nm^2, harmonic (exact differences)
    assert 5e4 < curvature["force field"]["median_over_bonds"] < 5e5
    assert curvature["force field"]["max_over_bonds"] < 1e6
