"""The benchmark particle systems as OpenMM ``System`` objects built from custom forces.

Unit mapping (reduced units -> OpenMM): 1 length unit = 1 nm; an energy of u (in kT, the unit the
torch systems use) is u * kT kJ/mol with kT = R T at the chosen ``temperature`` (kelvin, default
300 K, kT = 2.494 kJ/mol); forces in kT/length become kJ/mol/nm by the same factor. Every particle
gets the same ``mass`` (amu, default 1), which only sets the time scale of MD.

2-D systems (DW-2, DW-4) are embedded in the plane z = 0: their pair energies depend on distances
only, so forces have no z component while all particles share one z, and OpenMM keeps z fixed
when the initial z velocities are zero.

Forces used: one ``CustomBondForce`` over all pairs i < j (the pair energy, no cutoff, no periodic
boundaries) and, for LJ clusters, a ``CustomCentroidBondForce`` tethering each particle to the
unweighted centroid of all particles, 0.5 k |x_i - c|^2.
"""

from __future__ import annotations

import numpy as np
import openmm
import openmm.unit as unit
import torch

from flowff.equivariant.systems import LennardJonesCluster, MultiDoubleWell, ParticleSystem

#: Default temperature (kelvin) that converts kT-energies to kJ/mol.
DEFAULT_TEMPERATURE = 300.0


def kt_kj_per_mol(temperature: float) -> float:
    """Thermal energy R T in kJ/mol at ``temperature`` kelvin."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive (kelvin), got {temperature}")
    kt = unit.MOLAR_GAS_CONSTANT_R * temperature * unit.kelvin
    return float(kt.value_in_unit(unit.kilojoule_per_mole))


def _pair_force(expression: str, parameters: dict[str, float], n_particles: int) -> openmm.Force:
    force = openmm.CustomBondForce(expression)
    for name, value in parameters.items():
        force.addGlobalParameter(name, value)
    for i in range(n_particles):
        for j in range(i + 1, n_particles):
            force.addBond(i, j, [])
    force.setUsesPeriodicBoundaryConditions(False)
    return force


def _tether_force(k_kj: float, n_particles: int) -> openmm.Force:
    """0.5 k |x_i - c|^2 for every particle i, c the unweighted centroid (k in kJ/mol/nm^2)."""
    force = openmm.CustomCentroidBondForce(2, "0.5*k_tether*distance(g1,g2)^2")
    force.addGlobalParameter("k_tether", k_kj)
    centroid = force.addGroup(list(range(n_particles)), [1.0] * n_particles)
    for i in range(n_particles):
        single = force.addGroup([i], [1.0])
        force.addBond([single, centroid], [])
    force.setUsesPeriodicBoundaryConditions(False)
    return force


def to_openmm_system(
    system: ParticleSystem, temperature: float = DEFAULT_TEMPERATURE, mass: float = 1.0
) -> openmm.System:
    """An OpenMM ``System`` whose energy in kJ/mol is ``system.energy`` (kT) times R T."""
    if mass <= 0:
        raise ValueError(f"mass must be positive (amu), got {mass}")
    if system.n_dims not in (2, 3):
        raise ValueError(f"OpenMM needs 2-D or 3-D particles, got n_dims={system.n_dims}")
    kt = kt_kj_per_mol(temperature)
    omm = openmm.System()
    for _ in range(system.n_particles):
        omm.addParticle(mass)
    if isinstance(system, MultiDoubleWell):
        expression = "scale*(a*s + b*s^2 + c*s^4); s = r - d0"
        params = {
            "scale": kt / system.tau,
            "a": system.a,
            "b": system.b,
            "c": system.c,
            "d0": system.d0,
        }
        omm.addForce(_pair_force(expression, params, system.n_particles))
    elif isinstance(system, LennardJonesCluster):
        expression = "scale*(q^2 - 2*q); q = (rm/r)^6"
        params = {
            "scale": kt * system.pair_weight * system.epsilon / system.tau,
            "rm": system.r_min,
        }
        omm.addForce(_pair_force(expression, params, system.n_particles))
        if system.tether_constant() > 0:
            omm.addForce(_tether_force(kt * system.tether_constant(), system.n_particles))
    else:
        raise TypeError(f"no OpenMM translation for {type(system).__name__}")
    return omm


def to_openmm_positions(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """One configuration (n, 2 or 3) in length units -> (n, 3) float64 nm (z = 0 for 2-D)."""
    arr = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] not in (2, 3):
        raise ValueError(f"expected one configuration of shape (n, 2) or (n, 3), got {arr.shape}")
    if arr.shape[1] == 2:
        arr = np.concatenate([arr, np.zeros((arr.shape[0], 1))], axis=1)
    return arr


def openmm_energy_and_forces(
    omm_system: openmm.System, x: torch.Tensor | np.ndarray, platform: str = "Reference"
) -> tuple[float, np.ndarray]:
    """Energy (kJ/mol) and forces (n, n_dims) kJ/mol/nm of one configuration under OpenMM."""
    positions = to_openmm_positions(x)
    if positions.shape[0] != omm_system.getNumParticles():
        raise ValueError(
            f"configuration has {positions.shape[0]} particles, the system "
            f"{omm_system.getNumParticles()}"
        )
    integrator = openmm.VerletIntegrator(0.001)
    context = openmm.Context(omm_system, integrator, openmm.Platform.getPlatformByName(platform))
    context.setPositions(positions)
    state = context.getState(getEnergy=True, getForces=True)
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    n_dims = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x).shape[1]
    return float(energy), np.asarray(forces)[:, :n_dims]
