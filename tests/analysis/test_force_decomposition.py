"""The force-error split by internal-coordinate type attributes errors to the right type."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowff.analysis.force_decomposition import force_error_by_ic_type, ic_jacobians
from flowff.analysis.metrics import flow_energies_and_forces


def _frames(ala_structure, count: int = 6) -> np.ndarray:
    _, positions = ala_structure
    rng = np.random.default_rng(0)
    return positions[None] + 0.004 * rng.standard_normal((count, 22, 3))


def test_jacobians_match_finite_differences(small_energy, ala_structure) -> None:
    x = torch.as_tensor(_frames(ala_structure, 2))
    jac = ic_jacobians(small_energy.ic, x)
    assert jac.shape == (2, 60, 66)
    step = 1e-6
    dx = torch.zeros_like(x)
    dx[0, 5, 1] = step
    h_plus = small_energy.ic(x + dx)[0]
    h_minus = small_energy.ic(x - dx)[0]
    numeric = (h_plus - h_minus)[0] / (2 * step)
    torch.testing.assert_close(jac[0, :, 5 * 3 + 1], numeric, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["bonds", "angles", "torsions"])
def test_an_error_along_one_type_is_attributed_to_it(kind, small_energy, ala_structure) -> None:
    x = _frames(ala_structure)
    _, flow_forces = flow_energies_and_forces(small_energy, x)
    ic = small_energy.ic
    columns = {"bonds": ic.bond_slice, "angles": ic.angle_slice,
               "torsions": ic.torsion_slice}[kind]
    eps = torch.zeros(len(x), ic.dim, dtype=torch.float64)
    eps[:, columns] = torch.randn(len(x), eps[:, columns].shape[1], dtype=torch.float64,
                                  generator=torch.Generator().manual_seed(1))
    jt = ic_jacobians(ic, torch.as_tensor(x)).transpose(1, 2)
    error = (jt @ eps.unsqueeze(-1)).squeeze(-1).reshape(x.shape).numpy()
    report = force_error_by_ic_type(ic, x, flow_forces, flow_forces - error)
    assert report["total_rmse"] == pytest.approx(float(np.sqrt((error**2).mean())), rel=1e-9)
    assert report[kind]["cartesian_rmse"] == pytest.approx(report["total_rmse"], rel=1e-6)
    for other in {"bonds", "angles", "torsions"} - {kind}:
        assert report[other]["cartesian_rmse"] < 1e-8 * report["total_rmse"]
    assert report["unexplained_rmse"] < 1e-8 * report["total_rmse"]
    # per column: one entry per IC in column order, errors only on this type's columns, each
    # column's Cartesian part as computed directly from its own error
    per_column = report["columns"]
    assert len(per_column) == ic.dim
    assert [c["type"] for c in per_column] == (["bonds"] * ic.n_bonds + ["angles"] * ic.n_angles
                                               + ["torsions"] * ic.n_torsions)
    for c, entry in enumerate(per_column):
        part = (jt[:, :, c] * eps[:, None, c]).numpy()
        assert entry["cartesian_rmse"] == pytest.approx(float(np.sqrt((part**2).mean())),
                                                        rel=1e-6, abs=1e-9)
    assert per_column[ic.n_bonds]["atoms"] == ic.angle_atoms[0].tolist()


def test_a_net_force_is_reported_as_unexplained(small_energy, ala_structure) -> None:
    x = _frames(ala_structure)
    _, flow_forces = flow_energies_and_forces(small_energy, x)
    shifted = flow_forces + np.array([3.0, 0.0, 0.0])  # same force on every atom
    report = force_error_by_ic_type(small_energy.ic, x, flow_forces, shifted)
    assert report["unexplained_rmse"] == pytest.approx(np.sqrt(3.0**2 / 3), rel=1e-6)
