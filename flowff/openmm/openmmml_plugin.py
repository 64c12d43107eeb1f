"""openmm-ml plugin: ``openmmml.MLPotential('flowff', modelPath=...)`` builds flowff potentials.

Registered through the ``openmmml.potentials`` entry point in pyproject.toml; openmm-ml calls
``FlowffPotentialImplFactory().createImpl(name, **args)`` and then ``impl.addForces(topology,
system, atoms, forceGroup, **args)`` from ``MLPotential.createSystem``. The classes follow
openmm-ml's interface by duck typing, so flowff does not depend on openmm-ml.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import openmm
import openmm.app as app


class FlowffPotentialImpl:
    """Adds the flow force of a flowff model file (``modelPath``) to a System."""

    def __init__(self, modelPath: str | None = None, backend: str = "torchforce",  # noqa: N803
                 pythonforceMode: str = "eager") -> None:  # noqa: N803
        if modelPath is None:
            from flowff.models import default_model_path

            modelPath = str(default_model_path())  # noqa: N806
        self.modelPath = modelPath
        self.backend = backend
        self.pythonforceMode = pythonforceMode

    def addForces(self, topology: app.Topology, system: openmm.System,  # noqa: N802
                  atoms: Iterable[int] | None, forceGroup: int, **args: Any) -> None:  # noqa: N803
        from flowff.openmm.potential import FlowPotential

        potential = FlowPotential(self.modelPath, backend=self.backend,
                                  pythonforceMode=self.pythonforceMode)
        potential.addForces(topology, system, atoms=None if atoms is None else list(atoms),
                            forceGroup=forceGroup)


class FlowffPotentialImplFactory:
    """openmm-ml factory for the ``flowff`` potential name."""

    def createImpl(self, name: str, **args: Any) -> FlowffPotentialImpl:  # noqa: N802
        return FlowffPotentialImpl(**args)
