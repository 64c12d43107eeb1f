"""`flowff train` options map onto the training config."""

from __future__ import annotations

import argparse

import pytest

from flowff.cli.train import config_from_args, register


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["train", "--data", "d", "--out", "o", *argv])


def test_defaults_leave_the_config_defaults() -> None:
    cfg = config_from_args(_args())
    assert cfg.w_fm_tail == 0.0 and cfg.init_from is None
    assert "transform_options" not in cfg.model


def test_smoothness_tail_and_init_options() -> None:
    cfg = config_from_args(_args("--max-concentration", "30", "--w-fm-tail", "50",
                                 "--tail-sigma", "0.002,0.2,0.3", "--init-from", "m.pt",
                                 "--components", "4", "--angle-coupling-pairs", "1"))
    assert cfg.model["transform_options"] == {"max_concentration": 30.0}
    assert cfg.model["num_components"] == 4 and cfg.model["angle_coupling_pairs"] == 1
    assert cfg.w_fm_tail == 50.0 and cfg.tail_sigma == (0.002, 0.2, 0.3)
    assert cfg.init_from == "m.pt"


def test_torsion_floor_and_rotor_options() -> None:
    cfg = config_from_args(_args("--torsion-min-identity-share", "0.01",
                                 "--rotor-coupling-pairs", "1"))
    assert cfg.model["torsion_transform_options"] == {"min_identity_share": 0.01}
    assert cfg.model["rotor_coupling_pairs"] == 1
    assert "transform_options" not in cfg.model


def test_split_seed_option() -> None:
    assert config_from_args(_args("--seed", "7")).split_seed == 0
    assert config_from_args(_args("--seed", "7", "--split-seed", "3")).split_seed == 3


def test_ema_decay_option() -> None:
    assert config_from_args(_args()).ema_decay is None
    assert config_from_args(_args("--ema-decay", "0.999")).ema_decay == 0.999
    with pytest.raises(ValueError, match="ema_decay"):
        config_from_args(_args("--ema-decay", "1.5"))


def test_hydrogen_torsions_option() -> None:
    assert "hydrogen_torsions" not in config_from_args(_args()).model
    cfg = config_from_args(_args("--hydrogen-torsions", "chain"))
    assert cfg.model["hydrogen_torsions"] == "chain"
    with pytest.raises(SystemExit):
        config_from_args(_args("--hydrogen-torsions", "proper"))


def test_bad_tail_sigma_is_refused() -> None:
    with pytest.raises(ValueError, match="tail_sigma"):
        config_from_args(_args("--tail-sigma", "0.1,0.2"))


def test_fit_ic_bounds_options() -> None:
    assert config_from_args(_args()).fit_ic_bounds == ()
    cfg = config_from_args(_args("--fit-ic-bounds", "bonds,angles", "--ic-bounds-margin", "4"))
    assert cfg.fit_ic_bounds == ("bonds", "angles") and cfg.ic_bounds_margin_std == 4.0
    assert config_from_args(_args("--fit-ic-bounds", "none")).fit_ic_bounds == ()
    with pytest.raises(ValueError, match="fit_ic_bounds"):
        config_from_args(_args("--fit-ic-bounds", "bond"))


def test_bond_max_concentration_goes_to_the_bond_layer_options() -> None:
    cfg = config_from_args(_args("--bond-max-concentration", "30", "--max-concentration", "500"))
    assert cfg.model["bond_transform_options"] == {"max_concentration": 30.0}
    assert cfg.model["transform_options"] == {"max_concentration": 500.0}


def test_fit_ic_walls_options() -> None:
    cfg = config_from_args(_args("--fit-ic-walls", "bonds", "--ic-walls-margin", "1.5"))
    assert cfg.fit_ic_walls == ("bonds",) and cfg.ic_walls_margin_std == 1.5
    with pytest.raises(ValueError, match="fit_ic_walls"):
        config_from_args(_args("--fit-ic-walls", "torsions"))


def test_bond_and_angle_transform_options() -> None:
    cfg = config_from_args(_args("--bond-transform", "gaussian", "--bond-min-width", "0.008",
                                 "--angle-transform", "gaussian", "--angle-components", "2",
                                 "--bond-max-concentration", "30"))
    assert cfg.model["bond_transform"] == "gaussian"
    assert cfg.model["bond_transform_options"] == {"max_concentration": 30.0, "min_width": 0.008}
    assert cfg.model["angle_transform"] == "gaussian"
    assert cfg.model["angle_transform_options"] == {"num_components": 2}
    assert "bond_transform" not in config_from_args(_args()).model
    with pytest.raises(SystemExit):
        _args("--bond-transform", "affine")


def test_extra_data_and_shares_options() -> None:
    cfg = config_from_args(_args("--extra-data", "a", "--extra-data", "b",
                                 "--data-shares", "0.9,0.05,0.05"))
    assert cfg.extra_data_dirs == ("a", "b")
    assert cfg.data_shares == (0.9, 0.05, 0.05)
    with pytest.raises(ValueError, match="one share per data folder"):
        config_from_args(_args("--extra-data", "a", "--data-shares", "1"))
