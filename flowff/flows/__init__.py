"""Coupling flows: conditioners, coupling layers, flow stacks, priors, numerical inversion.

Directions: ``forward`` is the analytic density direction (data h -> base z, with log|dz/dh|);
``inverse`` samples (multi-bin bisection with implicit gradients unless the transform has an
analytic inverse).
"""

from flowff.flows.builder import CouplingStep, alternating_halves_schedule, build_coupling_flow
from flowff.flows.conditioner import Conditioner
from flowff.flows.coupling import CouplingLayer, TransformGroup
from flowff.flows.flow import Flow
from flowff.flows.implicit import InversionSettings, implicit_inverse
from flowff.flows.inversion import (
    InversionError,
    InversionResult,
    bisect_monotone,
    circular_lift,
    default_tolerance,
    solve_transform,
)
from flowff.flows.periodic import wrap_unit
from flowff.flows.priors import Prior, UniformPrior

__all__ = [
    "Conditioner",
    "CouplingLayer",
    "CouplingStep",
    "Flow",
    "InversionError",
    "InversionResult",
    "InversionSettings",
    "Prior",
    "TransformGroup",
    "UniformPrior",
    "alternating_halves_schedule",
    "bisect_monotone",
    "build_coupling_flow",
    "circular_lift",
    "default_tolerance",
    "implicit_inverse",
    "solve_transform",
    "wrap_unit",
]
