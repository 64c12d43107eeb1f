"""``flowff evaluate``: evaluate a trained model file against reference MD test frames.

The test frames come from the same time-block split as training: fractions, block length, split
seed and ``max_frames_per_replica`` from the model metadata's ``training`` entry where present,
else the defaults (0.8, 0.1, 0.1), 1000 ps, seed 0.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowff.analysis.evaluate import REPORT_FILE, SplitSpec


def load_model(path: Path) -> torch.nn.Module:
    """The eager flow energy of a model file (``flowff.energy.builder``, imported lazily)."""
    from flowff.energy.builder import load_energy_module

    return load_energy_module(path, mode="eager")


def _is_fractions(value: Any) -> bool:
    return (isinstance(value, list | tuple) and len(value) == 3
            and all(isinstance(v, int | float) for v in value))


def split_from_metadata(metadata: dict[str, Any]) -> tuple[SplitSpec, str, dict[str, int] | None]:
    """The training split of a model's metadata: (spec, source description, recorded sizes).

    Reads ``training.split`` (fractions; a dict there is taken as recorded split sizes),
    ``training.split_fractions``, ``training.block_ps``, ``training.split_seed`` (runs made
    before it existed split with ``training.seed``) and ``training.max_frames_per_replica``;
    missing entries take the defaults.
    """
    default = SplitSpec()
    training = metadata.get("training")
    if not isinstance(training, dict):
        return default, "defaults (no training entry in the model metadata)", None
    recorded = training.get("split")
    sizes = None
    recorded_sizes = recorded if isinstance(recorded, dict) else training.get("split_sizes")
    if isinstance(recorded_sizes, dict):
        sizes = {k: int(v) for k, v in recorded_sizes.items() if k in ("train", "val", "test")}
    if _is_fractions(recorded):
        fractions = tuple(float(v) for v in recorded)
        source = "model metadata"
    elif _is_fractions(training.get("split_fractions")):
        fractions = tuple(float(v) for v in training["split_fractions"])
        source = "model metadata"
    else:
        fractions = default.fractions
        source = "model metadata (split fractions not recorded: default fractions)"
    spec = SplitSpec(
        fractions=fractions,  # type: ignore[arg-type]
        block_ps=float(training.get("block_ps", default.block_ps)),
        seed=int(training.get("split_seed", training.get("seed", default.seed))),
        max_frames_per_replica=training.get("max_frames_per_replica"),
    )
    return spec, source, sizes


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def summary_table(report: dict[str, Any]) -> str:
    """A compact text table of the main numbers of an evaluation report."""
    md = report["md_test_frames"]
    s = report["flow_samples"]
    rama = report.get("ramachandran") or {}
    rows = [
        ("test frames", md["n_frames"]),
        ("test NLL (kT)", md["nll_kT"]),
        ("test force RMSE (kT/nm)", md["force_rmse_kT_per_nm"]),
        ("test FME ((kT/nm)^2)", md["fme_kT2_per_nm2"]),
    ]
    by_type = md.get("force_error_by_ic_type") or {}
    for name, part in by_type.items():
        if isinstance(part, dict):
            rows.append((f"  force RMSE from {name} (kT/nm; relative)",
                         f"{part['cartesian_rmse']:.4g}; {part['relative']:.3f}"))
    worst = sorted(by_type.get("columns") or [], key=lambda c: -c["cartesian_rmse"])[:3]
    if worst:
        rows.append(("  worst coordinates (atoms: kT/nm)", ", ".join(
            f"{c['type'][:-1]} {'-'.join(map(str, c['atoms']))}: {c['cartesian_rmse']:.3g}"
            for c in worst)))
    rows += [
        ("samples (non-finite / broken)", f"{s['n_samples']} ({s['n_nonfinite_positions']} / "
                                          f"{s['n_broken']})"),
        ("sample force RMSE (kT/nm)", s["force_rmse_kT_per_nm"]),
        ("reverse KL - log Z (kT)", s["reverse_kl_kT"]),
        ("  without high-energy samples (count)",
         f"{_fmt(s.get('reverse_kl_kT_typical'))} ({s.get('n_high_energy')}); force RMSE "
         f"{_fmt(s.get('force_rmse_kT_per_nm_typical'))}"),
        ("log Z estimate", s["log_z_estimate"]),
        ("Kish ESS / N (bootstrap s.e.; tail k-hat)",
         f"{_fmt(s['kish_efficiency'])} ({_fmt(s.get('kish_efficiency_bootstrap_se'))}; "
         f"{_fmt(s.get('importance_pareto_khat'))})"),
    ]
    at_md = md.get("importance_at_md_frames")
    if at_md:
        rows.append(("  as N grows: 1/E_MD[w/Z] (>10x, >1000x)",
                     f"{_fmt(at_md['kish_efficiency_from_md_frames'])} "
                     f"({_fmt(at_md['frames_weight_above_10x'])}, "
                     f"{_fmt(at_md['frames_weight_above_1000x'])})"))
    by_ic = s.get("importance_by_internal_coordinate")
    if by_ic and by_ic["columns"]:
        rows.append(("  ESS/N if one IC's marginal matched", ", ".join(
            f"{c['type']} {'-'.join(map(str, c['atoms']))}: {c['efficiency_if_matched']:.3f}"
            for c in by_ic["columns"][:3])))
    by_phi = rama.get("importance_by_phi")
    if by_phi:
        # the bins whose samples cost the most ESS each: share of N/ESS over share of samples
        n = sum(r["samples"] for r in by_phi)
        worst = sorted(by_phi, key=lambda r: -r["inverse_ess_share"] * n / r["samples"])[:3]
        rows.append(("  costliest phi bins: N/ESS share (samples)", ", ".join(
            f"{r['phi_deg'][0]:.0f}..{r['phi_deg'][1]:.0f} deg: {r['inverse_ess_share']:.2f} "
            f"({100 * r['samples'] / n:.1f} %)" for r in worst)))
    rows += [
        ("Ramachandran KL(MD||flow) (nats)", rama.get("kl_md_flow")),
        ("Ramachandran JS (nats)", rama.get("js")),
    ]
    for name, pp in (rama.get("basins_difference_pp") or {}).items():
        md_pct = rama["basins_md_percent"][name]
        fl_pct = rama["basins_flow_percent"][name]
        rows.append((f"basin {name} % MD / flow / diff",
                     f"{md_pct:.1f} / {fl_pct:.1f} / {pp:+.1f}"))
        imp = (rama.get("importance_by_basin") or {}).get(name)
        if imp is not None:
            rows.append(("  reweighted % / diff; ESS/N within",
                         f"{imp['reweighted_percent']:.1f} / "
                         f"{imp['reweighted_percent'] - md_pct:+.1f}; "
                         f"{imp['kish_efficiency_within']:.3f}"))
            if "inverse_ess_share" in imp:
                rows.append(("  share of N / ESS", f"{imp['inverse_ess_share']:.2f}"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {_fmt(value)}" for name, value in rows)


def run(args: argparse.Namespace) -> int:
    """Evaluate ``args.model`` on ``args.data``; write the report under ``args.out``.

    Test frames: the training's time-block split from the model metadata, or with
    ``args.test_after_ps`` every frame recorded that far into its replica or later.
    """
    from flowff.analysis.evaluate import evaluate_model
    from flowff.data.reference import load_reference_data
    from flowff.energy.model_file import file_digest, read_metadata

    model_path = Path(args.model)
    metadata = read_metadata(model_path)
    spec, source, sizes = split_from_metadata(metadata)
    model = load_model(model_path)
    if args.test_after_ps is None:
        test_frames: dict[str, Any] = {"data": args.data, "split": spec}
    else:
        ref = load_reference_data(args.data)
        test = later_frame_indices(ref.time_ps, ref.replica, args.test_after_ps)
        if test.size == 0:
            print(f"flowff evaluate: error: no frames at or after {args.test_after_ps} ps in "
                  f"{args.data}", file=sys.stderr)
            return 2
        description = (f"every frame at least {args.test_after_ps:g} ps into its replica "
                       "(recorded after the training data)")
        test_frames = {"data": ref, "test_indices": test, "test_description": description}
    report = evaluate_model(
        model, out_dir=args.out, n_samples=args.samples, max_test_frames=args.frames,
        seed=args.seed, batch_size=args.batch_size, progress=not args.quiet,
        save_samples=args.save_samples,
        model_record={"path": str(model_path), "sha256_16": file_digest(model_path)},
        **test_frames,
    )
    if args.test_after_ps is not None:
        print(f"test frames: {description}; {report['data']['n_test_frames_available']} "
              "available")
    else:
        split = report["data"]["split"]
        match = None if sizes is None else sizes == split["sizes"]
        print(f"split: {source}; fractions {list(spec.fractions)}, block {spec.block_ps} ps, "
              f"seed {spec.seed}; sizes {split['sizes']}")
        if match is False:
            print(f"warning: split sizes {split['sizes']} differ from training's {sizes}: the "
                  "test frames may overlap the training frames", file=sys.stderr)
    print(summary_table(report))
    print(f"report: {Path(args.out) / REPORT_FILE}")
    return 0


def later_frame_indices(time_ps: np.ndarray, replica: np.ndarray, after_ps: float) -> np.ndarray:
    """Indices of frames at least ``after_ps`` into their replica (time from its first frame)."""
    keep = np.zeros(len(time_ps), dtype=bool)
    for r in np.unique(replica):
        mine = replica == r
        keep[mine] = time_ps[mine] - time_ps[mine].min() >= after_ps - 1e-6
    return np.flatnonzero(keep)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand."""
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a model against reference MD test frames",
        description=(
            "Evaluate a flow model file: NLL and force errors on held-out MD frames (the "
            "training's time-block split), and on flow samples force errors against the "
            "classical potential, reverse KL, log Z, Kish ESS, Ramachandran comparison; "
            "writes evaluation.json and PNG figures."
        ),
    )
    parser.add_argument("--model", required=True, help="model file (.pt) written by training")
    parser.add_argument("--data", required=True, help="reference MD data folder")
    parser.add_argument("--out", required=True, help="output folder for the report and figures")
    parser.add_argument("--samples", type=_positive_int, default=10_000,
                        help="flow samples to draw (default 10000)")
    parser.add_argument("--frames", type=_positive_int, default=None,
                        help="use at most this many test frames, evenly spaced (default all)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--test-after-ps", type=float, default=None,
                        help="test on every frame at least this many ps into its replica "
                        "instead of the training split (for data recorded after the training "
                        "data, e.g. the --max-frames-per-replica of training)")
    parser.add_argument("--batch-size", type=_positive_int, default=1000,
                        help="samples / frames per batch (default 1000)")
    parser.add_argument("--save-samples", action="store_true",
                        help="also write flow_samples.npz: the samples' positions (nm), log q, "
                        "energies (kT), log weights, phi/psi (for pooling seeds or looking at "
                        "the heaviest weights)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``flowff evaluate`` alone (for ``python -m flowff.cli.evaluate``)."""
    parser = argparse.ArgumentParser(prog="flowff")
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
