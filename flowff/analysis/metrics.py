"""Evaluation metrics of a flow energy: likelihood, force errors, importance weights.

Units: energies in kT (reduced), forces in kT/nm, positions in nm. Reference forces from MD or
OpenMM come in kJ/mol/nm and are divided by kT (kJ/mol) here.

Force errors of predicted forces f_flow and reference forces f_ref, both (N, n_atoms, 3) kT/nm:

    FME  = mean over frames and atoms of |f_flow - f_ref|^2            (kT/nm)^2
    RMSE = sqrt(mean over frames, atoms and x/y/z of (f_flow - f_ref)^2) = sqrt(FME / 3)   kT/nm

Importance weights of flow samples x ~ q: log w = -u_target(x)/kT - log q(x). Everything that
sums weights works in log space (log-sum-exp with the maximum factored out).
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The floating dtype a model computes in: its ``dtype`` attribute, else its first tensor's."""
    dtype = getattr(model, "dtype", None)
    if isinstance(dtype, torch.dtype):
        return dtype
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float64


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's first parameter or buffer (CPU if it has none)."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def flow_energies_and_forces(
    model: torch.nn.Module,
    positions_nm: np.ndarray,
    batch_size: int = 1000,
    progress: bool = False,
    desc: str = "flow forces",
) -> tuple[np.ndarray, np.ndarray]:
    """Reduced flow energies u_f/kT = -log p_f (N,) and forces -d(u_f/kT)/dx (N, n, 3) kT/nm.

    ``positions_nm`` (N, n, 3) nm; computed in the model's dtype in batches of ``batch_size``
    with one autograd pass per batch (``model.reduced_energy``). Float64 numpy results.
    """
    pos = np.asarray(positions_nm)
    if pos.ndim != 3 or pos.shape[-1] != 3:
        raise ValueError(f"positions must have shape (N, n_atoms, 3), got {pos.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dtype, device = model_dtype(model), model_device(model)
    energies = np.empty(len(pos))
    forces = np.empty(pos.shape, dtype=np.float64)
    starts = range(0, len(pos), batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", disable=not progress, leave=False):
        stop = start + batch_size
        x = torch.as_tensor(pos[start:stop], dtype=dtype, device=device).requires_grad_(True)
        with torch.enable_grad():
            u = model.reduced_energy(x)
            (grad,) = torch.autograd.grad(u.sum(), x)
        energies[start:stop] = u.detach().cpu().double().numpy()
        forces[start:stop] = -grad.detach().cpu().double().numpy()
    return energies, forces


def force_errors(pred_kT_per_nm: np.ndarray, ref_kT_per_nm: np.ndarray) -> dict[str, float]:
    """FME ((kT/nm)^2, mean over frames and atoms of |df|^2) and RMSE (kT/nm, per component).

    Both arrays (N, n_atoms, 3) in kT/nm, N >= 1, all finite (filter non-finite frames first).
    """
    pred = np.asarray(pred_kT_per_nm, dtype=np.float64)
    ref = np.asarray(ref_kT_per_nm, dtype=np.float64)
    if pred.shape != ref.shape or pred.ndim != 3 or pred.shape[-1] != 3:
        raise ValueError(
            f"force arrays must both have shape (N, n_atoms, 3), got {pred.shape} and {ref.shape}"
        )
    if len(pred) == 0:
        raise ValueError("force errors need at least one frame")
    if not (np.isfinite(pred).all() and np.isfinite(ref).all()):
        raise ValueError("force arrays contain non-finite values; filter those frames first")
    sq = ((pred - ref) ** 2).sum(-1)
    fme = float(sq.mean())
    return {"fme_kT2_per_nm2": fme, "rmse_kT_per_nm": float(np.sqrt(fme / 3.0))}


def log_sum_exp(log_values: np.ndarray) -> float:
    """log(sum(exp(a))) of a 1-D array that may hold -inf (then ignored); -inf if all are."""
    a = np.asarray(log_values, dtype=np.float64).ravel()
    if np.isnan(a).any() or np.isposinf(a).any():
        raise ValueError("log values must not contain NaN or +inf")
    if a.size == 0:
        raise ValueError("log_sum_exp of an empty array")
    peak = a.max()
    if peak == -np.inf:
        return -np.inf
    return float(peak + np.log(np.exp(a - peak).sum()))


def log_mean_exp(log_values: np.ndarray) -> float:
    """log(mean(exp(a))) of a 1-D array, stably (see :func:`log_sum_exp`)."""
    a = np.asarray(log_values, dtype=np.float64).ravel()
    return log_sum_exp(a) - float(np.log(max(a.size, 1)))


def importance_log_weights(u_target_kT: np.ndarray, log_q: np.ndarray) -> np.ndarray:
    """log w = -u_target/kT - log q of samples x ~ q; both (N,), reduced energies in kT."""
    u = np.asarray(u_target_kT, dtype=np.float64)
    lq = np.asarray(log_q, dtype=np.float64)
    if u.shape != lq.shape or u.ndim != 1:
        raise ValueError(f"u_target and log_q must both be 1-D of one length, got "
                         f"{u.shape} and {lq.shape}")
    return -u - lq


def kish_ess(log_weights: np.ndarray) -> float:
    """Kish effective sample size (sum w)^2 / sum w^2 from log weights (-inf: zero weight).

    Returns 0 when every weight is zero. Raises on NaN or +inf log weights.
    """
    lw = np.asarray(log_weights, dtype=np.float64).ravel()
    lse1 = log_sum_exp(lw)
    if lse1 == -np.inf:
        return 0.0
    return float(np.exp(2.0 * lse1 - log_sum_exp(2.0 * lw)))


def kish_efficiency(log_weights: np.ndarray, n_total: int | None = None) -> float:
    """ESS / N with N = ``n_total`` (default: the number of weights), in [0, 1].

    Pass ``n_total`` larger than the number of weights to count samples without a valid weight
    (non-finite samples) as wasted, i.e. as zero weights.
    """
    lw = np.asarray(log_weights, dtype=np.float64).ravel()
    n = lw.size if n_total is None else int(n_total)
    if n < lw.size or n < 1:
        raise ValueError(f"n_total ({n}) must be >= the number of weights ({lw.size}) and >= 1")
    return kish_ess(lw) / n


def kish_efficiency_bootstrap(log_weights: np.ndarray, n_resamples: int = 200,
                              seed: int = 0) -> np.ndarray:
    """Kish ESS / N of ``n_resamples`` bootstrap resamples of the N samples, (n_resamples,).

    ``log_weights`` (N,) holds every sample, -inf for a wasted one. Its spread is the
    statistical error of :func:`kish_efficiency`; heavy-tailed weights make it an optimistic
    one (the rare largest weights are missing from most resamples as from the sample itself).
    """
    lw = np.asarray(log_weights, dtype=np.float64).ravel()
    if lw.size == 0 or n_resamples < 1:
        raise ValueError("need at least one weight and one resample")
    rng = np.random.default_rng(seed)
    return np.array([kish_efficiency(lw[rng.integers(0, lw.size, lw.size)])
                     for _ in range(n_resamples)])


def pooled_kish_efficiency(flow_sample_reports: list[dict]) -> float:
    """Kish ESS / N of the weights of several sample sets of one model, pooled.

    ``flow_sample_reports``: the ``flow_samples`` parts of evaluation reports of one model and
    target (log w = -u/kT - log q share one scale), each with ``n_samples``, ``n_broken``,
    ``ess`` and ``log_z_estimate`` (log mean weight of its valid samples). Each set's sum of
    weights is n_valid Z, its sum of squared weights (n_valid Z)^2 / ESS; the pooled Kish ESS is
    (sum of sums)^2 / (sum of squared sums) over all N. The same as the Kish ESS of the
    concatenated log weights (``flowff evaluate --save-samples``), without them.
    """
    if not flow_sample_reports:
        raise ValueError("no reports to pool")
    log_sum_w, log_sum_w2, n_total = [], [], 0
    for report in flow_sample_reports:
        n_total += int(report["n_samples"])
        n_valid = int(report["n_samples"]) - int(report["n_broken"])
        ess = float(report["ess"])
        if n_valid == 0 or ess <= 0.0:
            continue  # every weight zero: adds samples, no weight
        log_sw = float(np.log(n_valid)) + float(report["log_z_estimate"])
        if not np.isfinite(log_sw):
            raise ValueError(f"report with a non-finite log Z: {report['log_z_estimate']}")
        log_sum_w.append(log_sw)
        log_sum_w2.append(2.0 * log_sw - float(np.log(ess)))
    if not log_sum_w:
        return 0.0
    return float(np.exp(2.0 * log_sum_exp(np.array(log_sum_w))
                        - log_sum_exp(np.array(log_sum_w2)))) / n_total


def pareto_khat(log_weights: np.ndarray) -> float:
    """Pareto shape k of the largest importance weights: how heavy their tail is (PSIS k-hat).

    Fits a generalized Pareto distribution to the M = min(N/5, 3 sqrt(N)) largest finite
    weights (above the next one) by the Zhang & Stephens (2009) posterior-mean estimate, shrunk
    towards 0.5 by 10 pseudo-observations (Vehtari et al., "Pareto smoothed importance sampling",
    JMLR 2024). k < 0.5: the weights have finite variance and Kish ESS converges like 1/N;
    0.5 < k < 0.7: slowly; k > 0.7: a few rare samples carry the weight, so Kish ESS / N from N
    samples, and its bootstrap error, are unreliable (another seed can give a very different
    figure). Scale-invariant (adding a constant to ``log_weights`` changes nothing); -inf
    entries (wasted samples) are left out. NaN with fewer than 25 finite weights or a flat tail.
    Our own 30 lines rather than a dependency on ArviZ (xarray, pandas) for one estimator.
    """
    lw = np.asarray(log_weights, dtype=np.float64).ravel()
    if np.isnan(lw).any() or (lw == np.inf).any():
        raise ValueError("log weights must not be NaN or +inf")
    lw = np.sort(lw[np.isfinite(lw)])
    m = int(min(0.2 * lw.size, 3.0 * np.sqrt(lw.size)))
    if m < 5:
        return float("nan")
    exceed = np.exp(lw[-m:] - lw[-1]) - np.exp(lw[-m - 1] - lw[-1])  # ascending, max weight 1
    exceed = exceed[exceed > 0.0]  # ties with the threshold carry no tail information
    return _gpd_shape(exceed) if exceed.size >= 5 else float("nan")


def _gpd_shape(x: np.ndarray) -> float:
    """Generalized Pareto shape xi (> 0: heavy tail) of ascending positive exceedances ``x``.

    Zhang & Stephens (2009): a grid of theta = -xi / sigma, each theta's profile likelihood
    weights it, xi from the weighted mean theta; then Vehtari et al.'s prior (10 obs. at 0.5).
    """
    n = x.size
    grid = 30 + int(np.sqrt(n))
    first_quartile = x[max(int(n / 4 + 0.5) - 1, 0)]
    j = np.arange(1, grid + 1, dtype=np.float64)
    theta = 1.0 / x[-1] + (1.0 - np.sqrt(grid / (j - 0.5))) / (3.0 * first_quartile)
    xi = np.log1p(-theta[:, None] * x[None, :]).mean(axis=1)  # xi(theta), one per grid point
    profile = n * (np.log(-theta / xi) - xi - 1.0)  # profile log-likelihood of each theta
    weights = 1.0 / np.exp(profile[None, :] - profile[:, None]).sum(axis=1)
    theta_hat = float((weights * theta).sum() / weights.sum())
    xi_hat = float(np.log1p(-theta_hat * x).mean())
    return (n * xi_hat + 10 * 0.5) / (n + 10)


def importance_at_md_frames(u_target_kT: np.ndarray, u_flow_kT: np.ndarray,
                            log_z: float) -> dict[str, float | int | dict[str, float]]:
    """Importance weights w/Z = p/q evaluated at frames x ~ p (equilibrium MD of the target).

    ``u_target_kT``, ``u_flow_kT`` (N,): the target's u/kT and the flow's -log q at the frames;
    ``log_z``: log Z from flow samples (:func:`sample_metrics`). E_p[w/Z] = integral p^2/q =
    1 + chi^2(p || q), and 1 / E_p[w/Z] is the Kish ESS / N that flow samples reach as N grows.
    Flow samples rarely land where q << p, so their ESS misses such holes until one sample hits
    them (then it collapses); MD frames sit there in proportion to p and show them at once.
    Returns log E_p[w/Z], ``kish_efficiency_from_md_frames`` = 1 / E_p[w/Z], quantiles of
    log(w/Z) and the fractions of frames above 10x and 1000x (of Z).
    """
    u_t = np.asarray(u_target_kT, dtype=np.float64)
    u_f = np.asarray(u_flow_kT, dtype=np.float64)
    if u_t.shape != u_f.shape or u_t.ndim != 1 or u_t.size == 0:
        raise ValueError(f"need non-empty 1-D energies of one shape, got {u_t.shape}, {u_f.shape}")
    if not np.isfinite(log_z):
        raise ValueError(f"log Z must be finite, got {log_z}")
    ok = np.isfinite(u_t) & np.isfinite(u_f)
    if not ok.any():
        raise ValueError("no frame with finite energies")
    lw = -u_t[ok] + u_f[ok] - float(log_z)
    log_mean = log_mean_exp(lw)
    quantiles = np.quantile(lw, [0.5, 0.9, 0.99])
    return {
        "n_frames": int(ok.sum()),
        "log_mean_weight_over_z": log_mean,
        # clipped to the float range: a model off by > 700 kT somewhere reads as 1e-304
        "kish_efficiency_from_md_frames": float(np.exp(np.clip(-log_mean, -700.0, 700.0))),
        "log_weight_over_z_quantiles": {"50": float(quantiles[0]), "90": float(quantiles[1]),
                                        "99": float(quantiles[2]), "max": float(lw.max())},
        "frames_weight_above_10x": float((lw > np.log(10.0)).mean()),
        "frames_weight_above_1000x": float((lw > np.log(1000.0)).mean()),
    }


def reverse_kl_estimate(u_target_kT: np.ndarray, log_q: np.ndarray) -> float:
    """Monte-Carlo estimate of E_q[u_target/kT + log q] (kT) = KL(q || p) - log Z.

    Both (N,) finite, from samples x ~ q.
    """
    u = np.asarray(u_target_kT, dtype=np.float64)
    lq = np.asarray(log_q, dtype=np.float64)
    if u.shape != lq.shape or u.ndim != 1 or u.size == 0:
        raise ValueError(f"need two non-empty 1-D arrays of one length, got {u.shape}, {lq.shape}")
    if not (np.isfinite(u).all() and np.isfinite(lq).all()):
        raise ValueError("reverse KL needs finite energies and log densities; filter first")
    return float((u + lq).mean())


def md_frame_metrics(
    model: torch.nn.Module,
    positions_nm: np.ndarray,
    forces_kJ_per_mol_nm: np.ndarray,
    kT_kJ_per_mol: float,
    batch_size: int = 1000,
    progress: bool = False,
) -> tuple[dict[str, float | int], np.ndarray, np.ndarray]:
    """NLL (kT), force RMSE (kT/nm) and FME ((kT/nm)^2) of a flow on MD frames.

    ``positions_nm`` (N, n, 3) nm and reference ``forces_kJ_per_mol_nm`` (N, n, 3). Frames where
    the flow energy or forces are not finite are counted (``n_nonfinite``) and left out of the
    means. Returns (metrics, flow energies (N,) kT, flow forces (N, n, 3) kT/nm).
    """
    if kT_kJ_per_mol <= 0:
        raise ValueError(f"kT must be positive kJ/mol, got {kT_kJ_per_mol}")
    pos = np.asarray(positions_nm)
    ref = np.asarray(forces_kJ_per_mol_nm, dtype=np.float64) / kT_kJ_per_mol
    if pos.shape != ref.shape:
        raise ValueError(f"positions {pos.shape} and forces {ref.shape} differ in shape")
    if len(pos) == 0:
        raise ValueError("no test frames to evaluate")
    u, f = flow_energies_and_forces(model, pos, batch_size, progress, desc="test frames")
    ok = np.isfinite(u) & np.isfinite(f).all(axis=(1, 2)) & np.isfinite(ref).all(axis=(1, 2))
    metrics: dict[str, float | int] = {
        "n_frames": int(len(pos)),
        "n_nonfinite": int((~ok).sum()),
        "nll_kT": float(u[ok].mean()) if ok.any() else float("nan"),
    }
    if ok.any():
        errs = force_errors(f[ok], ref[ok])
        metrics["force_rmse_kT_per_nm"] = errs["rmse_kT_per_nm"]
        metrics["fme_kT2_per_nm2"] = errs["fme_kT2_per_nm2"]
    else:
        metrics["force_rmse_kT_per_nm"] = metrics["fme_kT2_per_nm2"] = float("nan")
    return metrics, u, f


#: Target energy above the samples' median (kT) beyond which a sample counts as high-energy
#: (a clash: at 300 K, e^-100 of the probability).
HIGH_ENERGY_KT: float = 100.0


def sample_metrics(
    log_q: np.ndarray,
    positions_nm: np.ndarray,
    u_flow_kT: np.ndarray,
    flow_forces_kT_per_nm: np.ndarray,
    u_target_kT: np.ndarray,
    target_forces_kT_per_nm: np.ndarray,
) -> dict[str, float | int | list[float]]:
    """Metrics of N flow samples x ~ q against the target (classical) potential.

    Inputs (N,) or (N, n, 3): the sampler's log q(x), positions (nm), the flow's recomputed
    u_f(x)/kT and forces, the target's u(x)/kT and forces (kT/nm). Samples are classified:

    * *broken*: non-finite positions, non-finite log q, or NaN target energy: no valid weight;
      counted as zero weight (wasted) in the Kish efficiency ESS / N with N = all samples.
    * *finite*: additionally finite u_target, flow and target forces: used for the reverse KL
      estimate, the force errors and log q consistency. A finite-position sample with
      u_target = +inf (a clash) has weight zero but is left out of these means.

    log Z (up to the constants of both densities) = log-mean-exp of the valid log weights.
    The Kish efficiency comes with its bootstrap standard error and 90 % interval
    (``kish_efficiency_bootstrap_se``, ``kish_efficiency_bootstrap_90``) and the Pareto k-hat of
    the weights' tail (``importance_pareto_khat``; > 0.7: both are unreliable).
    A few clashed samples (u_target ~ 1e6 kT) dominate the reverse KL and the sample force
    error, so both are also given over the finite samples whose u_target is within
    HIGH_ENERGY_KT of the finite samples' median (``*_typical``), with the count left out.
    """
    lq = np.asarray(log_q, dtype=np.float64)
    n = lq.size
    pos = np.asarray(positions_nm, dtype=np.float64)
    u_t = np.asarray(u_target_kT, dtype=np.float64)
    u_f = np.asarray(u_flow_kT, dtype=np.float64)
    f_f = np.asarray(flow_forces_kT_per_nm, dtype=np.float64)
    f_t = np.asarray(target_forces_kT_per_nm, dtype=np.float64)
    if n == 0:
        raise ValueError("no samples to evaluate")
    if not (pos.shape[0] == u_t.size == u_f.size == f_f.shape[0] == f_t.shape[0] == n):
        raise ValueError("sample arrays disagree in length")
    finite_pos = np.isfinite(pos).all(axis=(1, 2))
    valid = finite_pos & np.isfinite(lq) & ~np.isnan(u_t)
    finite = (valid & np.isfinite(u_t) & np.isfinite(u_f)
              & np.isfinite(f_f).all(axis=(1, 2)) & np.isfinite(f_t).all(axis=(1, 2)))
    metrics: dict[str, float | int | list[float]] = {
        "n_samples": int(n),
        "n_nonfinite_positions": int((~finite_pos).sum()),
        "n_nonfinite_log_q": int((~np.isfinite(lq)).sum()),
        "n_broken": int((~valid).sum()),
        "n_infinite_target_energy": int((valid & ~np.isfinite(u_t)).sum()),
        "n_nonfinite_forces_or_flow_energy": int((valid & np.isfinite(u_t) & ~finite).sum()),
        "n_finite": int(finite.sum()),
    }
    nan = float("nan")
    if valid.any():
        lw = importance_log_weights(u_t[valid], lq[valid])
        ess = kish_ess(lw)
        every = np.full(n, -np.inf)  # wasted samples count as zero weights in resamples too
        every[valid] = lw
        boot = kish_efficiency_bootstrap(every)
        metrics.update(ess=ess, kish_efficiency=ess / n, log_z_estimate=log_mean_exp(lw),
                       kish_efficiency_bootstrap_se=float(boot.std(ddof=1)) if n > 1 else nan,
                       kish_efficiency_bootstrap_90=[float(v) for v in
                                                     np.quantile(boot, [0.05, 0.95])],
                       importance_pareto_khat=pareto_khat(lw))
    else:
        metrics.update(ess=0.0, kish_efficiency=0.0, log_z_estimate=nan,
                       kish_efficiency_bootstrap_se=nan, kish_efficiency_bootstrap_90=[nan, nan],
                       importance_pareto_khat=nan)
    if finite.any():
        errs = force_errors(f_f[finite], f_t[finite])
        gap = np.abs(lq[finite] + u_f[finite])
        metrics.update(
            reverse_kl_kT=reverse_kl_estimate(u_t[finite], lq[finite]),
            force_rmse_kT_per_nm=errs["rmse_kT_per_nm"],
            fme_kT2_per_nm2=errs["fme_kT2_per_nm2"],
            log_q_consistency_mean_abs_kT=float(gap.mean()),
            log_q_consistency_max_abs_kT=float(gap.max()),
        )
        typical = finite & (u_t <= np.median(u_t[finite]) + HIGH_ENERGY_KT)
        typical_errs = force_errors(f_f[typical], f_t[typical])
        metrics.update(
            n_high_energy=int((finite & ~typical).sum()),
            reverse_kl_kT_typical=reverse_kl_estimate(u_t[typical], lq[typical]),
            force_rmse_kT_per_nm_typical=typical_errs["rmse_kT_per_nm"],
        )
    else:
        metrics.update(reverse_kl_kT=nan, force_rmse_kT_per_nm=nan, fme_kT2_per_nm2=nan,
                       log_q_consistency_mean_abs_kT=nan, log_q_consistency_max_abs_kT=nan,
                       n_high_energy=0, reverse_kl_kT_typical=nan,
                       force_rmse_kT_per_nm_typical=nan)
    return metrics
