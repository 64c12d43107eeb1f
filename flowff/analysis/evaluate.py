"""Evaluate a flow energy of alanine dipeptide against reference MD: one JSON report and PNGs.

``evaluate_model`` computes, with units in every key:

* on held-out MD test frames: NLL (kT), force RMSE (kT/nm) and FME ((kT/nm)^2);
* on ``n_samples`` flow samples (drawn in batches): force RMSE/FME against the classical (OpenMM)
  forces, the reverse-KL estimate E_q[u/kT + log q] (kT), log Z, Kish ESS / N, counts of
  non-finite samples and the sampler's log q consistency with the model's energy;
* Ramachandran divergences and basin populations (MD test frames vs flow samples);
* figures ``ramachandran.png``, ``energies.png``, ``forces.png``.

The report ``evaluation.json`` is written atomically; non-finite numbers become JSON ``null``
(the counts say why).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from flowff.analysis.force_decomposition import force_error_by_ic_type
from flowff.analysis.importance import importance_by_internal_coordinate
from flowff.analysis.metrics import (
    flow_energies_and_forces,
    importance_at_md_frames,
    importance_log_weights,
    md_frame_metrics,
    model_device,
    sample_metrics,
)
from flowff.analysis.plots import (
    energy_shift,
    plot_energy_histograms,
    plot_force_scatter,
    plot_ramachandran,
)
from flowff.analysis.ramachandran import (
    backbone_torsions,
    compare_ramachandran,
    importance_by_basin,
    importance_by_phi,
)
from flowff.data.reference import (
    ReferenceData,
    ReferenceMDConfig,
    load_reference_data,
    split_by_time_blocks,
)
from flowff.energy.flow_energy import kT_kJ_per_mol
from flowff.utils.atomic import write_json, write_npz

REPORT_FILE = "evaluation.json"
#: per-sample arrays written with ``save_samples=True`` (see :func:`evaluate_model`)
SAMPLES_FILE = "flow_samples.npz"
REPORT_FORMAT = "flowff-evaluation"
REPORT_FORMAT_VERSION = 1
FIGURES = {"ramachandran": "ramachandran.png", "energies": "energies.png",
           "forces": "forces.png"}
UNITS = {
    "energy": "kT (reduced, at the data temperature)",
    "forces": "kT/nm",
    "fme": "(kT/nm)^2, mean over frames and atoms of |f_flow - f_ref|^2",
    "force_rmse": "kT/nm, per Cartesian component",
    "angles": "radians in the data, degrees in basin definitions",
    "basins": "percent; differences in percentage points (flow - MD)",
    "divergences": "nats",
}

#: A sampler draws n positions (n, atoms, 3) nm and their log density log q (n,) from a model.
Sampler = Callable[[torch.nn.Module, int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class SplitSpec:
    """The time-block split of training (see :func:`flowff.data.reference.split_by_time_blocks`).

    ``max_frames_per_replica`` must match training's, since it changes the block count.
    """

    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    block_ps: float = 1000.0
    seed: int = 0
    max_frames_per_replica: int | None = None


def flow_sampler(model: torch.nn.Module, n: int, generator: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Default sampler: :func:`flowff.energy.sampling.sample_positions` (imported lazily)."""
    from flowff.energy.sampling import sample_positions

    return sample_positions(model, n, generator=generator)


def _json_ready(obj: Any) -> Any:
    """Plain Python types for JSON; non-finite floats -> None."""
    if isinstance(obj, dict):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_ready(obj.tolist())
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _draw_samples(model: torch.nn.Module, sampler: Sampler, n: int, batch_size: int,
                  generator: torch.Generator, n_atoms: int, progress: bool
                  ) -> tuple[np.ndarray, np.ndarray]:
    """n samples in batches: positions (n, atoms, 3) nm and log q (n,), float64 numpy."""
    xs, log_qs = [], []
    with tqdm(total=n, desc="flow samples", unit="sample", disable=not progress,
              leave=False) as bar:
        for start in range(0, n, batch_size):
            m = min(batch_size, n - start)
            with torch.no_grad():
                x, log_q = sampler(model, m, generator)
            if tuple(x.shape) != (m, n_atoms, 3) or tuple(log_q.shape) != (m,):
                raise ValueError(
                    f"sampler returned shapes {tuple(x.shape)} and {tuple(log_q.shape)}; "
                    f"expected ({m}, {n_atoms}, 3) and ({m},)"
                )
            xs.append(x.detach().cpu().double().numpy())
            log_qs.append(log_q.detach().cpu().double().numpy())
            bar.update(m)
    return np.concatenate(xs), np.concatenate(log_qs)


def _forcefield_of(data: ReferenceData) -> tuple[str, ...]:
    """The data's force field files (from its config.json), else the default Amber files."""
    cfg_path = Path(data.topology_pdb).parent / "config.json"
    if cfg_path.exists():
        return tuple(json.loads(cfg_path.read_text())["config"]["forcefield"])
    return ReferenceMDConfig().forcefield


def _target_energies_forces(positions: np.ndarray, topology_pdb: Path,
                            forcefield: tuple[str, ...], platform: str, progress: bool
                            ) -> tuple[np.ndarray, np.ndarray]:
    """Classical energies (N,) kJ/mol and forces (N, n, 3) kJ/mol/nm of positions (nm)."""
    import openmm.app as app

    from flowff.data.reference import build_classical_system
    from flowff.energy.openmm_energy import OpenMMEnergyEvaluator

    pdb = app.PDBFile(str(topology_pdb))
    evaluator = OpenMMEnergyEvaluator(build_classical_system(pdb.topology, forcefield), platform)
    energies = np.empty(len(positions))
    forces = np.zeros(positions.shape)
    chunk = 500
    for start in tqdm(range(0, len(positions), chunk), desc="target energies", unit="batch",
                      disable=not progress, leave=False):
        e, f = evaluator(positions[start:start + chunk])
        energies[start:start + chunk] = e
        forces[start:start + chunk] = f
    return energies, forces


def _check_model(model: torch.nn.Module, data: ReferenceData) -> None:
    if not callable(getattr(model, "reduced_energy", None)):
        raise TypeError(f"model {type(model).__name__} has no reduced_energy(x) method; pass an "
                        "eager FlowEnergy (flowff.energy.builder.load_energy_module)")
    n_atoms = getattr(model, "n_atoms", None)
    if n_atoms is not None and int(n_atoms) != data.positions.shape[1]:
        raise ValueError(f"model has {n_atoms} atoms but the data frames have "
                         f"{data.positions.shape[1]}")
    temperature = getattr(model, "temperature_K", None)
    if temperature is not None and not math.isclose(float(temperature), data.temperature_K,
                                                    rel_tol=1e-9):
        raise ValueError(f"model temperature {temperature} K differs from the data's "
                         f"{data.temperature_K} K")


def evaluate_model(
    model: torch.nn.Module,
    data: str | Path | ReferenceData,
    out_dir: str | Path,
    *,
    test_indices: np.ndarray | None = None,
    split: SplitSpec | None = None,
    n_samples: int = 10_000,
    max_test_frames: int | None = None,
    seed: int = 0,
    batch_size: int = 1000,
    sampler: Sampler | None = None,
    forcefield: tuple[str, ...] | None = None,
    platform: str = "Reference",
    make_plots: bool = True,
    progress: bool = True,
    test_description: str = "given test indices",
    save_samples: bool = False,
    model_record: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` (eager, with ``reduced_energy``) and write the report and figures.

    ``data``: a reference data folder (test frames by the time-block ``split``, default
    :class:`SplitSpec`) or a :class:`ReferenceData` with explicit ``test_indices``.
    ``max_test_frames`` evenly thins the test frames. ``sampler`` defaults to
    :func:`flow_sampler`; it gets a ``torch.Generator`` seeded with ``seed``. ``forcefield``
    defaults to the data's (its config.json). ``make_plots=False`` skips the PNGs.
    ``test_description`` names how explicit ``test_indices`` were chosen (in the report).
    ``save_samples=True`` also writes ``out_dir/flow_samples.npz``: positions (N, n, 3) nm
    (float32), log_q, u_target_kT, u_flow_kT and log_weight (N,) (-inf: zero weight), phi and
    psi (N,) radians (NaN for broken samples), so samples from several seeds can be pooled or
    the heaviest weights inspected. ``model_record`` (e.g. the model file's path and digest, as
    ``flowff evaluate`` gives) goes into the report as ``model``. Returns the report dict (as
    written to ``out_dir/evaluation.json``).
    """
    t0 = time.perf_counter()
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    split_record: dict[str, Any]
    if isinstance(data, ReferenceData):
        if test_indices is None:
            raise ValueError("with ReferenceData, pass test_indices (the held-out frames)")
        if split is not None:
            raise ValueError("pass either ReferenceData with test_indices or a data folder with "
                             "a split, not both")
        ref = data
        data_dir = str(Path(ref.topology_pdb).parent)
        test = np.asarray(test_indices, dtype=np.int64)
        split_record = {"source": test_description}
    else:
        if test_indices is not None:
            raise ValueError("test_indices need ReferenceData; with a folder the split decides")
        spec = split or SplitSpec()
        data_dir = str(data)
        ref = load_reference_data(data, spec.max_frames_per_replica)
        train, val, test = split_by_time_blocks(ref, spec.fractions, spec.block_ps, spec.seed)
        split_record = {"source": "time blocks", **asdict(spec),
                        "sizes": {"train": len(train), "val": len(val), "test": len(test)}}
    if test.size == 0:
        raise ValueError("the test set is empty (too few time blocks for the split?)")
    if test.min() < 0 or test.max() >= len(ref):
        raise ValueError(f"test indices out of range for {len(ref)} frames")
    _check_model(model, ref)
    n_test_available = int(test.size)
    if max_test_frames is not None:
        if max_test_frames < 1:
            raise ValueError(f"max_test_frames must be >= 1, got {max_test_frames}")
        if test.size > max_test_frames:
            test = test[np.linspace(0, test.size - 1, max_test_frames).astype(np.int64)]
    frames = ref.subset(test)
    kT = kT_kJ_per_mol(ref.temperature_K)
    topology_pdb = Path(ref.topology_pdb)
    n_atoms = ref.positions.shape[1]
    data_ff = _forcefield_of(ref)
    ff = tuple(forcefield) if forcefield is not None else data_ff

    # -- MD test frames ----------------------------------------------------------------------
    md_metrics, u_flow_md, f_flow_md = md_frame_metrics(
        model, frames.positions, frames.forces, kT, batch_size, progress)
    u_target_md = np.asarray(frames.potential_energy, dtype=np.float64) / kT
    by_ic_type: dict[str, Any] = {}
    if hasattr(model, "ic"):  # which coordinates the force error comes from (<= 1000 frames)
        sub = np.linspace(0, len(frames) - 1, min(len(frames), 1000)).astype(np.int64)
        by_ic_type["force_error_by_ic_type"] = force_error_by_ic_type(
            model.ic, frames.positions[sub], f_flow_md[sub], frames.forces[sub] / kT)

    # -- flow samples ------------------------------------------------------------------------
    generator = torch.Generator(device=model_device(model)).manual_seed(seed)
    x, log_q = _draw_samples(model, sampler or flow_sampler, n_samples, batch_size, generator,
                             n_atoms, progress)
    finite_pos = np.isfinite(x).all(axis=(1, 2))
    u_flow_s = np.full(n_samples, np.nan)
    f_flow_s = np.full(x.shape, np.nan)
    if finite_pos.any():
        u_flow_s[finite_pos], f_flow_s[finite_pos] = flow_energies_and_forces(
            model, x[finite_pos], batch_size, progress, desc="sample forces")
    e_target_s, f_target_s = _target_energies_forces(x, topology_pdb, ff, platform, progress)
    u_target_s = e_target_s / kT
    f_target_s = f_target_s / kT
    f_target_s[~finite_pos] = np.nan
    s_metrics = sample_metrics(log_q, x, u_flow_s, f_flow_s, u_target_s, f_target_s)
    # (the frames' energies are the data's force field: only comparable with the same target)
    if ff == data_ff and np.isfinite(s_metrics["log_z_estimate"]) and np.isfinite(u_flow_md).any():
        md_metrics["importance_at_md_frames"] = importance_at_md_frames(
            u_target_md, u_flow_md, float(s_metrics["log_z_estimate"]))
    lw = np.full(n_samples, -np.inf)  # broken samples and clashes: zero weight
    weighted = finite_pos & np.isfinite(log_q) & np.isfinite(u_target_s)
    lw[weighted] = importance_log_weights(u_target_s[weighted], log_q[weighted])

    # -- Ramachandran --------------------------------------------------------------------------
    phi_md, psi_md = backbone_torsions(frames.positions, topology_pdb)
    if finite_pos.any():
        phi_fl, psi_fl = backbone_torsions(x[finite_pos], topology_pdb)
        rama: dict[str, Any] | None = compare_ramachandran(phi_md, psi_md, phi_fl, psi_fl)
        if np.isfinite(lw).any():
            by_basin = importance_by_basin(phi_fl, psi_fl, lw[finite_pos])
            rama["importance_by_basin"] = by_basin
            rama["importance_by_phi"] = importance_by_phi(phi_fl, lw[finite_pos])
            rama["basins_reweighted_difference_pp"] = {
                k: v["reweighted_percent"] - rama["basins_md_percent"][k]
                for k, v in by_basin.items()}
            if hasattr(model, "ic") and finite_pos.sum() >= 10:
                s_metrics["importance_by_internal_coordinate"] = (
                    importance_by_internal_coordinate(model.ic, x[finite_pos], lw[finite_pos]))
    else:
        phi_fl = psi_fl = np.empty(0)
        rama = None

    # -- figures -------------------------------------------------------------------------------
    figures: dict[str, str] = {}
    if make_plots:
        if rama is not None:
            plot_ramachandran(phi_md, psi_md, phi_fl, psi_fl, out / FIGURES["ramachandran"])
            figures["ramachandran"] = FIGURES["ramachandran"]
        plot_energy_histograms(u_flow_md, u_target_md, u_flow_s, u_target_s,
                               out / FIGURES["energies"])
        figures["energies"] = FIGURES["energies"]
        ok_md = np.isfinite(f_flow_md).all(axis=(1, 2))
        ok_s = np.isfinite(f_flow_s).all(axis=(1, 2)) & np.isfinite(f_target_s).all(axis=(1, 2))
        plot_force_scatter(f_flow_md[ok_md], frames.forces[ok_md] / kT,
                           f_flow_s[ok_s] if ok_s.any() else None,
                           f_target_s[ok_s] if ok_s.any() else None,
                           out / FIGURES["forces"], seed=seed)
        figures["forces"] = FIGURES["forces"]

    report = {
        "format": REPORT_FORMAT,
        "format_version": REPORT_FORMAT_VERSION,
        "units": UNITS,
        "temperature_K": ref.temperature_K,
        "kT_kJ_per_mol": kT,
        "seed": seed,
        **({"model": dict(model_record)} if model_record is not None else {}),
        "data": {
            "data_dir": data_dir,
            "topology_pdb": str(topology_pdb),
            "forcefield": list(ff),
            "n_atoms": n_atoms,
            "n_frames_total": len(ref),
            "n_replicas": int(np.unique(ref.replica).size),
            "split": split_record,
            "n_test_frames_available": n_test_available,
            "n_test_frames_used": int(test.size),
            "test_time_ps_range": [float(frames.time_ps.min()), float(frames.time_ps.max())],
        },
        "md_test_frames": {
            **md_metrics,
            "flow_energy_shift_kT": energy_shift(u_flow_md, u_target_md),
            "target_energy_mean_kT": float(u_target_md.mean()),
            **by_ic_type,
        },
        "flow_samples": {
            **s_metrics,
            "flow_energy_shift_kT": energy_shift(u_flow_s, u_target_s),
            "sampling_batch_size": batch_size,
            "openmm_platform": platform,
        },
        "ramachandran": rama,
        "figures": figures,
        "wall_time_s": time.perf_counter() - t0,
    }
    report = _json_ready(report)
    if save_samples:
        phi_all = np.full(n_samples, np.nan)
        psi_all = np.full(n_samples, np.nan)
        phi_all[finite_pos], psi_all[finite_pos] = phi_fl, psi_fl
        write_npz(out / SAMPLES_FILE, positions_nm=x.astype(np.float32), log_q=log_q,
                  u_target_kT=u_target_s, u_flow_kT=u_flow_s, log_weight=lw,
                  phi_rad=phi_all, psi_rad=psi_all, seed=np.int64(seed))
        report["samples_file"] = SAMPLES_FILE
    write_json(out / REPORT_FILE, report)
    return report
