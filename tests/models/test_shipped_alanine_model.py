"""The shipped alanine dipeptide model: its energy rises beyond the data (no flat plateaus).

A flow trained on MD frames alone goes flat a few kT above the minimum where the data end (the
first shipped model: H-X-Y angles +5..9 kT from 150 to 175 degrees), and MD walks off onto the
plateau. The shipped model is trained with tail force matching (docs/training.md); this guards
against shipping a model without it.
"""

from __future__ import annotations

import math

import numpy as np
import openmm.app as app
import pytest
import torch

from flowff.energy.builder import load_energy_module
from flowff.models import default_model_path
from flowff.openmm.classical import alanine_dipeptide_pdb_path

#: (hydrogen, centre, neighbour) atom indices of hydrogen bond angles of alanine dipeptide
ANGLES = [(12, 10, 8), (13, 10, 8), (7, 6, 4), (18, 16, 14)]


@pytest.fixture(scope="module")
def model_and_h():
    model = load_energy_module(default_model_path(), mode="eager").double()
    with alanine_dipeptide_pdb_path() as path:
        pdb = app.PDBFile(str(path))
    x = torch.tensor(np.asarray(pdb.getPositions(asNumpy=True)._value),
                     dtype=torch.float64).unsqueeze(0)
    with torch.no_grad():
        h, _ = model.ic(x)
    return model, h


def _angle_column(ic, angle: tuple[int, int, int]) -> int:
    for k, (a, b, c) in enumerate(ic.angle_atoms.tolist()):
        if b == angle[1] and {a, c} == {angle[0], angle[2]}:
            return ic.angle_slice.start + k
    raise AssertionError(f"angle {angle} is not an internal coordinate")


@pytest.mark.parametrize("angle", ANGLES)
def test_energy_stays_high_along_wide_hydrogen_angles(model_and_h, angle) -> None:
    model, h = model_and_h
    ic = model.ic
    column = _angle_column(ic, angle)
    index = column - ic.angle_slice.start
    lo, width = float(ic.angle_lo[index]), float(ic.angle_width[index])
    degrees = np.arange(90, 176, 5)
    energies = []
    with torch.no_grad():
        for deg in degrees:
            scanned = h.clone()
            scanned[0, column] = (math.radians(deg) - lo) / width
            x, _ = ic.inverse(scanned)
            energies.append(float(model.reduced_energy(x)))
    rise = np.asarray(energies) - min(energies)  # kT
    assert np.isfinite(rise).all()
    assert rise[degrees >= 150].min() > 12.0, rise.round(1).tolist()


def _per_bond(model_and_h, measure) -> np.ndarray:
    """``measure(energy_kT, ic, x, column)`` for every bond column of the PDB structure."""
    model, h = model_and_h
    x, _ = model.ic.inverse(h)
    with torch.no_grad():
        return np.stack([
            measure(lambda xs: model.reduced_energy(xs).numpy(), model.ic, x, column)
            for column in range(model.ic.n_bonds)
        ])


def test_energy_rises_along_every_bond(model_and_h) -> None:
    """Stretching any bond by 0.1 nm costs tens of kT (the force field: ~500 kT). Models trained
    on the fixed [0.05, 0.3] nm interval rose only ~10 kT there, and long MD broke their bonds;
    the shipped model has walls where the data end and Gaussian bonds (docs/training.md)."""
    from flowff.analysis.ic_profiles import energy_rise

    rises = _per_bond(model_and_h, lambda energy, ic, x, column: energy_rise(
        energy, ic, x, column, [-0.05, 0.05, 0.1]))
    assert np.isfinite(rises).all()
    assert rises[:, 2].min() > 50.0, rises[:, 2].round(1).tolist()
    assert (rises[:, 2] > rises[:, 1]).all() and rises[:, 0].min() > 15.0  # compressed


def test_bond_energy_is_as_smooth_as_the_force_field(model_and_h) -> None:
    """Along every bond, within -3..+5 pm of the structure, the energy's curvature stays below
    5e5 kT/nm^2 (Amber's stiffest bond: 2.1e5). Bump-mixture bond layers bent up to 2e6 (9e7
    on narrow intervals), which heats 1 fs NVE and blows up 2 fs steps; the shipped model's
    bonds are conditional Gaussians (docs/training.md)."""
    from flowff.analysis.ic_profiles import max_curvature

    stiffest = _per_bond(model_and_h, lambda energy, ic, x, column: max_curvature(
        energy, ic, x, column, (-0.03, 0.05), 5e-4).max())
    assert stiffest.max() < 5e5, stiffest.round(-3).tolist()
    assert np.median(stiffest) > 3e4  # bonds are still stiff, not flat
