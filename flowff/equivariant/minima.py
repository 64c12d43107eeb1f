"""Counting distinct local minima reached from samples (paper, Sec. 7.5).

Each configuration is minimised with scipy's L-BFGS-B (quasi-Newton, no momentum) on the
system's analytic energy and gradient (chunks minimised jointly, then polished one by one);
stationary points with a negative Hessian eigenvalue beyond the rigid-body zero modes are
discarded as saddles. Two minima are the same state when
their sorted pair-distance vectors differ by less than ``tolerance`` in Euclidean norm (invariant
to rotations, translations and permutations; distinct states may rarely merge, so counts are
lower bounds, as in the paper). Energies are in kT.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.optimize
import torch
from tqdm.auto import tqdm

from flowff.equivariant.systems import ParticleSystem


def energy_and_gradient(system: ParticleSystem, flat: np.ndarray) -> tuple[float, np.ndarray]:
    """Energy (kT) and gradient du/dx (flat, kT/length) of one configuration given flat (n d,)."""
    x = flat.reshape(system.n_particles, system.n_dims)
    r = x[:, None, :] - x[None, :, :]
    iu = np.triu_indices(system.n_particles, k=1)
    rp = r[iu]
    d = np.sqrt((rp * rp).sum(-1))
    energy = float(np.sum(system.pair_energy(d)))
    coef = system.pair_energy_derivative(d) / d
    pair_grad = coef[:, None] * rp
    grad = np.zeros_like(x)
    np.add.at(grad, iu[0], pair_grad)
    np.add.at(grad, iu[1], -pair_grad)
    k = system.tether_constant()
    if k != 0.0:
        centred = x - x.mean(axis=0)
        energy += 0.5 * k * float((centred * centred).sum())
        grad += k * centred
    return energy, grad.reshape(-1)


def _minimize_one(system: ParticleSystem, flat: np.ndarray, gtol: float, max_iter: int):
    with np.errstate(all="ignore"):
        return scipy.optimize.minimize(
            lambda f: energy_and_gradient(system, f), flat, jac=True, method="L-BFGS-B",
            options={"gtol": gtol, "maxiter": max_iter, "ftol": 1e-15},
        )


def _minimize_chunk(
    system: ParticleSystem, chunk: np.ndarray, gtol: float, max_iter: int
) -> np.ndarray:
    """L-BFGS-B on the sum of the chunk's (independent) energies, with vectorised torch forces."""
    shape = chunk.shape

    def fun(flat: np.ndarray) -> tuple[float, np.ndarray]:
        x = torch.from_numpy(flat.reshape(shape))
        energy = float(system.energy(x).sum())
        grad = (-system.forces(x)).numpy().reshape(-1)
        if not np.isfinite(energy) or not np.all(np.isfinite(grad)):
            return np.inf, np.zeros_like(flat)
        return energy, grad

    res = scipy.optimize.minimize(
        fun, chunk.reshape(-1), jac=True, method="L-BFGS-B",
        options={"gtol": gtol, "maxiter": max_iter, "maxfun": 2 * max_iter, "ftol": 0.0,
                 "maxcor": 20},
    )
    return res.x.reshape(shape)


def minimize(
    system: ParticleSystem, x: torch.Tensor, gtol: float = 1e-6, max_iter: int = 5000,
    chunk_size: int = 256, progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimise every configuration of x (m, n, d).

    Chunks of ``chunk_size`` configurations are first minimised together (L-BFGS-B on the sum of
    their independent energies, vectorised); configurations whose largest gradient component is
    still above ``gtol`` are then polished one by one. Returns minimised positions (m, n, d),
    their energies (m,) in kT and a boolean mask (m,) of runs that reached max |grad| < 10 gtol
    at a finite energy.
    """
    arr = np.asarray(x.detach().cpu(), dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (system.n_particles, system.n_dims):
        raise ValueError(
            f"expected configurations (m, {system.n_particles}, {system.n_dims}), got {arr.shape}"
        )
    out = np.empty_like(arr)
    chunks = range(0, arr.shape[0], chunk_size)
    for start in tqdm(chunks, disable=not progress, desc="minimise", leave=False):
        out[start : start + chunk_size] = _minimize_chunk(
            system, arr[start : start + chunk_size], gtol, max_iter
        )
    energies = np.empty(arr.shape[0])
    ok = np.zeros(arr.shape[0], dtype=bool)
    for i in range(arr.shape[0]):
        energy, grad = energy_and_gradient(system, out[i].reshape(-1))
        if not (np.isfinite(energy) and np.abs(grad).max() < gtol):
            res = _minimize_one(system, out[i].reshape(-1), gtol, max_iter)
            out[i] = res.x.reshape(arr.shape[1:])
            energy, grad = energy_and_gradient(system, res.x)
        energies[i] = energy
        ok[i] = bool(np.isfinite(energy) and np.all(np.isfinite(grad))
                     and np.abs(grad).max() < 10 * gtol)
    return out, energies, ok


def hessian_eigenvalues(system: ParticleSystem, x: np.ndarray, step: float = 1e-5) -> np.ndarray:
    """Eigenvalues of the finite-difference Hessian (central differences of the gradient)."""
    flat = x.reshape(-1).astype(np.float64)
    n = flat.size
    h = np.empty((n, n))
    for k in range(n):
        e = np.zeros(n)
        e[k] = step
        h[k] = (energy_and_gradient(system, flat + e)[1] - energy_and_gradient(system, flat - e)[1])
        h[k] /= 2 * step
    return np.linalg.eigvalsh(0.5 * (h + h.T))


def is_saddle(system: ParticleSystem, x: np.ndarray, tolerance: float = 1e-3) -> bool:
    """True when the Hessian has an eigenvalue below -tolerance (zero modes are ~0)."""
    return bool(hessian_eigenvalues(system, x).min() < -tolerance)


def sorted_distances(x: np.ndarray) -> np.ndarray:
    """Sorted unique pair distances: (m, n, d) -> (m, n (n - 1) / 2)."""
    n = x.shape[-2]
    iu = np.triu_indices(n, k=1)
    r = x[:, :, None, :] - x[:, None, :, :]
    d = np.sqrt((r * r).sum(-1))[:, iu[0], iu[1]]
    return np.sort(d, axis=-1)


@dataclass
class UniqueMinima:
    """Representative structures (k, n, d), their energies (k,) and how often each was hit."""

    positions: np.ndarray
    energies: np.ndarray
    counts: np.ndarray

    def count_in_bins(self, edges: list[tuple[float, float]]) -> list[int]:
        """Number of unique minima with energy in each half-open bin [low, high)."""
        return [int(((self.energies >= lo) & (self.energies < hi)).sum()) for lo, hi in edges]


def unique_minima(
    system: ParticleSystem,
    positions: np.ndarray,
    energies: np.ndarray,
    tolerance: float = 1e-2,
    check_saddles: bool = True,
) -> UniqueMinima:
    """Deduplicate minimised structures by sorted distance vectors (lowest energy first)."""
    if positions.shape[0] == 0:
        empty = np.zeros((0, *positions.shape[1:]))
        return UniqueMinima(empty, np.zeros(0), np.zeros(0, dtype=int))
    keys = sorted_distances(positions)
    order = np.argsort(energies)
    reps: list[int] = []
    counts: list[int] = []
    for i in order:
        if reps:
            dist = np.linalg.norm(keys[reps] - keys[i], axis=-1)
            j = int(np.argmin(dist))
            if dist[j] < tolerance:
                counts[j] += 1
                continue
        reps.append(int(i))
        counts.append(1)
    keep = [
        k for k, i in enumerate(reps) if not (check_saddles and is_saddle(system, positions[i]))
    ]
    idx = np.array([reps[k] for k in keep], dtype=int)
    return UniqueMinima(positions[idx], energies[idx], np.array([counts[k] for k in keep]))
