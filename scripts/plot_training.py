#!/usr/bin/env python
"""Plot a training run's metrics log (RUN/metrics.jsonl) as a PNG: training loss terms and the
validation NLL (kT) and force RMSE (kT/nm) against the step.

    python scripts/plot_training.py RUN/metrics.jsonl --out training_curve.png [--title TEXT]

Several logs (e.g. a run and its fine-tuning) are drawn one after the other, steps continuing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PANELS = (("nll", "val_nll", "NLL [kT]"), ("fm", None, "FM [(kT/nm)^2]"),
          (None, "val_force_rmse", "val force RMSE [kT/nm]"), ("fm_tail", None, "tail FM (rel.)"))


def read_log(paths: list[Path]) -> list[dict]:
    """Records of the logs in order; each later log's steps are shifted past the earlier ones."""
    records: list[dict] = []
    offset = 0
    for path in paths:
        last = 0
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record.get("final"):
                continue
            last = max(last, record["step"])
            records.append({**record, "step": record["step"] + offset})
        offset += last
    return records


def plot(records: list[dict], out: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in PANELS if any((p[0] in r) or (p[1] in r) for r in records)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.0), squeeze=False)
    for ax, (train_key, val_key, label) in zip(axes[0], panels, strict=True):
        if train_key is not None:
            pts = [(r["step"], r[train_key]) for r in records if train_key in r]
            ax.plot(*zip(*pts, strict=True), lw=0.3, color="0.6", label="train batch")
        if val_key is not None:
            pts = [(r["step"], r[val_key]) for r in records if val_key in r]
            if pts:
                ax.plot(*zip(*pts, strict=True), lw=1.2, color="tab:blue", label="validation")
        ax.set_xlabel("step")
        ax.set_title(label, fontsize=9)
        if train_key == "fm":
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("logs", nargs="+", type=Path, help="metrics.jsonl files, in training order")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--title", default="")
    args = p.parse_args(argv)
    plot(read_log(args.logs), args.out, args.title)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
