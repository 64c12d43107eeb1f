"""Classical reference potential (Amber) and the shipped alanine dipeptide structure.

A *potential* in flowff is anything with ``createSystem(topology, removeCMMotion) ->
openmm.System`` (the ``Potential`` protocol): ``AmberPotential`` here, ``FlowPotential`` in
``flowff.openmm.potential``. The MD runner and the drift measurement accept any of them.
"""

from __future__ import annotations

import contextlib
import importlib.resources
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import openmm as mm
import openmm.app as app
import openmm.unit as unit

#: The alanine dipeptide structure shipped with the package (Angstrom, as every PDB file).
ALANINE_DIPEPTIDE_RESOURCE = "alanine-dipeptide.pdb"


@runtime_checkable
class Potential(Protocol):
    """Something that builds an OpenMM System for a topology (OpenMM-ML naming)."""

    def createSystem(self, topology: app.Topology, removeCMMotion: bool = True) -> mm.System:
        """An OpenMM System for ``topology``; with a CMMotionRemover iff ``removeCMMotion``."""
        ...


class AmberPotential:
    """Amber ff99SB-ILDN with OBC implicit solvent, as for the alanine dipeptide reference data.

    No cutoff, no constraints, flexible water: every one of the 3n coordinates moves, as in the
    flow potential, so energy conservation of the two can be compared at the same time step.
    """

    forcefield_files: tuple[str, ...] = ("amber99sbildn.xml", "amber99_obc.xml")

    def __init__(self) -> None:
        self.forcefield = app.ForceField(*self.forcefield_files)

    def createSystem(self, topology: app.Topology, removeCMMotion: bool = True) -> mm.System:
        """The Amber System for ``topology`` (NoCutoff, constraints=None, rigidWater=False)."""
        return self.forcefield.createSystem(
            topology,
            nonbondedMethod=app.NoCutoff,
            constraints=None,
            rigidWater=False,
            removeCMMotion=removeCMMotion,
        )

    def __repr__(self) -> str:
        return f"AmberPotential({', '.join(self.forcefield_files)})"


@contextlib.contextmanager
def alanine_dipeptide_pdb_path() -> Iterator[Path]:
    """Context manager yielding a file-system path of the shipped alanine dipeptide PDB."""
    resource = importlib.resources.files("flowff") / "resources" / ALANINE_DIPEPTIDE_RESOURCE
    with importlib.resources.as_file(resource) as path:
        yield Path(path)


def load_pdb(path: str | Path) -> tuple[app.Topology, np.ndarray]:
    """Topology and positions ``(n_atoms, 3)`` in nm (float64) of a PDB file."""
    pdb = app.PDBFile(str(path))
    positions = np.asarray(pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    return pdb.topology, positions.astype(np.float64)


def load_alanine_dipeptide() -> tuple[app.Topology, np.ndarray]:
    """Topology and positions ``(22, 3)`` in nm of the shipped alanine dipeptide (ACE-ALA-NME)."""
    with alanine_dipeptide_pdb_path() as path:
        return load_pdb(path)
