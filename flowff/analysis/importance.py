"""Which internal coordinates the importance weights of flow samples depend on.

If the flow got only the marginal of one coordinate wrong, the weights would vary along that
coordinate alone, and correcting that marginal (dividing each sample's weight by the mean
weight of its quantile bin of the coordinate) would bring the Kish efficiency close to 1. The
gain from correcting each coordinate in turn ranks where a model loses sampling efficiency.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from flowff.analysis.metrics import kish_efficiency


def efficiency_if_marginal_matched(values: np.ndarray, log_weights: np.ndarray,
                                   bins: int = 10) -> float:
    """Kish ESS/N after correcting the weights' dependence on ``values`` over quantile bins.

    ``values`` (N,) one coordinate of the samples; ``log_weights`` (N,) log w, -inf for a wasted
    sample. Each bin's log weights are shifted so that its mean weight is the overall mean
    weight. An in-sample estimate: with few samples per bin it is optimistic.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    lw = np.asarray(log_weights, dtype=np.float64).ravel()
    if v.shape != lw.shape:
        raise ValueError(f"values {v.shape} and log_weights {lw.shape} differ in shape")
    if bins < 1 or v.size < bins:
        raise ValueError(f"need 1 <= bins <= samples, got {bins} bins for {v.size} samples")
    if not np.isfinite(lw).any():
        raise ValueError("no sample has a positive weight")
    edges = np.quantile(v, np.linspace(0.0, 1.0, bins + 1))
    index = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, bins - 1)
    top = lw[np.isfinite(lw)].max()
    w = np.exp(lw - top)
    corrected = lw.copy()
    mean_all = w.mean()
    for b in range(bins):
        in_bin = index == b
        mean_bin = w[in_bin].mean() if in_bin.any() else 0.0
        if mean_bin > 0.0:  # a bin without weight has nothing to correct
            corrected[in_bin] = lw[in_bin] - np.log(mean_bin / mean_all)
    return kish_efficiency(corrected)


def importance_by_column(h: np.ndarray, log_weights: np.ndarray, labels: list[dict[str, Any]],
                         bins: int = 10, top: int = 10) -> dict[str, Any]:
    """Rank the columns of ``h`` (N, d) by the efficiency gained from matching their marginal.

    ``labels`` (d dicts) describe the columns (copied into the result). Returns the samples'
    ``kish_efficiency``, ``bins``, and ``columns``: the ``top`` columns by ``gain`` (efficiency
    if matched minus the samples' efficiency), each with ``column``, its label fields,
    ``efficiency_if_matched`` and ``gain``.
    """
    h = np.asarray(h, dtype=np.float64)
    if h.ndim != 2 or len(labels) != h.shape[1]:
        raise ValueError(f"h must be (N, d) with one label per column; got {h.shape} and "
                         f"{len(labels)} labels")
    base = kish_efficiency(log_weights)
    rows = []
    for j in range(h.shape[1]):
        eff = efficiency_if_marginal_matched(h[:, j], log_weights, bins)
        rows.append({"column": j, **labels[j], "efficiency_if_matched": eff, "gain": eff - base})
    rows.sort(key=lambda r: r["gain"], reverse=True)
    return {"kish_efficiency": base, "bins": bins, "n_samples": int(h.shape[0]),
            "columns": rows[:top]}


def ic_column_labels(ic: torch.nn.Module) -> list[dict[str, Any]]:
    """``type`` (bond/angle/torsion) and ``atoms`` (0-based) of each column of an IC layer."""
    labels = []
    for kind, atoms in (("bond", ic.bond_atoms), ("angle", ic.angle_atoms),
                        ("torsion", ic.torsion_atoms)):
        labels += [{"type": kind, "atoms": [int(a) for a in row.tolist()]} for row in atoms]
    return labels


def importance_by_internal_coordinate(ic: torch.nn.Module, positions_nm: np.ndarray,
                                      log_weights: np.ndarray, bins: int = 10, top: int = 10
                                      ) -> dict[str, Any]:
    """:func:`importance_by_column` on the internal coordinates of samples (N, n, 3) nm."""
    ic64 = copy.deepcopy(ic).to(torch.float64)
    with torch.no_grad():
        h = ic64(torch.as_tensor(np.asarray(positions_nm), dtype=torch.float64))[0].numpy()
    return importance_by_column(h, log_weights, ic_column_labels(ic), bins, top)
