"""Builders: coupling schedules and ready-made coupling flows with flowff.transforms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from flowff.flows.coupling import CouplingLayer
from flowff.flows.flow import Flow
from flowff.flows.implicit import InversionSettings
from flowff.flows.priors import Prior, UniformPrior

#: One coupling layer of a schedule: (transformed indices, conditioning indices).
CouplingStep = tuple[Sequence[int], Sequence[int]]

#: Keyword naming the resolution of each transform kind in flowff.transforms.make_transform.
_RESOLUTION_KEYWORD: dict[str, str] = {"smooth": "num_components", "spline": "num_bins"}


def alternating_halves_schedule(dim: int, num_layers: int = 4) -> list[CouplingStep]:
    """Default schedule: split 0..dim-1 into halves A (first dim//2) and B; alternate B|A, A|B.

    With dim == 1 every layer transforms coordinate 0 unconditionally.
    """
    if dim < 1 or num_layers < 1:
        raise ValueError(f"need dim >= 1 and num_layers >= 1, got dim={dim}, {num_layers=}")
    if dim == 1:
        return [([0], []) for _ in range(num_layers)]
    first = list(range(dim // 2))
    second = list(range(dim // 2, dim))
    return [(second, first) if layer % 2 == 0 else (first, second) for layer in range(num_layers)]


def build_coupling_flow(
    dim: int,
    circular_mask: Sequence[bool] | Tensor | None = None,
    schedule: Sequence[CouplingStep] | None = None,
    transform_kind: str = "smooth",
    num_components: int = 8,
    hidden: Sequence[int] = (64, 64),
    num_layers: int = 4,
    transform_kwargs: Mapping[str, Any] | None = None,
    interval_transform_kwargs: Mapping[str, Any] | None = None,
    circular_transform_kwargs: Mapping[str, Any] | None = None,
    inversion: InversionSettings | None = None,
    prior: Prior | None = None,
) -> Flow:
    """A :class:`Flow` of coupling layers with transforms from flowff.transforms.

    ``circular_mask`` (dim,) bool (default: no circular coordinate); ``schedule``: one
    (transformed, conditioning) pair per layer (default :func:`alternating_halves_schedule`
    with ``num_layers``); ``transform_kind``: "smooth" (C-infinity bump mixtures,
    ``num_components`` components, numerical inverse) or "spline" (rational-quadratic splines,
    ``num_components`` bins, analytic inverse); ``transform_kwargs`` go to every
    ``make_transform`` call, ``interval_transform_kwargs`` / ``circular_transform_kwargs``
    only to interval / circular transforms (e.g. ``learn_boundary_derivatives`` of interval
    splines). A layer gets a transform of a kind only if it transforms such coordinates.
    ``prior`` defaults to :class:`UniformPrior`. The flow starts near the identity
    (conditioners output the transforms' identity parameters).
    """
    from flowff.transforms import make_transform

    if transform_kind not in _RESOLUTION_KEYWORD:
        raise ValueError(
            f"unknown transform_kind {transform_kind!r}; expected one of "
            f"{sorted(_RESOLUTION_KEYWORD)}"
        )
    if circular_mask is None:
        circular_mask = torch.zeros(dim, dtype=torch.bool)
    mask = torch.as_tensor(circular_mask, dtype=torch.bool).flatten()
    if mask.numel() != dim:
        raise ValueError(f"circular_mask has {mask.numel()} entries, expected dim={dim}")
    if schedule is None:
        schedule = alternating_halves_schedule(dim, num_layers)
    if len(schedule) == 0:
        raise ValueError("schedule is empty: a flow needs at least one coupling layer")
    kwargs = {_RESOLUTION_KEYWORD[transform_kind]: num_components, **(transform_kwargs or {})}
    per_kind = {
        False: {**kwargs, **(interval_transform_kwargs or {})},
        True: {**kwargs, **(circular_transform_kwargs or {})},
    }
    layers = []
    for transformed, conditioning in schedule:
        # (Out-of-range indices are left to CouplingLayer, which names the problem.)
        circular_flags = {bool(mask[int(i)]) for i in transformed if 0 <= int(i) < dim}
        transforms = {
            circular: make_transform(transform_kind, circular=circular, **per_kind[circular])
            if circular in circular_flags
            else None
            for circular in (False, True)
        }
        layers.append(
            CouplingLayer(
                mask,
                transformed,
                conditioning,
                interval_transform=transforms[False],
                circular_transform=transforms[True],
                hidden=hidden,
                inversion=inversion,
            )
        )
    return Flow(layers, UniformPrior(dim) if prior is None else prior, circular_mask=mask)
