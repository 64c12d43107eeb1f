#!/usr/bin/env python
"""Long-run equilibrium on a flow potential: Langevin MD of R batched replicas (one System, one
batched force call per step) from reference frames; Ramachandran populations vs reference MD.

Resumable: the trajectory is written in chunks with an OpenMM State after each one; re-running
the same command continues. Writes OUT/long_run.json and OUT/ramachandran.png.

    python scripts/long_run_equilibrium.py --model MODEL --data DATA --out runs/long \
        --replicas 64 --ps 160     # 64 x 160 ps = 10.24 ns in total
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=None, help="default: the shipped model")
    p.add_argument("--data", type=Path, required=True, help="reference data folder")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--replicas", type=int, default=64)
    p.add_argument("--ps", type=float, default=160.0, help="ps per replica")
    p.add_argument("--timestep-fs", type=float, default=1.0)
    p.add_argument("--friction", type=float, default=1.0, help="1/ps")
    p.add_argument("--save-ps", type=float, default=1.0)
    p.add_argument("--chunk-ps", type=float, default=10.0)
    p.add_argument("--equilibrate-ps", type=float, default=5.0,
                   help="discarded at the start of each replica")
    p.add_argument("--platform", default="Reference")
    p.add_argument("--backend", default="torchforce", choices=["torchforce", "pythonforce"])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import openmm
    import openmm.app as app
    import openmm.unit as unit
    from tqdm.auto import tqdm

    from flowff.analysis.bonds import HIGH, LOW, bond_lengths, broken_frames
    from flowff.analysis.plots import plot_ramachandran
    from flowff.analysis.ramachandran import (
        backbone_torsions,
        basin_replica_stderr,
        compare_ramachandran,
    )
    from flowff.data.reference import load_reference_data
    from flowff.models import default_model_path
    from flowff.openmm.potential import FlowPotential
    from flowff.utils.atomic import write_json, write_npz, write_text

    model = args.model or default_model_path()
    data = load_reference_data(args.data)
    pdb = app.PDBFile(str(data.topology_pdb))
    potential = FlowPotential(model, backend=args.backend)
    R, n = args.replicas, potential.n_atoms
    system = potential.createSystem(pdb.topology, removeCMMotion=False, replicas=R)
    temperature = potential.temperature_K
    integrator = openmm.LangevinMiddleIntegrator(
        temperature * unit.kelvin, args.friction / unit.picosecond,
        args.timestep_fs * unit.femtosecond)
    args.out.mkdir(parents=True, exist_ok=True)
    chunks = sorted(args.out.glob("chunk_*.npz"))
    integrator.setRandomNumberSeed(1 + args.seed * 7919 + len(chunks))
    context = openmm.Context(system, integrator,
                             openmm.Platform.getPlatformByName(args.platform))
    steps_per_save = round(args.save_ps * 1000 / args.timestep_fs)
    saves_per_chunk = round(args.chunk_ps / args.save_ps)
    n_chunks = int(np.ceil((args.ps + args.equilibrate_ps) / args.chunk_ps))
    if chunks:
        state_xml = (args.out / "state.xml").read_text()
        context.setState(openmm.XmlSerializer.deserialize(state_xml))
    else:
        rng = np.random.default_rng(args.seed)
        starts = data.positions[rng.choice(len(data), R, replace=False)].astype(np.float64)
        context.setPositions(starts.reshape(-1, 3))
        context.setVelocitiesToTemperature(temperature * unit.kelvin, 1 + args.seed)
    bar = tqdm(total=n_chunks * saves_per_chunk, initial=len(chunks) * saves_per_chunk,
               unit="frame", desc=f"{R} replicas")
    t0 = time.time()
    for chunk in range(len(chunks), n_chunks):
        frames = np.empty((saves_per_chunk, R, n, 3), dtype=np.float32)
        for i in range(saves_per_chunk):
            integrator.step(steps_per_save)
            st = context.getState(getPositions=True)
            frames[i] = st.getPositions(asNumpy=True).value_in_unit(unit.nanometer).reshape(
                R, n, 3)
            bar.update(1)
        if not np.isfinite(frames).all():
            raise FloatingPointError(f"non-finite positions in chunk {chunk}: MD blew up")
        write_npz(args.out / f"chunk_{chunk:04d}.npz", positions=frames)
        full = context.getState(getPositions=True, getVelocities=True)
        write_text(args.out / "state.xml", openmm.XmlSerializer.serialize(full))
    bar.close()
    wall = time.time() - t0

    frames = np.concatenate([np.load(c)["positions"] for c in
                             sorted(args.out.glob("chunk_*.npz"))])  # (T, R, n, 3)
    skip = round(args.equilibrate_ps / args.save_ps)
    kept = frames[skip:].reshape(-1, n, 3)
    phi_f, psi_f = backbone_torsions(kept, data.topology_pdb)
    phi_md, psi_md = backbone_torsions(data.positions, data.topology_pdb)
    comparison = compare_ramachandran(phi_md, psi_md, phi_f, psi_f)
    if R >= 2:  # replicas are independent, frames of one replica are not
        comparison["basins_flow_replica_stderr_pp"] = basin_replica_stderr(phi_f, psi_f, R)
    total_ns = len(frames[skip:]) * args.save_ps * R / 1000
    # Bond integrity: populations of broken molecules say nothing about the potential's basins.
    reference = data.positions[np.linspace(0, len(data) - 1, min(len(data), 20000)).astype(int)]
    lengths = bond_lengths(kept, data.topology_pdb)
    ref_lengths = bond_lengths(reference, data.topology_pdb)
    broken = broken_frames(lengths, ref_lengths)
    per_replica = broken.reshape(-1, R)  # (T_kept, R): frames are time-major
    intact = {"frames_broken_fraction": float(broken.mean()),
              "replicas_ever_broken": int(per_replica.any(axis=0).sum()),
              "rule": f"a bond outside [{LOW} x reference min, {HIGH} x reference max]",
              # per bond, the extreme length over all kept frames relative to the reference's
              "longest_bond_nm": float(np.nanmax(lengths)),
              "max_stretch_vs_reference_max": float(np.nanmax(
                  np.nanmax(lengths, axis=0) / ref_lengths.max(axis=0))),
              "max_compression_vs_reference_min": float(np.nanmin(
                  np.nanmin(lengths, axis=0) / ref_lengths.min(axis=0)))}
    if (~broken).any():
        intact["ramachandran_intact_frames"] = compare_ramachandran(
            phi_md, psi_md, phi_f[~broken], psi_f[~broken])
    report = {
        "model": str(model), "replicas": R,
        "ps_per_replica_kept": len(frames[skip:]) * args.save_ps,
        "total_ns_kept": total_ns, "timestep_fs": args.timestep_fs,
        "friction_per_ps": args.friction, "temperature_K": temperature,
        "equilibrate_ps_discarded": args.equilibrate_ps, "platform": args.platform,
        "backend": args.backend, "seed": args.seed, "wall_s_this_call": wall,
        "reference_frames": len(data), "ramachandran": comparison,
        "bond_integrity": intact,
    }
    write_json(args.out / "long_run.json", report)
    plot_ramachandran(phi_md, psi_md, phi_f, psi_f, args.out / "ramachandran.png",
                      titles=("reference MD (all frames)", "Langevin MD on the flow"))
    pops = comparison
    stderr = pops.get("basins_flow_replica_stderr_pp", {})
    print(f"{R} replicas x {report['ps_per_replica_kept']:.3g} ps = {total_ns:.2f} ns kept")
    for basin in pops["basins_md_percent"]:
        error = f" (s.e. {stderr[basin]:.2f} pp over replicas)" if basin in stderr else ""
        print(f"{basin:14s} MD {pops['basins_md_percent'][basin]:6.2f} %   flow MD "
              f"{pops['basins_flow_percent'][basin]:6.2f} %   diff "
              f"{pops['basins_difference_pp'][basin]:+6.2f} pp{error}")
    print(f"Ramachandran KL(MD||flow MD) {pops['kl_md_flow']:.3f}, JS {pops['js']:.3f} nats")
    print(f"broken molecules ({intact['rule']}): {100 * intact['frames_broken_fraction']:.1f} % "
          f"of frames, {intact['replicas_ever_broken']} of {R} replicas at some time")
    print(json.dumps({"report": str(args.out / "long_run.json")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
