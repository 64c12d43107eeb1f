#!/usr/bin/env python
"""How much a coupling schedule's conditional independences cost, in a Gaussian picture.

A coupling layer that transforms coordinates A given C makes A's coordinates independent given
C. This script regresses each block on its conditioners (torsions as cos/sin of 1 phi and
2 phi), fits a Gaussian to the residuals, and reports the largest residual correlation and the
relative error of the force (gradient of -log density) of a model that ignores the residual
correlations. Large values mean the schedule cannot fit the forces of that block, however
long it trains (docs/training.md: angle couplings).

    python scripts/ic_correlations.py --data DATA [--frames 20000] [--model MODEL.pt]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def _residual(y: np.ndarray, features: np.ndarray) -> np.ndarray:
    coef, *_ = np.linalg.lstsq(features, y, rcond=None)
    return y - features @ coef


def independence_cost(y: np.ndarray, features: np.ndarray) -> tuple[float, float]:
    """(largest |residual correlation|, relative gradient error of the independent model)."""
    r = _residual(y, features)
    cov = np.cov(r.T)
    g_full = r @ np.linalg.inv(cov)
    g_independent = r / np.diag(cov)
    corr = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    np.fill_diagonal(corr, 0.0)
    rel = np.sqrt(((g_full - g_independent) ** 2).mean() / (g_full**2).mean())
    return float(np.abs(corr).max()), float(rel)


def main(argv: list[str] | None = None) -> None:
    from flowff.data.reference import load_reference_data
    from flowff.energy.builder import angle_halves, load_energy_module
    from flowff.models import default_model_path

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="folder made by `flowff data`")
    p.add_argument("--frames", type=int, default=20000, help="frames used (evenly thinned)")
    p.add_argument("--model", default=None,
                   help="model file whose internal coordinates to use (default: shipped model)")
    args = p.parse_args(argv)

    data = load_reference_data(args.data)
    ic = load_energy_module(args.model or default_model_path()).ic.to(torch.float64)
    zmatrix = ic.zmatrix
    pos = np.asarray(data.positions)
    pos = pos[np.linspace(0, len(pos) - 1, min(args.frames, len(pos))).astype(np.int64)]
    with torch.no_grad():
        h, _ = ic(torch.as_tensor(pos, dtype=torch.float64))
        bonds, angles, torsions = (v.numpy() for v in ic.physical(h))
    t_features = np.concatenate([np.cos(torsions), np.sin(torsions), np.cos(2 * torsions),
                                 np.sin(2 * torsions), np.ones((len(torsions), 1))], axis=1)
    first, second = angle_halves(zmatrix)
    rows = [
        ("angles | torsions", angles, t_features),
        ("bonds | angles, torsions", bonds, np.concatenate([t_features, angles], axis=1)),
        ("angle half 1 | half 2, torsions", angles[:, first],
         np.concatenate([t_features, angles[:, second]], axis=1)),
        ("angle half 2 | half 1, torsions", angles[:, second],
         np.concatenate([t_features, angles[:, first]], axis=1)),
    ]
    print(f"{len(pos)} frames; block | conditioners: max |residual corr|, relative force error "
          "of the independent model")
    for name, y, features in rows:
        corr, rel = independence_cost(y, features)
        print(f"{name:<34s} {corr:6.3f}   {rel:6.3f}")


if __name__ == "__main__":
    main()
