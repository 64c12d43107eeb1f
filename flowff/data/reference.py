"""Reference MD data of a molecule with OpenMM: positions (nm), forces (kJ/mol/nm), energies.

Layout on disk (``out_dir``)::

    config.json                     the ReferenceMDConfig and units
    topology.pdb                    the starting structure (mdtraj/OpenMM readable)
    replica_RR/chunk_KKKKK.npz      positions, forces (float32), potential energies, times
    replica_RR/state_KKKKK.xml      OpenMM State after chunk K (resume point)

Every file is written atomically; a replica resumes from its last chunk that has a state file.
Replicas run in parallel processes. Frames of one replica are a contiguous trajectory, which
:func:`split_by_time_blocks` respects (neighbouring frames are correlated: never split randomly).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
from tqdm.auto import tqdm

from flowff.energy.signature import topology_signature
from flowff.utils.atomic import write_json, write_npz, write_text
from flowff.utils.locking import exclusive_folder_lock

FORMAT_VERSION = 1
_CHUNK_RE = re.compile(r"chunk_(\d{5})\.npz$")


@dataclass(frozen=True)
class ReferenceMDConfig:
    """Protocol of the reference simulation (defaults: the Smooth Flows paper's alanine data)."""

    forcefield: tuple[str, ...] = ("amber99sbildn.xml", "amber99_obc.xml")
    temperature_K: float = 300.0
    timestep_fs: float = 1.0
    friction_per_ps: float = 1.0
    save_interval_ps: float = 1.0
    frames_per_chunk: int = 100
    equilibration_ps: float = 20.0
    platform: str = "Reference"
    seed: int = 0

    @property
    def steps_per_frame(self) -> int:
        """Integrator steps between saved frames."""
        steps = round(self.save_interval_ps * 1000.0 / self.timestep_fs)
        if steps < 1:
            raise ValueError("save_interval_ps must be at least one time step")
        return steps


def build_classical_system(topology: app.Topology, forcefield: tuple[str, ...]) -> openmm.System:
    """Classical system as in the paper: no cutoff, no constraints, flexible water."""
    ff = app.ForceField(*forcefield)
    return ff.createSystem(
        topology, nonbondedMethod=app.NoCutoff, constraints=None, rigidWater=False
    )


def _replica_dir(out_dir: Path, replica: int) -> Path:
    return out_dir / f"replica_{replica:02d}"


def _completed_chunks(rdir: Path, needs_state: bool = True) -> list[int]:
    """Chunk indices that have data and (``needs_state``) a resume state, in order."""
    done = []
    for path in rdir.glob("chunk_*.npz"):
        m = _CHUNK_RE.search(path.name)
        if m and (not needs_state or (rdir / f"state_{m.group(1)}.xml").exists()):
            done.append(int(m.group(1)))
    return sorted(done)


def _run_replica(args: tuple[str, int, int, dict, int]) -> int:
    """Worker: extend replica ``replica`` of ``out_dir`` to ``n_chunks`` chunks."""
    out_dir_s, replica, n_chunks, cfg_dict, position = args
    out_dir = Path(out_dir_s)
    cfg = ReferenceMDConfig(**{**cfg_dict, "forcefield": tuple(cfg_dict["forcefield"])})
    with exclusive_folder_lock(_replica_dir(out_dir, replica),
                               f"replica {replica} of the reference data"):
        return _extend_replica(out_dir, replica, n_chunks, cfg, position)


def _extend_replica(out_dir: Path, replica: int, n_chunks: int, cfg: ReferenceMDConfig,
                    position: int) -> int:
    rdir = _replica_dir(out_dir, replica)
    # A worker whose parent died (kill, a batch system's time limit) stops rather than keep
    # writing the replica orphaned; None when running in the main process.
    parent = mp.parent_process()
    done = _completed_chunks(rdir)
    if len(done) >= n_chunks:
        return len(done)
    pdb = app.PDBFile(str(out_dir / "topology.pdb"))
    system = build_classical_system(pdb.topology, cfg.forcefield)
    start_chunk = len(done)
    # A new seed per (seed, replica, chunk) keeps resumed runs reproducible.
    integrator = openmm.LangevinMiddleIntegrator(
        cfg.temperature_K * unit.kelvin,
        cfg.friction_per_ps / unit.picosecond,
        cfg.timestep_fs * unit.femtosecond,
    )
    integrator.setRandomNumberSeed(1 + cfg.seed * 100_003 + replica * 1009 + start_chunk)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(cfg.platform))
    if done:
        state = openmm.XmlSerializer.deserialize((rdir / f"state_{done[-1]:05d}.xml").read_text())
        context.setState(state)
    else:
        context.setPositions(pdb.positions)
        openmm.LocalEnergyMinimizer.minimize(context)
        context.setVelocitiesToTemperature(
            cfg.temperature_K * unit.kelvin, 1 + cfg.seed * 7919 + replica
        )
        integrator.step(round(cfg.equilibration_ps * 1000.0 / cfg.timestep_fs))
        context.setTime(0.0)
    n_atoms = system.getNumParticles()
    bar = tqdm(
        total=n_chunks * cfg.frames_per_chunk,
        initial=start_chunk * cfg.frames_per_chunk,
        desc=f"replica {replica}",
        unit="frame",
        position=position,
        leave=True,
    )
    for chunk in range(start_chunk, n_chunks):
        pos = np.empty((cfg.frames_per_chunk, n_atoms, 3), dtype=np.float32)
        frc = np.empty_like(pos)
        epot = np.empty(cfg.frames_per_chunk)
        times = np.empty(cfg.frames_per_chunk)
        for i in range(cfg.frames_per_chunk):
            if parent is not None and not parent.is_alive():
                raise SystemExit(f"replica {replica}: the parent process is gone; stopping")
            integrator.step(cfg.steps_per_frame)
            st = context.getState(getPositions=True, getForces=True, getEnergy=True)
            pos[i] = st.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
            frc[i] = st.getForces(asNumpy=True).value_in_unit(
                unit.kilojoule_per_mole / unit.nanometer
            )
            epot[i] = st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
            times[i] = st.getTime().value_in_unit(unit.picosecond)
            bar.update(1)
        if not (np.isfinite(pos).all() and np.isfinite(frc).all()):
            raise FloatingPointError(f"replica {replica}: non-finite frame in chunk {chunk}")
        write_npz(
            rdir / f"chunk_{chunk:05d}.npz",
            positions=pos, forces=frc, potential_energy=epot, time_ps=times,
        )
        full = context.getState(getPositions=True, getVelocities=True, getParameters=True)
        write_text(rdir / f"state_{chunk:05d}.xml", openmm.XmlSerializer.serialize(full))
    bar.close()
    return n_chunks


def generate_reference_data(
    out_dir: str | Path,
    pdb_path: str | Path,
    n_replicas: int,
    ns_per_replica: float,
    config: ReferenceMDConfig | None = None,
    workers: int = 1,
) -> Path:
    """Run (or resume) ``n_replicas`` independent replicas of ``ns_per_replica`` ns each.

    The frame count per replica is rounded up to whole chunks. Returns ``out_dir``.
    """
    cfg = config or ReferenceMDConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.json"
    cfg_record = {"format_version": FORMAT_VERSION, "config": dataclasses.asdict(cfg),
                  "units": {"positions": "nm", "forces": "kJ/mol/nm",
                            "potential_energy": "kJ/mol", "time": "ps"}}
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        old_cfg = {**old["config"], "forcefield": list(old["config"]["forcefield"])}
        new_cfg = {**cfg_record["config"], "forcefield": list(cfg.forcefield)}
        if old_cfg != new_cfg:
            raise ValueError(
                f"{out} holds data made with another protocol: {old_cfg} != {new_cfg}; "
                "use a new output folder"
            )
    else:
        write_json(cfg_path, cfg_record)
    if not (out / "topology.pdb").exists():
        write_text(out / "topology.pdb", Path(pdb_path).read_text())
    frames = ns_per_replica * 1000.0 / cfg.save_interval_ps
    n_chunks = max(1, int(np.ceil(frames / cfg.frames_per_chunk)))
    jobs = [(str(out), r, n_chunks, dataclasses.asdict(cfg), r) for r in range(n_replicas)]
    if workers <= 1:
        for job in jobs:
            _run_replica(job)
    else:
        with mp.get_context("spawn").Pool(workers) as pool:
            list(pool.imap_unordered(_run_replica, jobs))
    return out


@dataclass
class ReferenceData:
    """Frames of all replicas, concatenated in (replica, time) order.

    positions (N, n, 3) nm; forces (N, n, 3) kJ/mol/nm; potential_energy (N,) kJ/mol;
    replica (N,) int; time_ps (N,); temperature_K of the simulation.
    """

    positions: np.ndarray
    forces: np.ndarray
    potential_energy: np.ndarray
    replica: np.ndarray
    time_ps: np.ndarray
    temperature_K: float
    topology_pdb: Path

    def __len__(self) -> int:
        return len(self.positions)

    def subset(self, index: np.ndarray) -> ReferenceData:
        """The frames at ``index`` (an int or bool array)."""
        return ReferenceData(
            self.positions[index], self.forces[index], self.potential_energy[index],
            self.replica[index], self.time_ps[index], self.temperature_K, self.topology_pdb,
        )

    def to_mdtraj(self):
        """An ``mdtraj.Trajectory`` of the positions (nm), with times in ps."""
        import mdtraj

        top = mdtraj.load_topology(str(self.topology_pdb))
        return mdtraj.Trajectory(self.positions, top, time=self.time_ps)


def load_reference_data(out_dir: str | Path, max_frames_per_replica: int | None = None
                        ) -> ReferenceData:
    """Load every completed chunk under ``out_dir``."""
    out = Path(out_dir)
    cfg_path = out / "config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{out} is not a flowff reference data folder (no config.json)")
    record = json.loads(cfg_path.read_text())
    if record.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{out}: data format {record.get('format_version')} is not the supported "
            f"{FORMAT_VERSION}"
        )
    # resampled flow samples (flowff.data.flow_samples) have no MD state to resume from
    has_states = "origin" not in record
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("pos", "frc", "e", "rep", "t")}
    for rdir in sorted(out.glob("replica_*")):
        replica = int(rdir.name.split("_")[1])
        count = 0
        for chunk in _completed_chunks(rdir, needs_state=has_states):
            with np.load(rdir / f"chunk_{chunk:05d}.npz") as z:
                n = len(z["positions"])
                if max_frames_per_replica is not None:
                    n = min(n, max_frames_per_replica - count)
                if n <= 0:
                    break
                parts["pos"].append(z["positions"][:n])
                parts["frc"].append(z["forces"][:n])
                parts["e"].append(z["potential_energy"][:n])
                parts["t"].append(z["time_ps"][:n])
                parts["rep"].append(np.full(n, replica))
                count += n
    if not parts["pos"]:
        raise FileNotFoundError(f"{out} holds no completed chunks yet")
    return ReferenceData(
        np.concatenate(parts["pos"]), np.concatenate(parts["frc"]), np.concatenate(parts["e"]),
        np.concatenate(parts["rep"]), np.concatenate(parts["t"]),
        float(record["config"]["temperature_K"]), out / "topology.pdb",
    )


def split_by_time_blocks(
    data: ReferenceData,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    block_ps: float = 1000.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of train, validation and test frames by contiguous time blocks.

    Each replica's trajectory is cut into blocks of ``block_ps``; blocks (not frames) are shuffled
    with ``seed`` and dealt to the three sets in the given fractions (each set gets >= 1 block
    when there are at least three blocks).
    """
    if not np.isclose(sum(fractions), 1.0) or min(fractions) < 0:
        raise ValueError(f"fractions must be non-negative and sum to 1, got {fractions}")
    block_id = np.empty(len(data), dtype=np.int64)
    n_blocks = 0
    for r in np.unique(data.replica):
        idx = np.flatnonzero(data.replica == r)
        t = data.time_ps[idx] - data.time_ps[idx].min()
        local = np.floor(t / block_ps).astype(np.int64)
        block_id[idx] = local + n_blocks
        n_blocks += int(local.max()) + 1
    order = np.random.default_rng(seed).permutation(n_blocks)
    n_val = int(round(fractions[1] * n_blocks))
    n_test = int(round(fractions[2] * n_blocks))
    if n_blocks >= 3:
        n_val, n_test = max(n_val, 1 if fractions[1] > 0 else 0), max(
            n_test, 1 if fractions[2] > 0 else 0)
    test_blocks = order[:n_test]
    val_blocks = order[n_test:n_test + n_val]
    test = np.flatnonzero(np.isin(block_id, test_blocks))
    val = np.flatnonzero(np.isin(block_id, val_blocks))
    train = np.flatnonzero(~np.isin(block_id, np.concatenate([test_blocks, val_blocks])))
    return train, val, test


def check_same_system(first_dir: str | Path, other_dir: str | Path) -> None:
    """Raise ValueError unless two data folders hold the same molecule (the topology signature
    model files record: elements, atom and residue names in order, bonds), force field and
    temperature, i.e. frames that may train one flow."""
    records = [json.loads((Path(d) / "config.json").read_text())["config"]
               for d in (first_dir, other_dir)]
    for key in ("forcefield", "temperature_K"):
        if records[0][key] != records[1][key]:
            raise ValueError(
                f"{other_dir} was made with {key} {records[1][key]!r}, {first_dir} with "
                f"{records[0][key]!r}: their frames cannot train one flow"
            )
    sigs = [topology_signature(app.PDBFile(str(Path(d) / "topology.pdb")).topology)
            for d in (first_dir, other_dir)]
    if sigs[0]["fingerprint"] != sigs[1]["fingerprint"]:
        atoms = [list(zip(sig["residue_names"], sig["atom_names"], strict=True)) for sig in sigs]
        where = next((i for i, (a, b) in enumerate(zip(*atoms, strict=False)) if a != b), None)
        raise ValueError(
            f"topology mismatch: {other_dir} holds {len(atoms[1])} atoms, {first_dir} "
            f"{len(atoms[0])}" + ("; their elements or bonds differ" if where is None else
                                  f"; they differ at atom {where} "
                                  f"({atoms[1][where]} vs {atoms[0][where]})")
        )
