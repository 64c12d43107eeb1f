#!/usr/bin/env python
"""The paper's Table 1 at the scale this machine allows: smooth vs spline flows trained with
(w_k, w_f) in {0, 0.1} x {0, 0.001} (w_n = 1 - w_k - w_f), several replicas each.

Each run trains with `flowff.training.Trainer` (no gradient clipping, as in the paper), then is
evaluated on the held-out test block: NLL (kT), FME ((kT/nm)^2) and the reverse-KL estimate
(kT, up to log Z) from flow samples. A run that raises or ends with non-finite metrics counts
as a failure. Runs are resumable (finished runs are skipped). Prints the table; --json writes it.

    python scripts/compare_losses.py --data DATA --out runs/compare --replicas 2 --steps 300
"""

from __future__ import annotations

import argparse
import json
import math
import traceback
from pathlib import Path

import numpy as np

CONFIGS = [(0.0, 0.0), (0.0, 0.001), (0.1, 0.0), (0.1, 0.001)]
METRICS = [("NLL", "nll"), ("FME", "fme"), ("KLD", "kld")]


def run_one(args: argparse.Namespace, transform: str, w_k: float, w_f: float, replica: int
            ) -> dict:
    """Train and evaluate one run; returns its metrics or its failure."""
    import torch

    from flowff.analysis.evaluate import evaluate_model
    from flowff.energy.builder import load_energy_module
    from flowff.training.config import TrainConfig
    from flowff.training.trainer import Trainer

    name = f"{transform}_wk{w_k}_wf{w_f}_r{replica}"
    out = args.out / name
    result_path = out / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    cfg = TrainConfig(
        data_dir=str(args.data), out_dir=str(out),
        model={"transform": transform, "num_components": args.components,
               "hidden": [args.hidden, args.hidden]},
        w_nll=1.0 - w_k - w_f, w_kl=w_k, w_fm=w_f, epochs=1000, max_steps=args.steps,
        batch_size=args.batch_size, kl_batch_size=args.kl_batch_size, lr=args.lr,
        lr_gamma=1.0, seed=replica, max_frames_per_replica=args.max_frames_per_replica,
        block_ps=args.block_ps, val_every_steps=max(args.steps, 1), val_frames=500,
        checkpoint_every_steps=50,
    )
    record: dict = {"name": name, "transform": transform, "w_k": w_k, "w_f": w_f,
                    "replica": replica}
    try:
        torch.manual_seed(replica)
        model_path = Trainer(cfg, progress=False).train()
        model = load_energy_module(model_path, mode="eager")
        report = evaluate_model(model, args.data, out / "eval", n_samples=args.samples,
                                max_test_frames=args.test_frames, seed=replica,
                                make_plots=False, progress=False, batch_size=64,
                                split=_split(args, replica))
        record.update(
            nll=report["md_test_frames"]["nll_kT"],
            fme=report["md_test_frames"]["fme_kT2_per_nm2"],
            kld=report["flow_samples"]["reverse_kl_kT"],
        )
        record["failed"] = not all(
            v is not None and math.isfinite(v) for v in (record["nll"], record["fme"],
                                                         record["kld"]))
    except Exception as exc:  # a diverged training run is a result here, not a crash
        record.update(failed=True, error=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc(limit=3))
    out.mkdir(parents=True, exist_ok=True)
    from flowff.utils.atomic import write_json

    write_json(result_path, record)
    return record


def _split(args: argparse.Namespace, replica: int):
    from flowff.analysis.evaluate import SplitSpec

    return SplitSpec(fractions=(0.8, 0.1, 0.1), block_ps=args.block_ps, seed=replica,
                     max_frames_per_replica=args.max_frames_per_replica)


def summarize(records: list[dict]) -> dict:
    """Mean and 2 x standard error of each metric per (transform, w_k, w_f), and failures."""
    table: dict = {}
    for transform in ("spline", "smooth"):
        for w_k, w_f in CONFIGS:
            runs = [r for r in records if (r["transform"], r["w_k"], r["w_f"])
                    == (transform, w_k, w_f)]
            ok = [r for r in runs if not r.get("failed")]
            cell: dict = {"runs": len(runs), "failures": len(runs) - len(ok)}
            for _, key in METRICS:
                vals = np.array([r[key] for r in ok], dtype=float)
                if len(vals):
                    se = vals.std(ddof=1) / math.sqrt(len(vals)) if len(vals) > 1 else float("nan")
                    cell[key] = {"mean": float(vals.mean()), "two_se": float(2 * se)}
            table[f"{transform} wk={w_k} wf={w_f}"] = cell
    return table


def format_table(table: dict) -> str:
    header = ["metric", "method"] + [f"wk={w_k} wf={w_f}" for w_k, w_f in CONFIGS]
    rows = [header]
    for label, key in METRICS + [("failures", "failures")]:
        for transform in ("spline", "smooth"):
            row = [label, transform]
            for w_k, w_f in CONFIGS:
                cell = table[f"{transform} wk={w_k} wf={w_f}"]
                if key == "failures":
                    row.append(f"{cell['failures']}/{cell['runs']}")
                elif key in cell:
                    m, s = cell[key]["mean"], cell[key]["two_se"]
                    row.append(f"{m:.4g} (±{s:.2g})")
                else:
                    row.append("-")
            rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--kl-batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--components", type=int, default=8)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--samples", type=int, default=256, help="flow samples for the KLD estimate")
    p.add_argument("--test-frames", type=int, default=1000)
    p.add_argument("--max-frames-per-replica", type=int, default=None)
    p.add_argument("--block-ps", type=float, default=1000.0)
    p.add_argument("--transforms", default="smooth,spline")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)

    from tqdm.auto import tqdm

    jobs = [(t, w_k, w_f, r) for t in args.transforms.split(",") for w_k, w_f in CONFIGS
            for r in range(args.replicas)]
    records = [run_one(args, *job) for job in tqdm(jobs, desc="runs", unit="run")]
    table = summarize(records)
    print(f"scale: {args.replicas} replicas x {args.steps} steps of batch {args.batch_size} "
          f"(KL batch {args.kl_batch_size}), flows with {args.components} components / bins, "
          f"MLP {args.hidden}-{args.hidden}; metrics on <= {args.test_frames} test frames and "
          f"{args.samples} samples")
    print(format_table(table))
    if args.json is not None:
        from flowff.utils.atomic import write_json

        write_json(args.json, {"scale": vars(args) | {"data": str(args.data),
                                                      "out": str(args.out),
                                                      "json": str(args.json)},
                               "table": table, "runs": records})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
