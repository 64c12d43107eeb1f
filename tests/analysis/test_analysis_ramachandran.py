"""Ramachandran analysis: torsions vs a hand-written dihedral, histograms, divergences, basins."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flowff.analysis.ramachandran import (
    backbone_torsions,
    basin_populations,
    basin_replica_stderr,
    compare_ramachandran,
    histogram_divergences,
    importance_by_basin,
    importance_by_phi,
    ramachandran_histogram,
)
from flowff.openmm.classical import alanine_dipeptide_pdb_path, load_alanine_dipeptide


def _dihedral(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, p3: np.ndarray) -> np.ndarray:
    """IUPAC dihedral (radians) of four points (N, 3), by Blondel and Karplus' atan2 formula."""
    b0, b1, b2 = p1 - p0, p2 - p1, p3 - p2
    n12 = np.cross(b1, b2)
    y = np.linalg.norm(b1, axis=-1) * (b0 * n12).sum(-1)
    return np.arctan2(y, (np.cross(b0, b1) * n12).sum(-1))


def test_backbone_torsions_match_hand_dihedrals() -> None:
    topology, x0 = load_alanine_dipeptide()
    names = [(a.residue.name, a.name) for a in topology.atoms()]
    c_ace = names.index(("ACE", "C"))
    n_ala, ca, c_ala = (names.index(("ALA", k)) for k in ("N", "CA", "C"))
    n_nme = names.index(("NME", "N"))
    rng = np.random.default_rng(0)
    positions = x0 + 0.02 * rng.normal(size=(5, *x0.shape))
    with alanine_dipeptide_pdb_path() as pdb:
        phi, psi = backbone_torsions(positions, pdb)
        with pytest.raises(ValueError, match="shape"):
            backbone_torsions(positions[:, :10], pdb)
        with pytest.raises(ValueError, match="non-finite"):
            backbone_torsions(np.full_like(positions, np.nan), pdb)
    p = positions
    np.testing.assert_allclose(phi, _dihedral(p[:, c_ace], p[:, n_ala], p[:, ca], p[:, c_ala]),
                               atol=1e-5)
    np.testing.assert_allclose(psi, _dihedral(p[:, n_ala], p[:, ca], p[:, c_ala], p[:, n_nme]),
                               atol=1e-5)


def test_histogram_bins_and_wrapping() -> None:
    counts = ramachandran_histogram(np.array([-np.pi, np.pi, 0.0, 3 * np.pi / 2 + 0.01]),
                                    np.array([0.0, 0.0, -1e-12, 0.0]))
    assert counts.shape == (64, 64) and counts.sum() == 4
    # phi = pi wraps onto -pi (bin 0), 3pi/2 + 0.01 onto -pi/2 + 0.01 (bin 16); psi = 0: bin 32.
    assert counts[0, 32] == 2
    assert counts[16, 32] == 1
    assert counts[32, 31] == 1


def test_divergences_by_hand() -> None:
    same = np.array([[5, 0], [2, 9]])
    div = histogram_divergences(same, 3 * same)
    assert div["kl_md_flow"] == pytest.approx(0.0, abs=1e-12)
    assert div["js"] == pytest.approx(0.0, abs=1e-12)
    p, q = np.array([3.0, 1.0]), np.array([1.0, 1.0])
    div = histogram_divergences(p, q, pseudocount=0.0)
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    m = np.array([0.625, 0.375])
    js = 0.5 * (0.75 * math.log(0.75 / m[0]) + 0.25 * math.log(0.25 / m[1])) + 0.5 * (
        0.5 * math.log(0.5 / m[0]) + 0.5 * math.log(0.5 / m[1]))
    assert div["kl_md_flow"] == pytest.approx(kl, rel=1e-12)
    assert div["js"] == pytest.approx(js, rel=1e-12)
    disjoint = histogram_divergences(np.array([1, 0]), np.array([0, 1]))
    assert disjoint["js"] == pytest.approx(math.log(2.0), rel=1e-4)
    assert disjoint["kl_md_flow"] == pytest.approx(math.log(1.0 / 1e-6), rel=1e-3)
    assert math.isinf(histogram_divergences(np.array([1, 0]), np.array([0, 1]), 0.0)
                      ["kl_md_flow"])
    with pytest.raises(ValueError, match="shapes"):
        histogram_divergences(np.ones(3), np.ones(4))


def test_basin_populations_of_constructed_angles() -> None:
    deg = np.radians
    phi = deg(np.array([-60.0, -60.0, -60.0, -60.0, -60.0, -150.0, 60.0, 0.0, -60.0, 75.0,
                        170.0, 119.9, 120.1]))
    psi = deg(np.array([140.0, -40.0, 49.99, -99.99, -100.01, 180.0, 40.0, -40.0, 50.01, -60.0,
                        160.0, -60.0, 0.0]))
    # beta: (phi, psi) = (-60, 140), (-60, -100.01), (-150, 180), (-60, 50.01), (170, 160) -> 5;
    # alpha_R: (-60, -40), (-60, 49.99), (-60, -99.99), (120.1, 0) -> 4;
    # phi_positive: phi = 60, 0, 75, 119.9 -> 4.
    pops = basin_populations(phi, psi)
    assert pops == pytest.approx(
        {"beta_C7eq": 500.0 / 13, "alpha_R": 400.0 / 13, "phi_positive": 400.0 / 13})
    report = compare_ramachandran(phi, psi, phi[:5], psi[:5])
    # Flow (first five): beta 140, -100.01 -> 40 %; alpha -40, 49.99, -99.99 -> 60 %.
    assert report["basins_flow_percent"] == pytest.approx(
        {"beta_C7eq": 40.0, "alpha_R": 60.0, "phi_positive": 0.0})
    assert report["basins_difference_pp"] == pytest.approx(
        {"beta_C7eq": 40.0 - 500.0 / 13, "alpha_R": 60.0 - 400.0 / 13,
         "phi_positive": -400.0 / 13})
    assert report["n_md"] == 13 and report["n_flow"] == 5


def test_importance_by_basin_by_hand() -> None:
    deg = np.radians
    # beta, beta, alpha_R, alpha_R, phi_positive, phi_positive (a clash: zero weight)
    phi = deg(np.array([-60.0, -150.0, -60.0, -70.0, 60.0, 70.0]))
    psi = deg(np.array([140.0, 170.0, -40.0, -30.0, 40.0, 30.0]))
    lw = np.log(np.array([1.0, 3.0, 2.0, 2.0, 0.5, 1.0])) + 700.0  # no overflow at any shift
    lw[5] = -np.inf
    out = importance_by_basin(phi, psi, lw)
    assert out["beta_C7eq"]["samples_percent"] == pytest.approx(100 * 2 / 6)
    # sum w = 8.5: beta 4 / 8.5, alpha 4 / 8.5, phi > 0 0.5 / 8.5
    assert out["beta_C7eq"]["reweighted_percent"] == pytest.approx(100 * 4 / 8.5)
    assert out["phi_positive"]["reweighted_percent"] == pytest.approx(100 * 0.5 / 8.5)
    # Kish within: beta (1 + 3)^2 / (1 + 9) / 2 = 0.8; alpha 1; phi > 0 0.25 / 0.25 / 2 = 0.5
    assert out["beta_C7eq"]["kish_efficiency_within"] == pytest.approx(0.8)
    assert out["alpha_R"]["kish_efficiency_within"] == pytest.approx(1.0)
    assert out["phi_positive"]["kish_efficiency_within"] == pytest.approx(0.5)
    # sum w^2 = 18.25: beta 10, alpha 8, phi > 0 0.25; the overall N / ESS = 6 * 18.25 / 8.5^2
    shares = {name: out[name]["inverse_ess_share"] for name in out}
    assert shares == pytest.approx(
        {"beta_C7eq": 10 / 18.25, "alpha_R": 8 / 18.25, "phi_positive": 0.25 / 18.25})
    assert sum(shares.values()) == pytest.approx(1.0)
    # median of the five finite log w is log 2 (+700); phi > 0's finite one is log 0.5
    assert out["phi_positive"]["median_log_weight_offset"] == pytest.approx(math.log(0.25))
    assert out["alpha_R"]["median_log_weight_offset"] == pytest.approx(0.0, abs=1e-9)
    assert out["beta_C7eq"]["median_log_weight_offset"] == pytest.approx(math.log(3**0.5 / 2))
    # a basin without samples of positive weight has no median offset
    empty = importance_by_basin(phi[:4], psi[:4], lw[:4])["phi_positive"]
    assert empty["samples_percent"] == 0.0 and "median_log_weight_offset" not in empty
    # a basin whose weights are e^-1000 of the others' still has its own efficiency
    far = lw.copy()
    far[4:] = -1000.0 + np.log([1.0, 1.0])
    within = importance_by_basin(phi, psi, far)["phi_positive"]["kish_efficiency_within"]
    assert within == pytest.approx(1.0)
    with pytest.raises(ValueError, match="finite or -inf"):
        importance_by_basin(phi, psi, np.full(6, np.nan))
    with pytest.raises(ValueError, match="shape"):
        importance_by_basin(phi, psi, lw[:3])


def test_importance_by_phi_by_hand() -> None:
    deg = np.radians
    # bins of 90 degrees: [-180, -90) two samples, [-90, 0) one, [0, 90) two (one zero weight)
    phi = deg(np.array([-170.0, -100.0, -45.0, 30.0, 60.0, 180.0]))  # 180 wraps to -180
    lw = np.log(np.array([1.0, 3.0, 2.0, 0.5, 1.0, 2.0])) + 700.0
    lw[4] = -np.inf
    rows = importance_by_phi(phi, lw, bin_deg=90.0)
    assert [r["phi_deg"] for r in rows] == [[-180.0, -90.0], [-90.0, 0.0], [0.0, 90.0]]
    assert [r["samples"] for r in rows] == [3, 1, 2]
    # sum w = 8.5, sum w^2 = 1 + 9 + 4 + 0.25 + 4 = 18.25
    assert [r["weight_share"] for r in rows] == pytest.approx([6 / 8.5, 2 / 8.5, 0.5 / 8.5])
    assert [r["inverse_ess_share"] for r in rows] == pytest.approx(
        [14 / 18.25, 4 / 18.25, 0.25 / 18.25])
    # median of all finite log w: log 2 (+700); the [0, 90) bin's only finite one is log 0.5
    assert rows[2]["median_log_weight_offset"] == pytest.approx(math.log(0.25))
    assert rows[0]["median_log_weight_offset"] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="divide 360"):
        importance_by_phi(phi, lw, bin_deg=25.0)
    with pytest.raises(ValueError, match="finite or -inf"):
        importance_by_phi(phi, np.full(6, -np.inf))
    with pytest.raises(ValueError, match="1-D"):
        importance_by_phi(phi, lw[:3])
    with pytest.raises(ValueError, match="phi contains non-finite"):
        importance_by_phi(np.full(6, np.nan), lw)


def test_basin_replica_stderr_is_the_spread_of_replica_populations() -> None:
    # 4 replicas x 10 frames, time-major; replica r spends 2r + 2 of 10 frames in alpha_R
    # (psi = -40 deg), the rest in C7eq (psi = 160 deg); phi = -80 deg throughout
    n_frames, n_replicas = 10, 4
    alpha_frames = np.array([2, 4, 6, 8])
    psi = np.where(np.arange(n_frames)[:, None] < alpha_frames[None, :], -40.0, 160.0)
    phi = np.full_like(psi, -80.0)
    stderr = basin_replica_stderr(np.radians(phi).ravel(), np.radians(psi).ravel(), n_replicas)
    expected = 100.0 * np.std(alpha_frames / n_frames, ddof=1) / 2.0
    assert stderr["alpha_R"] == pytest.approx(expected)
    assert stderr["beta_C7eq"] == pytest.approx(expected)
    assert stderr["phi_positive"] == 0.0
    # replica-major order would mix replicas: the result must change
    wrong = basin_replica_stderr(np.radians(phi).T.ravel(), np.radians(psi).T.ravel(), n_replicas)
    assert wrong["alpha_R"] != pytest.approx(expected)
    with pytest.raises(ValueError, match="do not split into 3 replicas"):
        basin_replica_stderr(np.radians(phi).ravel(), np.radians(psi).ravel(), 3)
    with pytest.raises(ValueError, match=">= 2 replicas"):
        basin_replica_stderr(np.radians(phi).ravel(), np.radians(psi).ravel(), 1)
