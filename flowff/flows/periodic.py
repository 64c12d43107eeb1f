"""Reduction of circular coordinates to the fundamental period [0, 1)."""

from __future__ import annotations

import torch
from torch import Tensor


def wrap_unit(x: Tensor) -> Tensor:
    """x mod 1 in [0, 1) with unit derivative; exact for x in [0, 1).

    ``x - floor(x)`` alone can round to 1.0 for tiny negative x; such values map to 0.0.
    """
    wrapped = x - torch.floor(x)
    return torch.where(wrapped >= 1.0, wrapped - 1.0, wrapped)
