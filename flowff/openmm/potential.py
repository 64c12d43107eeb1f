"""FlowPotential: a flowff model file as an OpenMM potential, in the style of openmm-ml.

    potential = FlowPotential(modelPath="ala2.pt")                  # TorchForce backend
    system = potential.createSystem(topology)                       # or replicas=R
    potential.addForces(topology, system, atoms=None, forceGroup=0)

Backends: ``"torchforce"`` (openmm-torch ``TorchForce`` running the TorchScript module in the
file; it is embedded in the System, so ``XmlSerializer`` round trips carry the model) and
``"pythonforce"`` (``openmm.PythonForce`` calling the eager flowff module, ``torch.compile`` of it,
or the TorchScript module; it stores the model path).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import openmm
import openmm.app as app
import torch

from flowff._torchscript import quiet_jit
from flowff.energy.model_file import load_scripted
from flowff.energy.signature import check_topology
from flowff.openmm.pythonforce import create_python_force
from flowff.openmm.torchforce import create_torch_force

BACKENDS = ("torchforce", "pythonforce")


class FlowPotential:
    """A trained flow as an OpenMM potential: u(x) = -kT log p_f(x) in kJ/mol.

    ``modelPath``: a flowff model file; ``backend``: ``"torchforce"`` or ``"pythonforce"``;
    ``pythonforceMode``: ``"eager"``, ``"compile"`` or ``"script"`` for the PythonForce backend.
    """

    def __init__(
        self,
        modelPath: str | os.PathLike[str],  # noqa: N803 (OpenMM naming)
        backend: str = "torchforce",
        pythonforceMode: str = "eager",  # noqa: N803
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.modelPath = Path(modelPath)
        self.backend = backend
        self.pythonforceMode = pythonforceMode
        self.module, self.metadata = load_scripted(self.modelPath)

    @property
    def n_atoms(self) -> int:
        """Atoms of the molecule the model describes."""
        return int(self.metadata["topology"]["n_atoms"])

    @property
    def temperature_K(self) -> float:
        """Temperature (K) the flow density was trained at (kT of the energy)."""
        return float(self.metadata["temperature_K"])

    def createSystem(  # noqa: N802 (OpenMM naming)
        self, topology: app.Topology, removeCMMotion: bool = True,  # noqa: N803
        replicas: int = 1, forceGroup: int = 0, **_: Any,  # noqa: N803
    ) -> openmm.System:
        """A System whose only force is the flow energy of ``topology``'s molecule.

        ``replicas`` > 1 makes R independent copies of the molecule (particles r*n .. r*n+n-1)
        evaluated by one batched force call. Extra keyword arguments are accepted and ignored,
        as openmm-ml's createSystem does.
        """
        if replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {replicas}")
        check_topology(self.metadata["topology"], topology)
        system = openmm.System()
        masses = [atom.element.mass for atom in topology.atoms()]
        for _ in range(replicas):
            for mass in masses:
                system.addParticle(mass)
        system.addForce(self._make_force(replicas * self.n_atoms, None, forceGroup))
        if removeCMMotion:
            system.addForce(openmm.CMMotionRemover())
        return system

    def addForces(  # noqa: N802 (OpenMM naming)
        self, topology: app.Topology, system: openmm.System,
        atoms: list[int] | None = None, forceGroup: int = 0, **_: Any,  # noqa: N803
    ) -> None:
        """Add the flow force to ``system`` for the atoms ``atoms`` (model order) of topology."""
        check_topology(self.metadata["topology"], topology, atoms)
        n = system.getNumParticles()
        if atoms is None and n != self.n_atoms:
            raise ValueError(
                f"wrong atom count: the system has {n} particles, the model {self.n_atoms}; "
                "pass atoms=[...] to apply the model to a subset"
            )
        system.addForce(self._make_force(n, atoms, forceGroup))

    def _make_force(self, n_particles: int, atoms: list[int] | None, group: int) -> openmm.Force:
        if self.backend == "pythonforce":
            return create_python_force(
                self.modelPath, n_particles, atoms, self.pythonforceMode, group
            )
        module = self.module if atoms is None else _subset_module(self.module, atoms)
        return create_torch_force(module, n_particles, force_group=group)


class AtomSubset(torch.nn.Module):
    """Applies an energy module to the particles ``index`` of a larger system's positions."""

    def __init__(self, inner: torch.nn.Module, index: list[int]) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("index", torch.tensor(index, dtype=torch.long))

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.inner(positions.index_select(0, self.index))


def _subset_module(module: torch.nn.Module, atoms: list[int]) -> torch.jit.ScriptModule:
    """TorchScript module applying ``module`` to the particles ``atoms`` of the full system."""
    with quiet_jit():
        return torch.jit.script(AtomSubset(module, list(atoms)))
