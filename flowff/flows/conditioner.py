"""Conditioner MLP: conditioning coordinates -> parameters of the element-wise transforms.

Circular inputs are embedded as (cos 2 pi x, sin 2 pi x) so the parameters are smooth and
periodic in them; interval inputs x in [0, 1] enter centred, as 2 x - 1 in [-1, 1] (this trains
noticeably faster than raw x on the toy ring densities). The network outputs every parameter of
every transformed dimension, split into groups (e.g. interval dims and circular dims, which use
different transforms): group g has shape (..., num_dims[g], num_params[g]). The last layer starts
with zero weights and bias = the transforms' identity parameters, so the flow starts at (near)
identity; nothing overwrites the outputs afterwards, so every weight stays trainable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


class Conditioner(nn.Module):
    """MLP from conditioning coordinates (..., n_in) to per-group parameter tensors.

    ``circular_inputs``: (n_in,) bool, True for circular conditioning coordinates.
    ``groups``: one (num_dims, identity_params (num_params,)) pair per output group.
    ``hidden``: hidden layer widths (default 64-64), SiLU activations.
    forward(context (..., n_in)) -> list of (..., num_dims[g], num_params[g]) tensors.
    Without conditioning inputs the parameters are plain trainable vectors (no MLP).
    """

    def __init__(
        self,
        circular_inputs: Tensor,
        groups: Sequence[tuple[int, Tensor]],
        hidden: Sequence[int] = (64, 64),
    ) -> None:
        super().__init__()
        circular_inputs = torch.as_tensor(circular_inputs, dtype=torch.bool).flatten()
        if len(groups) == 0:
            raise ValueError("conditioner needs at least one output group")
        if any(int(width) <= 0 for width in hidden):
            raise ValueError(f"hidden widths must be positive, got {tuple(hidden)}")
        self.num_inputs = int(circular_inputs.numel())
        self.register_buffer("interval_index", torch.nonzero(~circular_inputs).flatten())
        self.register_buffer("circular_index", torch.nonzero(circular_inputs).flatten())
        self.num_dims: list[int] = []
        self.num_params: list[int] = []
        biases = []
        for num_dims, identity in groups:
            identity = torch.as_tensor(identity, dtype=torch.get_default_dtype()).flatten()
            if int(num_dims) <= 0 or identity.numel() == 0:
                raise ValueError(f"empty output group ({num_dims} dims, {identity.numel()} params)")
            self.num_dims.append(int(num_dims))
            self.num_params.append(int(identity.numel()))
            biases.append(identity.repeat(int(num_dims)))
        self.num_outputs = sum(d * p for d, p in zip(self.num_dims, self.num_params, strict=True))
        num_features = int(self.interval_index.numel()) + 2 * int(self.circular_index.numel())
        self.has_inputs = num_features > 0
        # the context column each feature depends on (see features_and_slopes)
        self.register_buffer(
            "feature_inputs",
            torch.cat([self.interval_index, self.circular_index, self.circular_index]),
            persistent=False,
        )
        layers: list[nn.Module] = []
        width_in = num_features
        if self.has_inputs:
            for width in hidden:
                layers += [nn.Linear(width_in, int(width)), nn.SiLU()]
                width_in = int(width)
            last = nn.Linear(width_in, self.num_outputs)
            with torch.no_grad():
                last.weight.zero_()
                last.bias.copy_(torch.cat(biases))
            layers.append(last)
        self.network = nn.Sequential(*layers)
        # Without inputs the parameters are trainable constants; otherwise an unused empty buffer.
        if self.has_inputs:
            self.register_buffer("constant", torch.zeros(0))
        else:
            self.constant = nn.Parameter(torch.cat(biases).clone())

    def features(self, context: Tensor) -> Tensor:
        """Network input: 2 x - 1 of interval coordinates, then cos and sin of 2 pi x."""
        angles = (2.0 * math.pi) * context.index_select(-1, self.circular_index)
        interval = 2.0 * context.index_select(-1, self.interval_index) - 1.0
        return torch.cat([interval, torch.cos(angles), torch.sin(angles)], dim=-1)

    @torch.jit.export
    def features_and_slopes(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`features` (..., n_features) and the derivative of each feature w.r.t. its one
        context coordinate, ``context[..., feature_inputs[j]]`` (..., n_features); for analytic
        gradients (flowff.energy.md_energy). Keep in step with :meth:`features` (a test compares
        the two, and the slopes with autograd)."""
        angles = (2.0 * math.pi) * context.index_select(-1, self.circular_index)
        cos = torch.cos(angles)
        sin = torch.sin(angles)
        if self.interval_index.numel() == 0:  # common case, fewer operations
            return (torch.cat([cos, sin], dim=-1),
                    torch.cat([(-2.0 * math.pi) * sin, (2.0 * math.pi) * cos], dim=-1))
        interval = 2.0 * context.index_select(-1, self.interval_index) - 1.0
        features = torch.cat([interval, cos, sin], dim=-1)
        slopes = torch.cat(
            [torch.full_like(interval, 2.0), (-2.0 * math.pi) * sin, (2.0 * math.pi) * cos], dim=-1
        )
        return features, slopes

    def forward(self, context: Tensor) -> list[Tensor]:
        if context.size(-1) != self.num_inputs:
            raise ValueError(
                f"conditioner expects {self.num_inputs} inputs, got shape {list(context.shape)}"
            )
        if self.has_inputs:
            flat = self.network(self.features(context))
        else:
            shape = list(context.shape[:-1])
            shape.append(self.num_outputs)
            flat = self.constant.to(context.dtype).expand(shape)
        outputs: list[Tensor] = []
        start = 0
        for group in range(len(self.num_dims)):
            num_dims = self.num_dims[group]
            num_params = self.num_params[group]
            chunk = flat.narrow(-1, start, num_dims * num_params)
            outputs.append(chunk.unflatten(-1, [num_dims, num_params]))
            start += num_dims * num_params
        return outputs
