"""Training configuration: every choice of a run, saved beside its checkpoints as JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowff.ic.bounds import DEFAULT_MARGIN_STD, DEFAULT_WALL_MARGIN_STD
from flowff.training.tail import DEFAULT_TAIL_FRACTION, DEFAULT_TAIL_SIGMA
from flowff.utils.config import JsonConfig


@dataclass
class TrainConfig(JsonConfig):
    """A training run (units: forces in the data kJ/mol/nm, converted to kT/nm for FM).

    ``model`` is a :class:`flowff.energy.builder.FlowModelConfig` as a dict.
    """

    config_name = "training config"

    data_dir: str
    out_dir: str
    model: dict[str, Any] = field(default_factory=dict)
    #: more data folders of the same molecule, force field and temperature (e.g. MD started
    #: in a rarely visited state); each is split into time blocks like ``data_dir`` and its
    #: training frames join the training set; validation stays on ``data_dir``'s frames
    extra_data_dirs: tuple[str, ...] = ()
    #: share of the training draws taken from each folder (``data_dir`` first, then
    #: ``extra_data_dirs``; normalised): many frames of a rare state can then train its shape
    #: while it keeps its reference population. Frames are drawn with replacement, as many
    #: per epoch as there are training frames. Empty: every frame once per epoch
    data_shares: tuple[float, ...] = ()
    w_nll: float = 0.999
    w_kl: float = 0.0
    w_fm: float = 0.001
    #: weight of relative force matching on tail frames (flowff.training.tail), 0 = off
    w_fm_tail: float = 0.0
    #: tail noise widths: bonds nm, angles rad, torsions rad
    tail_sigma: tuple[float, float, float] = DEFAULT_TAIL_SIGMA
    #: probability that a coordinate of a tail frame is perturbed
    tail_fraction: float = DEFAULT_TAIL_FRACTION
    #: a model file to start from (fine-tuning): the architecture of ``model``, or that with
    #: coupling layers added (they start near the identity)
    init_from: str | None = None
    #: fit per-column intervals of these IC types ("bonds", "angles") to the training frames
    #: (flowff.ic.bounds); the fitted intervals are written into the model config
    fit_ic_bounds: tuple[str, ...] = ()
    #: margin of fitted intervals beyond the data's extremes, in standard deviations
    ic_bounds_margin_std: float = DEFAULT_MARGIN_STD
    #: start the wall on these IC types ("bonds", "angles") just beyond the training frames
    #: (flowff.ic.bounds.wall_bounds), keeping the flow's intervals
    fit_ic_walls: tuple[str, ...] = ()
    #: margin of fitted walls beyond the data's extremes, in standard deviations
    ic_walls_margin_std: float = DEFAULT_WALL_MARGIN_STD
    epochs: int = 10
    max_steps: int | None = None
    batch_size: int = 128
    kl_batch_size: int = 64
    lr: float = 5.0e-4
    lr_gamma: float = 0.7
    clip_grad_norm: float | None = None
    #: keep an exponential moving average of the weights (decay per step, e.g. 0.999: a memory
    #: of ~1000 steps); validation and the exported model then use the averaged weights, which
    #: removes much of the step-to-step noise of force-matching gradients. None: off
    ema_decay: float | None = None
    seed: int = 0
    #: seed of the time-block split, apart from ``seed`` so that runs with other training seeds
    #: (fine-tuning stages, replicas) hold out the same blocks; configs written before it
    #: existed split with ``seed`` (``from_saved`` restores that)
    split_seed: int = 0
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    block_ps: float = 1000.0
    max_frames_per_replica: int | None = None
    val_every_steps: int = 500
    val_frames: int = 2000
    checkpoint_every_steps: int = 200
    dtype: str = "float32"
    device: str = "auto"

    @classmethod
    def from_saved(cls, data: dict[str, Any]) -> TrainConfig:
        """The config a run saved (its config.json); runs saved before ``split_seed`` existed
        split with their ``seed``."""
        if "split_seed" not in data:
            data = {**data, "split_seed": data.get("seed", 0)}
        return cls.from_dict(data)

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.epochs < 1:
            raise ValueError("batch_size and epochs must be >= 1")
        weights = (self.w_nll, self.w_kl, self.w_fm, self.w_fm_tail)
        if min(weights) < 0 or sum(weights) <= 0:
            raise ValueError("loss weights must be non-negative with a positive sum")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        self.split = tuple(self.split)  # JSON gives lists
        self.extra_data_dirs = tuple(str(d) for d in self.extra_data_dirs)
        self.data_shares = tuple(float(v) for v in self.data_shares)
        if self.data_shares:
            folders = 1 + len(self.extra_data_dirs)
            if len(self.data_shares) != folders:
                raise ValueError(
                    f"data_shares needs one share per data folder ({folders}: data_dir, then "
                    f"extra_data_dirs), got {len(self.data_shares)}"
                )
            if min(self.data_shares) < 0 or sum(self.data_shares) <= 0:
                raise ValueError(
                    f"data_shares must be non-negative with a positive sum, got {self.data_shares}"
                )
        for name in ("fit_ic_bounds", "fit_ic_walls"):
            kinds = tuple(str(kind) for kind in getattr(self, name))
            setattr(self, name, kinds)
            unknown = set(kinds) - {"bonds", "angles"}
            if unknown:
                raise ValueError(f"{name} may name 'bonds' and 'angles', got {sorted(unknown)}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {self.ema_decay}")
        self.tail_sigma = tuple(float(v) for v in self.tail_sigma)
        if len(self.tail_sigma) != 3 or min(self.tail_sigma) < 0:
            raise ValueError(f"tail_sigma must be 3 non-negative widths, got {self.tail_sigma}")

    @classmethod
    def from_json(cls, path: str | Path) -> TrainConfig:
        """Read a config file written by :meth:`to_dict` (or by hand)."""
        return cls.from_dict(json.loads(Path(path).read_text()))
