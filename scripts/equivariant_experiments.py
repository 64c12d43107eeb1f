#!/usr/bin/env python
"""The experiments of Köhler, Klein & Noé (2020), "Equivariant Flows", at a chosen scale.

Stages (``--only`` picks some; all by default):

* ``data``   Metropolis reference sets (supplement C.4): DW-4 and LJ-13 training pools and test
             sets, independent blocks of chains of one vectorised run, thinned.
* ``fig3``   divergence estimators: Hutchinson error and wall time vs. particle count (Fig. 3a,c)
             and the DW-2 free-energy profile reweighted with exact vs. Hutchinson log q (3b).
* ``fig5``   test/train NLL vs. training-set size for the kernel flow (eq), the MLP nODE
             without (neq) and with augmentation (neq-aug) (Fig. 5).
* ``fig6``   DW-4 energy histograms after ML pre-training (the fig5 size-1000 models) and
             ML + KL with lambda ramped 0 -> 0.5, raw and importance-reweighted (Fig. 6).
* ``otd``    DTO (20-step RK4) vs. OTD (adaptive dopri5 with adjoint gradients) on DW-4
             (Fig. 4): NLL and function evaluations per iteration.
* ``minima`` unique minima: DW-4 flows trained on one perturbed minimum (paper: the equivariant
             flow finds all 5), and LJ-13 minima in the paper's energy bins (Table 1) for a
             single-chain training trajectory of 1,000 consecutive Metropolis steps, an
             independent short one of the same length, a long one of 100,000 steps (every
             ``lj_long_stride``-th state minimised at the default scale) and 1,000 samples of a
             kernel flow trained on the training trajectory.

Tables are printed; JSON and PNGs go to ``--out`` (default results/equivariant); trained models
and data go to ``--work`` (default runs/equivariant/<scale>, not committed) so an interrupted run
resumes where it stopped (finished stages are skipped unless ``--force``).

Scales: ``tiny`` (smoke test, about 2 minutes), ``default`` (about half an hour on 2 shared
cores; far from converged training, fewer samples than the paper, one round), ``paper`` (the
paper's sizes and sample counts; hours to days on a CPU).

    python scripts/equivariant_experiments.py --scale default --out results/equivariant
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from flowff.equivariant.adjoint import AdjointDopri5  # noqa: E402
from flowff.equivariant.dynamics import AutogradTrace, KernelDynamics  # noqa: E402
from flowff.equivariant.integrators import RK4Integrator  # noqa: E402
from flowff.equivariant.mcmc import (  # noqa: E402
    PROTOCOLS,
    MCMCProtocol,
    independent_trajectories,
)
from flowff.equivariant.minima import minimize, unique_minima  # noqa: E402
from flowff.equivariant.models import (  # noqa: E402
    count_parameters,
    kernel_flow,
    mlp_flow,
    set_trace_method,
)
from flowff.equivariant.particles import remove_mean  # noqa: E402
from flowff.equivariant.rbf import GaussianRBF, equispaced  # noqa: E402
from flowff.equivariant.systems import dw2, dw4, lj13  # noqa: E402
from flowff.equivariant.training import (  # noqa: E402
    TrainConfig,
    mean_nll,
    sample_flow,
    train_flow,
)

STAGES = ("data", "fig3", "fig5", "fig6", "otd", "minima")
MODELS = ("eq", "neq", "neq-aug")
#: Energy bins of the paper's Table 1 (kT, pair weight 2 convention, see systems.lj13).
LJ_BINS = [(-70.0, -60.0), (-80.0, -70.0), (-math.inf, -80.0)]
PAPER_TABLE1 = {
    "training": [0, 7, 0],
    "short": [2.70, 7.70, 0.90],
    "long": [64.60, 48.60, 1.00],
    "eq-flow": [38.30, 41.50, 1.00],
}


@dataclass(frozen=True)
class Scale:
    """Sizes of one experiment scale."""

    train_sizes: tuple[int, ...]
    iterations: dict[str, int]
    test_eval: dict[str, int]
    mlp_test_eval: dict[str, int]
    train_eval_max: int
    chains: int
    burn_in: dict[str, int]
    fig3_particles: tuple[int, ...]
    fig3_estimates: int
    fig3_dw2_iterations: int
    fig3_dw2_samples: int
    kl_iterations: int
    fig6_samples: int
    otd_iterations: int
    dw4_minima_iterations: int
    dw4_minima_samples: int
    lj_flow_samples: int
    lj_trajectory: int
    lj_long: int
    lj_long_stride: int
    lj_minima_iterations: int


SCALES = {
    "tiny": Scale(
        train_sizes=(10, 100), iterations={"DW-4": 4, "LJ-13": 2},
        test_eval={"DW-4": 64, "LJ-13": 32}, mlp_test_eval={"DW-4": 32, "LJ-13": 16},
        train_eval_max=32, chains=16, burn_in={"DW-4": 100, "LJ-13": 300},
        fig3_particles=(2, 4, 8), fig3_estimates=50, fig3_dw2_iterations=5,
        fig3_dw2_samples=200, kl_iterations=3, fig6_samples=100, otd_iterations=2,
        dw4_minima_iterations=5, dw4_minima_samples=100, lj_flow_samples=20, lj_trajectory=20,
        lj_long=200, lj_long_stride=5, lj_minima_iterations=2,
    ),
    "default": Scale(
        train_sizes=(10, 100, 1000, 10000), iterations={"DW-4": 120, "LJ-13": 40},
        test_eval={"DW-4": 2000, "LJ-13": 1000}, mlp_test_eval={"DW-4": 1000, "LJ-13": 256},
        train_eval_max=500, chains=128, burn_in={"DW-4": 1000, "LJ-13": 20000},
        fig3_particles=(2, 4, 8, 16, 32), fig3_estimates=1000, fig3_dw2_iterations=150,
        fig3_dw2_samples=5000, kl_iterations=60, fig6_samples=2000, otd_iterations=40,
        dw4_minima_iterations=100, dw4_minima_samples=2000, lj_flow_samples=1000,
        lj_trajectory=1000, lj_long=100000, lj_long_stride=25, lj_minima_iterations=100,
    ),
    "paper": Scale(
        train_sizes=(10, 100, 1000, 10000), iterations={"DW-4": 5000, "LJ-13": 5000},
        test_eval={"DW-4": 10000, "LJ-13": 10000},
        mlp_test_eval={"DW-4": 10000, "LJ-13": 10000}, train_eval_max=10000, chains=256,
        burn_in={"DW-4": 1000, "LJ-13": 20000}, fig3_particles=(2, 4, 8, 16, 32, 64),
        fig3_estimates=1000, fig3_dw2_iterations=2000, fig3_dw2_samples=100000,
        kl_iterations=2000, fig6_samples=10000, otd_iterations=500,
        dw4_minima_iterations=2000, dw4_minima_samples=10000, lj_flow_samples=1000,
        lj_trajectory=1000, lj_long=100000, lj_long_stride=1, lj_minima_iterations=5000,
    ),
}


def seconds_per_call(dynamics, t: torch.Tensor, x: torch.Tensor, repeats: int = 5) -> float:
    """Mean wall time of one dynamics(t, x) call (velocity and divergence), after a warm-up."""
    with torch.no_grad():
        dynamics(t, x)
        start = time.perf_counter()
        for _ in range(repeats):
            dynamics(t, x)
    return (time.perf_counter() - start) / repeats


class Runner:
    """Holds the scale, folders and cached data; one method per stage."""

    def __init__(self, scale_name: str, out: Path, work: Path, force: bool, seed: int) -> None:
        self.scale_name = scale_name
        self.scale = SCALES[scale_name]
        self.out = out
        self.work = work
        self.force = force
        self.seed = seed
        out.mkdir(parents=True, exist_ok=True)
        (work / "models").mkdir(parents=True, exist_ok=True)
        self.summary: dict = {}

    # ----------------------------------------------------------------- helpers
    def _json_path(self, stage: str) -> Path:
        return self.out / f"{stage}.json"

    def done(self, stage: str) -> bool:
        path = self._json_path(stage)
        if path.exists() and not self.force:
            self.summary[stage] = json.loads(path.read_text())
            print(f"[{stage}] already done ({path}); --force reruns it")
            return True
        return False

    def save(self, stage: str, result: dict) -> None:
        result = {"scale": self.scale_name, **result}
        self._json_path(stage).write_text(json.dumps(result, indent=2, default=float))
        self.summary[stage] = result

    def data(self) -> dict[str, dict[str, torch.Tensor]]:
        path = self.work / "data.pt"
        if path.exists():
            return torch.load(path)
        s = self.scale
        sets: dict[str, dict[str, torch.Tensor]] = {}
        rates = {}
        t0 = time.perf_counter()
        for name, system in (("DW-4", dw4()), ("LJ-13", lj13())):
            base = PROTOCOLS[name]
            protocol = MCMCProtocol(base.step_size, s.burn_in[name], base.thin)
            sizes = {"train": max(s.train_sizes), "test": s.test_eval[name]}
            print(f"[data] {name}: Metropolis {sizes}, step {protocol.step_size}, "
                  f"burn-in {protocol.burn_in}, thin {protocol.thin}")
            sets[name], rates[name] = independent_trajectories(
                system, sizes, seed=self.seed + len(sets), chains_per_set=s.chains,
                protocol=protocol, progress=True,
            )
        torch.save(sets, path)
        self.save("data", {"acceptance": rates, "seconds": time.perf_counter() - t0,
                           "sizes": {k: {n: int(v.shape[0]) for n, v in d.items()}
                                     for k, d in sets.items()},
                           "protocol_thin": {k: PROTOCOLS[k].thin for k in sets},
                           "burn_in": s.burn_in})
        return sets

    def train_or_load(
        self, key: str, flow, data: torch.Tensor, config: TrainConfig, system=None
    ) -> tuple[object, dict]:
        """Train ``flow`` (or load it from the work folder when a previous run finished it)."""
        path = self.work / "models" / f"{key}.pt"
        if path.exists() and not self.force:
            saved = torch.load(path)
            flow.load_state_dict(saved["state"])
            return flow, saved["info"]
        t0 = time.perf_counter()
        history = train_flow(flow, data, config, system=system, progress=True, desc=key)
        info = {"seconds": time.perf_counter() - t0, "iterations": config.n_iterations,
                "final_train_batch_nll": float(np.mean(history["nll"][-10:]))}
        torch.save({"state": flow.state_dict(), "info": info}, path)
        return flow, info

    def build(self, model: str, system: str, seed: int):
        if model == "eq":
            return kernel_flow(system, seed=seed)
        return mlp_flow(system, seed=seed, trace="hutchinson")

    def evaluate(self, model: str, flow, data: torch.Tensor, limit: int) -> float:
        if model != "eq":
            set_trace_method(flow, "exact")
        value = mean_nll(flow, data[:limit], batch_size=256)
        if model != "eq":
            set_trace_method(flow, "hutchinson")
        return value

    # ------------------------------------------------------------------ fig 3
    def fig3(self) -> None:
        if self.done("fig3"):
            return
        s = self.scale
        gen = torch.Generator().manual_seed(self.seed)
        rows = []
        n_configs = 4
        for n in tqdm(s.fig3_particles, desc="fig3 particles"):
            dist = GaussianRBF(equispaced(50, 0.0, 8.0), torch.tensor(0.5))
            time_rbf = GaussianRBF(equispaced(10, 0.0, 1.0), torch.tensor(0.3))
            dyn = KernelDynamics(n, 2, dist, time_rbf, init_scale=1.0,
                                 generator=torch.Generator().manual_seed(self.seed)).double()
            x = remove_mean(1.5 * math.sqrt(n) * torch.randn(n_configs, n, 2, generator=gen,
                                                             dtype=torch.float64))
            t = torch.tensor(0.5, dtype=torch.float64)
            with torch.no_grad():
                _, exact = dyn(t, x)
            hutch = AutogradTrace(dyn, "hutchinson")
            reps = max(1, s.fig3_estimates // n_configs)
            xs = x.repeat(reps, 1, 1)
            hutch.set_noise(torch.randn(xs.shape, generator=gen, dtype=xs.dtype))
            with torch.no_grad():
                _, est = hutch(t, xs)
            err = (est - exact.repeat(reps)).numpy()
            xb = remove_mean(1.5 * math.sqrt(n) * torch.randn(64, n, 2, generator=gen,
                                                              dtype=torch.float64))
            timings = {
                "closed-form": seconds_per_call(dyn, t, xb),
                "hutchinson": seconds_per_call(AutogradTrace(dyn, "hutchinson"), t, xb),
                "brute-force": seconds_per_call(AutogradTrace(dyn, "exact"), t, xb),
            }
            rows.append({"n_particles": n, "exact_divergence": exact.tolist(),
                         "hutchinson_error_rms": float(np.sqrt((err**2).mean())),
                         "hutchinson_error_mean": float(err.mean()), "seconds": timings})
        profile = self._fig3_dw2_profile()
        fig, ax = plt.subplots(1, 3, figsize=(13, 3.8))
        ns = [r["n_particles"] for r in rows]
        ax[0].plot(ns, [r["hutchinson_error_rms"] for r in rows], "o-")
        ax[0].set(xscale="log", yscale="log", xlabel="particles (2-D)",
                  ylabel="RMS of Hutchinson error", title="a) divergence estimate error")
        d = np.array(profile["d"])
        for key, style in (("exact_profile", "k-"), ("closed_form", "C0o"),
                           ("hutchinson", "C3x")):
            ax[1].plot(d, profile[key], style, label=key.replace("_", " "))
        ax[1].set(xlabel="d", ylabel="free energy [kT]", title="b) DW-2 reweighted profile")
        ax[1].legend()
        for label in ("closed-form", "hutchinson", "brute-force"):
            ax[2].plot(ns, [r["seconds"][label] for r in rows], "o-", label=label)
        ax[2].set(xscale="log", yscale="log", xlabel="particles (2-D)",
                  ylabel="seconds per v + div (batch 64)", title="c) wall time")
        ax[2].legend()
        for axis in (ax[0], ax[2]):
            axis.set_xticks(ns, [str(n) for n in ns])
            axis.minorticks_off()
        fig.tight_layout()
        fig.savefig(self.out / "fig3_divergence.png", dpi=110)
        plt.close(fig)
        print("\nFig. 3: Hutchinson error and time per evaluation of v and div (batch 64)")
        print(f"{'N':>4s}{'|div|':>10s}{'hutch rms':>11s}{'closed [ms]':>13s}"
              f"{'hutch [ms]':>12s}{'brute [ms]':>12s}")
        for r in rows:
            sec = r["seconds"]
            print(f"{r['n_particles']:4d}{np.abs(r['exact_divergence']).mean():10.3f}"
                  f"{r['hutchinson_error_rms']:11.3f}{1e3 * sec['closed-form']:13.2f}"
                  f"{1e3 * sec['hutchinson']:12.2f}{1e3 * sec['brute-force']:12.2f}")
        print(f"DW-2 profile RMSE vs exact: closed-form {profile['rmse_closed_form']:.3f} kT, "
              f"Hutchinson {profile['rmse_hutchinson']:.3f} kT; ESS fraction closed-form "
              f"{profile['ess_closed_form']:.3f}, Hutchinson {profile['ess_hutchinson']:.3f}")
        self.save("fig3", {"divergence": rows, "dw2_profile": profile})

    def _fig3_dw2_profile(self) -> dict:
        s = self.scale
        system = dw2()
        sets, _ = independent_trajectories(
            system, {"train": 1000}, seed=self.seed + 7, chains_per_set=min(64, s.chains),
            protocol=PROTOCOLS["DW-2"],
        )
        flow = kernel_flow("DW-2", seed=self.seed)
        flow, _ = self.train_or_load("fig3_dw2_eq", flow, sets["train"],
                                     TrainConfig(n_iterations=s.fig3_dw2_iterations))
        gen = torch.Generator().manual_seed(self.seed + 11)
        z = flow.prior.sample(s.fig3_dw2_samples, generator=gen)
        with torch.no_grad():
            x, logdet = flow.inverse(z)
            log_q_exact = flow.prior.log_prob(z) - logdet
            hutch = AutogradTrace(flow.dynamics, "hutchinson")
            hutch.set_noise(torch.randn(z.shape, generator=gen, dtype=z.dtype))
            x_h, logdet_h = RK4Integrator(hutch, flow.integrator.n_steps)(z, 0.0, 1.0)
            log_q_hutch = flow.prior.log_prob(z) - logdet_h
        u = system.energy(x)
        d = (x[:, 0] - x[:, 1]).norm(dim=-1).numpy()
        edges = np.linspace(1.5, 6.5, 26)
        centres = 0.5 * (edges[1:] + edges[:-1])
        exact_profile = system.pair_energy(centres) - np.log(centres)
        out = {"d": centres.tolist()}
        for key, log_q in (("closed_form", log_q_exact), ("hutchinson", log_q_hutch)):
            logw = (-u - log_q).numpy()
            w = np.exp(logw - logw.max())
            hist, _ = np.histogram(d, bins=edges, weights=w)
            with np.errstate(divide="ignore"):
                f = -np.log(hist / hist.sum() / np.diff(edges))
            out[key] = [float(v) if np.isfinite(v) else None for v in f]
            out[f"ess_{key}"] = float(w.sum() ** 2 / (w**2).sum() / w.size)
        exact_f = exact_profile + np.log(np.sum(np.exp(-exact_profile) * np.diff(edges)))
        out["exact_profile"] = exact_f.tolist()
        for key in ("closed_form", "hutchinson"):
            f = np.array([np.nan if v is None else v for v in out[key]])
            ok = np.isfinite(f)
            out[f"rmse_{key}"] = float(np.sqrt(np.mean((f[ok] - exact_f[ok]) ** 2)))
        out["samples"] = int(x.shape[0])
        del x_h
        return out

    # ------------------------------------------------------------------ fig 5
    def fig5(self) -> None:
        if self.done("fig5"):
            return
        s = self.scale
        sets = self.data()
        results: dict = {}
        for system in ("DW-4", "LJ-13"):
            pool, test = sets[system]["train"], sets[system]["test"]
            results[system] = {}
            for model in MODELS:
                results[system][model] = {}
                for size in s.train_sizes:
                    gen = torch.Generator().manual_seed(self.seed + size)
                    subset = pool[torch.randperm(pool.shape[0], generator=gen)[:size]]
                    flow = self.build(model, system, seed=self.seed)
                    config = TrainConfig(n_iterations=s.iterations[system],
                                         augment=model == "neq-aug", seed=self.seed)
                    key = f"fig5_{system}_{model}_{size}"
                    flow, info = self.train_or_load(key, flow, subset, config)
                    limit = s.test_eval[system] if model == "eq" else s.mlp_test_eval[system]
                    row = {
                        "test_nll": self.evaluate(model, flow, test, limit),
                        "train_nll": self.evaluate(model, flow, subset,
                                                   min(size, s.train_eval_max, limit)),
                        "test_samples": min(limit, test.shape[0]),
                        "parameters": count_parameters(flow), **info,
                    }
                    results[system][model][str(size)] = row
                    print(f"[fig5] {system} {model:7s} n={size:5d}: train NLL "
                          f"{row['train_nll']:8.3f}  test NLL {row['test_nll']:8.3f}  "
                          f"({info['seconds']:.0f} s)", flush=True)
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for ax, system in zip(axes, ("DW-4", "LJ-13"), strict=True):
            for k, model in enumerate(MODELS):
                rows = results[system][model]
                sizes = [int(n) for n in rows]
                ax.plot(sizes, [rows[str(n)]["test_nll"] for n in sizes], f"C{k}o-",
                        label=f"{model} test")
                ax.plot(sizes, [rows[str(n)]["train_nll"] for n in sizes], f"C{k}x--",
                        label=f"{model} train")
            ax.set(xscale="log", xlabel="training samples", ylabel="NLL [nats]", title=system)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(self.out / "fig5_nll_vs_size.png", dpi=110)
        plt.close(fig)
        print("\nFig. 5: NLL (nats, mean-free subspace) vs training-set size")
        for system in ("DW-4", "LJ-13"):
            print(f"{system} (iterations {s.iterations[system]}):")
            print(f"  {'model':8s}" + "".join(f"{'n=' + str(n):>22s}" for n in s.train_sizes))
            for model in MODELS:
                cells = "".join(
                    f"{results[system][model][str(n)]['train_nll']:10.2f} /"
                    f"{results[system][model][str(n)]['test_nll']:9.2f}"
                    for n in s.train_sizes
                )
                print(f"  {model:8s}{cells}   (train / test)")
        self.save("fig5", {"iterations": s.iterations, "results": results})

    # ------------------------------------------------------------------ fig 6
    def fig6(self) -> None:
        if self.done("fig6"):
            return
        s = self.scale
        sets = self.data()
        size = 1000 if 1000 in s.train_sizes else max(s.train_sizes)
        pool, test = sets["DW-4"]["train"], sets["DW-4"]["test"]
        gen = torch.Generator().manual_seed(self.seed + size)
        subset = pool[torch.randperm(pool.shape[0], generator=gen)[:size]]
        system = dw4()
        reference_u = system.energy(test).numpy()
        results = {}
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), sharey=True)
        for ax, model in zip(axes, MODELS, strict=True):
            flow = self.build(model, "DW-4", seed=self.seed)
            pre = self.work / "models" / f"fig5_DW-4_{model}_{size}.pt"
            if pre.exists():
                flow.load_state_dict(torch.load(pre)["state"])
            else:
                flow, _ = self.train_or_load(
                    f"fig6_pre_{model}", flow, subset,
                    TrainConfig(n_iterations=s.iterations["DW-4"], augment=model == "neq-aug"))
            config = TrainConfig(n_iterations=s.kl_iterations, kl_start=0.0, kl_end=0.5,
                                 augment=model == "neq-aug", seed=self.seed + 1)
            flow, info = self.train_or_load(f"fig6_{model}", flow, subset, config, system)
            if model != "eq":
                set_trace_method(flow, "exact")
            x, log_q = sample_flow(flow, s.fig6_samples, batch_size=500, seed=self.seed + 2)
            u = system.energy(x).numpy()
            logw = -u - log_q.numpy()
            w = np.exp(logw - logw.max())
            w /= w.sum()
            ess = float(1.0 / (w**2).sum() / w.size)
            bins = np.linspace(-30, 0, 61)
            ax.hist(reference_u, bins=bins, density=True, alpha=0.4, color="k", label="MCMC")
            ax.hist(u, bins=bins, density=True, histtype="step", color="C0", label="flow")
            ax.hist(u, bins=bins, weights=w, density=True, histtype="step", color="C3",
                    label="flow reweighted")
            ax.set(title=model, xlabel="u(x) [kT]")
            ax.legend(fontsize=7)
            results[model] = {
                "mean_energy": float(u.mean()), "reweighted_mean_energy": float((w * u).sum()),
                "reference_mean_energy": float(reference_u.mean()), "ess_fraction": ess,
                "test_nll": float(self.evaluate(model, flow, test, s.mlp_test_eval["DW-4"])),
                **info,
            }
        axes[0].set_ylabel("density")
        fig.tight_layout()
        fig.savefig(self.out / "fig6_dw4_energy_histograms.png", dpi=110)
        plt.close(fig)
        print("\nFig. 6: DW-4 after ML + KL (lambda 0 -> 0.5): mean energies [kT]")
        print(f"{'model':8s}{'flow':>9s}{'reweighted':>12s}{'MCMC':>9s}{'ESS frac':>10s}"
              f"{'test NLL':>10s}")
        for model, r in results.items():
            print(f"{model:8s}{r['mean_energy']:9.2f}{r['reweighted_mean_energy']:12.2f}"
                  f"{r['reference_mean_energy']:9.2f}{r['ess_fraction']:10.3f}"
                  f"{r['test_nll']:10.2f}")
        self.save("fig6", {"training_size": size, "kl_iterations": s.kl_iterations,
                           "results": results})

    # ------------------------------------------------------------------ fig 4
    def otd(self) -> None:
        if self.done("otd"):
            return
        s = self.scale
        sets = self.data()
        pool, test = sets["DW-4"]["train"], sets["DW-4"]["test"][:500]
        data = pool[:1000]
        results = {}
        for solver in ("rk4", "dopri5-adjoint"):
            flow = kernel_flow("DW-4", seed=self.seed, solver=solver)
            gen = torch.Generator().manual_seed(self.seed)
            opt = torch.optim.AdamW(flow.parameters(), lr=5e-3, weight_decay=0.01)
            nfe, nll, seconds = [], [], []
            for _ in tqdm(range(s.otd_iterations), desc=f"otd {solver}", leave=False):
                batch = data[torch.randint(0, data.shape[0], (64,), generator=gen)]
                t0 = time.perf_counter()
                loss = -flow.log_prob(batch).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                seconds.append(time.perf_counter() - t0)
                nll.append(float(loss.detach()))
                if isinstance(flow.integrator, AdjointDopri5):
                    nfe.append(flow.integrator.nfe_forward + flow.integrator.nfe_backward)
                else:  # forward evaluations; backprop replays each of them once
                    nfe.append(4 * flow.integrator.n_steps)
            results[solver] = {"batch_nll": nll, "nfe_per_iteration": nfe,
                               "seconds_per_iteration": float(np.mean(seconds)),
                               "test_nll": mean_nll(flow, test, batch_size=500)}
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
        for solver, r in results.items():
            ax[0].plot(r["batch_nll"], label=solver)
            ax[1].plot(r["nfe_per_iteration"], label=solver)
        ax[0].set(xlabel="iteration", ylabel="batch NLL", title="a) DTO vs OTD")
        ax[1].set(xlabel="iteration", ylabel="evaluations of v (RK4: forward only)",
                  title="b) function evaluations per iteration")
        ax[0].legend()
        fig.tight_layout()
        fig.savefig(self.out / "fig4_dto_vs_otd.png", dpi=110)
        plt.close(fig)
        print("\nFig. 4: DTO (RK4, 20 steps) vs OTD (dopri5 rtol 1e-5 atol 1e-10, adjoint), DW-4")
        for solver, r in results.items():
            print(f"{solver:15s} test NLL {r['test_nll']:8.3f}   s/iter "
                  f"{r['seconds_per_iteration']:7.2f}   NFE/iter "
                  f"{np.mean(r['nfe_per_iteration']):7.1f}")
        self.save("otd", {"iterations": s.otd_iterations, "results": results})

    # ---------------------------------------------------------------- table 1
    def minima(self) -> None:
        if self.done("minima"):
            return
        s = self.scale
        result = {"DW-4": self._dw4_minima(), "LJ-13": self._lj13_minima()}
        print("\nDW-4 unique minima from flows trained on one perturbed minimum")
        for model, r in result["DW-4"]["flows"].items():
            print(f"  {model:8s} {r['n_unique']} of {result['DW-4']['n_minima']} minima "
                  f"(energies {', '.join(f'{e:.2f}' for e in r['energies'])})")
        print("\nTable 1: LJ-13 unique minima per energy bin [kT]")
        print(f"  {'method':10s}" + "".join(f"{str(b):>18s}" for b in LJ_BINS) + "   paper")
        for method, counts in result["LJ-13"]["counts"].items():
            paper = PAPER_TABLE1.get(method)
            print(f"  {method:10s}" + "".join(f"{c:18d}" for c in counts)
                  + f"   {paper}")
        self.save("minima", {"scale_sizes": {"dw4_samples": s.dw4_minima_samples,
                                             "lj_flow": s.lj_flow_samples,
                                             "lj_trajectory": s.lj_trajectory,
                                             "lj_long": s.lj_long,
                                             "lj_long_stride": s.lj_long_stride},
                             **result})

    def _dw4_minima(self) -> dict:
        s = self.scale
        system = dw4()
        gen = torch.Generator().manual_seed(self.seed + 3)
        starts = 3.0 * torch.randn(200, 4, 2, generator=gen, dtype=torch.float64)
        pos, energies, ok = minimize(system, starts)
        all_minima = unique_minima(system, pos[ok], energies[ok])
        chosen = torch.as_tensor(all_minima.positions[len(all_minima.energies) // 2])
        data = remove_mean(chosen + 0.05 * torch.randn(1000, 4, 2, generator=gen,
                                                       dtype=torch.float64))
        out = {"n_minima": int(len(all_minima.energies)),
               "minima_energies": all_minima.energies.tolist(),
               "training_minimum_energy": float(system.energy(chosen)), "flows": {}}
        for model in ("eq", "neq"):
            flow = self.build(model, "DW-4", seed=self.seed)
            flow, _ = self.train_or_load(
                f"minima_dw4_{model}_ml", flow, data,
                TrainConfig(n_iterations=s.dw4_minima_iterations, seed=self.seed))
            flow, _ = self.train_or_load(
                f"minima_dw4_{model}_kl", flow, data,
                TrainConfig(n_iterations=s.dw4_minima_iterations, kl_start=0.5, kl_end=0.5,
                            seed=self.seed + 1), system)
            x, _ = sample_flow(flow, s.dw4_minima_samples, batch_size=500, seed=self.seed + 4)
            finite = torch.isfinite(x).all(dim=-1).all(dim=-1)
            pos, energies, ok = minimize(system, x[finite], progress=True)
            found = unique_minima(system, pos[ok], energies[ok])
            out["flows"][model] = {"n_unique": int(len(found.energies)),
                                   "energies": found.energies.tolist(),
                                   "counts": found.counts.tolist()}
        return out

    def _lj_trajectories(self) -> dict[str, torch.Tensor]:
        """Single-chain Metropolis trajectories (every step kept) for training, short, long.

        As in the paper's Sec. 7.5: the short trajectory has as many steps (target energy
        evaluations) as the training trajectory, the long one 100 times more.
        """
        path = self.work / "lj13_minima_trajectories.pt"
        if path.exists():
            return torch.load(path)
        s = self.scale
        base = PROTOCOLS["LJ-13"]
        protocol = MCMCProtocol(base.step_size, s.burn_in["LJ-13"], thin=1)
        sizes = {"training": s.lj_trajectory, "short": s.lj_trajectory, "long": s.lj_long}
        print(f"[minima] LJ-13 single-chain trajectories {sizes}, every step kept")
        sets, rate = independent_trajectories(lj13(), sizes, seed=self.seed + 100,
                                              chains_per_set=1, protocol=protocol,
                                              progress=True)
        sets["long"] = sets["long"][:: s.lj_long_stride].clone()
        sets["acceptance"] = torch.tensor(rate)
        torch.save(sets, path)
        return sets

    def _lj13_minima(self) -> dict:
        s = self.scale
        system = lj13()
        sets = self._lj_trajectories()
        flow = kernel_flow("LJ-13", seed=self.seed)
        flow, info = self.train_or_load(
            "minima_lj13_eq", flow, sets["training"],
            TrainConfig(n_iterations=s.lj_minima_iterations, seed=self.seed))
        x_flow, _ = sample_flow(flow, s.lj_flow_samples, batch_size=500, seed=self.seed + 5)
        counts, details = {}, {}
        for method in ("training", "short", "long", "eq-flow"):
            x = x_flow if method == "eq-flow" else sets[method]
            finite = torch.isfinite(system.energy(x))
            pos, e, ok = minimize(system, x[finite], progress=True)
            found = unique_minima(system, pos[ok], e[ok])
            counts[method] = found.count_in_bins(LJ_BINS)
            details[method] = {"lowest": float(found.energies.min()) if len(found.energies)
                               else None, "n_unique": int(len(found.energies)),
                               "n_minimised": int(x.shape[0]), "n_converged": int(ok.sum())}
        return {"bins": [list(b) for b in LJ_BINS], "counts": counts, "details": details,
                "flow_training": info, "acceptance": float(sets["acceptance"]),
                "paper": PAPER_TABLE1}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="default")
    parser.add_argument("--out", type=Path, default=Path("results/equivariant"))
    parser.add_argument("--work", type=Path, default=None,
                        help="models and data (default runs/equivariant/<scale>)")
    parser.add_argument("--only", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--force", action="store_true", help="rerun finished stages")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    work = args.work or Path("runs/equivariant") / args.scale
    runner = Runner(args.scale, args.out, work, args.force, args.seed)
    print(f"scale {args.scale}: {json.dumps(asdict(runner.scale))}")
    t0 = time.perf_counter()
    for stage in STAGES:
        if stage not in args.only:
            continue
        start = time.perf_counter()
        if stage == "data":
            runner.data()
        else:
            getattr(runner, stage)()
        print(f"[{stage}] {time.perf_counter() - start:.0f} s", flush=True)
    stages = {
        stage: json.loads((args.out / f"{stage}.json").read_text())
        for stage in STAGES if (args.out / f"{stage}.json").exists()
    }
    summary = {"scale": args.scale, "scale_settings": asdict(runner.scale),
               "seconds_this_invocation": time.perf_counter() - t0, "stages": stages}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    print(f"total {summary['seconds_this_invocation']:.0f} s; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
