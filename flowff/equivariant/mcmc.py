"""Reference samples by Metropolis Monte Carlo, vectorised over independent chains.

Protocol of the paper's supplement C.4: isotropic Gaussian proposals moving every coordinate,
step size 0.5 (DW-4) and 0.025 (LJ-13), and burn-in of 1,000 (DW-4) and 20,000 (LJ-13) steps.
Energies are in kT (the systems' units), so the acceptance probability is min(1, exp(-du)).
Samples are returned with their centre of geometry removed (the flows live on that subspace).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from flowff.equivariant.particles import check_configurations, remove_mean
from flowff.equivariant.systems import LennardJonesCluster, ParticleSystem


@dataclass(frozen=True)
class MCMCProtocol:
    """Step size (length units), burn-in steps and thinning (steps between saved samples)."""

    step_size: float
    burn_in: int
    thin: int = 10


#: The paper's protocols (C.4); thinning is our choice (not stated in the paper).
PROTOCOLS = {
    "DW-2": MCMCProtocol(step_size=0.5, burn_in=1000, thin=10),
    "DW-4": MCMCProtocol(step_size=0.5, burn_in=1000, thin=20),
    "LJ-13": MCMCProtocol(step_size=0.025, burn_in=20000, thin=50),
}


def protocol_for(system: ParticleSystem) -> MCMCProtocol:
    """The paper's MCMC protocol for ``system`` (by its name)."""
    if system.name not in PROTOCOLS:
        raise ValueError(f"no MCMC protocol for {system.name}; pass an MCMCProtocol explicitly")
    return PROTOCOLS[system.name]


def initial_configurations(
    system: ParticleSystem, n_chains: int, generator: torch.Generator
) -> torch.Tensor:
    """Random, non-overlapping starting configurations (n_chains, n, d), float64.

    LJ clusters start on randomly chosen sites of a cubic grid with spacing r_min (plus a little
    noise) so no pair overlaps; other systems start from a Gaussian cloud of width 2.
    """
    n, d = system.n_particles, system.n_dims
    if isinstance(system, LennardJonesCluster):
        side = 1
        while side**d < n:
            side += 1
        grid = torch.stack(
            torch.meshgrid(*[torch.arange(side, dtype=torch.float64)] * d, indexing="ij"), dim=-1
        ).reshape(-1, d)
        sites = torch.argsort(torch.rand(n_chains, grid.shape[0], generator=generator), dim=-1)
        x = grid[sites[:, :n]] * system.r_min
        x = x + 0.05 * system.r_min * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    else:
        x = 2.0 * torch.randn(n_chains, n, d, generator=generator, dtype=torch.float64)
    return remove_mean(x)


def metropolis(
    system: ParticleSystem,
    x0: torch.Tensor,
    n_steps: int,
    step_size: float,
    generator: torch.Generator,
    thin: int = 1,
    progress: bool = False,
) -> tuple[torch.Tensor, float]:
    """Run Metropolis chains from ``x0`` (n_chains, n, d) for ``n_steps`` steps.

    Returns the states after every ``thin``-th step, shape (n_steps // thin, n_chains, n, d)
    (not mean-free), and the acceptance rate over all steps and chains.
    """
    check_configurations(x0, system.n_particles, system.n_dims)
    if n_steps < 0 or thin < 1 or step_size <= 0:
        raise ValueError("need n_steps >= 0, thin >= 1 and a positive step size")
    x = x0.clone()
    u = system.energy(x)
    if not torch.isfinite(u).all():
        raise ValueError("starting configurations have non-finite energies")
    saved: list[torch.Tensor] = []
    accepted = 0
    for step in tqdm(range(1, n_steps + 1), disable=not progress, desc=f"MCMC {system.name}"):
        proposal = x + step_size * torch.randn(x.shape, generator=generator, dtype=x.dtype)
        u_new = system.energy(proposal)
        log_uniform = torch.log(torch.rand(u.shape, generator=generator, dtype=x.dtype))
        accept = log_uniform < (u - u_new)  # exp(-inf) proposals (overlaps) are never accepted
        x = torch.where(accept[:, None, None], proposal, x)
        u = torch.where(accept, u_new, u)
        accepted += int(accept.sum())
        if step % thin == 0:
            saved.append(x.clone())
    rate = accepted / max(1, n_steps * x.shape[0])
    if not saved:
        return x.new_zeros((0, *x.shape)), rate
    return torch.stack(saved), rate


def reference_samples(
    system: ParticleSystem,
    n_samples: int,
    seed: int,
    n_chains: int = 64,
    protocol: MCMCProtocol | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, float]:
    """Equilibrium samples (n_samples, n, d), mean-free float64, and the acceptance rate.

    ``n_chains`` independent chains start from ``initial_configurations``, discard
    ``protocol.burn_in`` steps, then save every ``protocol.thin``-th state. Samples are ordered
    time-major (all chains at the first saved step, then the second, ...). Different seeds give
    independent trajectories (use one seed for training data and another for test data).
    """
    if n_samples < 1 or n_chains < 1:
        raise ValueError("n_samples and n_chains must be positive")
    sets, rate = independent_trajectories(
        system, {"samples": n_samples}, seed, chains_per_set=n_chains, protocol=protocol,
        progress=progress,
    )
    return sets["samples"], rate


def independent_trajectories(
    system: ParticleSystem,
    sizes: dict[str, int],
    seed: int,
    chains_per_set: int = 64,
    protocol: MCMCProtocol | None = None,
    progress: bool = False,
) -> tuple[dict[str, torch.Tensor], float]:
    """Several independent sample sets from one vectorised Metropolis run.

    Every named set gets its own block of ``chains_per_set`` chains (own random start, own
    burn-in), so the sets are statistically independent trajectories while sharing the cost of
    each vectorised step. Returns {name: samples (sizes[name], n, d) mean-free} and the
    acceptance rate.
    """
    if not sizes or min(sizes.values()) < 1 or chains_per_set < 1:
        raise ValueError("need at least one set of positive size and chains_per_set >= 1")
    protocol = protocol or protocol_for(system)
    gen = torch.Generator().manual_seed(seed)
    names = list(sizes)
    x0 = initial_configurations(system, chains_per_set * len(names), gen)
    burned, _ = metropolis(
        system, x0, protocol.burn_in, protocol.step_size, gen, thin=max(1, protocol.burn_in),
        progress=progress,
    )
    start = burned[-1] if len(burned) else x0
    n_saved = max(-(-n // chains_per_set) for n in sizes.values())
    traj, rate = metropolis(
        system, start, n_saved * protocol.thin, protocol.step_size, gen, thin=protocol.thin,
        progress=progress,
    )
    out = {}
    for k, name in enumerate(names):
        block = traj[:, k * chains_per_set : (k + 1) * chains_per_set]
        samples = block.reshape(-1, system.n_particles, system.n_dims)[: sizes[name]]
        out[name] = remove_mean(samples)
    return out, rate
