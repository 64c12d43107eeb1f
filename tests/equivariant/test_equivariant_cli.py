"""``flowff equivariant`` subcommand: mcmc -> train -> export round trip (not yet wired)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from flowff._torchscript import quiet_jit
from flowff.cli import equivariant as cli


def parse(argv):
    parser = argparse.ArgumentParser(prog="flowff")
    cli.register(parser.add_subparsers())
    return parser.parse_args(argv)


def test_mcmc_train_export(tmp_path, capsys):
    data, model, energy = tmp_path / "dw4.npz", tmp_path / "flow.pt", tmp_path / "energy.pt"
    args = parse(["equivariant", "mcmc", "--system", "dw4", "--samples", "32", "--chains", "8",
                  "--out", str(data)])
    assert args.func(args) == 0
    with np.load(data) as npz:
        assert npz["positions"].shape == (32, 4, 2) and npz["energies_kT"].shape == (32,)
    args = parse(["equivariant", "train", "--system", "dw4", "--data", str(data),
                  "--iterations", "2", "--out", str(model)])
    assert args.func(args) == 0
    args = parse(["equivariant", "export", "--model", str(model), "--out", str(energy)])
    assert args.func(args) == 0
    with quiet_jit():
        module = torch.jit.load(str(energy))
    x = torch.zeros(4, 3, dtype=torch.float64)
    x[:, :2] = torch.from_numpy(np.load(data)["positions"][0])
    assert torch.isfinite(module(x))
    assert "TorchScript energy" in capsys.readouterr().out


def test_missing_files_raise(tmp_path):
    args = parse(["equivariant", "train", "--system", "dw4", "--data", str(tmp_path / "no.npz"),
                  "--out", str(tmp_path / "m.pt")])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        args.func(args)
