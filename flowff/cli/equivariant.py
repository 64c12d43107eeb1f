"""``flowff equivariant``: reference data, training and export of equivariant kernel flows.

    flowff equivariant mcmc   --system lj13 --samples 1000 --seed 0 --out lj13.npz
    flowff equivariant train  --system lj13 --data lj13.npz --iterations 500 --out lj13_flow.pt
    flowff equivariant export --model lj13_flow.pt --temperature 300 --out lj13_energy.pt

Positions are in the systems' reduced length unit (= nm for OpenMM), energies in kT; the
exported TorchScript energy is in kJ/mol at the given temperature (see
``flowff.equivariant.export``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

SYSTEM_NAMES = ("dw2", "dw4", "lj13")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "equivariant", help="equivariant kernel flows for DW-2/DW-4/LJ-13 particle systems",
        description="Metropolis reference samples, kernel-flow training (ML or ML + KL) and "
        "TorchScript export for openmm-torch (Köhler, Klein & Noé 2020).",
    )
    sub = p.add_subparsers(title="actions", metavar="ACTION", required=True)

    mcmc = sub.add_parser("mcmc", help="Metropolis reference samples (supplement C.4)")
    mcmc.add_argument("--system", choices=SYSTEM_NAMES, required=True)
    mcmc.add_argument("--samples", type=int, required=True, help="number of samples")
    mcmc.add_argument("--seed", type=int, default=0)
    mcmc.add_argument("--chains", type=int, default=64, help="parallel chains (default 64)")
    mcmc.add_argument("--out", type=Path, required=True, help=".npz with positions, energies")
    mcmc.set_defaults(func=run_mcmc)

    train = sub.add_parser("train", help="train a flow by maximum likelihood (+ optional KL)")
    train.add_argument("--system", choices=SYSTEM_NAMES, required=True)
    train.add_argument("--data", type=Path, required=True, help=".npz from 'mcmc'")
    train.add_argument("--out", type=Path, required=True, help="model file (.pt)")
    train.add_argument("--model", choices=("eq", "mlp"), default="eq",
                       help="eq: kernel flow (default); mlp: non-equivariant baseline")
    train.add_argument("--iterations", type=int, default=1000)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--lr", type=float, default=5e-3)
    train.add_argument("--weight-decay", type=float, default=0.01)
    train.add_argument("--kl-end", type=float, default=0.0,
                       help="final KL weight lambda, ramped linearly from 0 (default 0: ML)")
    train.add_argument("--augment", action="store_true",
                       help="random rotations/permutations of every batch")
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(func=run_train)

    export = sub.add_parser("export", help="TorchScript energy -kT log p(x) for openmm-torch")
    export.add_argument("--model", type=Path, required=True, help="model file from 'train'")
    export.add_argument("--temperature", type=float, default=300.0, help="kelvin (default 300)")
    export.add_argument("--out", type=Path, required=True, help="TorchScript file")
    export.set_defaults(func=run_export)

    drift = sub.add_parser(
        "drift", help="energy drift (paper protocol) of an LJ-13 flow potential vs LJ-13 itself",
        description="Langevin equilibration then NVE in OpenMM for the exported flow energy and "
        "for the classical LJ-13 system (reduced units: 1 nm, 1 amu, energies x RT), same starts "
        "and seeds; prints std/dof, slopes and blow-ups (dof = 3 n - 6).",
    )
    drift.add_argument("--model", type=Path, required=True, help="LJ-13 model from 'train'")
    drift.add_argument("--data", type=Path, required=True, help=".npz from 'mcmc' (starts)")
    drift.add_argument("--starts", type=int, default=10)
    drift.add_argument("--equilibrate-ps", type=float, default=1.0)
    drift.add_argument("--nve-ps", type=float, default=5.0)
    drift.add_argument("--timestep-fs", type=float, default=1.0)
    drift.add_argument("--temperature", type=float, default=300.0)
    drift.add_argument("--seed", type=int, default=0)
    drift.add_argument("--json", type=Path, default=None)
    drift.add_argument("--png", type=Path, default=None)
    drift.add_argument("--no-progress", action="store_true")
    drift.set_defaults(func=run_drift)


def _system_key(name: str) -> str:
    return {"dw2": "DW-2", "dw4": "DW-4", "lj13": "LJ-13"}[name]


def run_mcmc(args: argparse.Namespace) -> int:
    from flowff.equivariant.mcmc import reference_samples
    from flowff.equivariant.systems import get_system
    from flowff.utils.atomic import write_npz

    system = get_system(args.system)
    x, rate = reference_samples(system, args.samples, args.seed, n_chains=args.chains,
                                progress=True)
    write_npz(args.out, positions=x.numpy(), energies_kT=system.energy(x).numpy())
    print(f"{args.out}: {x.shape[0]} samples of {system.name}, acceptance {rate:.3f}")
    return 0


def _build(system: str, model: str, seed: int):
    from flowff.equivariant.models import kernel_flow, mlp_flow

    key = _system_key(system)
    if model == "eq":
        return kernel_flow(key, seed=seed)
    return mlp_flow(key, seed=seed, trace="hutchinson")


def run_train(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from flowff.equivariant.systems import get_system
    from flowff.equivariant.training import TrainConfig, train_flow

    if not args.data.is_file():
        raise FileNotFoundError(f"data file {args.data} does not exist")
    with np.load(args.data) as npz:
        if "positions" not in npz:
            raise ValueError(f"{args.data} has no 'positions' array")
        data = torch.from_numpy(npz["positions"]).to(torch.float64)
    flow = _build(args.system, args.model, args.seed)
    config = TrainConfig(n_iterations=args.iterations, batch_size=args.batch_size, lr=args.lr,
                         weight_decay=args.weight_decay, kl_end=args.kl_end,
                         augment=args.augment, seed=args.seed)
    system = get_system(args.system)
    history = train_flow(flow, data, config, system=system if args.kl_end > 0 else None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"system": args.system, "model": args.model, "seed": args.seed,
                "state": flow.state_dict(), "history": history}, args.out)
    tail = history["nll"][-10:]
    print(f"{args.out}: mean batch NLL over the last {len(tail)} iterations "
          f"{sum(tail) / len(tail):.3f} nats")
    return 0


def run_export(args: argparse.Namespace) -> int:
    import torch

    from flowff.equivariant.export import export_energy

    if not args.model.is_file():
        raise FileNotFoundError(f"model file {args.model} does not exist")
    saved = torch.load(args.model)
    if saved.get("model") != "eq":
        raise ValueError("only kernel flows (--model eq) can be exported")
    flow = _build(saved["system"], "eq", saved.get("seed", 0))
    flow.load_state_dict(saved["state"])
    export_energy(flow, args.out, args.temperature)
    print(f"{args.out}: TorchScript energy of the {saved['system']} flow in kJ/mol at "
          f"{args.temperature} K (positions (n, 3) nm)")
    return 0


def _particle_topology(n_particles: int):
    """An OpenMM topology of ``n_particles`` unbonded argon-like particles (for reporting)."""
    import openmm.app as app

    top = app.Topology()
    chain = top.addChain()
    for i in range(n_particles):
        res = top.addResidue("LJ", chain)
        top.addAtom(f"P{i}", app.Element.getBySymbol("Ar"), res)
    return top


def run_drift(args: argparse.Namespace) -> int:
    import numpy as np
    import openmm
    import torch

    from flowff.equivariant.export import energy_module
    from flowff.equivariant.openmm_systems import to_openmm_positions, to_openmm_system
    from flowff.equivariant.systems import get_system
    from flowff.openmm.drift import compare_drift
    from flowff.openmm.torchforce import create_torch_force

    for path in (args.model, args.data):
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
    saved = torch.load(args.model)
    if saved.get("system") != "lj13" or saved.get("model") != "eq":
        raise ValueError("drift needs an LJ-13 kernel-flow model (train --system lj13)")
    flow = _build("lj13", "eq", saved.get("seed", 0))
    flow.load_state_dict(saved["state"])
    particles = get_system("lj13")
    classical = to_openmm_system(particles, args.temperature)
    flow_system = openmm.System()
    for i in range(particles.n_particles):
        flow_system.addParticle(classical.getParticleMass(i))
    flow_system.addForce(create_torch_force(energy_module(flow, args.temperature),
                                            particles.n_particles))
    with np.load(args.data) as npz:
        positions = npz["positions"]
    if len(positions) < args.starts:
        raise ValueError(f"{args.data} has {len(positions)} samples, fewer than --starts")
    pick = np.linspace(0, len(positions) - 1, args.starts).astype(int)
    starts = [to_openmm_positions(torch.as_tensor(positions[i])) for i in pick]
    comparison = compare_drift(
        {"lj13": classical, "flow": flow_system}, _particle_topology(particles.n_particles),
        starts, reference="lj13", equilibrate_ps=args.equilibrate_ps, nve_ps=args.nve_ps,
        timestep_fs=args.timestep_fs, temperature_K=args.temperature, seed=args.seed,
        progress=not args.no_progress,
    )
    if args.json is not None:
        comparison.write_json(args.json)
    if args.png is not None:
        from flowff.openmm.drift_plot import plot_drift

        plot_drift(comparison, args.png)
    return 0
