"""MDFlowEnergy: the flow energy with analytic forces, for molecular dynamics.

OpenMM asks for u(x) and -du/dx once per MD step. Through autograd, the flow's few hundred tiny
tensor operations cost a forward and a backward node each, which dominates the call for one or a
few molecules. :class:`MDFlowEnergy` evaluates the same energy as
:class:`flowff.energy.flow_energy.FlowEnergy` (with a copy of its modules, parameters held
constant) and computes its gradient by hand, in one sweep without autograd:

* forward, layer by layer: each coupling layer evaluates its conditioner MLP (keeping the SiLU
  derivatives) and the mixture transform together with its local derivatives
  (:meth:`flowff.transforms.mixture.SmoothMixtureTransform.forward_with_derivatives`, or the
  Gaussian mixture's);
* backward, layer by layer in reverse: with g = du/dz from the layer above (u in kT),
  du/dh_T = g_T f' - (log f')', du/dparams = g_T df/dparams - d log f'/dparams, then through the
  MLP and the conditioner features to du/dh_C (:meth:`Conditioner.features_and_slopes`).

The internal-coordinate layer supplies its derivatives too
(:meth:`flowff.ic.layer.InternalCoordinates.forward_with_derivatives`), giving du/dx. Autograd
only sees the last step: with x0 a copy of the positions x made under ``torch.no_grad()``, the
returned energy is

    kT * (u_value + sum(du/dx * (x - x0)))

whose value is kT u (the second term is exactly 0) and whose gradient w.r.t. the positions is
kT du/dx, minus the exact force. (Not ``x.detach()``: openmm-torch runs ``torch.jit.freeze`` on
the module, and freezing deletes ``detach``; a no_grad block survives it.) Higher derivatives
(Hessians, gradients of forces w.r.t. parameters for force matching) are *not* available from
this module: train with FlowEnergy, run MD with this one.
Supported flows: coupling layers with smooth (bump or Gaussian) mixture transforms and Linear/SiLU
conditioners
(the paper's architecture); anything else raises ``TypeError``.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from flowff._torchscript import quiet_jit
from flowff.energy.confinement import SmoothBoxConfinement
from flowff.energy.flow_energy import FlowEnergy, replica_positions
from flowff.flows.coupling import CouplingLayer
from flowff.flows.periodic import wrap_unit
from flowff.transforms.gaussian import GaussianMixtureTransform
from flowff.transforms.mixture import SmoothMixtureTransform


class _Confinement(nn.Module):
    """A :class:`flowff.energy.confinement.SmoothBoxConfinement` (the base-space wall at the end
    of the analytic chain, or the wall on h) with its value and gradient in kT."""

    def __init__(self, box: SmoothBoxConfinement) -> None:
        super().__init__()
        for name in ("interval_mask", "lower", "upper", "strength_kT", "width"):  # (dim,) each
            self.register_buffer(name, getattr(box, name).clone(), persistent=False)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z (batch, dim) -> (wall energy (batch,), its gradient (batch, dim))."""
        # past the upper and the lower wall
        distance = torch.stack([z - self.upper.to(z.dtype), self.lower.to(z.dtype) - z])
        outside = distance > 0
        safe = torch.where(outside, distance, torch.ones_like(distance))
        width = self.width.to(z.dtype)
        boltzmann = torch.exp(-width / safe)
        value = torch.where(outside, safe * safe * boltzmann, torch.zeros_like(distance))
        slope = torch.where(outside, boltzmann * (2.0 * safe + width),
                            torch.zeros_like(distance))
        scale = self.strength_kT.to(z.dtype) * self.interval_mask.to(z.dtype)
        wall = ((value[0] + value[1]) * scale).sum(dim=-1)
        return wall, (slope[0] - slope[1]) * scale


class _TransformGroup(nn.Module):
    """The coordinates ``index`` of a coupling layer and the mixture transform acting on them."""

    def __init__(self, transform: nn.Module, index: Tensor, circular: bool) -> None:
        super().__init__()
        if not isinstance(transform, (SmoothMixtureTransform, GaussianMixtureTransform)):
            raise TypeError(
                "MDFlowEnergy supports smooth (bump or Gaussian) mixture transforms only, got "
                f"{type(transform).__name__}"
            )
        self.transform = transform
        self.register_buffer("index", index.clone(), persistent=False)
        self.circular = circular


class AnalyticCoupling(nn.Module):
    """A coupling layer evaluated with its derivatives, and everything after it in the flow.

    ``forward(h (batch, dim))`` -> ``(u (batch,), du/dh (batch, dim))`` where u, in kT, is
    ``rest(z) - log|dz/dh|`` and ``rest`` the next layer (or the confinement) of the chain.
    """

    def __init__(self, layer: CouplingLayer, rest: nn.Module) -> None:
        super().__init__()
        if not isinstance(layer, CouplingLayer):
            raise TypeError(f"MDFlowEnergy needs coupling layers, got {type(layer).__name__}")
        conditioner = layer.conditioner
        self.has_inputs = bool(conditioner.has_inputs)
        linears: list[nn.Module] = []
        if self.has_inputs:
            modules = list(conditioner.network)
            linears = modules[0::2]
            activations = modules[1::2]
            if not all(isinstance(m, nn.Linear) for m in linears) or not all(
                isinstance(m, nn.SiLU) for m in activations
            ) or len(linears) != len(activations) + 1:
                raise TypeError("MDFlowEnergy supports conditioners of Linear layers with SiLU")
        self.linears = nn.ModuleList(linears)
        self.num_outputs = int(conditioner.num_outputs)
        self.conditioner = conditioner  # features_and_slopes; parameters without inputs
        self.register_buffer("conditioning_index", layer.conditioning_index, persistent=False)
        # h columns of the features, for scattering their gradients
        self.register_buffer(
            "feature_index", layer.conditioning_index[conditioner.feature_inputs],
            persistent=False,
        )
        self.groups = nn.ModuleList(
            [_TransformGroup(g.transform, g.index, bool(g.circular)) for g in layer.groups]
        )
        self.rest = rest

    def _conditioner(self, h: Tensor, cache: list[Tensor]) -> Tensor:
        """Transform parameters (batch, n_out); appends to ``cache`` the feature slopes, then per
        hidden layer its weight and SiLU slope, then the last weight."""
        if not self.has_inputs:
            shape = list(h.shape[:-1])
            shape.append(self.num_outputs)
            return self.conditioner.constant.to(h.dtype).expand(shape)
        activation, slopes = self.conditioner.features_and_slopes(
            h.index_select(-1, self.conditioning_index)
        )
        cache.append(slopes)
        last = len(self.linears) - 1
        for position, linear in enumerate(self.linears):
            pre_activation = linear(activation)
            cache.append(linear.weight)
            if position == last:
                activation = pre_activation
            else:
                gate = torch.sigmoid(pre_activation)
                activation = torch.nn.functional.silu(pre_activation)
                # SiLU' = gate (1 + z (1 - gate)) = gate + silu (1 - gate)
                cache.append(torch.addcmul(gate, activation, 1.0 - gate))
        return activation

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        mlp_cache: list[Tensor] = []
        flat = self._conditioner(h, mlp_cache)
        z = h
        log_det = torch.zeros(0, dtype=h.dtype, device=h.device)  # set by the first group
        group_cache: list[Tensor] = []
        start = 0
        for group in self.groups:
            num_dims = group.index.size(0)
            num_params = group.transform.num_params
            params = flat.narrow(-1, start, num_dims * num_params).unflatten(
                -1, [num_dims, num_params]
            )
            start += num_dims * num_params
            y, log_slope, slope, d_log_slope, dy_dparams, d_log_slope_dparams = (
                group.transform.forward_with_derivatives(h.index_select(-1, group.index), params)
            )
            if group.circular:
                y = wrap_unit(y)
            z = z.index_copy(-1, group.index, y)
            first_group = len(group_cache) == 0
            log_det = log_slope.sum(-1) if first_group else log_det + log_slope.sum(-1)
            group_cache += [slope, d_log_slope, dy_dparams, d_log_slope_dparams]
        rest_energy, grad_z = self.rest(z)
        # du/dlog_det = -1: u = rest(z) - log_det
        grad_h = grad_z
        grad_params: list[Tensor] = []
        for number, group in enumerate(self.groups):
            slope = group_cache[4 * number]
            d_log_slope = group_cache[4 * number + 1]
            dy_dparams = group_cache[4 * number + 2]
            d_log_slope_dparams = group_cache[4 * number + 3]
            grad_y = grad_z.index_select(-1, group.index)
            grad_h = grad_h.index_copy(-1, group.index, grad_y * slope - d_log_slope)
            grad_params.append(
                (grad_y.unsqueeze(-1) * dy_dparams - d_log_slope_dparams).flatten(-2)
            )
        energy = rest_energy - log_det
        if not self.has_inputs:
            return energy, grad_h
        grad = grad_params[0] if len(grad_params) == 1 else torch.cat(grad_params, dim=-1)
        # back through the MLP: cache = [feature slopes, W_0, s_0, W_1, s_1, ..., W_last]
        position = len(mlp_cache) - 1
        grad = torch.matmul(grad, mlp_cache[position])
        while position > 1:
            grad = torch.matmul(grad * mlp_cache[position - 1], mlp_cache[position - 2])
            position -= 2
        return energy, grad_h.index_add(-1, self.feature_index, grad * mlp_cache[0])


class MDFlowEnergy(nn.Module):
    """FlowEnergy with analytic forces: positions (R * n_atoms, 3) nm -> energy (kJ/mol).

    Same value as ``energy(positions)``; ``torch.autograd.grad(result, positions)`` is the exact
    gradient (forces = minus it), computed mostly by hand (see the module docstring). First
    derivatives w.r.t. positions only. Holds a copy of ``energy`` (in its dtype) with constant
    parameters: later changes to ``energy`` do not reach it. TorchScript-compatible (see
    :func:`export_for_md`).
    """

    def __init__(self, energy: FlowEnergy) -> None:
        super().__init__()
        if not isinstance(energy, FlowEnergy):
            raise TypeError(f"expected a FlowEnergy, got {type(energy).__name__}")
        # A snapshot with constant parameters: the analytic sweep then runs without autograd
        # bookkeeping (a no_grad block would not stop TorchScript's profiling executor from
        # building differentiable graphs for it).
        energy = copy.deepcopy(energy).eval().requires_grad_(False)
        self.ic = energy.ic
        chain: nn.Module = _Confinement(energy.confinement)
        self.h_wall = _Confinement(energy.ic_wall)
        for layer in reversed(list(energy.flow.layers)):
            chain = AnalyticCoupling(layer, chain)
        self.flow = chain
        self.n_atoms = energy.n_atoms
        self.kT = energy.kT
        self.temperature_K = energy.temperature_K
        self.dtype = energy.dtype

    def forward(self, positions: Tensor) -> Tensor:
        x = replica_positions(positions, self.n_atoms, self.dtype)
        # Everything below runs without autograd. A no_grad block, not detach(): openmm-torch
        # applies torch.jit.freeze, which deletes detach() (and autograd would then record and
        # differentiate the whole analytic computation: right forces, 4x slower).
        with torch.no_grad():
            constant_x = x.clone()
            h, log_det_ic, dh_dx, d_log_det_dx = self.ic.forward_with_derivatives(constant_x)
            # conf(z) - log|dz/dh| + conf(h) in kT and its gradient w.r.t. h
            flow_part, grad_h = self.flow(h)
            wall_h, grad_wall_h = self.h_wall(h)  # the same wall on h (see FlowEnergy)
            flow_part = flow_part + wall_h
            grad_h = grad_h + grad_wall_h
            energy = self.kT * (flow_part - log_det_ic).sum()
            # du/dx = du/dh dh/dx - d log_det/dx, gathered from the (dim, 4) derivative slots
            slots = grad_h.unsqueeze(-1).unsqueeze(-1) * dh_dx - d_log_det_dx
            grad_x = torch.zeros_like(x).index_add(
                1, self.ic.derivative_atoms.flatten(), slots.flatten(1, 2)
            )
        if not x.requires_grad:
            return energy
        return energy + self.kT * (grad_x * (x - constant_x)).sum()


def export_for_md(energy: FlowEnergy) -> torch.jit.ScriptModule:
    """The TorchScript module OpenMM should run: :class:`MDFlowEnergy` of ``energy``, scripted.

    openmm-torch freezes it (``torch.jit.freeze``) when the Context is created; the module is
    written to stay fast and exact when frozen (tested).
    """
    with quiet_jit():
        return torch.jit.script(MDFlowEnergy(energy).eval())
