"""Maximum-likelihood and ML + reverse-KL training of continuous flows (paper, Sec. 2 and C.1).

Loss per iteration: (1 - lambda) L_ML + lambda L_KL with
L_ML = -mean log q(x_data) and L_KL = mean_{x ~ q} [u(x) + log q(x)] (u in kT), lambda ramped
linearly from ``kl_start`` to ``kl_end`` over the iterations. AdamW, lr 5e-3, weight decay 0.01,
batch 64 (supplement C.1). Flows whose divergence comes from ``AutogradTrace`` in Hutchinson
mode get fresh probe vectors per integration, fixed along it. Optional augmentation applies a
random rotation and permutation to every training configuration of every batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from flowff.equivariant.dynamics import AutogradTrace
from flowff.equivariant.flow import ContinuousFlow
from flowff.equivariant.particles import augment, check_configurations, remove_mean
from flowff.equivariant.systems import ParticleSystem


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; defaults are the paper's (supplement C.1)."""

    n_iterations: int = 1000
    batch_size: int = 64
    lr: float = 5e-3
    weight_decay: float = 0.01
    kl_start: float = 0.0
    kl_end: float = 0.0
    kl_batch_size: int = 64
    augment: bool = False
    seed: int = 0
    grad_clip: float | None = None

    def kl_weight(self, iteration: int) -> float:
        """lambda at ``iteration`` (0-based), linear from kl_start to kl_end."""
        if self.n_iterations <= 1:
            return self.kl_end
        frac = iteration / (self.n_iterations - 1)
        return self.kl_start + frac * (self.kl_end - self.kl_start)


def _hutchinson(flow: ContinuousFlow) -> AutogradTrace | None:
    dyn = flow.dynamics
    return dyn if isinstance(dyn, AutogradTrace) and dyn.method == "hutchinson" else None


def _log_prob(flow: ContinuousFlow, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    probe = _hutchinson(flow)
    if probe is not None:
        probe.set_noise(torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device))
    try:
        return flow.log_prob(x)
    finally:
        if probe is not None:
            probe.set_noise(None)


def _sample(
    flow: ContinuousFlow, n: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    probe = _hutchinson(flow)
    param = next(flow.parameters())
    if probe is not None:
        shape = (n, flow.n_particles, flow.n_dims)
        probe.set_noise(torch.randn(shape, generator=gen, dtype=param.dtype).to(param.device))
    try:
        return flow.sample(n, generator=gen)
    finally:
        if probe is not None:
            probe.set_noise(None)


def train_flow(
    flow: ContinuousFlow,
    data: torch.Tensor,
    config: TrainConfig,
    system: ParticleSystem | None = None,
    progress: bool = True,
    desc: str = "train",
) -> dict[str, list[float]]:
    """Train ``flow`` in place on ``data`` (N, n, d); returns per-iteration 'nll', 'kl', 'loss'.

    ``system`` is required when the KL weight is ever positive.
    """
    check_configurations(data, flow.n_particles, flow.n_dims)
    if data.shape[0] < 1:
        raise ValueError("no training data")
    if max(config.kl_start, config.kl_end) > 0 and system is None:
        raise ValueError("KL training needs the target system (its energy)")
    param = next(flow.parameters())
    data = remove_mean(data.to(dtype=param.dtype, device=param.device))
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.AdamW(flow.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history: dict[str, list[float]] = {"nll": [], "kl": [], "loss": []}
    order = torch.randperm(data.shape[0], generator=gen)
    cursor = 0
    flow.train()
    for it in tqdm(range(config.n_iterations), disable=not progress, desc=desc, leave=False):
        bs = min(config.batch_size, data.shape[0])
        if cursor + bs > data.shape[0]:  # new epoch: reshuffle
            order, cursor = torch.randperm(data.shape[0], generator=gen), 0
        batch = data[order[cursor : cursor + bs].to(data.device)]
        cursor += bs
        if config.augment:
            batch = augment(batch, generator=gen)
        lam = config.kl_weight(it)
        nll = -_log_prob(flow, batch, gen).mean()
        loss = (1.0 - lam) * nll
        kl_value = float("nan")
        if lam > 0 and system is not None:
            x, log_q = _sample(flow, config.kl_batch_size, gen)
            kl = (system.energy(x) + log_q).mean()
            loss = loss + lam * kl
            kl_value = float(kl.detach())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(flow.parameters(), config.grad_clip)
        opt.step()
        history["nll"].append(float(nll.detach()))
        history["kl"].append(kl_value)
        history["loss"].append(float(loss.detach()))
    flow.eval()
    return history


@torch.no_grad()
def mean_nll(flow: ContinuousFlow, data: torch.Tensor, batch_size: int = 1000) -> float:
    """Mean negative log-likelihood (nats) of ``data`` (N, n, d) under ``flow``.

    Autograd-trace flows are evaluated with their current trace method; switch them to 'exact'
    first for exact likelihoods (``models.set_trace_method``).
    """
    check_configurations(data, flow.n_particles, flow.n_dims)
    param = next(flow.parameters())
    total, count = 0.0, 0
    gen = torch.Generator().manual_seed(0)
    for start in range(0, data.shape[0], batch_size):
        x = data[start : start + batch_size].to(dtype=param.dtype, device=param.device)
        total += float(-_log_prob(flow, x, gen).sum())
        count += x.shape[0]
    return total / count


@torch.no_grad()
def sample_flow(
    flow: ContinuousFlow, n: int, batch_size: int = 1000, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """n samples (n, n_particles, n_dims) and log q (n,), drawn in batches, seeded."""
    gen = torch.Generator().manual_seed(seed)
    xs, lqs = [], []
    for start in range(0, n, batch_size):
        x, lq = _sample(flow, min(batch_size, n - start), gen)
        xs.append(x)
        lqs.append(lq)
    return torch.cat(xs), torch.cat(lqs)
