#!/usr/bin/env python
"""Forces of a smooth flow vs a spline flow on a 2-d toy density (paper Fig. 2).

Target: four Gaussian rings on [0, 1]^2, log p(x) = log sum_i exp(-(r_i(x) - R)^2 / (2 s^2)) up to
a constant, with ring radius R = 0.15 and width s = 0.05 in a transformed radius r_i: the
Euclidean distance to centre c_i (non-periodic variant), or the smooth periodic chordal distance
r^2 = sum_d (sin(pi (x_d - c_d)) / pi)^2 (periodic variant, a density on the torus).
Reference samples come from vectorised Metropolis MCMC. A smooth bump-mixture flow and a
rational-quadratic spline flow (4 coupling layers, --components components/bins, MLP 100-100)
are each trained by maximum likelihood only. Forces are grad_x log p (dimensionless, per unit
of x); the script prints each flow's force RMSE against the exact forces on held-out MCMC
samples and writes one PNG with the reference and both flows' densities and force fields.

    python examples/toy2d_forces.py --out toy2d_forces.png
    python examples/toy2d_forces.py --steps 200 --variants periodic   # quick look
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402
from tqdm import tqdm  # noqa: E402

from flowff.flows import Flow, build_coupling_flow  # noqa: E402

CENTRES = ((0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75))
RING_RADIUS = 0.15
RING_WIDTH = 0.05


def ring_radius(x: Tensor, centre: Tensor, periodic: bool) -> Tensor:
    """Transformed distance of x (..., 2) to ``centre`` (2,): Euclidean or periodic chordal."""
    delta = x - centre
    if periodic:
        delta = torch.sin(math.pi * delta) / math.pi
    return torch.sqrt((delta**2).sum(-1) + 1e-12)


def target_log_prob(x: Tensor, periodic: bool) -> Tensor:
    """Unnormalised log-density of the four rings at x (..., 2); -inf outside [0,1]^2."""
    centres = torch.tensor(CENTRES, dtype=x.dtype)
    terms = torch.stack(
        [-((ring_radius(x, c, periodic) - RING_RADIUS) ** 2) / (2 * RING_WIDTH**2) for c in centres]
    )
    log_p = torch.logsumexp(terms, dim=0)
    if periodic:
        return log_p
    inside = ((x >= 0) & (x <= 1)).all(-1)
    return torch.where(inside, log_p, torch.full_like(log_p, -math.inf))


def target_log_normalizer(periodic: bool, grid: int = 1000) -> float:
    """log Z of the ring density on [0,1]^2 by midpoint quadrature (grid x grid points)."""
    edge = (torch.arange(grid, dtype=torch.float64) + 0.5) / grid
    xx, yy = torch.meshgrid(edge, edge, indexing="xy")
    log_p = target_log_prob(torch.stack([xx, yy], -1).reshape(-1, 2), periodic)
    return float(torch.logsumexp(log_p, 0)) - 2.0 * math.log(grid)


def forces(log_prob, x: Tensor) -> Tensor:
    """grad_x log p at x (n, 2)."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(log_prob(x).sum(), x)
    return grad


def metropolis(
    periodic: bool, num_samples: int, generator: torch.Generator, chains: int = 2000,
    step: float = 0.04, burn_in: int = 500, thin: int = 10,
) -> Tensor:
    """Vectorised random-walk Metropolis samples (num_samples, 2) of the ring density."""
    x = torch.rand(chains, 2, generator=generator, dtype=torch.float64)
    log_p = target_log_prob(x, periodic)
    samples = []
    total = burn_in + thin * math.ceil(num_samples / chains)
    accepted = 0
    for sweep in range(total):
        proposal = x + step * torch.randn(chains, 2, generator=generator, dtype=torch.float64)
        if periodic:
            proposal = proposal - torch.floor(proposal)
        log_p_new = target_log_prob(proposal, periodic)
        accept = torch.rand(chains, generator=generator, dtype=torch.float64).log() < (
            log_p_new - log_p
        )
        accepted += int(accept.sum())
        x = torch.where(accept.unsqueeze(-1), proposal, x)
        log_p = torch.where(accept, log_p_new, log_p)
        if sweep >= burn_in and (sweep - burn_in) % thin == thin - 1:
            samples.append(x.clone())
    rate = accepted / (total * chains)
    print(f"  MCMC acceptance {rate:.2f}", file=sys.stderr)
    return torch.cat(samples)[:num_samples]


def train_flow(
    kind: str, periodic: bool, data: Tensor, args: argparse.Namespace, seed: int
) -> Flow:
    """Maximum-likelihood training of one flow on ``data`` (n, 2)."""
    torch.manual_seed(seed)
    flow = build_coupling_flow(
        2, [periodic, periodic], transform_kind=kind, num_components=args.components,
        hidden=(100, 100), num_layers=4,
    ).double()
    optimizer = torch.optim.Adam(flow.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.steps)
    generator = torch.Generator().manual_seed(seed)
    progress = tqdm(range(args.steps), desc=f"{kind:>6} {'periodic' if periodic else 'interval'}",
                    file=sys.stderr, mininterval=2.0)
    for _ in progress:
        batch = data[torch.randint(len(data), (args.batch,), generator=generator)]
        loss = -flow.log_prob(batch).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        progress.set_postfix(nll=f"{loss.item():.3f}", refresh=False)
    return flow


def panel(axis, log_prob_fn, title: str, grid: int = 160, arrows: int = 17) -> None:
    """Density image and force arrows of one model on [0, 1]^2."""
    edge = (torch.arange(grid, dtype=torch.float64) + 0.5) / grid
    xx, yy = torch.meshgrid(edge, edge, indexing="xy")
    points = torch.stack([xx, yy], -1).reshape(-1, 2)
    with torch.no_grad():
        density = torch.exp(log_prob_fn(points)).reshape(grid, grid)
    axis.imshow(density / density.max(), origin="lower", extent=(0, 1, 0, 1), cmap="Greys")
    coarse = (torch.arange(arrows, dtype=torch.float64) + 0.5) / arrows
    cx, cy = torch.meshgrid(coarse, coarse, indexing="xy")
    anchors = torch.stack([cx, cy], -1).reshape(-1, 2)
    field = forces(log_prob_fn, anchors)
    axis.quiver(anchors[:, 0], anchors[:, 1], field[:, 0], field[:, 1], color="tab:red",
                angles="xy", scale_units="xy", scale=400.0, width=0.004)
    axis.set(title=title, xlim=(0, 1), ylim=(0, 1), xticks=[], yticks=[])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="toy2d_forces.png", help="PNG path")
    parser.add_argument("--steps", type=int, default=600, help="training steps per flow")
    parser.add_argument("--components", type=int, default=40, help="mixture components/bins")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--samples", type=int, default=40000, help="MCMC training samples")
    parser.add_argument("--variants", nargs="+", choices=("interval", "periodic"),
                        default=["interval", "periodic"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.components < 1:
        parser.error("--steps and --components must be positive")
    torch.set_num_threads(1)
    start = time.perf_counter()

    figure, axes = plt.subplots(len(args.variants), 3, figsize=(10.5, 3.6 * len(args.variants)),
                                squeeze=False)
    for row, variant in enumerate(args.variants):
        periodic = variant == "periodic"
        generator = torch.Generator().manual_seed(args.seed + row)
        print(f"{variant}: sampling the target by MCMC", file=sys.stderr)
        data = metropolis(periodic, args.samples + 5000, generator)
        train, test = data[: args.samples], data[args.samples :]
        true_forces = forces(lambda x, p=periodic: target_log_prob(x, p), test)
        log_z = target_log_normalizer(periodic)
        reference_nll = float(log_z - target_log_prob(test, periodic).mean())
        print(f"{variant:>8} target: test NLL {reference_nll:7.4f} (exact density; the optimum)")
        panel(axes[row, 0], lambda x, p=periodic: target_log_prob(x, p), f"reference ({variant})")
        for column, kind in enumerate(("spline", "smooth"), start=1):
            flow = train_flow(kind, periodic, train, args, seed=args.seed + 10 * row + column)
            flow_forces = forces(flow.log_prob, test)
            rmse = float(((flow_forces - true_forces) ** 2).sum(-1).mean().sqrt())
            worst = float((flow_forces - true_forces).norm(dim=-1).max())
            with torch.no_grad():
                nll = float(-flow.log_prob(test).mean())
            print(f"{variant:>8} {kind:>6}: force RMSE {rmse:8.3f}  max error {worst:9.2f}  "
                  f"test NLL {nll:7.4f}")
            panel(axes[row, column], flow.log_prob, f"{kind} flow: force RMSE {rmse:.2f}")
    reference_rms = float((true_forces**2).sum(-1).mean().sqrt())
    print(f"(RMS of the true forces in the last variant: {reference_rms:.2f})")
    figure.tight_layout()
    figure.savefig(args.out, dpi=120)
    print(f"wrote {args.out} after {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
