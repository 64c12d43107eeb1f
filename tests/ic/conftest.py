"""Fixtures and helpers for the internal-coordinate tests.

Tests run in pytest's importlib mode, so helpers reach them as the ``ic_helpers`` fixture
(a namespace of the functions below), not by import.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Sequence

import numpy as np
import openmm.app as app
import openmm.unit as unit
import pytest
import torch

from flowff.ic import InternalCoordinates, ZMatrix, alanine_dipeptide_pdb

#: Small test molecules: (element symbols, bonds). Chain, branched (improper torsions), hydrogens
#: on a two-heavy-atom molecule (frame through a hydrogen), a ring, and the 3-atom minimum.
SMALL_MOLECULES: dict[str, tuple[list[str], list[tuple[int, int]]]] = {
    "water3": (["O", "H", "H"], [(0, 1), (0, 2)]),
    "chain4": (["C", "C", "C", "C"], [(0, 1), (1, 2), (2, 3)]),
    "branched5": (["C", "C", "C", "C", "C"], [(0, 1), (1, 2), (1, 3), (1, 4)]),
    "methanol6": (["C", "O", "H", "H", "H", "H"], [(0, 1), (0, 2), (0, 3), (0, 4), (1, 5)]),
    "ring6": (["C"] * 6, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0)]),
}


def build_topology(elements: Sequence[str], bonds: Sequence[tuple[int, int]]) -> app.Topology:
    """An openmm.app.Topology with one residue holding ``elements`` and ``bonds``."""
    topology = app.Topology()
    chain = topology.addChain()
    residue = topology.addResidue("MOL", chain)
    atoms = [
        topology.addAtom(f"{symbol}{i}", app.Element.getBySymbol(symbol), residue)
        for i, symbol in enumerate(elements)
    ]
    for i, j in bonds:
        topology.addBond(atoms[i], atoms[j])
    return topology


def random_rotation(generator: torch.Generator) -> torch.Tensor:
    """A random proper rotation matrix (3, 3), float64."""
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def frame_rotation(x: torch.Tensor, frame: Sequence[int]) -> torch.Tensor:
    """Rotation R (..., 3, 3) with columns e1, e2, e3 of the Z-matrix frame: x = x_f0 + R x_canon.

    e1 along f1 - f0, e2 in the f0-f1-f2 plane towards f2, e3 = e1 x e2.
    """
    f0, f1, f2 = frame
    e1 = x[..., f1, :] - x[..., f0, :]
    e1 = e1 / e1.norm(dim=-1, keepdim=True)
    w = x[..., f2, :] - x[..., f1, :]
    e2 = w - (w * e1).sum(-1, keepdim=True) * e1
    e2 = e2 / e2.norm(dim=-1, keepdim=True)
    e3 = torch.linalg.cross(e1, e2, dim=-1)
    return torch.stack([e1, e2, e3], dim=-1)


def zyz_euler(rotation: torch.Tensor) -> torch.Tensor:
    """ZYZ Euler angles (alpha, beta, gamma) of R = Rz(alpha) Ry(beta) Rz(gamma); Haar measure
    sin(beta) dalpha dbeta dgamma, total 8 pi^2."""
    alpha = torch.atan2(rotation[..., 1, 2], rotation[..., 0, 2])
    beta = torch.atan2(torch.hypot(rotation[..., 0, 2], rotation[..., 1, 2]), rotation[..., 2, 2])
    gamma = torch.atan2(rotation[..., 2, 1], -rotation[..., 2, 0])
    return torch.stack([alpha, beta, gamma], dim=-1)


def circular_difference(a: torch.Tensor, b: torch.Tensor, period: float = 1.0) -> torch.Tensor:
    """|a - b| on a circle of the given period, elementwise."""
    d = torch.remainder(a - b, period)
    return torch.minimum(d, period - d)



@pytest.fixture(scope="session")
def ic_helpers() -> types.SimpleNamespace:
    """The helper functions of this conftest, for tests to call."""
    return types.SimpleNamespace(
        SMALL_MOLECULES=SMALL_MOLECULES,
        build_topology=build_topology,
        random_rotation=random_rotation,
        frame_rotation=frame_rotation,
        zyz_euler=zyz_euler,
        circular_difference=circular_difference,
    )



@pytest.fixture(scope="session")
def alanine_zmatrix() -> ZMatrix:
    return ZMatrix.alanine_dipeptide()


@pytest.fixture(scope="session")
def alanine_positions() -> torch.Tensor:
    """Packaged alanine dipeptide positions, (22, 3) nm float64."""
    pdb = alanine_dipeptide_pdb()
    return torch.tensor(np.asarray(pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer)))


@pytest.fixture(params=list(SMALL_MOLECULES))
def small_zmatrix(request: pytest.FixtureRequest) -> ZMatrix:
    elements, bonds = SMALL_MOLECULES[request.param]
    return ZMatrix.from_topology(build_topology(elements, bonds))


@pytest.fixture
def make_configurations() -> Callable[[InternalCoordinates, int, int], torch.Tensor]:
    """Factory: ``(ic, batch, seed) -> x (batch, n, 3)`` float64, valid geometry in a random frame.

    Internal coordinates are drawn inside the support, away from its edges and from the torsion
    wrap (h in [0.1, 0.9]); angles in [0.24 pi, 0.83 pi] (no near-collinear triples).
    """

    def make(ic: InternalCoordinates, batch: int, seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        h = 0.1 + 0.8 * torch.rand(batch, ic.dim, generator=generator, dtype=torch.float64)
        h[:, ic.angle_slice] = 0.1 + 0.7 * torch.rand(
            batch, ic.n_angles, generator=generator, dtype=torch.float64
        )
        x, _ = ic.inverse(h)
        rotations = torch.stack([random_rotation(generator) for _ in range(batch)])
        shifts = torch.randn(batch, 1, 3, generator=generator, dtype=torch.float64)
        return x @ rotations.transpose(-1, -2) + shifts

    return make
