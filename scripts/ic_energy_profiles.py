#!/usr/bin/env python
"""How steeply flow potentials (and the reference force field) rise along each bond and angle.

Every bond of N data frames is stretched by multiples of its data standard deviation and by
fixed lengths (every other internal coordinate held), and the median energy rise in kT is
reported per bond, per model; the same for angles. A flow potential whose bonds plateau a few
kT above the minimum lets MD break them (docs/training.md). Also the largest curvature along each
bond within BOND_CURVATURE_WINDOW_NM of the data frames (--curvature-frames of them): kinks far
stiffer than the force field's bonds make 1-2 fs MD steps heat up or blow up.

    python scripts/ic_energy_profiles.py --data DATA --model stage4=A.pt --model new=B.pt \\
        --json profiles.json --png profiles.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

BOND_OFFSETS_NM = (-0.02, -0.01, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15)
ANGLE_OFFSETS_RAD = (-0.6, -0.4, -0.2, 0.2, 0.4, 0.6)
#: window (nm, around each frame's bond length) and spacing of the bond curvature scan
BOND_CURVATURE_WINDOW_NM = (-0.03, 0.05)
BOND_CURVATURE_STEP_NM = 2e-4


def main(argv: list[str] | None = None) -> None:
    import openmm.app as app

    from flowff.analysis.ic_profiles import energy_rise, max_curvature
    from flowff.data.reference import build_classical_system, load_reference_data
    from flowff.energy.builder import load_energy_module
    from flowff.energy.flow_energy import kT_kJ_per_mol
    from flowff.energy.openmm_energy import OpenMMEnergyEvaluator
    from flowff.utils.atomic import write_json

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="folder made by `flowff data`")
    p.add_argument("--model", action="append", required=True, help="NAME=model.pt (repeat)")
    p.add_argument("--frames", type=int, default=20, help="data frames (evenly thinned)")
    p.add_argument("--curvature-frames", type=int, default=6,
                   help="data frames of the bond curvature scan (0: skip it)")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--png", type=Path, default=None)
    args = p.parse_args(argv)

    data = load_reference_data(args.data)
    pick = np.linspace(0, len(data) - 1, args.frames).astype(np.int64)
    x = torch.as_tensor(np.asarray(data.positions)[pick], dtype=torch.float64)
    kT = kT_kJ_per_mol(data.temperature_K)
    models = dict(item.split("=", 1) for item in args.model)
    cfg = json.loads((Path(args.data) / "config.json").read_text())["config"]
    evaluator = OpenMMEnergyEvaluator(build_classical_system(
        app.PDBFile(str(data.topology_pdb)).topology, tuple(cfg["forcefield"])))
    energies = {"force field": lambda xs: evaluator(xs.numpy())[0] / kT}
    for name, path in models.items():
        module = load_energy_module(path).to(torch.float64)
        energies[name] = lambda xs, m=module: m.reduced_energy(xs).detach().numpy()
    ic = load_energy_module(next(iter(models.values()))).ic.to(torch.float64)
    report: dict = {"frames": int(len(pick)), "models": models, "unit": "kT",
                    "bond_offsets_nm": BOND_OFFSETS_NM, "angle_offsets_rad": ANGLE_OFFSETS_RAD}
    for kind, columns, offsets in (
        ("bonds", range(ic.n_bonds), BOND_OFFSETS_NM),
        ("angles", range(ic.n_bonds, ic.n_bonds + ic.n_angles), ANGLE_OFFSETS_RAD),
    ):
        table = {name: np.stack([energy_rise(fn, ic, x, c, offsets) for c in columns])
                 for name, fn in energies.items()}
        report[kind] = {
            name: {"per_column_median_rise": rise.round(2).tolist(),
                   "weakest_column_rise": rise.min(axis=0).round(2).tolist(),
                   "median_over_columns": np.median(rise, axis=0).round(2).tolist()}
            for name, rise in table.items()}
        report[kind]["_table"] = table
    for kind in ("bonds", "angles"):
        names = [n for n in report[kind] if n != "_table"]
        offsets = BOND_OFFSETS_NM if kind == "bonds" else ANGLE_OFFSETS_RAD
        print(f"{kind}: median over columns (weakest column) of the energy rise, kT")
        print("  offset " + " ".join(f"{o:>9g}" for o in offsets))
        for name in names:
            med = report[kind][name]["median_over_columns"]
            weak = report[kind][name]["weakest_column_rise"]
            print(f"  {name[:12]:>12s} " + " ".join(f"{m:>4.0f}({w:>3.0f})" for m, w in
                                               zip(med, weak, strict=True)))
    if args.curvature_frames > 0:
        few = x[np.linspace(0, len(x) - 1, args.curvature_frames).astype(np.int64)]
        report["bond_curvature"] = {"unit": "kT/nm^2", "window_nm": BOND_CURVATURE_WINDOW_NM,
                                    "step_nm": BOND_CURVATURE_STEP_NM,
                                    "frames": int(len(few))}
        print(f"bonds: largest |d2u/db2| within {BOND_CURVATURE_WINDOW_NM} nm of "
              f"{len(few)} frames, kT/nm^2 (median over bonds / stiffest bond)")
        for name, fn in energies.items():
            per_bond = np.array([max_curvature(fn, ic, few, c, BOND_CURVATURE_WINDOW_NM,
                                               BOND_CURVATURE_STEP_NM).max()
                                 for c in range(ic.n_bonds)])
            report["bond_curvature"][name] = {"per_bond_max": per_bond.round(-2).tolist(),
                                              "median_over_bonds": float(np.median(per_bond)),
                                              "max_over_bonds": float(per_bond.max())}
            print(f"  {name[:12]:>12s} {np.median(per_bond):9.3g} / {per_bond.max():9.3g}")
    tables = {kind: report[kind].pop("_table") for kind in ("bonds", "angles")}
    write_json(args.json, report)
    if args.png is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, kind, offsets, unit in ((axes[0], "bonds", BOND_OFFSETS_NM, "nm"),
                                        (axes[1], "angles", ANGLE_OFFSETS_RAD, "rad")):
            for k, (name, rise) in enumerate(tables[kind].items()):
                order = np.argsort(offsets)
                o = np.asarray(offsets)[order]
                ax.plot(o, np.median(rise, axis=0)[order], f"C{k}-", label=name)
                ax.fill_between(o, rise.min(axis=0)[order], np.median(rise, axis=0)[order],
                                color=f"C{k}", alpha=0.15)
            ax.set_yscale("symlog", linthresh=10)
            ax.set_xlabel(f"change of one {kind[:-1]} ({unit})")
            ax.set_ylabel("energy rise (kT)")
            ax.set_title(f"one {kind[:-1]} changed: median over {kind}, band down to the weakest",
                         fontsize=9)
            ax.legend()
        fig.tight_layout()
        fig.savefig(args.png, dpi=120)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
