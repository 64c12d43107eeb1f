"""Fixtures for tests/equivariant: single-threaded torch, float64 helpers, small data sets.

The machines are shared and small; one torch thread is faster than two contending ones for the
tiny tensors used here. Tests run in pytest's importlib mode, so shared helpers are fixtures.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    """Run each test with one torch thread, restoring the previous setting afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


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
