"""Importance weights by internal coordinate (flowff.analysis.importance)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowff.analysis.importance import (
    efficiency_if_marginal_matched,
    ic_column_labels,
    importance_by_column,
    importance_by_internal_coordinate,
)
from flowff.analysis.metrics import kish_efficiency
from flowff.ic.layer import InternalCoordinates
from flowff.ic.zmatrix import ZMatrix


def test_weights_along_one_column_are_found_and_corrected() -> None:
    rng = np.random.default_rng(0)
    h = rng.uniform(size=(20_000, 3))
    lw = 2.0 * np.sin(2.0 * np.pi * h[:, 1])  # Kish efficiency I0(2)^2 / I0(4) = 0.46
    labels = [{"type": "bond"}, {"type": "angle"}, {"type": "torsion"}]
    report = importance_by_column(h, lw, labels, bins=40, top=3)
    assert report["kish_efficiency"] == pytest.approx(0.46, abs=0.02)
    first, *others = report["columns"]
    assert (first["column"], first["type"]) == (1, "angle")
    assert first["efficiency_if_matched"] > 0.99
    assert first["gain"] == pytest.approx(first["efficiency_if_matched"] - 0.46, abs=0.02)
    assert all(abs(c["gain"]) < 0.01 for c in others)  # no dependence, no gain
    assert len(importance_by_column(h, lw, labels, bins=40, top=1)["columns"]) == 1


def test_wasted_samples_stay_wasted_and_bins_without_weight_are_left_alone() -> None:
    values = np.arange(10.0)
    # five weighted samples; the first bin (values 0, 1) has no weight at all
    lw = np.array([-np.inf, -np.inf, -np.inf, -np.inf, 0.5, 0.0, 2.0, -np.inf, 0.0, 1.0])
    eff = efficiency_if_marginal_matched(values, lw, bins=5)
    assert np.isfinite(eff) and 0.0 < eff <= 1.0
    # one bin per sample: every weighted sample gets the mean weight, the wasted stay at zero
    assert efficiency_if_marginal_matched(values, lw, bins=10) == pytest.approx(5 / 10)
    assert kish_efficiency(lw) < 5 / 10


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        efficiency_if_marginal_matched(np.zeros(5), np.zeros(4))
    with pytest.raises(ValueError, match="bins"):
        efficiency_if_marginal_matched(np.zeros(5), np.zeros(5), bins=6)
    with pytest.raises(ValueError, match="no sample has a positive weight"):
        efficiency_if_marginal_matched(np.zeros(5), np.full(5, -np.inf), bins=2)
    with pytest.raises(ValueError, match="one label per column"):
        importance_by_column(np.zeros((5, 2)), np.zeros(5), [{}], bins=2)


def test_internal_coordinates_of_alanine_dipeptide(ala_structure) -> None:
    _, positions = ala_structure
    ic = InternalCoordinates(ZMatrix.alanine_dipeptide()).to(torch.float64)
    generator = torch.Generator().manual_seed(1)
    x = torch.tensor(positions, dtype=torch.float64)[None] + 0.02 * torch.randn(
        2000, 22, 3, generator=generator, dtype=torch.float64)
    h, _ = ic(x)
    labels = ic_column_labels(ic)
    assert len(labels) == ic.dim
    assert [lab["type"] for lab in labels].count("bond") == len(ic.bond_atoms)
    assert labels[ic.phi_column] == {"type": "torsion",
                                     "atoms": ic.torsion_atoms[ic.phi_column
                                                               - ic.torsion_slice.start].tolist()}
    lw = 3.0 * h[:, ic.phi_column].numpy()  # weights that depend on phi alone
    report = importance_by_internal_coordinate(ic.float(), x.float().numpy(), lw, bins=20, top=5)
    assert report["columns"][0]["column"] == ic.phi_column
    assert report["columns"][0]["efficiency_if_matched"] > 0.99
    assert report["n_samples"] == 2000
