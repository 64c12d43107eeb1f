"""Internal coordinates: Z-matrix from a topology, Cartesian <-> normalised ICs, exact log-det."""

from flowff.ic.layer import (
    DEFAULT_ANGLE_BOUNDS_RAD,
    DEFAULT_BOND_BOUNDS_NM,
    InternalCoordinates,
    check_positions,
)
from flowff.ic.zmatrix import (
    TopologyError,
    ZMatrix,
    alanine_dipeptide_pdb,
    alanine_dipeptide_topology,
)

__all__ = [
    "DEFAULT_ANGLE_BOUNDS_RAD",
    "DEFAULT_BOND_BOUNDS_NM",
    "InternalCoordinates",
    "TopologyError",
    "ZMatrix",
    "alanine_dipeptide_pdb",
    "alanine_dipeptide_topology",
    "check_positions",
]
