#!/usr/bin/env python
"""Pool the Kish sampling efficiency of one model over several `flowff evaluate` reports.

One set of samples can miss the rare heavy weights of a state the flow under-weights (high ESS,
small bootstrap error) while the next holds a few (ESS many points lower): judge a model on
several sampling seeds pooled (docs/training.md). Refuses reports of different models (by the
model file digest `flowff evaluate` records), temperatures or repeated seeds.

    python scripts/pool_sampling_efficiency.py EVAL_S1/evaluation.json EVAL_S2/evaluation.json \\
        [--json pooled.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def pool_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-report and pooled Kish ESS / N of evaluation reports of one model."""
    from flowff.analysis.metrics import pooled_kish_efficiency

    if not reports:
        raise ValueError("no reports to pool")
    digests = {r.get("model", {}).get("sha256_16") for r in reports}
    if len(digests - {None}) > 1:
        raise ValueError(f"reports of different model files (sha256 {sorted(digests - {None})}): "
                         "only one model's weights share a scale")
    temperatures = {float(r["temperature_K"]) for r in reports}
    if len(temperatures) > 1:
        raise ValueError(f"reports at different temperatures: {sorted(temperatures)} K")
    seeds = [int(r["seed"]) for r in reports]
    if len(set(seeds)) < len(seeds):
        raise ValueError(f"repeated sampling seed in {seeds}: the same samples would count twice")
    rows = [{"seed": int(r["seed"]), "n_samples": int(r["flow_samples"]["n_samples"]),
             "kish_efficiency": float(r["flow_samples"]["kish_efficiency"]),
             "bootstrap_se": r["flow_samples"].get("kish_efficiency_bootstrap_se"),
             "pareto_khat": r["flow_samples"].get("importance_pareto_khat")} for r in reports]
    return {"model_sha256_16": next(iter(digests - {None}), None),
            "reports": rows, "n_samples": sum(row["n_samples"] for row in rows),
            "pooled_kish_efficiency": pooled_kish_efficiency([r["flow_samples"] for r in reports])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("reports", type=Path, nargs="+", help="evaluation.json files")
    p.add_argument("--json", type=Path, default=None, help="write the pooled summary here")
    args = p.parse_args(argv)
    from flowff.utils.atomic import write_json

    pooled = pool_reports([json.loads(path.read_text()) for path in args.reports])
    for path, row in zip(args.reports, pooled["reports"], strict=True):
        se = row["bootstrap_se"]
        khat = row["pareto_khat"]
        print(f"seed {row['seed']:>3}  N {row['n_samples']:>7}  Kish ESS/N "
              f"{100 * row['kish_efficiency']:5.1f} %"
              + (f" (bootstrap s.e. {100 * se:.1f})" if se is not None else "")
              + (f"  k-hat {khat:.2f}" if khat is not None else "") + f"  {path}")
    print(f"pooled  N {pooled['n_samples']:>7}  Kish ESS/N "
          f"{100 * pooled['pooled_kish_efficiency']:5.1f} %")
    if args.json is not None:
        write_json(args.json, {**pooled, "files": [str(path) for path in args.reports]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
