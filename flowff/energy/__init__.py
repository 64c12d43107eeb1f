"""Flow energies (kJ/mol) of positions (nm), the model file, and topology signatures."""

from flowff.energy.flow_energy import FlowEnergy, kT_kJ_per_mol
from flowff.energy.model_file import (
    ModelFileError,
    load_eager_state,
    load_scripted,
    read_metadata,
    save_model,
)
from flowff.energy.signature import TopologyMismatchError, check_topology, topology_signature

__all__ = [
    "FlowEnergy",
    "ModelFileError",
    "TopologyMismatchError",
    "check_topology",
    "kT_kJ_per_mol",
    "load_eager_state",
    "load_scripted",
    "read_metadata",
    "save_model",
    "topology_signature",
]
