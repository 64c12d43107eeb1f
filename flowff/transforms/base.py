"""The element-wise transform contract (docs/architecture.md, "Element-wise transform").

An :class:`ElementwiseTransform` is a stateless ``nn.Module``: its parameters come from a
conditioner as unconstrained real numbers, ``num_params`` per dimension, and the transform maps
them to constrained values itself. It acts on each scalar coordinate separately:

    forward(x (..., d), params (..., d, num_params)) -> (y (..., d), log|dy/dx| (..., d))

Interval transforms (``circular = False``) map [0, 1] onto [0, 1] with f(0) = 0, f(1) = 1 and
extend smoothly and monotonically to R. Circular transforms (``circular = True``) are lifts of
circle maps, f(x + 1) = f(x) + 1 on R; the coupling layer reduces their outputs modulo 1.
Quantities are dimensionless (coordinates already normalised to [0, 1]).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ElementwiseTransform(nn.Module):
    """Base class: a monotone scalar map applied element-wise, parameterised per element.

    Attributes (plain Python values, visible to TorchScript):
        num_params (int): unconstrained parameters per transformed element.
        circular (bool): True for circle lifts, f(x + 1) = f(x) + 1.
        has_analytic_inverse (bool): True when :meth:`analytic_inverse` is implemented.

    Subclasses pass these to ``__init__``, implement :meth:`forward` and :meth:`identity_params`,
    and override :meth:`analytic_inverse` (decorated with ``torch.jit.export``) when
    ``has_analytic_inverse`` is True. ``forward`` must compile with ``torch.jit.script``.
    """

    def __init__(self, num_params: int, circular: bool, has_analytic_inverse: bool) -> None:
        super().__init__()
        if num_params < 1:
            raise ValueError(f"num_params must be >= 1, got {num_params}")
        self.num_params = num_params
        self.circular = circular
        self.has_analytic_inverse = has_analytic_inverse

    def check_shapes(self, x: Tensor, params: Tensor) -> None:
        """Raise ``ValueError`` unless ``params`` has shape ``x.shape + (num_params,)``."""
        expected = list(x.shape) + [self.num_params]
        if list(params.shape) != expected:
            raise ValueError(
                "params must have shape x.shape + (num_params,) = "
                + str(expected)
                + ", got "
                + str(list(params.shape))
            )

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """Map ``x`` (..., d) with ``params`` (..., d, num_params) to ``(y, log|dy/dx|)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward")

    def identity_params(self, dtype: torch.dtype | None = None) -> Tensor:
        """Unconstrained parameters, shape ``(num_params,)``, giving (near) the identity map.

        ``dtype`` defaults to ``torch.get_default_dtype()``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement identity_params")

    @torch.jit.export
    def analytic_inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """Inverse ``(x, log|dx/dy|)`` of :meth:`forward`; only when ``has_analytic_inverse``."""
        raise RuntimeError("this transform has no analytic inverse; invert it numerically")
