"""Backbone torsions (phi, psi) of alanine dipeptide, Ramachandran histograms and basins.

Angles are in radians on [-pi, pi) (mdtraj's phi = C(i-1)-N-CA-C, psi = N-CA-C-N(i+1)).

Histograms: ``RAMACHANDRAN_BINS`` x ``RAMACHANDRAN_BINS`` (64 x 64) on [-pi, pi)^2, phi along the
first axis. Divergences compare probabilities smoothed by a pseudocount: every bin gets
``DIVERGENCE_PSEUDOCOUNT`` (1e-6) of probability added before renormalising, so KL(MD || flow)
stays finite where the flow never visits a bin that MD visits (each such bin then contributes
about p_MD * log(p_MD / 1e-6)). Natural logarithms: divergences in nats; JS <= log 2.

Basins (degrees). The backbone's "left half" is phi < 0 or phi >= 120: the beta basin extends
across phi = +-180 (phi = +170 is the periodic continuation of phi = -190), and phi = 120 lies in
the barrier between it and the phi > 0 states. The three basins partition the plane:

* ``beta_C7eq``: left half and (psi > 50 or psi < -100)    extended beta and C7eq
* ``alpha_R``:   left half and -100 <= psi <= 50            right-handed helix (and bridge)
* ``phi_positive``: 0 <= phi < 120                          alpha_L and C7ax (the rare states)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from flowff.analysis.metrics import kish_efficiency

RAMACHANDRAN_BINS: int = 64
DIVERGENCE_PSEUDOCOUNT: float = 1.0e-6

#: Basin boundaries in degrees, as documented in the module docstring.
PSI_ALPHA_LOW_DEG: float = -100.0
PSI_ALPHA_HIGH_DEG: float = 50.0
PHI_POSITIVE_HIGH_DEG: float = 120.0
BASIN_DEFINITIONS: dict[str, str] = {
    "beta_C7eq": "(phi < 0 or phi >= 120 deg) and (psi > 50 deg or psi < -100 deg)",
    "alpha_R": "(phi < 0 or phi >= 120 deg) and -100 deg <= psi <= 50 deg",
    "phi_positive": "0 <= phi < 120 deg (alpha_L and C7ax)",
}


def wrap_angle(angle_rad: np.ndarray) -> np.ndarray:
    """Angles mapped onto [-pi, pi) (radians)."""
    a = np.asarray(angle_rad, dtype=np.float64)
    return (a + np.pi) % (2.0 * np.pi) - np.pi


def backbone_torsions(positions_nm: np.ndarray, topology_pdb: str | Path
                      ) -> tuple[np.ndarray, np.ndarray]:
    """phi and psi (N,) radians in [-pi, pi) of positions (N, n_atoms, 3) nm.

    The topology comes from ``topology_pdb``; it must define exactly one phi and one psi
    (a dipeptide such as ACE-ALA-NME). Positions must be finite.
    """
    import mdtraj

    pos = np.asarray(positions_nm, dtype=np.float32)
    top = mdtraj.load_topology(str(topology_pdb))
    if pos.ndim != 3 or pos.shape[1:] != (top.n_atoms, 3):
        raise ValueError(
            f"positions must have shape (N, {top.n_atoms}, 3) for {topology_pdb}, got {pos.shape}"
        )
    if not np.isfinite(pos).all():
        raise ValueError("positions contain non-finite values; filter those frames first")
    traj = mdtraj.Trajectory(pos, top)
    _, phi = mdtraj.compute_phi(traj)
    _, psi = mdtraj.compute_psi(traj)
    if phi.shape[1] != 1 or psi.shape[1] != 1:
        raise ValueError(
            f"{topology_pdb} has {phi.shape[1]} phi and {psi.shape[1]} psi torsions; the "
            "Ramachandran analysis expects a dipeptide with exactly one of each"
        )
    return wrap_angle(phi[:, 0]), wrap_angle(psi[:, 0])


def ramachandran_histogram(phi_rad: np.ndarray, psi_rad: np.ndarray,
                           bins: int = RAMACHANDRAN_BINS) -> np.ndarray:
    """Counts (bins, bins) of (phi, psi) on [-pi, pi)^2, phi along axis 0 (angles wrapped)."""
    phi = wrap_angle(phi_rad)
    psi = wrap_angle(psi_rad)
    if phi.shape != psi.shape or phi.ndim != 1:
        raise ValueError(f"phi and psi must be 1-D of one length, got {phi.shape}, {psi.shape}")
    if not (np.isfinite(phi).all() and np.isfinite(psi).all()):
        raise ValueError("phi/psi contain non-finite values")
    edges = np.linspace(-np.pi, np.pi, bins + 1)
    # Wrapped angles are < pi; clip guards the rounding of (a + pi) % 2pi - pi onto pi.
    idx_phi = np.clip(np.searchsorted(edges, phi, side="right") - 1, 0, bins - 1)
    idx_psi = np.clip(np.searchsorted(edges, psi, side="right") - 1, 0, bins - 1)
    counts = np.zeros((bins, bins), dtype=np.int64)
    np.add.at(counts, (idx_phi, idx_psi), 1)
    return counts


def smoothed_probabilities(counts: np.ndarray,
                           pseudocount: float = DIVERGENCE_PSEUDOCOUNT) -> np.ndarray:
    """counts / total + pseudocount per bin, renormalised to sum to 1."""
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    if total <= 0 or (c < 0).any():
        raise ValueError("a histogram needs non-negative counts with a positive total")
    if pseudocount < 0:
        raise ValueError(f"pseudocount must be >= 0, got {pseudocount}")
    p = c / total + pseudocount
    return p / p.sum()


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    """sum p log(p/q) with 0 log 0 = 0; +inf where q = 0 < p."""
    mask = p > 0
    if (q[mask] <= 0).any():
        return float("inf")
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def histogram_divergences(counts_md: np.ndarray, counts_flow: np.ndarray,
                          pseudocount: float = DIVERGENCE_PSEUDOCOUNT) -> dict[str, float]:
    """KL(MD || flow) and Jensen-Shannon divergence (nats) of two histograms of one shape."""
    if np.shape(counts_md) != np.shape(counts_flow):
        raise ValueError(f"histogram shapes differ: {np.shape(counts_md)} and "
                         f"{np.shape(counts_flow)}")
    p = smoothed_probabilities(counts_md, pseudocount).ravel()
    q = smoothed_probabilities(counts_flow, pseudocount).ravel()
    m = 0.5 * (p + q)
    return {"kl_md_flow": _kl(p, q), "js": 0.5 * _kl(p, m) + 0.5 * _kl(q, m)}


def basin_masks(phi_rad: np.ndarray, psi_rad: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean (N,) membership of each basin of :data:`BASIN_DEFINITIONS` (a partition)."""
    phi = np.degrees(wrap_angle(phi_rad))
    psi = np.degrees(wrap_angle(psi_rad))
    if phi.shape != psi.shape or phi.ndim != 1 or phi.size == 0:
        raise ValueError(f"need non-empty 1-D phi and psi of one length, got {phi.shape}, "
                         f"{psi.shape}")
    positive = (phi >= 0) & (phi < PHI_POSITIVE_HIGH_DEG)
    alpha = ~positive & (psi >= PSI_ALPHA_LOW_DEG) & (psi <= PSI_ALPHA_HIGH_DEG)
    return {"beta_C7eq": ~positive & ~alpha, "alpha_R": alpha, "phi_positive": positive}


def basin_populations(phi_rad: np.ndarray, psi_rad: np.ndarray) -> dict[str, float]:
    """Percent of frames in each basin of :data:`BASIN_DEFINITIONS` (sums to 100)."""
    masks = basin_masks(phi_rad, psi_rad)
    n = next(iter(masks.values())).size
    return {name: 100.0 * float(m.sum()) / n for name, m in masks.items()}


def basin_replica_stderr(phi_rad: np.ndarray, psi_rad: np.ndarray,
                         n_replicas: int) -> dict[str, float]:
    """Standard error (percentage points) of each basin's population from R replicas' own
    populations: std over replicas / sqrt(R).

    ``phi_rad``, ``psi_rad``: (T * R,) time-major (frame t of replica r at t * R + r). Frames of
    one replica are correlated, replicas independent, so this is the honest error of a batched
    run's populations (a frame-count binomial error would be far too small).
    """
    if n_replicas < 2:
        raise ValueError(f"need >= 2 replicas for a standard error, got {n_replicas}")
    masks = basin_masks(phi_rad, psi_rad)
    size = next(iter(masks.values())).size
    if size % n_replicas:
        raise ValueError(f"{size} frames do not split into {n_replicas} replicas")
    return {name: 100.0 * float(m.reshape(-1, n_replicas).mean(axis=0).std(ddof=1))
            / float(np.sqrt(n_replicas)) for name, m in masks.items()}


def _checked_log_weights(log_weights: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``log_weights`` as float64 (N,), refused unless of ``shape``, finite or -inf, and not all
    -inf."""
    lw = np.asarray(log_weights, dtype=np.float64)
    if lw.shape != shape or lw.ndim != 1:
        raise ValueError(f"log_weights {lw.shape} and torsions {shape} must be 1-D of one shape")
    if np.isnan(lw).any() or (lw == np.inf).any():
        raise ValueError("log weights must be finite or -inf")
    if not np.isfinite(lw).any():
        raise ValueError("no sample has a positive weight (log weights finite or -inf, not all "
                         "-inf)")
    return lw


def _group_weights(lw: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """``weight_share`` (sum w), ``inverse_ess_share`` (sum w^2) of the samples in ``mask`` as
    fractions of all samples', and ``median_log_weight_offset`` (kT, their median log w minus
    all samples'; absent when none of them has a positive weight)."""
    finite = np.isfinite(lw)
    w = np.exp(lw - lw.max())
    out = {"weight_share": float(w[mask].sum() / w.sum()),
           "inverse_ess_share": float(np.square(w[mask]).sum() / np.square(w).sum())}
    if (mask & finite).any():
        out["median_log_weight_offset"] = (float(np.median(lw[mask & finite]))
                                           - float(np.median(lw[finite])))
    return out


def importance_by_basin(phi_rad: np.ndarray, psi_rad: np.ndarray,
                        log_weights: np.ndarray) -> dict[str, dict[str, float]]:
    """Where the importance weights of flow samples go, per basin.

    ``log_weights`` (N,) log w = -u_target/kT - log q of the samples (-inf: zero weight). Per
    basin: ``samples_percent`` (flow population), ``reweighted_percent`` (the target's
    population estimated by reweighting, sum w in basin / sum w; compare with MD),
    ``kish_efficiency_within`` (Kish ESS / samples of the basin), ``median_log_weight_offset``
    (median log w of the basin minus that of all samples, kT: < 0 where the flow puts samples the
    target does not want; absent when no sample of the basin has a positive weight),
    ``inverse_ess_share`` (the basin's part of sum w^2 / sum w^2: the fraction of N / ESS, the
    overall Kish inefficiency, that its samples cause; the shares sum to 1).
    """
    masks = basin_masks(phi_rad, psi_rad)
    lw = _checked_log_weights(log_weights, next(iter(masks.values())).shape)
    out: dict[str, dict[str, float]] = {}
    for name, m in masks.items():
        group = _group_weights(lw, m)
        out[name] = {
            "samples_percent": 100.0 * float(m.mean()),
            "reweighted_percent": 100.0 * group.pop("weight_share"),
            # in log space: a basin far below the largest weight does not underflow
            "kish_efficiency_within": (kish_efficiency(lw[m])
                                       if np.isfinite(lw[m]).any() else 0.0),
            **group,
        }
    return out


def importance_by_phi(phi_rad: np.ndarray, log_weights: np.ndarray,
                      bin_deg: float = 20.0) -> list[dict[str, Any]]:
    """Where the importance weights of flow samples go along phi, in bins of ``bin_deg`` degrees.

    ``log_weights`` (N,) as in :func:`importance_by_basin`. One entry per bin holding samples,
    from -180 degrees up: ``phi_deg`` [low, high), ``samples`` (count), ``weight_share`` (sum w
    in the bin / sum w: the target's probability of the bin), ``inverse_ess_share`` (its part of
    sum w^2), ``median_log_weight_offset`` (kT, vs all samples; absent without positive
    weights). Shows whether a basin's samples sit where the target wants them (e.g. flow
    density leaking toward a barrier).
    """
    phi = np.degrees(wrap_angle(np.asarray(phi_rad, dtype=np.float64)))
    lw = _checked_log_weights(log_weights, phi.shape)
    if not np.isfinite(phi).all():
        raise ValueError("phi contains non-finite values")
    if not 0.0 < bin_deg <= 360.0 or (360.0 / bin_deg) % 1 > 1e-9:
        raise ValueError(f"bin_deg must divide 360, got {bin_deg}")
    n_bins = round(360.0 / bin_deg)
    index = np.minimum(((phi + 180.0) // bin_deg).astype(int), n_bins - 1)
    return [{"phi_deg": [-180.0 + b * bin_deg, -180.0 + (b + 1) * bin_deg],
             "samples": int((index == b).sum()), **_group_weights(lw, index == b)}
            for b in range(n_bins) if (index == b).any()]


def compare_ramachandran(phi_md: np.ndarray, psi_md: np.ndarray, phi_flow: np.ndarray,
                         psi_flow: np.ndarray, bins: int = RAMACHANDRAN_BINS,
                         pseudocount: float = DIVERGENCE_PSEUDOCOUNT) -> dict:
    """Histogram divergences and basin populations of MD vs flow torsions (radians).

    Returns a JSON-ready dict: bins, pseudocount, kl_md_flow, js (nats), basin definitions,
    populations in percent for MD and flow, and flow - MD in percentage points.
    """
    h_md = ramachandran_histogram(phi_md, psi_md, bins)
    h_flow = ramachandran_histogram(phi_flow, psi_flow, bins)
    div = histogram_divergences(h_md, h_flow, pseudocount)
    pop_md = basin_populations(phi_md, psi_md)
    pop_flow = basin_populations(phi_flow, psi_flow)
    return {
        "bins": bins,
        "range_rad": [-np.pi, np.pi],
        "pseudocount_per_bin": pseudocount,
        "n_md": int(h_md.sum()),
        "n_flow": int(h_flow.sum()),
        **div,
        "basin_definitions": dict(BASIN_DEFINITIONS),
        "basins_md_percent": pop_md,
        "basins_flow_percent": pop_flow,
        "basins_difference_pp": {k: pop_flow[k] - pop_md[k] for k in pop_md},
    }
