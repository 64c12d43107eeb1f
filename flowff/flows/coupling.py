"""Coupling layer: transform some coordinates element-wise, conditioned on others.

The layer knows the field layout: a bool ``circular_mask`` over all ``dim`` coordinates, the
indices it transforms and the indices its conditioner reads (disjoint; any other coordinate
passes through unchanged). Transformed interval coordinates use ``interval_transform``,
transformed circular coordinates ``circular_transform`` (whose outputs are reduced mod 1).

``forward`` is the analytic density direction h -> z with log|dz/dh| per sample; ``inverse``
z -> h uses the transform's analytic inverse when it has one, else multi-bin bisection with
implicit gradients (:func:`flowff.flows.implicit.implicit_inverse`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from flowff.flows.conditioner import Conditioner
from flowff.flows.implicit import InversionSettings, implicit_inverse
from flowff.flows.periodic import wrap_unit


def _as_index(indices: Sequence[int] | Tensor, dim: int, name: str) -> Tensor:
    """Validated 1-D long tensor of distinct indices in [0, dim)."""
    index = torch.as_tensor(indices, dtype=torch.long).flatten()
    if index.numel() > 0 and (int(index.min()) < 0 or int(index.max()) >= dim):
        raise ValueError(f"{name} indices must lie in [0, {dim}), got {index.tolist()}")
    if torch.unique(index).numel() != index.numel():
        raise ValueError(f"{name} indices must be distinct, got {index.tolist()}")
    return index


class TransformGroup(nn.Module):
    """One element-wise transform applied to the coordinates ``index`` of a full vector.

    forward(h (..., dim), params (..., len(index), P)) -> (h with those coordinates replaced,
    log|dz/dh| (...,)). Circular groups reduce their outputs mod 1.
    """

    def __init__(self, transform: nn.Module, index: Tensor, circular: bool) -> None:
        super().__init__()
        if bool(transform.circular) != circular:
            kind = "circular" if circular else "interval"
            raise ValueError(
                f"{type(transform).__name__} (circular={transform.circular}) cannot transform "
                f"{kind} coordinates"
            )
        self.transform = transform
        self.register_buffer("index", index)
        self.circular = circular

    def forward(self, h: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        y, log_slope = self.transform(h.index_select(-1, self.index), params)
        if self.circular:
            y = wrap_unit(y)
        return h.index_copy(-1, self.index, y), log_slope.sum(-1)

    @torch.jit.unused
    def inverse(
        self, z: Tensor, params: Tensor, settings: InversionSettings
    ) -> tuple[Tensor, Tensor]:
        """Inverse of :meth:`forward`: returns (h, log|dh/dz| (...,))."""
        y = z.index_select(-1, self.index)
        if getattr(self.transform, "has_analytic_inverse", False):
            x, log_slope = self.transform.analytic_inverse(y, params)
        else:
            x, log_slope = implicit_inverse(self.transform, y, params, settings)
        if self.circular:
            x = wrap_unit(x)
        return z.index_copy(-1, self.index, x), log_slope.sum(-1)


class CouplingLayer(nn.Module):
    """Element-wise transform of ``transformed`` coordinates conditioned on ``conditioning`` ones.

    ``circular_mask``: (dim,) bool; ``interval_transform`` / ``circular_transform``:
    ElementwiseTransform modules (required only if such coordinates are transformed);
    ``hidden``: conditioner MLP widths; ``inversion``: bisection settings for ``inverse``.
    forward(h (..., dim)) -> (z (..., dim), log|dz/dh| (...,)); inverse(z) -> (h, log|dh/dz|).
    """

    def __init__(
        self,
        circular_mask: Sequence[bool] | Tensor,
        transformed: Sequence[int] | Tensor,
        conditioning: Sequence[int] | Tensor,
        interval_transform: nn.Module | None = None,
        circular_transform: nn.Module | None = None,
        hidden: Sequence[int] = (64, 64),
        inversion: InversionSettings | None = None,
    ) -> None:
        super().__init__()
        mask = torch.as_tensor(circular_mask, dtype=torch.bool).flatten()
        self.dim = int(mask.numel())
        if self.dim == 0:
            raise ValueError("circular_mask is empty: a coupling layer needs dim >= 1")
        transformed_index = _as_index(transformed, self.dim, "transformed")
        conditioning_index = _as_index(conditioning, self.dim, "conditioning")
        if transformed_index.numel() == 0:
            raise ValueError("a coupling layer must transform at least one coordinate")
        overlap = set(transformed_index.tolist()) & set(conditioning_index.tolist())
        if overlap:
            raise ValueError(f"indices both transformed and conditioning: {sorted(overlap)}")
        self.register_buffer("circular_mask", mask)
        self.register_buffer("transformed_index", transformed_index)
        self.register_buffer("conditioning_index", conditioning_index)

        groups: list[TransformGroup] = []
        for circular, transform in ((False, interval_transform), (True, circular_transform)):
            index = transformed_index[mask[transformed_index] == circular]
            if index.numel() == 0:
                continue
            if transform is None:
                kind = "circular" if circular else "interval"
                raise ValueError(
                    f"coordinates {index.tolist()} are {kind}: pass a {kind}_transform"
                )
            groups.append(TransformGroup(transform, index, circular))
        self.groups = nn.ModuleList(groups)
        self.conditioner = Conditioner(
            mask[conditioning_index],
            [(int(g.index.numel()), g.transform.identity_params()) for g in groups],
            hidden=hidden,
        )
        self.inversion = InversionSettings() if inversion is None else inversion

    def _check(self, h: Tensor) -> None:
        if h.dim() < 1 or h.size(-1) != self.dim:
            raise ValueError(f"expected shape (..., {self.dim}), got {list(h.shape)}")

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        self._check(h)
        params = self.conditioner(h.index_select(-1, self.conditioning_index))
        z = h
        log_det = torch.zeros(h.shape[:-1], dtype=h.dtype, device=h.device)
        for group_number, group in enumerate(self.groups):
            z, group_log_det = group(z, params[group_number])
            log_det = log_det + group_log_det
        return z, log_det

    @torch.jit.unused
    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Sampling direction z -> h; returns (h (..., dim), log|dh/dz| (...,))."""
        self._check(z)
        params = self.conditioner(z.index_select(-1, self.conditioning_index))
        h = z
        log_det = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
        for group_number, group in enumerate(self.groups):
            h, group_log_det = group.inverse(h, params[group_number], self.inversion)
            log_det = log_det + group_log_det
        return h, log_det
