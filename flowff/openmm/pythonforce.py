"""The ``openmm.PythonForce`` backend (OpenMM >= 8.5): OpenMM calls a Python function each step.

openmm-torch's ``TorchForce`` needs TorchScript, which torch no longer develops; openmm-ml moved
to ``PythonForce``. :class:`TorchEnergyComputation` is the picklable function it calls: it
evaluates a torch energy module (eager flowff module, ``torch.compile`` of it, or the TorchScript
module in the model file) on the positions and returns energy (kJ/mol) and forces (kJ/mol/nm).
Pickling stores only the model path and options, so a System survives ``XmlSerializer``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import openmm
import openmm.unit as unit
import torch

#: How the PythonForce evaluates the model.
PYTHONFORCE_MODES = ("eager", "compile", "script")


class TorchEnergyComputation:
    """Callable ``state -> (energy kJ/mol, forces (n_particles, 3) kJ/mol/nm)`` for PythonForce.

    ``atoms``: indices of the particles the model sees (model order), or ``None`` for all.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        n_particles: int,
        atoms: list[int] | None = None,
        mode: str = "eager",
    ) -> None:
        if mode not in PYTHONFORCE_MODES:
            raise ValueError(f"mode must be one of {PYTHONFORCE_MODES}, got {mode!r}")
        self.model_path = str(Path(model_path).resolve())
        self.n_particles = int(n_particles)
        self.atoms = None if atoms is None else [int(a) for a in atoms]
        self.mode = mode
        self._module: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_module"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._module = None

    def module(self) -> Any:
        """The torch energy module, loaded on first use."""
        if self._module is None:
            from flowff.energy.builder import load_energy_module

            self._module = load_energy_module(self.model_path, mode=self.mode)
        return self._module

    def energy_and_forces(self, positions_nm: np.ndarray) -> tuple[float, np.ndarray]:
        """Energy (kJ/mol) and forces (n_particles, 3) kJ/mol/nm for positions (n_particles, 3)."""
        sel = positions_nm if self.atoms is None else positions_nm[self.atoms]
        x = torch.tensor(sel, dtype=torch.float64, requires_grad=True)
        energy = self.module()(x)
        (grad,) = torch.autograd.grad(energy, x)
        forces = np.zeros((self.n_particles, 3))
        if self.atoms is None:
            forces[:] = -grad.numpy()
        else:
            forces[self.atoms] = -grad.numpy()
        return float(energy.detach()), forces

    def __call__(self, state: openmm.State) -> tuple[float, np.ndarray]:
        pos = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        return self.energy_and_forces(np.asarray(pos))


def create_python_force(
    model_path: str | os.PathLike[str],
    n_particles: int,
    atoms: list[int] | None = None,
    mode: str = "eager",
    force_group: int = 0,
) -> openmm.PythonForce:
    """An ``openmm.PythonForce`` evaluating the flowff model file at ``model_path``."""
    if not hasattr(openmm, "PythonForce"):
        raise RuntimeError(
            f"openmm.PythonForce needs OpenMM >= 8.5, this is {openmm.__version__}; "
            "use backend='torchforce'"
        )
    computation = TorchEnergyComputation(model_path, n_particles, atoms, mode)
    computation.module()  # load now: a bad file fails here, not inside a time step
    force = openmm.PythonForce(computation)
    force.setUsesPeriodicBoundaryConditions(False)
    force.setForceGroup(force_group)
    return force
