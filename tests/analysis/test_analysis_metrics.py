"""Metrics against hand-computed values: force errors, ESS, log Z, reverse KL, NLL."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flowff.analysis.metrics import (
    flow_energies_and_forces,
    force_errors,
    importance_at_md_frames,
    importance_log_weights,
    kish_efficiency,
    kish_efficiency_bootstrap,
    kish_ess,
    log_mean_exp,
    log_sum_exp,
    md_frame_metrics,
    pareto_khat,
    pooled_kish_efficiency,
    reverse_kl_estimate,
    sample_metrics,
)


def test_force_errors_by_hand() -> None:
    ref = np.zeros((2, 2, 3))
    pred = np.zeros((2, 2, 3))
    pred[1, 0] = [3.0, 4.0, 0.0]  # |df|^2 = 25 at one of 4 (frame, atom) pairs
    errs = force_errors(pred, ref)
    assert errs["fme_kT2_per_nm2"] == pytest.approx(25.0 / 4.0)
    assert errs["rmse_kT_per_nm"] == pytest.approx(math.sqrt(25.0 / 12.0))


def test_force_errors_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="shape"):
        force_errors(np.zeros((2, 2, 3)), np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        force_errors(np.full((1, 2, 3), np.nan), np.zeros((1, 2, 3)))


def test_log_sum_exp_is_stable_and_exact() -> None:
    assert log_mean_exp(np.log([1.0, 3.0])) == pytest.approx(math.log(2.0))
    assert log_sum_exp(np.array([1000.0, 1000.0])) == pytest.approx(1000.0 + math.log(2.0))
    assert log_sum_exp(np.array([-np.inf, 0.0])) == pytest.approx(0.0)
    assert log_sum_exp(np.array([-np.inf, -np.inf])) == -np.inf
    with pytest.raises(ValueError, match="NaN"):
        log_sum_exp(np.array([0.0, np.nan]))


def test_kish_ess_equal_and_dominant_weights() -> None:
    assert kish_efficiency(np.full(7, -3.2)) == pytest.approx(1.0)
    dominant = np.array([0.0, -np.inf, -np.inf, -np.inf])
    assert kish_efficiency(dominant) == pytest.approx(1.0 / 4.0)
    assert kish_efficiency(np.array([0.0, -800.0, -900.0, -750.0, -1e4])) == pytest.approx(0.2)
    assert kish_ess(np.full(3, -np.inf)) == 0.0


def test_kish_ess_by_hand_at_extreme_scales() -> None:
    # w = (1, 2, 3): ESS = 6^2 / 14; shifting all log weights must not change it (no overflow).
    for shift in (0.0, 1500.0, -1500.0):
        lw = np.log([1.0, 2.0, 3.0]) + shift
        assert kish_ess(lw) == pytest.approx(36.0 / 14.0, rel=1e-12)
    # Samples without a valid weight count as wasted when n_total is larger.
    assert kish_efficiency(np.log([1.0, 2.0, 3.0]), n_total=6) == pytest.approx(36.0 / 14.0 / 6)
    with pytest.raises(ValueError, match="n_total"):
        kish_efficiency(np.zeros(3), n_total=2)


def test_kish_bootstrap_error_matches_the_spread_of_independent_estimates() -> None:
    # Log-normal weights (sigma 0.5, true efficiency exp(-0.25)): the bootstrap standard error
    # of one sample of 2000, averaged over samples, is close to the standard deviation over
    # independent samples of 2000 (heavier tails make it optimistic: see the docstring).
    rng = np.random.default_rng(1)
    independent = [kish_efficiency(0.5 * rng.normal(size=2000)) for _ in range(300)]
    assert abs(np.mean(independent) - math.exp(-0.25)) < 0.003
    boots = [kish_efficiency_bootstrap(0.5 * rng.normal(size=2000), n_resamples=100, seed=i)
             for i in range(20)]
    assert boots[0].shape == (100,)
    assert 0.7 < np.mean([b.std() for b in boots]) / np.std(independent) < 1.3
    # Equal weights have no spread; wasted samples (-inf) stay wasted in every resample.
    np.testing.assert_allclose(kish_efficiency_bootstrap(np.zeros(50), n_resamples=20), 1.0)
    half = np.array([0.0, -np.inf] * 500)
    assert 0.4 < kish_efficiency_bootstrap(half, n_resamples=50).mean() < 0.6
    with pytest.raises(ValueError, match="at least one"):
        kish_efficiency_bootstrap(np.array([]))


@pytest.mark.parametrize("xi", [0.2, 0.5, 0.9])
def test_pareto_khat_recovers_the_tail_shape_of_generalized_pareto_weights(xi: float) -> None:
    # Weights drawn from a generalized Pareto distribution have that shape in every upper tail;
    # the estimate also agrees with SciPy's maximum likelihood fit to the same exceedances.
    from scipy.stats import genpareto

    w = genpareto.rvs(c=xi, size=20000, random_state=np.random.default_rng(3))
    k = pareto_khat(np.log(w))
    assert abs(k - xi) < 0.12
    m = int(3 * math.sqrt(w.size))
    top = np.sort(w)[-m - 1:]
    mle, _, _ = genpareto.fit(top[1:] - top[0], floc=0.0)
    assert abs(k - mle) < 0.05
    # Scale invariant, and wasted samples (-inf) are left out.
    assert pareto_khat(np.log(w) - 700.0) == pytest.approx(k, abs=1e-9)
    assert pareto_khat(np.append(np.log(w), [-np.inf] * 10)) == pytest.approx(k, abs=1e-9)


def test_pareto_khat_separates_light_and_heavy_importance_weights() -> None:
    # Proposal q = N(0, 1), target p = N(0, s^2): log w = x^2 (1 - 1/s^2) / 2 + c. A wider target
    # gives unbounded weights with tail shape 1 - 1/s^2 (s^2 = 4: 0.75, past the 0.7 line where
    # Kish ESS becomes unreliable); a narrower one bounded weights (shape < 0).
    x = np.random.default_rng(0).normal(size=20000)
    heavy = pareto_khat(x**2 * (1 - 1 / 4.0) / 2)
    light = pareto_khat(x**2 * (1 - 1 / 0.5) / 2)
    assert 0.6 < heavy < 0.9
    assert light < 0.3
    assert math.isnan(pareto_khat(np.zeros(100)))  # equal weights: no tail
    assert math.isnan(pareto_khat(np.arange(20.0)))  # too few weights
    with pytest.raises(ValueError, match="NaN"):
        pareto_khat(np.array([0.0, np.nan] * 50))


def test_importance_weights_of_exact_target_are_constant() -> None:
    # Target u/kT = -log q + c: every log weight is -c, ESS/N = 1, log Z = -c, KL estimate = c.
    rng = np.random.default_rng(0)
    log_q = rng.normal(size=50) * 10
    c = 17.5
    lw = importance_log_weights(-log_q + c, log_q)
    np.testing.assert_allclose(lw, -c)
    assert kish_efficiency(lw) == pytest.approx(1.0)
    assert log_mean_exp(lw) == pytest.approx(-c)
    assert reverse_kl_estimate(-log_q + c, log_q) == pytest.approx(c)
    with pytest.raises(ValueError, match="finite"):
        reverse_kl_estimate(np.array([np.inf]), np.array([0.0]))


def test_md_frame_metrics_with_known_forces(stand_in) -> None:
    """Stand-in forces are -(x - x0) / sigma^2; reference = flow + 1 kT/nm along x per atom."""
    rng = np.random.default_rng(1)
    x0 = stand_in.reference.numpy()
    positions = x0 + 0.005 * rng.normal(size=(6, *x0.shape))
    sigma2 = stand_in.sigma**2
    flow_forces = -(positions - x0) / sigma2
    offset = np.zeros_like(positions)
    offset[..., 0] = 1.0
    ref_kJ = (flow_forces + offset) * stand_in.kT
    metrics, u, f = md_frame_metrics(stand_in, positions, ref_kJ, stand_in.kT, batch_size=4)
    expected_u = 0.5 * ((positions - x0) ** 2).sum((1, 2)) / sigma2 + stand_in.log_norm
    np.testing.assert_allclose(u, expected_u, rtol=1e-12)
    np.testing.assert_allclose(f, flow_forces, rtol=1e-10, atol=1e-9)
    assert metrics["nll_kT"] == pytest.approx(expected_u.mean(), rel=1e-12)
    assert metrics["fme_kT2_per_nm2"] == pytest.approx(1.0, rel=1e-9)
    assert metrics["force_rmse_kT_per_nm"] == pytest.approx(math.sqrt(1.0 / 3.0), rel=1e-9)
    assert metrics["n_frames"] == 6 and metrics["n_nonfinite"] == 0


def test_md_frame_metrics_counts_nonfinite_frames(stand_in) -> None:
    x0 = stand_in.reference.numpy()
    positions = np.stack([x0, x0, x0])
    positions[1, 3, 2] = np.nan
    metrics, _, _ = md_frame_metrics(stand_in, positions, np.zeros_like(positions), 2.5)
    assert metrics["n_nonfinite"] == 1
    assert metrics["nll_kT"] == pytest.approx(stand_in.log_norm)
    assert metrics["fme_kT2_per_nm2"] == 0.0


def test_flow_energies_follow_model_dtype(stand_in) -> None:
    x = stand_in.reference.numpy()[None].astype(np.float32)
    u, f = flow_energies_and_forces(stand_in.to(torch.float32), x)
    assert u.dtype == np.float64 and f.shape == x.shape
    assert u[0] == pytest.approx(stand_in.log_norm, rel=1e-6)


def test_sample_metrics_counts_every_kind_of_bad_sample() -> None:
    n, atoms = 6, 2
    pos = np.zeros((n, atoms, 3))
    log_q = np.zeros(n)
    u_t = np.ones(n)
    forces = np.zeros((n, atoms, 3))
    u_f = np.zeros(n)
    pos[0, 1, 1] = np.nan        # broken: non-finite position
    log_q[1] = -np.inf           # broken: non-finite log q
    u_t[2] = np.inf              # clash: zero weight, left out of the means
    f_t = forces.copy()
    f_t[3, 0, 0] = np.inf        # valid weight, but forces not finite
    m = sample_metrics(log_q, pos, u_f, forces, u_t, f_t)
    assert m["n_nonfinite_positions"] == 1
    assert m["n_nonfinite_log_q"] == 1
    assert m["n_broken"] == 2
    assert m["n_infinite_target_energy"] == 1
    assert m["n_nonfinite_forces_or_flow_energy"] == 1
    assert m["n_finite"] == 2
    # Valid weights: samples 2..5 with log w = (-inf, -1, -1, -1): ESS = 3, efficiency 3/6.
    assert m["ess"] == pytest.approx(3.0)
    assert m["kish_efficiency"] == pytest.approx(0.5)
    lo, hi = m["kish_efficiency_bootstrap_90"]
    assert 0.0 <= lo <= hi <= 1.0 and m["kish_efficiency_bootstrap_se"] > 0
    assert math.isnan(m["importance_pareto_khat"])  # 3 finite weights: too few for a tail fit
    assert m["log_z_estimate"] == pytest.approx(-1.0 + math.log(3.0 / 4.0))
    assert m["reverse_kl_kT"] == pytest.approx(1.0)
    assert m["fme_kT2_per_nm2"] == 0.0


def test_sample_metrics_set_clashes_apart_in_the_typical_figures() -> None:
    n, atoms = 5, 2
    rng = np.random.default_rng(0)
    pos = rng.standard_normal((n, atoms, 3))
    log_q = np.zeros(n)
    u_t = np.array([1.0, 2.0, 3.0, 4.0, 1.0e6])  # the last one is a clash
    f_t = rng.standard_normal((n, atoms, 3))
    f_f = f_t.copy()
    f_f[:4] += 1.0                               # unit error on every typical component
    f_t[4] += 1.0e4                              # huge error on the clash
    m = sample_metrics(log_q, pos, np.zeros(n), f_f, u_t, f_t)
    assert m["n_high_energy"] == 1
    assert m["reverse_kl_kT"] == pytest.approx((10.0 + 1.0e6) / 5)
    assert m["reverse_kl_kT_typical"] == pytest.approx(2.5)
    assert m["force_rmse_kT_per_nm_typical"] == pytest.approx(1.0)
    assert m["force_rmse_kT_per_nm"] > 1.0e3


def _weights_report(log_q: np.ndarray, u_t: np.ndarray) -> dict:
    n = log_q.size
    return sample_metrics(log_q, np.zeros((n, 2, 3)), np.zeros(n), np.zeros((n, 2, 3)), u_t,
                          np.zeros((n, 2, 3)))


def test_pooled_kish_efficiency_equals_that_of_the_concatenated_weights() -> None:
    rng = np.random.default_rng(7)
    sets = []
    for n, spread, offset in ((400, 0.5, 0.0), (300, 1.5, 3.0), (500, 1.0, -200.0)):
        log_q = rng.normal(0.0, spread, n) + offset  # one flow; the offset moves u as well
        u_t = -log_q + rng.normal(0.0, spread, n) - offset + 1.0
        sets.append((log_q, u_t))
    log_q, u_t = sets[0]
    log_q[3] = -np.inf  # a broken sample: zero weight, still counted in N
    u_t[5] = np.inf     # a clash: zero weight
    reports = [_weights_report(lq, u) for lq, u in sets]
    every = np.concatenate([np.where(np.isfinite(lq) & np.isfinite(u), -u - lq, -np.inf)
                            for lq, u in sets])
    expected = kish_ess(every) / every.size
    assert pooled_kish_efficiency(reports) == pytest.approx(expected, rel=1e-10)
    # one set alone is its own efficiency; pooling is not the mean of the efficiencies
    assert pooled_kish_efficiency(reports[:1]) == pytest.approx(reports[0]["kish_efficiency"])
    mean = np.mean([r["kish_efficiency"] for r in reports])
    assert abs(pooled_kish_efficiency(reports) - mean) > 0.01
    # a set of only broken samples adds to N but not to the weights
    dead = _weights_report(np.full(100, -np.inf), np.zeros(100))
    assert pooled_kish_efficiency([*reports, dead]) == pytest.approx(
        expected * every.size / (every.size + 100), rel=1e-10)
    with pytest.raises(ValueError, match="no reports"):
        pooled_kish_efficiency([])


def test_importance_at_md_frames_gives_the_asymptotic_kish_efficiency() -> None:
    # target p = N(0, 1) (unnormalised: u = x^2/2 + 3), flow q = N(0, s^2):
    # E_p[p/q] = s^2 / sqrt(2 s^2 - 1), the limit of Kish ESS / N of samples from q
    s, n = 1.5, 200_000
    rng = np.random.default_rng(11)
    x_p = rng.normal(0.0, 1.0, n)
    log_norm_q = np.log(s * np.sqrt(2 * np.pi))
    u_t, u_f = x_p ** 2 / 2 + 3.0, x_p ** 2 / (2 * s ** 2) + log_norm_q
    log_z = -3.0 + 0.5 * np.log(2 * np.pi)  # log of the integral of exp(-u_t)
    result = importance_at_md_frames(u_t, u_f, log_z)
    expected = np.sqrt(2 * s ** 2 - 1) / s ** 2
    assert result["kish_efficiency_from_md_frames"] == pytest.approx(expected, rel=0.01)
    x_q = rng.normal(0.0, s, n)  # flow samples converge to the same figure
    lw = -(x_q ** 2 / 2 + 3.0) + x_q ** 2 / (2 * s ** 2) + log_norm_q
    assert kish_efficiency(lw) == pytest.approx(expected, rel=0.01)
    assert result["n_frames"] == n and result["frames_weight_above_1000x"] == 0.0
    # a hole: q far too small on 1 % of the target's mass; few flow samples would show it
    u_hole = u_f.copy()
    u_hole[: n // 100] += 10.0
    holed = importance_at_md_frames(u_t, u_hole, log_z)
    assert holed["frames_weight_above_1000x"] == pytest.approx(0.01, abs=1e-3)
    assert holed["kish_efficiency_from_md_frames"] < 0.01
    assert holed["log_weight_over_z_quantiles"]["max"] > np.log(1000.0)
    u_nan = u_f.copy()
    u_nan[0] = np.nan  # non-finite frames are left out
    assert importance_at_md_frames(u_t, u_nan, log_z)["n_frames"] == n - 1
    with pytest.raises(ValueError, match="log Z must be finite"):
        importance_at_md_frames(u_t, u_f, float("nan"))
    with pytest.raises(ValueError, match="one shape"):
        importance_at_md_frames(u_t, u_f[:-1], log_z)
