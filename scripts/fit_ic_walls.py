#!/usr/bin/env python
"""Start the wall on a trained model's bonds (and angles) just beyond the data: a new model file.

The flow is unchanged; its energy gains a wall where the data end, which cuts off the mixtures'
density floor (a ~10 kT plateau along every bond up to 0.3 nm that lets long MD break bonds;
docs/training.md). The walls are fitted to the reference frames recorded before
``--max-frames-per-replica`` (use the frames the model was trained on, so frames recorded later
stay a fair test).

    python scripts/fit_ic_walls.py --model IN.pt --data DATA --max-frames-per-replica 55300 \\
        --kinds bonds,angles --margin 2 --out OUT.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    import torch

    from flowff.data.reference import load_reference_data
    from flowff.energy.builder import FlowModelConfig, build_energy, save_energy_model
    from flowff.energy.model_file import load_eager_state, read_metadata
    from flowff.ic.bounds import DEFAULT_WALL_MARGIN_STD, fit_ic_bounds, wall_bounds

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True, help="folder made by `flowff data`")
    p.add_argument("--max-frames-per-replica", type=int, default=None)
    p.add_argument("--kinds", default="bonds,angles", help="'bonds', 'angles' or both")
    p.add_argument("--margin", type=float, default=DEFAULT_WALL_MARGIN_STD,
                   help="standard deviations beyond the data's extremes")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)

    data = load_reference_data(args.data, args.max_frames_per_replica)
    metadata = read_metadata(args.model)
    state = load_eager_state(args.model)
    cfg = FlowModelConfig.from_dict(state["model_config"])
    model = build_energy(cfg)
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    fitted = fit_ic_bounds(model.ic, torch.as_tensor(data.positions), kinds, args.margin)
    cfg = FlowModelConfig.from_dict({**cfg.to_dict(), "ic_wall_bounds": wall_bounds(fitted)})
    walled = build_energy(cfg)
    walled.load_state_dict(state["state_dict"])
    extra = {key: metadata[key] for key in ("training",) if key in metadata}
    extra["ic_walls"] = {"fitted_on_frames": len(data), "kinds": list(kinds),
                         "margin_std": args.margin, "source_model": str(args.model)}
    save_energy_model(walled, cfg, data.topology_pdb, args.out, extra=extra)
    print(f"wrote {args.out}: walls on {', '.join(kinds)} fitted to {len(data)} frames")


if __name__ == "__main__":
    main()
