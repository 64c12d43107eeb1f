"""Element-wise monotone transforms on [0, 1], the circle and R (see docs/architecture.md).

``make_transform(kind, circular, **kw)`` builds one by name: ``"smooth"`` (C-infinity bump
mixture), ``"spline"`` (C^1 rational-quadratic spline baseline) or ``"affine"`` (unbounded
domains only).
"""

from __future__ import annotations

from typing import Any

from flowff.transforms.affine import AffineTransform
from flowff.transforms.base import ElementwiseTransform
from flowff.transforms.gaussian import GaussianMixtureTransform
from flowff.transforms.mixture import SmoothMixtureTransform
from flowff.transforms.splines import RationalQuadraticSplineTransform

#: Names accepted by :func:`make_transform`.
TRANSFORM_KINDS: tuple[str, ...] = ("smooth", "spline", "gaussian", "affine")


def make_transform(kind: str, circular: bool, **kwargs: Any) -> ElementwiseTransform:
    """Build an element-wise transform by name.

    Args:
        kind: ``"smooth"`` (:class:`SmoothMixtureTransform`, kwargs ``num_components``,
            ``beta``), ``"spline"`` (:class:`RationalQuadraticSplineTransform`, kwargs
            ``num_bins``, ``learn_boundary_derivatives``), ``"gaussian"``
            (:class:`GaussianMixtureTransform`, kwargs ``num_components``, ``min_width``,
            ``max_width``; ``circular`` must be False) or ``"affine"``
            (:class:`AffineTransform`, unbounded domains, ``circular`` must be False).
        circular: True for a circle transform (f(x + 1) = f(x) + 1).
        **kwargs: forwarded to the class.

    Raises:
        ValueError: unknown kind, or a circular affine transform.
    """
    if kind == "smooth":
        return SmoothMixtureTransform(circular=circular, **kwargs)
    if kind == "spline":
        return RationalQuadraticSplineTransform(circular=circular, **kwargs)
    if kind == "gaussian":
        return GaussianMixtureTransform(circular=circular, **kwargs)
    if kind == "affine":
        if circular:
            raise ValueError("the affine transform acts on R and has no circular version")
        return AffineTransform(**kwargs)
    raise ValueError(f"unknown transform kind {kind!r}; expected one of {TRANSFORM_KINDS}")


__all__ = [
    "TRANSFORM_KINDS",
    "AffineTransform",
    "ElementwiseTransform",
    "GaussianMixtureTransform",
    "RationalQuadraticSplineTransform",
    "SmoothMixtureTransform",
    "make_transform",
]
