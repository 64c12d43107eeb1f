"""scripts/fit_ic_walls.py: a trained model with walls just beyond the data, same flow."""

from __future__ import annotations

import torch

from flowff.energy.builder import load_energy_module
from flowff.energy.model_file import read_metadata
from flowff.openmm.classical import load_alanine_dipeptide
from flowff.training.config import TrainConfig
from flowff.training.trainer import Trainer


def test_walls_are_added_and_the_flow_kept(tiny_reference_data, tmp_path, load_script) -> None:
    cfg = TrainConfig(data_dir=str(tiny_reference_data), out_dir=str(tmp_path / "run"),
                      model={"num_components": 2, "hidden": [8], "torsion_coupling_pairs": 1},
                      batch_size=8, max_steps=2, block_ps=0.05, val_every_steps=5,
                      val_frames=10)
    source = Trainer(cfg, progress=False).train()
    out = tmp_path / "walled.pt"
    load_script("fit_ic_walls").main(["--model", str(source), "--data", str(tiny_reference_data),
                                      "--kinds", "bonds", "--out", str(out)])
    before, after = (load_energy_module(p) for p in (source, out))
    assert len(after.ic_wall.upper) == len(before.ic_wall.upper)
    assert float(after.ic_wall.upper[:21].max()) < 1.0  # inside the 0.05-0.3 nm interval
    assert bool((after.ic_wall.upper[21:] == before.ic_wall.upper[21:]).all())  # angles kept
    for key, value in before.state_dict().items():
        torch.testing.assert_close(after.state_dict()[key], value, rtol=0, atol=0, msg=key)
    meta = read_metadata(out)
    assert meta["ic_walls"]["kinds"] == ["bonds"] and "training" in meta
    scripted = load_energy_module(out, mode="script")  # the MD module carries the walls
    _, positions = load_alanine_dipeptide()
    x = 1.5 * torch.tensor(positions, dtype=torch.float64)  # every bond stretched by half
    with torch.no_grad():
        assert float(scripted(x)) > float(before(x)) + 100.0
