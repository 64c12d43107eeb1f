"""Training frames from a flow's own samples, importance-resampled to the classical Boltzmann
distribution (reweighted self-training: more frames where the flow's density is off, no new MD).

A pool of samples x ~ q_flow gets classical energies and forces (OpenMM) and weights
w = exp(-u_classical(x)/kT) / q_flow(x); systematic resampling by w (truncated at mean * sqrt(N),
Ionides 2008) gives frames distributed approximately as the Boltzmann distribution wherever the
flow puts mass, with their classical forces. They are written in the layout of
:mod:`flowff.data.reference`, so ``flowff train --init-from MODEL`` fine-tunes on them as it does
on MD frames; the ``time_ps`` of a frame is its index (1 ps apart), so the time-block split deals
blocks of independent samples.

Layout on disk (``out_dir``)::

    config.json                  target protocol (force field, temperature) and this origin
    topology.pdb                 the topology (mdtraj/OpenMM readable)
    pool/pool_KKKKK.npz          flow samples (nm), log q, classical energy (kJ/mol), forces
    replica_00/chunk_KKKKK.npz   the resampled frames, as reference data chunks

Pool chunks are written atomically and each has its own seed: an interrupted run resumes.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from flowff.data.reference import FORMAT_VERSION, ReferenceMDConfig, build_classical_system
from flowff.energy.model_file import file_digest
from flowff.utils.atomic import write_json, write_npz, write_text

#: The ``kind`` recorded in config.json of a resampled-samples folder.
FLOW_SAMPLES_KIND = "importance-resampled flow samples"
_POOL_RE = re.compile(r"pool_(\d{5})\.npz$")


def truncated_weights(log_weights: np.ndarray) -> np.ndarray:
    """Normalized importance weights (N,) from log weights (-inf: zero weight), each capped at
    mean * sqrt(N) (truncated importance sampling) and renormalized."""
    lw = np.asarray(log_weights, dtype=np.float64).ravel()
    if np.isnan(lw).any() or np.isposinf(lw).any():
        raise ValueError("log weights must be finite or -inf (zero weight), got NaN or +inf")
    if not np.isfinite(lw).any():
        raise ValueError("every importance weight is zero: nothing to resample")
    w = np.exp(lw - lw[np.isfinite(lw)].max())
    w /= w.sum()
    cap = 1.0 / np.sqrt(len(w))  # = mean * sqrt(N) for weights that sum to 1
    for _ in range(100):  # capping and renormalizing until no weight exceeds the cap
        if w.max() <= cap * (1 + 1e-12):
            break
        w = np.minimum(w, cap)
        w /= w.sum()
    return w


def systematic_resample(weights: np.ndarray, n_out: int, rng: np.random.Generator) -> np.ndarray:
    """Indices (n_out,), sorted, drawn by systematic resampling: index i appears
    floor or ceil of n_out * weights[i] times."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or (w < 0).any() or not np.isclose(w.sum(), 1.0):
        raise ValueError("weights must be a 1-D non-negative array that sums to 1")
    points = (rng.random() + np.arange(n_out)) / n_out
    return np.minimum(np.searchsorted(np.cumsum(w), points, side="right"), len(w) - 1)


_WORKER: dict[str, Any] = {}


def _pool_chunk(args: tuple[str, str, int, int, tuple[str, ...]]) -> int:
    """Draw one pool chunk (in a worker: the model and force field are built once)."""
    model_path, out_dir, chunk, n, forcefield = args
    import openmm.app as app

    from flowff.energy.builder import load_energy_module
    from flowff.energy.openmm_energy import OpenMMEnergyEvaluator
    from flowff.energy.sampling import sample_positions

    if _WORKER.get("model_path") != model_path:
        torch.set_num_threads(1)
        pdb = app.PDBFile(str(Path(out_dir) / "topology.pdb"))
        _WORKER.update(
            model_path=model_path, model=load_energy_module(model_path, mode="eager"),
            evaluator=OpenMMEnergyEvaluator(build_classical_system(pdb.topology, forcefield)),
        )
    seed = int(json.loads((Path(out_dir) / "config.json").read_text())["origin"]["seed"])
    generator = torch.Generator().manual_seed(seed * 1_000_003 + chunk)
    with torch.no_grad():
        x, log_q = sample_positions(_WORKER["model"], n, generator=generator)
    x64 = x.double().numpy()
    energy, forces = _WORKER["evaluator"](x64)
    write_npz(Path(out_dir) / "pool" / f"pool_{chunk:05d}.npz", positions=x64,
              log_q=log_q.double().numpy(), potential_energy=np.asarray(energy, np.float64),
              forces=np.asarray(forces, np.float64))
    return chunk


def generate_resampled_flow_data(
    model_path: str | Path,
    out_dir: str | Path,
    topology_pdb: str | Path,
    n_samples: int,
    seed: int = 0,
    chunk_size: int = 1000,
    workers: int = 1,
    forcefield: tuple[str, ...] = ReferenceMDConfig().forcefield,
    progress: bool = True,
) -> dict[str, Any]:
    """Draw (or resume) a pool of ``n_samples`` flow samples and write the resampled frames.

    Returns a summary: pool size, Kish ESS/N of the raw and truncated weights, unique frames.
    """
    import openmm.app as app

    from flowff.analysis.metrics import importance_log_weights
    from flowff.energy.flow_energy import kT_kJ_per_mol
    from flowff.energy.model_file import read_metadata
    from flowff.energy.signature import check_topology

    model_path, out = Path(model_path).resolve(), Path(out_dir)
    if n_samples < 1 or chunk_size < 1:
        raise ValueError(f"n_samples and chunk_size must be >= 1, got {n_samples}, {chunk_size}")
    metadata = read_metadata(model_path)
    check_topology(metadata["topology"], app.PDBFile(str(topology_pdb)).topology)
    temperature = float(metadata["temperature_K"])
    protocol = dataclasses.asdict(ReferenceMDConfig(forcefield=tuple(forcefield),
                                                    temperature_K=temperature))
    origin = {"kind": FLOW_SAMPLES_KIND, "model": str(model_path),
              "model_sha256_16": file_digest(model_path), "n_samples": n_samples,
              "seed": seed, "chunk_size": chunk_size,
              "weights": "exp(-u_classical/kT) / q_flow, capped at mean * sqrt(N)",
              "resampling": "systematic"}
    record = {"format_version": FORMAT_VERSION, "config": protocol, "origin": origin,
              "units": {"positions": "nm", "forces": "kJ/mol/nm",
                        "potential_energy": "kJ/mol", "time": "ps (sample index)"}}
    cfg_path = out / "config.json"
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        if old.get("origin") != json.loads(json.dumps(origin)) or old["config"] != json.loads(
                json.dumps(protocol)):
            raise ValueError(f"{out} holds samples drawn with other settings; use a new folder")
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_json(cfg_path, record)
    if not (out / "topology.pdb").exists():
        write_text(out / "topology.pdb", Path(topology_pdb).read_text())
    (out / "pool").mkdir(exist_ok=True)
    sizes = [min(chunk_size, n_samples - s) for s in range(0, n_samples, chunk_size)]
    done = {int(m.group(1)) for p in (out / "pool").glob("pool_*.npz")
            if (m := _POOL_RE.search(p.name))}
    jobs = [(str(model_path), str(out), k, n, tuple(forcefield))
            for k, n in enumerate(sizes) if k not in done]
    with tqdm(total=len(sizes), initial=len(sizes) - len(jobs), desc="flow sample chunks",
              unit="chunk", disable=not progress) as bar:
        if workers <= 1:
            for job in jobs:
                _pool_chunk(job)
                bar.update(1)
        elif jobs:
            with mp.get_context("spawn").Pool(workers) as pool:
                for _ in pool.imap_unordered(_pool_chunk, jobs):
                    bar.update(1)
    _WORKER.clear()
    parts = [np.load(out / "pool" / f"pool_{k:05d}.npz") for k in range(len(sizes))]
    x = np.concatenate([p["positions"] for p in parts])
    log_q = np.concatenate([p["log_q"] for p in parts])
    energy = np.concatenate([p["potential_energy"] for p in parts])
    forces = np.concatenate([p["forces"] for p in parts])
    usable = (np.isfinite(x).all(axis=(1, 2)) & np.isfinite(forces).all(axis=(1, 2))
              & np.isfinite(energy) & np.isfinite(log_q))
    log_w = np.full(len(x), -np.inf)
    log_w[usable] = importance_log_weights(energy[usable] / kT_kJ_per_mol(temperature),
                                           log_q[usable])
    raw = np.exp(log_w - log_w[usable].max())
    weights = truncated_weights(log_w)
    index = systematic_resample(weights, len(x), np.random.default_rng(seed))
    rdir = out / "replica_00"
    rdir.mkdir(exist_ok=True)
    for c, start in enumerate(range(0, len(index), 100)):
        pick = index[start:start + 100]
        write_npz(rdir / f"chunk_{c:05d}.npz", positions=x[pick].astype(np.float32),
                  forces=forces[pick].astype(np.float32), potential_energy=energy[pick],
                  time_ps=np.arange(start, start + len(pick), dtype=np.float64) + 1.0)
    summary = {"pool_samples": len(x), "usable": int(usable.sum()),
               "kish_efficiency": float(raw.sum() ** 2 / (raw ** 2).sum() / len(x)),
               "kish_efficiency_truncated": float(1.0 / (weights ** 2).sum() / len(x)),
               "max_weight_over_mean": float(raw.max() / raw.mean()),
               "frames": len(index), "unique_frames": int(len(np.unique(index)))}
    write_json(out / "resampling.json", summary)
    return summary
