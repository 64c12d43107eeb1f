"""Fixtures for tests/equivariant: float64 helpers, small data sets.

(One torch thread per test comes from tests/conftest.py.) Tests run in pytest's importlib mode,
so shared helpers are fixtures.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def gen() -> torch.Generator:
    """A seeded CPU generator."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def random_symmetry():
    """Function (batch, n, d, generator) -> (rotations (b, d, d), permutations (b, n))."""
    from flowff.equivariant.particles import random_permutations, random_rotations

    def make(b: int, n: int, d: int, generator: torch.Generator):
        return random_rotations(b, d, generator=generator), random_permutations(b, n, generator)

    return make
