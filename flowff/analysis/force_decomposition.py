"""Which internal coordinates a flow's force error comes from (bonds, angles, torsions).

Both the flow energy and a classical energy depend on positions x only through the internal
coordinates h(x) (rigid motions leave them unchanged), so a Cartesian force error e = F_flow -
F_ref is e = -J^T eps with J = dh/dx (d, 3n) and eps = d(u_flow - U_ref)/dh. eps is recovered
per frame by least squares, and J^T eps_type is the Cartesian force error contributed by each
coordinate type. Reported in kT units: Cartesian kT/nm, bonds kT/nm, angles and torsions kT/rad.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import Tensor


def ic_jacobians(ic: torch.nn.Module, positions_nm: Tensor) -> Tensor:
    """dh/dx of the IC layer: positions (N, n, 3) nm -> (N, d, 3n), in the positions' dtype."""
    def h_of(x: Tensor) -> Tensor:
        return ic(x.unsqueeze(0))[0][0]

    jac = torch.func.vmap(torch.func.jacrev(h_of))(positions_nm)
    return jac.flatten(2)


def force_error_by_ic_type(
    ic: torch.nn.Module, positions_nm: np.ndarray, flow_forces: np.ndarray,
    reference_forces: np.ndarray,
) -> dict[str, Any]:
    """Split the force error of N frames by coordinate type.

    ``positions_nm`` (N, n, 3) nm; ``flow_forces`` and ``reference_forces`` (N, n, 3) in kT/nm.
    Returns per type ("bonds", "angles", "torsions"): ``cartesian_rmse`` (kT/nm, per Cartesian
    component, the part of the force RMSE this type causes), ``ic_rmse`` and ``ic_reference_rms``
    (the error and the size of the reference's gradient along these coordinates, kT/nm or
    kT/rad), ``relative``; and ``unexplained_rmse`` (kT/nm), the error part outside the IC
    directions (net force or torque in the reference forces; ~0 for a classical force field).
    The types' parts add up to the error vector, not in quadrature (they can partly cancel).
    ``columns``: the same per internal coordinate, in the IC layer's column order (``type``,
    ``atoms`` of the bond/angle/torsion, ``cartesian_rmse``, ``ic_rmse``, ``relative``): which
    coordinates a model fits worst (e.g. torsions that copy another torsion, docs/training.md).
    """
    x = torch.as_tensor(np.asarray(positions_nm), dtype=torch.float64)
    e = torch.as_tensor(np.asarray(flow_forces) - np.asarray(reference_forces),
                        dtype=torch.float64).flatten(1)
    f_ref = torch.as_tensor(np.asarray(reference_forces), dtype=torch.float64).flatten(1)
    ic64 = copy.deepcopy(ic).to(torch.float64)
    jt = ic_jacobians(ic64, x).transpose(1, 2)  # (N, 3n, d)
    # -J^T eps = e  and  -J^T g_ref = F_ref
    rhs = -torch.stack([e, f_ref], dim=-1)
    solution = torch.linalg.lstsq(jt, rhs).solution  # (N, d, 2)
    eps, g_ref = solution[..., 0], solution[..., 1]
    column_widths = ic64.column_widths()  # (d,) nm or rad per unit of h
    widths = {
        "bonds": (ic.bond_slice, column_widths[ic.bond_slice]),
        "angles": (ic.angle_slice, column_widths[ic.angle_slice]),
        "torsions": (ic.torsion_slice, column_widths[ic.torsion_slice]),
    }
    report: dict[str, Any] = {}
    for name, (columns, width) in widths.items():
        part = torch.zeros_like(eps)
        part[:, columns] = eps[:, columns]
        cartesian = -(jt @ part.unsqueeze(-1)).squeeze(-1)
        ic_err = eps[:, columns] / width
        ic_ref = g_ref[:, columns] / width
        rmse = float(ic_err.pow(2).mean().sqrt())
        ref_rms = float(ic_ref.pow(2).mean().sqrt())
        report[name] = {
            "cartesian_rmse": float(cartesian.pow(2).mean().sqrt()),
            "ic_rmse": rmse,
            "ic_reference_rms": ref_rms,
            "relative": rmse / ref_rms if ref_rms > 0 else float("nan"),
            "ic_unit": "kT/nm" if name == "bonds" else "kT/rad",
        }
    atoms = {"bonds": ic.bond_atoms, "angles": ic.angle_atoms, "torsions": ic.torsion_atoms}
    columns_report = []
    for name, (columns, width) in widths.items():
        ic_err = (eps[:, columns] / width).pow(2).mean(0).sqrt()
        ic_ref = (g_ref[:, columns] / width).pow(2).mean(0).sqrt()
        # Cartesian part of column c: -J^T[:, :, c] eps[:, c]
        cartesian = (jt[:, :, columns] * eps[:, None, columns]).pow(2).mean((0, 1)).sqrt()
        for k in range(len(ic_err)):
            columns_report.append({
                "type": name, "atoms": [int(a) for a in atoms[name][k].tolist()],
                "cartesian_rmse": float(cartesian[k]), "ic_rmse": float(ic_err[k]),
                "relative": float(ic_err[k] / ic_ref[k]) if ic_ref[k] > 0 else float("nan"),
            })
    report["columns"] = columns_report
    explained = -(jt @ eps.unsqueeze(-1)).squeeze(-1)
    report["unexplained_rmse"] = float((e - explained).pow(2).mean().sqrt())
    report["total_rmse"] = float(e.pow(2).mean().sqrt())
    report["n_frames"] = int(len(x))
    return report
