"""Vector fields for continuous flows on particle systems, with their divergences.

Contract: a *dynamics* module maps time t (0-dim tensor) and states x (batch, n, d) to
``(v, div)``: the velocity (batch, n, d) and its divergence tr(dv/dx) (batch,). Dynamics without a
closed-form divergence expose only ``velocity(t, x)`` and get one from ``AutogradTrace``.

* ``KernelDynamics``: the equivariant kernel flow of Köhler, Klein & Noé (2020),
  v_i = sum_{j != i} phi(d_ij, t) r_ij, phi(d, t) = R(t)^T W K(d), with exact divergence
  (supplement Eq. 21)  div v = sum_{i != j} phi'(d_ij) d_ij + D phi(d_ij).
  v is the gradient of an invariant potential, so it is rotation-, permutation- and
  translation-equivariant; it sums to zero over particles and is translation invariant, so the
  full-space trace equals the trace on the centre-of-mass-free subspace.
* ``MLPDynamics``: the non-equivariant baseline, v = A MLP(A x, t) with A the centring projector
  (translation invariant, so it shares the kernel flow's subspace and trace identity).
* ``AutogradTrace``: divergence of any velocity by brute-force autograd (one backward pass per
  coordinate) or by Hutchinson's estimator (one pass, unbiased, noisy).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from flowff.equivariant.particles import remove_mean
from flowff.equivariant.rbf import GaussianRBF, concentrated, equispaced, local_spacing


class KernelDynamics(nn.Module):
    """Equivariant RBF kernel vector field with closed-form divergence.

    Shapes: x (batch, n_particles, n_dims) -> v (batch, n_particles, n_dims), div (batch,).
    ``weight`` is the (n_time_kernels, n_distance_kernels) matrix W. Work is done on the
    n (n - 1) / 2 unordered pairs (phi is symmetric, r_ij antisymmetric), so the ordered-pair
    sums of Eq. 21 are twice the unordered ones. Coincident particles (d_ij = 0) have no
    gradient.
    """

    def __init__(
        self,
        n_particles: int,
        n_dims: int,
        distance_rbf: GaussianRBF,
        time_rbf: GaussianRBF,
        init_scale: float = 0.1,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if n_particles < 2 or n_dims < 1:
            raise ValueError("kernel dynamics need n_particles >= 2 and n_dims >= 1")
        self.n_particles = n_particles
        self.n_dims = n_dims
        self.distance_rbf = distance_rbf
        self.time_rbf = time_rbf
        m, n_t = distance_rbf.n_kernels, time_rbf.n_kernels
        w = torch.randn(n_t, m, generator=generator, dtype=distance_rbf.means.dtype)
        self.weight = nn.Parameter(w * init_scale / math.sqrt(m))
        rows, cols = torch.triu_indices(n_particles, n_particles, offset=1)
        incidence = torch.zeros(rows.numel(), n_particles, dtype=distance_rbf.means.dtype)
        pair = torch.arange(rows.numel())
        incidence[pair, rows] = 1.0
        incidence[pair, cols] = -1.0
        self.register_buffer("rows", rows)
        self.register_buffer("cols", cols)
        #: (n_pairs, n): +1 at i and -1 at j for pair (i, j); v = incidence^T (phi r).
        self.register_buffer("incidence", incidence)

    def coefficients(self, t: torch.Tensor) -> torch.Tensor:
        """Distance-kernel coefficients R(t)^T W (M,) at time t (0-dim)."""
        time_k, _ = self.time_rbf(t.reshape(()).to(self.weight.dtype))
        return time_k @ self.weight

    def _pairs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pair vectors r_ij = x_i - x_j (b, P, d) and distances (b, P) for i < j."""
        r = x[:, self.rows] - x[:, self.cols]
        return r, torch.linalg.vector_norm(r, dim=-1)

    def velocity(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """v(x, t) (batch, n, d) without the divergence."""
        v, _ = self.forward(t, x)
        return v

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Velocity (batch, n, d) and exact divergence (batch,) at time t."""
        r, d = self._pairs(x)
        phi, dphi = self.distance_rbf.contract(d, self.coefficients(t))
        v = torch.einsum("pn,bpd->bnd", self.incidence.to(x.dtype), phi.unsqueeze(-1) * r)
        div = 2.0 * (dphi * d + float(self.n_dims) * phi).sum(dim=-1)
        return v, div


def kernel_dynamics_for(
    system_name: str, generator: torch.Generator | None = None, init_scale: float = 0.1
) -> KernelDynamics:
    """The paper's kernel dynamics (supplement C.1) for 'DW-2', 'DW-4' or 'LJ-13'.

    DW: 50 distance kernels equispaced in [0, 8] (bandwidth 0.5), 10 time kernels in [0, 1]
    (bandwidth 0.3). LJ-13: 50 distance kernels in [0, 16] concentrated around r_m = 1 with
    bandwidths growing with their spacing, 10 time kernels in [0, 1], narrower around t = 0.5.
    Means and bandwidths are trainable: 500 + 2 * 50 + 2 * 10 = 620 parameters, as in the paper.
    """
    if system_name in ("DW-2", "DW-4"):
        n = int(system_name[-1])
        dist = GaussianRBF(equispaced(50, 0.0, 8.0), torch.tensor(0.5))
        time = GaussianRBF(equispaced(10, 0.0, 1.0), torch.tensor(0.3))
        return KernelDynamics(n, 2, dist, time, init_scale=init_scale, generator=generator)
    if system_name == "LJ-13":
        means = concentrated(50, 0.0, 1.0, 16.0)
        dist = GaussianRBF(means, local_spacing(means, floor=0.05))
        t_means = equispaced(10, 0.0, 1.0)
        t_bw = 0.1 + 0.3 * (2.0 * (t_means - 0.5)).abs()
        time = GaussianRBF(t_means, t_bw)
        return KernelDynamics(13, 3, dist, time, init_scale=init_scale, generator=generator)
    raise ValueError(f"no kernel layout for system {system_name!r}; use DW-2, DW-4 or LJ-13")


class MLPDynamics(nn.Module):
    """Non-equivariant baseline v = A MLP([A x, t]) with tanh hidden layers.

    Shapes: x (batch, n, d) -> v (batch, n, d). No closed-form divergence: wrap in
    ``AutogradTrace``.
    """

    def __init__(self, n_particles: int, n_dims: int, hidden: tuple[int, ...] = (64, 64)) -> None:
        super().__init__()
        self.n_particles = n_particles
        self.n_dims = n_dims
        sizes = [n_particles * n_dims + 1, *hidden, n_particles * n_dims]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def velocity(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """v(x, t) (batch, n, d), centred."""
        b = x.shape[0]
        flat = remove_mean(x).reshape(b, -1)
        inp = torch.cat([flat, t.reshape(1, 1).to(x.dtype).expand(b, 1)], dim=-1)
        return remove_mean(self.net(inp).reshape(x.shape))


class AutogradTrace(nn.Module):
    """Adds a divergence to ``dynamics.velocity`` by autograd: 'exact' or 'hutchinson'.

    'exact' takes one backward pass per coordinate (n * d passes, the brute-force trace);
    'hutchinson' estimates tr(J) by e^T J e with Gaussian e, using the noise set by
    ``set_noise`` (keep it fixed over one integration, as FFJORD does) or fresh noise per call.
    Gradients flow through the divergence when grad mode is on (create_graph).
    """

    def __init__(self, dynamics: nn.Module, method: str = "exact") -> None:
        super().__init__()
        if method not in ("exact", "hutchinson"):
            raise ValueError(f"method must be 'exact' or 'hutchinson', got {method!r}")
        if not hasattr(dynamics, "velocity"):
            raise TypeError("the wrapped dynamics must define velocity(t, x)")
        self.dynamics = dynamics
        self.method = method
        self.noise: torch.Tensor | None = None

    def set_noise(self, noise: torch.Tensor | None) -> None:
        """Fix the Hutchinson probe vectors (batch, n, d), or None for fresh noise per call."""
        self.noise = noise

    def velocity(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The wrapped velocity."""
        return self.dynamics.velocity(t, x)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Velocity (batch, n, d) and autograd divergence (batch,)."""
        keep_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            xg = x if x.requires_grad else x.detach().requires_grad_(True)
            v = self.dynamics.velocity(t, xg)
            if self.method == "exact":
                div = exact_trace(v, xg, create_graph=keep_graph)
            else:
                noise = self.noise if self.noise is not None else torch.randn_like(xg)
                (vjp,) = torch.autograd.grad(v, xg, noise, create_graph=keep_graph)
                div = (vjp * noise).sum(dim=(-2, -1))
        if not keep_graph:
            v, div = v.detach(), div.detach()
        return v, div


def exact_trace(v: torch.Tensor, x: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """tr(dv/dx) for v, x of shape (batch, n, d), by one backward pass per coordinate."""
    b = x.shape[0]
    v_flat = v.reshape(b, -1)
    div = torch.zeros(b, dtype=v.dtype, device=v.device)
    for k in range(v_flat.shape[1]):
        (g,) = torch.autograd.grad(v_flat[:, k].sum(), x, create_graph=create_graph,
                                   retain_graph=True)
        div = div + g.reshape(b, -1)[:, k]
    return div
