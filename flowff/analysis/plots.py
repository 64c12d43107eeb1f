"""PNG figures of an evaluation (matplotlib Figure objects with the Agg canvas; no pyplot state).

* :func:`plot_ramachandran`: free energy -log p (kT) of (phi, psi), MD vs flow side by side.
* :func:`plot_energy_histograms`: target energies and shifted flow energies (kT) on MD test frames
  and on flow samples; flow energies are shifted by a constant so that their minimum matches the
  target's minimum (as in Fig. 3c of the Smooth Flows paper).
* :func:`plot_force_scatter`: flow vs reference force components (kT/nm).

Every file is written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from flowff.analysis.ramachandran import RAMACHANDRAN_BINS, ramachandran_histogram
from flowff.utils.atomic import atomic_path

#: At most this many points per force scatter panel (a random subset, fixed seed).
MAX_SCATTER_POINTS: int = 20_000
#: Free-energy colour scale of Ramachandran maps, kT above the most populated bin.
RAMACHANDRAN_MAX_KT: float = 10.0


def _save(fig: Figure, path: str | Path) -> Path:
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return Path(path)


def plot_ramachandran(phi_md: np.ndarray, psi_md: np.ndarray, phi_flow: np.ndarray,
                      psi_flow: np.ndarray, path: str | Path,
                      bins: int = RAMACHANDRAN_BINS,
                      titles: tuple[str, str] = ("MD test frames", "flow samples")) -> Path:
    """Ramachandran free-energy maps (kT, 0 at the fullest bin) of MD and flow; radians in."""
    fig = Figure(figsize=(10, 4.4))
    fig.subplots_adjust(left=0.07, right=0.86, bottom=0.12, top=0.92, wspace=0.08)
    axes = fig.subplots(1, 2, sharey=True)
    image = None
    for ax, (phi, psi, title) in zip(
        axes, [(phi_md, psi_md, titles[0]), (phi_flow, psi_flow, titles[1])],
        strict=True,
    ):
        counts = ramachandran_histogram(phi, psi, bins).astype(np.float64)
        free = np.full(counts.shape, np.nan)
        filled = counts > 0
        free[filled] = -np.log(counts[filled] / counts.max())
        image = ax.imshow(free.T, origin="lower", extent=(-180, 180, -180, 180),
                          vmin=0.0, vmax=RAMACHANDRAN_MAX_KT, cmap="viridis", aspect="equal")
        ax.set_title(f"{title} (N = {len(phi)})")
        ax.set_xlabel("phi (deg)")
        ax.set_xticks([-180, -90, 0, 90, 180])
        ax.set_yticks([-180, -90, 0, 90, 180])
    axes[0].set_ylabel("psi (deg)")
    fig.colorbar(image, cax=fig.add_axes((0.89, 0.12, 0.02, 0.8)), label="free energy (kT)")
    return _save(fig, path)


def energy_shift(u_flow_kT: np.ndarray, u_target_kT: np.ndarray) -> float:
    """Constant c with min(u_flow + c) = min(u_target) over the finite values (kT)."""
    f = np.asarray(u_flow_kT, dtype=np.float64)
    t = np.asarray(u_target_kT, dtype=np.float64)
    f, t = f[np.isfinite(f)], t[np.isfinite(t)]
    if f.size == 0 or t.size == 0:
        return float("nan")
    return float(t.min() - f.min())


def _energy_panel(ax, u_flow: np.ndarray, u_target: np.ndarray, title: str) -> None:
    shift = energy_shift(u_flow, u_target)
    t = u_target[np.isfinite(u_target)]
    f = u_flow[np.isfinite(u_flow)] + shift
    if t.size == 0 or f.size == 0:
        ax.set_title(f"{title}: no finite energies")
        return
    both = np.concatenate([t, f])
    low, high = float(both.min()), float(np.percentile(both, 99.5))
    if high - low < 1e-6 * max(1.0, abs(low)):  # (nearly) one value: a unit-wide window
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, 61)
    ax.hist(np.clip(t, low, high), bins=edges, histtype="step", density=True, lw=1.5,
            label="target u/kT")
    ax.hist(np.clip(f, low, high), bins=edges, histtype="step", density=True, lw=1.5,
            label=f"flow u_f/kT {shift:+.1f}")
    ax.set_title(title)
    ax.set_xlabel("energy (kT; last bin collects the top 0.5%)")
    ax.legend(frameon=False)


def plot_energy_histograms(u_flow_md: np.ndarray, u_target_md: np.ndarray,
                           u_flow_samples: np.ndarray, u_target_samples: np.ndarray,
                           path: str | Path) -> Path:
    """Energy histograms (kT) on MD test frames and on flow samples, flow shifted to the target."""
    fig = Figure(figsize=(10, 4))
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.13, top=0.92, wspace=0.2)
    axes = fig.subplots(1, 2)
    _energy_panel(axes[0], np.asarray(u_flow_md, float), np.asarray(u_target_md, float),
                  "MD test frames")
    _energy_panel(axes[1], np.asarray(u_flow_samples, float),
                  np.asarray(u_target_samples, float), "flow samples")
    axes[0].set_ylabel("density")
    return _save(fig, path)


def _scatter_panel(ax, pred: np.ndarray, ref: np.ndarray, title: str, seed: int) -> None:
    p = np.asarray(pred, dtype=np.float64).ravel()
    r = np.asarray(ref, dtype=np.float64).ravel()
    ok = np.isfinite(p) & np.isfinite(r)
    p, r = p[ok], r[ok]
    if p.size == 0:
        ax.set_title(f"{title}: no finite forces")
        return
    rmse = float(np.sqrt(np.mean((p - r) ** 2)))
    if p.size > MAX_SCATTER_POINTS:
        pick = np.random.default_rng(seed).choice(p.size, MAX_SCATTER_POINTS, replace=False)
        p, r = p[pick], r[pick]
    lim = float(np.percentile(np.abs(np.concatenate([p, r])), 99.5)) or 1.0
    ax.scatter(r, p, s=2, alpha=0.3, linewidths=0)
    ax.plot([-lim, lim], [-lim, lim], color="k", lw=0.8)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_title(f"{title}: RMSE {rmse:.1f} kT/nm")
    ax.set_xlabel("reference force component (kT/nm)")


def plot_force_scatter(flow_md: np.ndarray, ref_md: np.ndarray, flow_samples: np.ndarray | None,
                       ref_samples: np.ndarray | None, path: str | Path, seed: int = 0) -> Path:
    """Flow vs reference force components (kT/nm) on MD frames and (if given) on flow samples."""
    panels = [(flow_md, ref_md, "MD test frames")]
    if flow_samples is not None and ref_samples is not None:
        panels.append((flow_samples, ref_samples, "flow samples"))
    fig = Figure(figsize=(5 * len(panels), 4.8))
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.11, top=0.93, wspace=0.3)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (pred, ref, title) in zip(axes, panels, strict=True):
        _scatter_panel(ax, pred, ref, title, seed)
    axes[0].set_ylabel("flow force component (kT/nm)")
    return _save(fig, path)
