"""``flowff train``: train a flow energy by NLL + force matching + reverse KL (Eq. 5)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flowff.training.tail import DEFAULT_TAIL_SIGMA


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train a flow potential on reference MD data (resumable)",
        description="Loss = w_nll NLL + w_kl KLD + w_fm FM with forces in kT/nm. Re-running with "
        "the same --out resumes from the last checkpoint. Data parallel with torchrun "
        "(e.g. `torchrun --nproc-per-node 2 -m flowff train ...`). Writes OUT/model.pt.",
    )
    p.add_argument("--data", required=True, type=Path, help="folder made by `flowff data`")
    p.add_argument("--extra-data", type=Path, action="append", default=None, metavar="DIR",
                   help="another `flowff data` folder of the same molecule and force field "
                   "(e.g. MD started in a rare state); its training blocks join the training "
                   "set (repeat for more)")
    p.add_argument("--data-shares", type=str, default=None, metavar="S0,S1,...",
                   help="share of the training draws per folder, --data first, then each "
                   "--extra-data (e.g. 0.985,0.015); frames are then drawn with replacement")
    p.add_argument("--out", required=True, type=Path, help="run folder")
    p.add_argument("--config", type=Path, default=None,
                   help="JSON training config; command-line options override its entries")
    p.add_argument("--transform", choices=["smooth", "spline"], default=None)
    p.add_argument("--components", type=int, default=None, help="mixture components / bins")
    p.add_argument("--hidden", type=str, default=None, help="conditioner widths, e.g. 64,64")
    p.add_argument("--angle-coupling-pairs", type=int, default=None,
                   help="angle-angle coupling pairs after angles | torsions (default 0, the "
                   "paper's architecture; 1 fits angle forces much better, see docs/training.md)")
    p.add_argument("--rotor-coupling-pairs", type=int, default=None,
                   help="torsion coupling pairs with halves grouped by central bond, after the "
                   "alternating ones (default 0; phi and psi then condition each other directly)")
    p.add_argument("--max-concentration", type=float, default=None,
                   help="smooth flows: upper bound of the bump concentration a (default 1000); "
                   "lower values give smoother energies for MD")
    for target, what, margin in (
        ("bounds", "fit the flow's per-column intervals of {} to the training frames (its "
         "support then ends just beyond the data; narrow intervals stiffen the flow's bumps)",
         3),
        ("walls", "start the wall on {} just beyond the training frames, keeping the flow's "
         "intervals (cuts off the density floor that lets MD stretch bonds)", 2),
    ):
        p.add_argument(f"--fit-ic-{target}", type=str, default=None,
                       help=what.format("'bonds', 'angles' or 'bonds,angles'")
                       + "; 'none' (default): the fixed intervals; see docs/training.md")
        p.add_argument(f"--ic-{target}-margin", type=float, default=None,
                       help=f"margin of fitted {target} beyond the data's extremes, in standard "
                       f"deviations (default {margin})")
    p.add_argument("--torsion-min-identity-share", type=float, default=None,
                   help="smooth flows: floor under each torsion layer's density (identity share "
                   "c >= this; default 1e-6); e.g. 0.01 keeps importance weights from exploding "
                   "in the gaps between bumps (docs/training.md)")
    p.add_argument("--bond-max-concentration", type=float, default=None,
                   help="smooth flows: bump concentration bound of the bonds' layer only (use "
                   "~30 with --fit-ic-bounds bonds: narrow intervals make steep bumps stiff)")
    for coordinate in ("bond", "angle"):
        p.add_argument(f"--{coordinate}-transform", choices=["smooth", "spline", "gaussian"],
                       default=None,
                       help=f"transform kind of the layers transforming {coordinate}s only "
                       "(default: --transform); 'gaussian' = truncated-Gaussian CDF mixtures, "
                       "a harmonic-like energy with bounded curvature and no density floor")
        p.add_argument(f"--{coordinate}-components", type=int, default=None,
                       help=f"components of the {coordinate}s' transform (gaussian default 1)")
        p.add_argument(f"--{coordinate}-min-width", type=float, default=None,
                       help=f"gaussian {coordinate}s: smallest component width in normalised "
                       "units (default 5e-3); bounds the stiffness ~ 1/width^2")
    p.add_argument("--hydrogen-torsions", choices=["sibling", "chain"], default=None,
                   help="Z-matrix of a new model: measure a hydrogen's torsion from an atom on "
                   "the same bond partner ('sibling', default: methyl H2/H3 from H1) or along "
                   "the bonds ('chain'); see docs/training.md")
    p.add_argument("--w-nll", type=float, default=None)
    p.add_argument("--w-kl", type=float, default=None)
    p.add_argument("--w-fm", type=float, default=None)
    p.add_argument("--w-fm-tail", type=float, default=None,
                   help="weight of relative force matching on perturbed (tail) frames")
    p.add_argument("--tail-sigma", type=str, default=None,
                   help="tail noise widths 'bond_nm,angle_rad,torsion_rad' (default "
                   f"{','.join(f'{v:g}' for v in DEFAULT_TAIL_SIGMA)})")
    p.add_argument("--init-from", type=Path, default=None,
                   help="start from the weights of this model file (same architecture, or "
                   "one with added coupling layers, which start near the identity)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--lr-gamma", type=float, default=None)
    p.add_argument("--clip-grad-norm", type=float, default=None)
    p.add_argument("--ema-decay", type=float, default=None,
                   help="validate and export an exponential moving average of the weights "
                        "(decay per step, e.g. 0.999); may be switched on when resuming")
    p.add_argument("--max-frames-per-replica", type=int, default=None)
    p.add_argument("--block-ps", type=float, default=None,
                   help="time-block length of the train/val/test split (ps, default 1000)")
    p.add_argument("--val-every", type=int, default=None, help="validate every N steps")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--split-seed", type=int, default=None,
                   help="seed of the time-block train/val/test split (default 0; keep it when "
                   "fine-tuning with another --seed so the held-out blocks stay held out)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:1, ...")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    """The TrainConfig of a command line (file entries overridden by given options)."""
    from flowff.training.config import TrainConfig

    base = json.loads(args.config.read_text()) if args.config else {}
    base.update({"data_dir": str(args.data), "out_dir": str(args.out)})
    model = dict(base.get("model", {}))
    if args.transform is not None:
        model["transform"] = args.transform
    if args.components is not None:
        model["num_components"] = args.components
    if args.hidden is not None:
        model["hidden"] = [int(v) for v in args.hidden.split(",") if v]
    if args.angle_coupling_pairs is not None:
        model["angle_coupling_pairs"] = args.angle_coupling_pairs
    if args.rotor_coupling_pairs is not None:
        model["rotor_coupling_pairs"] = args.rotor_coupling_pairs
    if args.hydrogen_torsions is not None:
        model["hydrogen_torsions"] = args.hydrogen_torsions
    if args.max_concentration is not None:
        options = dict(model.get("transform_options", {}))
        options["max_concentration"] = args.max_concentration
        model["transform_options"] = options
    if args.torsion_min_identity_share is not None:
        options = dict(model.get("torsion_transform_options", {}))
        options["min_identity_share"] = args.torsion_min_identity_share
        model["torsion_transform_options"] = options
    if args.bond_max_concentration is not None:
        options = dict(model.get("bond_transform_options", {}))
        options["max_concentration"] = args.bond_max_concentration
        model["bond_transform_options"] = options
    for coordinate in ("bond", "angle"):
        kind = getattr(args, f"{coordinate}_transform")
        if kind is not None:
            model[f"{coordinate}_transform"] = kind
        options = dict(model.get(f"{coordinate}_transform_options", {}))
        for option, key in (("components", "num_components"), ("min_width", "min_width")):
            value = getattr(args, f"{coordinate}_{option}")
            if value is not None:
                options[key] = value
        if options:
            model[f"{coordinate}_transform_options"] = options
    base["model"] = model
    if args.extra_data is not None:
        base["extra_data_dirs"] = [str(d) for d in args.extra_data]
    if args.data_shares is not None:
        base["data_shares"] = [float(v) for v in args.data_shares.split(",") if v.strip()]
    if args.tail_sigma is not None:
        base["tail_sigma"] = [float(v) for v in args.tail_sigma.split(",")]
    if args.init_from is not None:
        base["init_from"] = str(args.init_from)
    for target in ("bounds", "walls"):
        chosen = getattr(args, f"fit_ic_{target}")
        if chosen is not None:
            kinds = [v.strip() for v in chosen.split(",") if v.strip()]
            base[f"fit_ic_{target}"] = [] if kinds == ["none"] else kinds
        margin = getattr(args, f"ic_{target}_margin")
        if margin is not None:
            base[f"ic_{target}_margin_std"] = margin
    for option, key in [("w_nll", "w_nll"), ("w_kl", "w_kl"), ("w_fm", "w_fm"),
                        ("w_fm_tail", "w_fm_tail"),
                        ("epochs", "epochs"), ("max_steps", "max_steps"),
                        ("batch_size", "batch_size"), ("lr", "lr"), ("lr_gamma", "lr_gamma"),
                        ("clip_grad_norm", "clip_grad_norm"), ("ema_decay", "ema_decay"),
                        ("max_frames_per_replica", "max_frames_per_replica"),
                        ("val_every", "val_every_steps"), ("block_ps", "block_ps"),
                        ("seed", "seed"), ("split_seed", "split_seed"),
                        ("device", "device")]:
        value = getattr(args, option)
        if value is not None:
            base[key] = value
    return TrainConfig.from_dict(base)


def run(args: argparse.Namespace) -> int:
    from flowff.training.trainer import Trainer

    trainer = Trainer(config_from_args(args), progress=not args.no_progress)
    path = trainer.train()
    if trainer.dist.main:
        print(f"wrote {path}")
    return 0
