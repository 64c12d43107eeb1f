"""Building the potentials named on the command line (``amber``, ``flow``) for md and drift."""

from __future__ import annotations

from pathlib import Path

from flowff.openmm.classical import AmberPotential, Potential

#: Potential names the CLI knows.
POTENTIAL_NAMES: tuple[str, ...] = ("amber", "flow")

#: Backends of the flow potential (``FlowPotential(modelPath, backend=...)``).
FLOW_BACKENDS: tuple[str, ...] = ("torchforce", "pythonforce")


class FlowUnavailable(RuntimeError):
    """The flow potential cannot be built (no model given, or flowff's OpenMM side is missing)."""


def flow_potential(model_path: Path | None, backend: str = "torchforce") -> Potential:
    """``flowff.openmm.potential.FlowPotential`` for ``model_path``, imported lazily.

    Without ``model_path`` the shipped model (``flowff.models.default_model_path``) is used.
    Raises ``FlowUnavailable`` when there is no model (none given, none shipped) or FlowPotential
    cannot be imported, ``FileNotFoundError`` when a given model file does not exist.
    """
    if model_path is None:
        try:
            from flowff.models import default_model_path

            model_path = default_model_path()
        except (ImportError, FileNotFoundError) as error:
            raise FlowUnavailable("no --model given and no shipped model") from error
    if not Path(model_path).is_file():
        raise FileNotFoundError(f"model file {model_path} does not exist")
    try:
        from flowff.openmm.potential import FlowPotential
    except ImportError as error:
        raise FlowUnavailable(f"flowff.openmm.potential cannot be imported: {error}") from error
    return FlowPotential(modelPath=model_path, backend=backend)


def build_potential(name: str, model_path: Path | None, backend: str = "torchforce") -> Potential:
    """The potential called ``name`` (one of ``POTENTIAL_NAMES``)."""
    if name == "amber":
        return AmberPotential()
    if name == "flow":
        return flow_potential(model_path, backend)
    raise ValueError(f"unknown potential {name!r}; choose from {', '.join(POTENTIAL_NAMES)}")
