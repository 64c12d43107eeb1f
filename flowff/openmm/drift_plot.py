"""PNG of NVE total-energy traces, one panel per potential (like Fig. 4 of the paper)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from flowff.openmm.drift import DriftComparison  # noqa: E402
from flowff.utils.atomic import atomic_path  # noqa: E402


def plot_drift(comparison: DriftComparison, path: str | Path, highlight: int = 0) -> None:
    """Save ``E(t) - E(0)`` (kJ/mol) of every start in grey, start ``highlight`` in black.

    Panels share the y axis, scaled to the starts that did not blow up (blown-up traces are drawn
    in red up to the blow-up and clipped). When a start blew up, a second row shows
    ``|E(t) - E(0)|`` of every start on a log axis, so the blow-ups can be seen whole.
    """
    results = list(comparison.results.values())
    any_blowup = any(start.blew_up for result in results for start in result.starts)
    rows = 2 if any_blowup else 1
    fig, axes = plt.subplots(
        rows, len(results), figsize=(max(5.0, 3.6 * len(results)), 2.8 * rows), sharey="row",
        squeeze=False,
    )
    finite_extent = [
        float(np.max(np.abs(start.total_kjmol - start.total_kjmol[0])))
        for result in results
        for start in result.starts
        if not start.blew_up and start.total_kjmol.size
    ]
    for ax, result in zip(axes[0], results, strict=True):
        for start in result.starts:
            if start.total_kjmol.size == 0:
                continue
            shifted = start.total_kjmol - start.total_kjmol[0]
            if start.blew_up:
                ax.plot(start.time_ps, shifted, lw=0.4, color="tab:red", alpha=0.7)
            elif start.index == highlight:
                ax.plot(start.time_ps, shifted, lw=0.3, color="black", zorder=3)
            else:
                ax.plot(start.time_ps, shifted, lw=0.3, color=(0.2, 0.2, 0.2, 0.25))
        agg = result.aggregate()
        std = agg["std_per_dof_mean"]
        subtitle = "all blew up" if std is None else f"std/dof {std:.2e}"
        ax.set_title(f"{result.name}\n{subtitle}, blow-ups {agg['n_blowups']}", fontsize=9)
        ax.set_xlabel("t [ps]")
    axes[0][0].set_ylabel("E_total - E_total(0) [kJ/mol]")
    if any_blowup:
        for ax, result in zip(axes[1], results, strict=True):
            for start in result.starts:
                if start.total_kjmol.size == 0:
                    continue
                excursion = np.abs(start.total_kjmol - start.total_kjmol[0]) + 1e-3
                color = "tab:red" if start.blew_up else (0.2, 0.2, 0.2, 0.4)
                ax.semilogy(start.time_ps, excursion, lw=0.4, color=color)
            ax.set_xlabel("t [ps]")
        axes[1][0].set_ylabel("|E_total - E_total(0)| + 1e-3 [kJ/mol]")
    if finite_extent:
        limit = 1.1 * max(finite_extent) or 1.0
        axes[0][0].set_ylim(-limit, limit)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=200, format="png")
    plt.close(fig)
