"""Training loop: Eq. 5 losses, Adam + StepLR, validation, checkpoints and resume, export.

Data parallel over processes with ``torchrun`` (gloo on CPU, NCCL on CUDA): each rank takes
every world-th frame of the epoch's shuffled order and gradients are averaged with all_reduce.
We average gradients ourselves instead of wrapping the model in DDP because force matching
differentiates twice (create_graph), which DDP's reducer hooks do not support.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from flowff.data.reference import check_same_system, load_reference_data, split_by_time_blocks
from flowff.energy.builder import (
    FlowModelConfig,
    build_energy,
    columns_with_new_transforms,
    load_energy_and_config,
    load_matching_weights,
    save_energy_model,
)
from flowff.energy.flow_energy import kT_kJ_per_mol
from flowff.ic.bounds import fit_ic_bounds, wall_bounds
from flowff.ic.zmatrix import ZMatrix
from flowff.training.config import TrainConfig
from flowff.training.losses import (
    force_matching_loss,
    nll_loss,
    relative_force_matching_loss,
    reverse_kl_loss,
)
from flowff.utils.atomic import atomic_path, write_json
from flowff.utils.locking import exclusive_folder_lock

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
MODEL = "model.pt"


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: torch.device) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size())


def _pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", "0"))
            return torch.device(f"cuda:{local}")
        return torch.device("cpu")
    return torch.device(name)


class Trainer:
    """Trains a flow energy on reference MD frames; resumable from ``out_dir``."""

    def __init__(self, config: TrainConfig, progress: bool = True) -> None:
        self.cfg = config
        self.out = Path(config.out_dir)
        self.device = _pick_device(config.device)
        self.dist = _init_distributed(self.device)
        self.dtype = getattr(torch, config.dtype)
        self.progress = progress and self.dist.main
        torch.manual_seed(config.seed)

        data = load_reference_data(config.data_dir, config.max_frames_per_replica)
        self.temperature_K = data.temperature_K
        self.kT = kT_kJ_per_mol(data.temperature_K)
        self.topology_pdb = data.topology_pdb
        train, val, test = split_by_time_blocks(data, config.split, config.block_ps,
                                                 config.split_seed)
        self.split_sizes = {"train": len(train), "val": len(val), "test": len(test)}
        if len(val) == 0 or len(train) == 0:
            raise ValueError(
                f"the time-block split left no {'validation' if len(train) else 'training'} "
                f"frames ({len(data)} frames cut into blocks of {config.block_ps} ps); "
                "use a smaller block_ps or more data"
            )
        train_x, train_f = [data.positions[train]], [data.forces[train]]
        for extra_dir in config.extra_data_dirs:  # their validation and test blocks go unused
            extra = load_reference_data(extra_dir, config.max_frames_per_replica)
            check_same_system(config.data_dir, extra_dir)
            extra_train = split_by_time_blocks(extra, config.split, config.block_ps,
                                               config.split_seed)[0]
            if len(extra_train) == 0:
                raise ValueError(f"{extra_dir}: the time-block split left no training frames")
            train_x.append(extra.positions[extra_train])
            train_f.append(extra.forces[extra_train])
        #: training frames per folder (data_dir first), in the order of train_x
        self.folder_sizes = [len(x) for x in train_x]
        if config.extra_data_dirs:
            self.split_sizes["train_by_folder"] = self.folder_sizes
        self.train_x = torch.as_tensor(np.concatenate(train_x), dtype=self.dtype,
                                       device=self.device)
        self.train_f = torch.as_tensor(np.concatenate(train_f), dtype=self.dtype,
                                       device=self.device)
        val_pick = val[np.linspace(0, len(val) - 1, min(config.val_frames, len(val))).astype(int)]
        self.val_x = torch.as_tensor(data.positions[val_pick], dtype=self.dtype,
                                     device=self.device)
        self.val_f = torch.as_tensor(data.forces[val_pick], dtype=self.dtype, device=self.device)

        model_cfg = FlowModelConfig.from_dict(
            {**config.model, "temperature_K": data.temperature_K}
        )
        if config.fit_ic_bounds or config.fit_ic_walls:  # fitted to the training frames
            ic = build_energy(model_cfg, topology_pdb=self.topology_pdb).ic  # any intervals do
            frames = torch.as_tensor(np.concatenate(train_x))  # every folder's training frames
            fitted: dict[str, Any] = {}
            if config.fit_ic_bounds:  # the flow's per-column intervals
                fitted.update(fit_ic_bounds(ic, frames, config.fit_ic_bounds,
                                            config.ic_bounds_margin_std))
            if config.fit_ic_walls:  # where the wall on h starts
                fitted["ic_wall_bounds"] = wall_bounds(fit_ic_bounds(
                    ic, frames, config.fit_ic_walls, config.ic_walls_margin_std))
            model_cfg = FlowModelConfig.from_dict({**model_cfg.to_dict(), **fitted})
        self.model_cfg = model_cfg
        self.model = build_energy(model_cfg, topology_pdb=self.topology_pdb).to(
            self.device, self.dtype
        )
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, 1, config.lr_gamma)
        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self._evaluator = None  # the classical force field, made once when a term needs it
        self._target = None
        if config.w_kl > 0:
            self._target = self._make_target()
        self._tail = None
        if config.w_fm_tail > 0:
            from flowff.training.tail import TailFrames

            self._tail = TailFrames(
                self.model.ic, self._classical(), config.tail_sigma, config.tail_fraction,
                seed=config.seed * 1_000_003 + 17 + self.dist.rank,
            )
        self.ema = self._make_ema() if config.ema_decay is not None else None
        self._resume()

    @property
    def exported_model(self) -> torch.nn.Module:
        """The weights that are validated and exported: the moving average when ``ema_decay``
        is set, else the trained weights themselves."""
        if self.ema is None or int(self.ema.n_averaged) == 0:
            return self.model
        return self.ema.module

    def _update_ema(self) -> None:
        if self.ema is None:
            return
        self.ema.update_parameters(self.model)
        with torch.no_grad():  # buffers (intervals, walls, indices) are copied, not averaged
            for mine, theirs in zip(self.ema.module.buffers(), self.model.buffers(), strict=True):
                mine.copy_(theirs)

    def _make_ema(self) -> torch.optim.swa_utils.AveragedModel:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        # buffers (fixed IC intervals, walls) are copied, not averaged: use_buffers=False
        return AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(self.cfg.ema_decay))

    # -- setup -----------------------------------------------------------------------------
    def _classical(self):
        """The data's classical force field as an OpenMMEnergyEvaluator (Reference), one per
        trainer."""
        if self._evaluator is None:
            import openmm.app as app

            from flowff.data.reference import build_classical_system
            from flowff.energy.openmm_energy import OpenMMEnergyEvaluator

            cfg = json.loads((Path(self.cfg.data_dir) / "config.json").read_text())["config"]
            pdb = app.PDBFile(str(self.topology_pdb))
            self._evaluator = OpenMMEnergyEvaluator(
                build_classical_system(pdb.topology, tuple(cfg["forcefield"]))
            )
        return self._evaluator

    def _make_target(self):
        from flowff.energy.openmm_energy import openmm_energy

        evaluator = self._classical()
        kT = self.kT
        return lambda x: openmm_energy(x, evaluator) / kT

    def _resume(self) -> None:
        ckpt_path = self.out / CHECKPOINT
        config_path = self.out / "config.json"
        if config_path.exists():
            saved = json.loads(json.dumps(  # in today's layout (fields added since filled in)
                TrainConfig.from_saved(json.loads(config_path.read_text())).to_dict()))
            now = json.loads(json.dumps(self.cfg.to_dict()))
            # may change on resume: how long, how often, whether weights are averaged, and
            # where the folder is (a run folder copied or moved elsewhere resumes)
            for key in ("max_steps", "epochs", "val_every_steps", "checkpoint_every_steps",
                        "ema_decay", "out_dir"):
                saved.pop(key, None)
                now.pop(key, None)
            if saved != now:
                diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
                raise ValueError(
                    f"{self.out} holds a run with another configuration (differs in {diff}); "
                    "use a new --out folder"
                )
        elif self.dist.main:  # a new folder; a resumed leg records its own in train()
            write_json(config_path, self.cfg.to_dict())
        if not ckpt_path.exists():
            if self.cfg.init_from is not None:
                self._init_from(Path(self.cfg.init_from))
            return
        ckpt = torch.load(ckpt_path, map_location=self.device, weights_only=False)
        saved_sizes = ckpt.get("split_sizes")
        if saved_sizes is not None and saved_sizes != self.split_sizes:
            raise ValueError(
                f"the reference data changed since {self.out} started: split sizes "
                f"{saved_sizes} then, {self.split_sizes} now (grown data reshuffles the time "
                "blocks, so frames would move between train, validation and test); pass "
                "--max-frames-per-replica to use the data of then, or start a new --out folder"
            )
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.epoch, self.step_in_epoch = ckpt["epoch"], ckpt["step_in_epoch"]
        self.global_step = ckpt["global_step"]
        if self.ema is not None:
            if ckpt.get("ema") is not None:
                self.ema.load_state_dict(ckpt["ema"])
            elif self.progress:  # switched on now: the first update copies the weights
                tqdm.write(f"weight averaging starts at step {self.global_step}")
        torch.set_rng_state(ckpt["torch_rng"])
        if self._tail is not None and "tail_rng" in ckpt:
            self._tail.generator.set_state(ckpt["tail_rng"][self.dist.rank])
        if self.progress:
            tqdm.write(f"resumed from {ckpt_path} at epoch {self.epoch}, step {self.global_step}")

    def _init_from(self, path: Path) -> None:
        """Start from the weights of a model file (fine-tuning); coupling layers this run's
        architecture adds (e.g. angle couplings) start near the identity."""
        start, start_cfg = load_energy_and_config(path)
        start_z, this_z = (ZMatrix.from_dict(c.zmatrix) for c in (start_cfg, self.model_cfg))
        if (start_z.frame, start_z.rows) != (this_z.frame, this_z.rows):
            raise ValueError(
                f"init_from {path}: its Z-matrix differs from this run's (hydrogen_torsions "
                f"{start_cfg.hydrogen_torsions!r} there, {self.model_cfg.hydrogen_torsions!r} "
                "here), so its weights act on other internal coordinates; pass "
                f"--hydrogen-torsions {start_cfg.hydrogen_torsions} (or the same topology)"
            )
        changed = torch.nonzero(
            ~torch.isclose(start.ic.column_widths(), self.model.ic.column_widths())
            | ~torch.isclose(start.ic.column_lows(), self.model.ic.column_lows())
        ).flatten().tolist()
        new_kinds = columns_with_new_transforms(start_cfg, self.model_cfg, self.model.ic)
        try:
            new_layers = load_matching_weights(self.model, start.state_dict(), set(changed),
                                               new_kinds)
        except (ValueError, KeyError) as error:
            raise ValueError(
                f"init_from {path}: its architecture differs from this run's model config "
                f"({str(error).splitlines()[0]})"
            ) from None
        if self.progress:
            grown = (f"; coupling layers {new_layers} start near the identity (new, on "
                     f"{len(changed)} columns with new intervals, or on {len(new_kinds)} "
                     f"columns with a new transform kind)" if new_layers else "")
            tqdm.write(f"starting from the weights of {path}{grown}")

    def _checkpoint(self) -> None:
        tail_rng = None
        if self._tail is not None:
            tail_rng = self._gather_states(self._tail.generator.get_state())
        if not self.dist.main:
            return
        state = {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
            "torch_rng": torch.get_rng_state(), "split_sizes": self.split_sizes,
            "tail_rng": tail_rng,
            "ema": None if self.ema is None else self.ema.state_dict(),
        }
        with atomic_path(self.out / CHECKPOINT) as tmp:
            torch.save(state, tmp)

    def _log(self, record: dict[str, Any]) -> None:
        if not self.dist.main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / METRICS, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    # -- losses ----------------------------------------------------------------------------
    def _sample(self, n: int):
        from flowff.energy.sampling import sample_positions

        return sample_positions(self.model, n)

    def loss_terms(self, x: torch.Tensor, f: torch.Tensor) -> dict[str, torch.Tensor]:
        """The weighted loss and its parts for a batch (positions nm, forces kJ/mol/nm)."""
        cfg = self.cfg
        terms: dict[str, torch.Tensor] = {}
        total = torch.zeros((), dtype=self.dtype, device=self.device)
        if cfg.w_nll > 0:
            terms["nll"] = nll_loss(self.model, x)
            total = total + cfg.w_nll * terms["nll"]
        if cfg.w_fm > 0:
            terms["fm"] = force_matching_loss(self.model, x, f, self.kT)
            total = total + cfg.w_fm * terms["fm"]
        if self._tail is not None:
            tail_x, tail_f = self._tail(x)
            terms["fm_tail"] = relative_force_matching_loss(self.model, tail_x, tail_f)
            total = total + cfg.w_fm_tail * terms["fm_tail"]
        if cfg.w_kl > 0:
            terms["kl"] = reverse_kl_loss(self._sample, self._target, cfg.kl_batch_size)
            total = total + cfg.w_kl * terms["kl"]
        terms["loss"] = total
        return terms

    def validate(self, model: torch.nn.Module | None = None) -> dict[str, float]:
        """NLL (kT) and FME ((kT/nm)^2) on the validation frames, of ``model`` (default: the
        weights that are exported, i.e. the moving average when ``ema_decay`` is set)."""
        model = self.exported_model if model is None else model
        nll, fme, n = 0.0, 0.0, 0
        for i in range(0, len(self.val_x), 256):
            x, f = self.val_x[i:i + 256], self.val_f[i:i + 256]
            with torch.no_grad():
                nll += float(nll_loss(model, x)) * len(x)
            from flowff.training.losses import flow_forces_kT

            pred = flow_forces_kT(model, x, create_graph=False)
            fme += float(((pred - f / self.kT) ** 2).sum(-1).mean()) * len(x)
            n += len(x)
        return {"val_nll": nll / n, "val_fme": fme / n, "val_force_rmse": math.sqrt(fme / n / 3)}

    # -- loop ------------------------------------------------------------------------------
    def _epoch_order(self, epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
        if self.cfg.data_shares:  # each folder's share of the draws, uniform within it
            shares = torch.tensor(self.cfg.data_shares, dtype=torch.float64)
            sizes = torch.tensor(self.folder_sizes)
            per_frame = torch.repeat_interleave(shares / shares.sum() / sizes, sizes)
            order = torch.multinomial(per_frame, len(self.train_x), replacement=True,
                                      generator=gen)
        else:
            order = torch.randperm(len(self.train_x), generator=gen)
        return order[self.dist.rank::self.dist.world]

    def _gather_states(self, state: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's generator state (byte tensors of equal size), on every rank."""
        if self.dist.world <= 1:
            return [state]
        states = [torch.empty_like(state) for _ in range(self.dist.world)]
        dist.all_gather(states, state)
        return states

    def _average_gradients(self) -> None:
        if self.dist.world <= 1:
            return
        for p in self.model.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad /= self.dist.world

    def train(self) -> Path:
        """Run to the configured epochs (or max_steps); export and return the model file path.

        The main process holds a lock on ``out_dir`` meanwhile: a second run on the same folder
        fails at once instead of interleaving checkpoints.
        """
        if not self.dist.main:
            return self._train()
        with exclusive_folder_lock(self.out, "the training run"):
            return self._train()

    def _train(self) -> Path:
        cfg = self.cfg
        if self.dist.main:  # record what this leg runs with (max_steps, ema_decay, ...)
            write_json(self.out / "config.json", cfg.to_dict())
        steps_per_epoch = len(self._epoch_order(0)) // cfg.batch_size
        if steps_per_epoch < 1:
            raise ValueError(
                f"batch size {cfg.batch_size} exceeds the {len(self.train_x)} training frames"
            )
        total = cfg.epochs * steps_per_epoch
        if cfg.max_steps is not None:
            total = min(total, cfg.max_steps)
        bar = tqdm(total=total, initial=self.global_step, desc="train", unit="step",
                   disable=not self.progress)
        t0 = time.time()
        while self.epoch < cfg.epochs and self.global_step < total:
            order = self._epoch_order(self.epoch)
            while self.step_in_epoch < steps_per_epoch and self.global_step < total:
                idx = order[self.step_in_epoch * cfg.batch_size:
                            (self.step_in_epoch + 1) * cfg.batch_size]
                terms = self.loss_terms(self.train_x[idx], self.train_f[idx])
                self.optimizer.zero_grad(set_to_none=True)
                terms["loss"].backward()
                self._average_gradients()
                grad_norm = None
                if cfg.clip_grad_norm is not None:
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(
                        self.model.parameters(), cfg.clip_grad_norm))
                if not torch.isfinite(terms["loss"]):
                    raise FloatingPointError(
                        f"non-finite loss at step {self.global_step}: "
                        f"{ {k: float(v.detach()) for k, v in terms.items()} }"
                    )
                self.optimizer.step()
                self._update_ema()
                self.step_in_epoch += 1
                self.global_step += 1
                record = {"step": self.global_step, "epoch": self.epoch,
                          "lr": self.optimizer.param_groups[0]["lr"],
                          "time_s": time.time() - t0,
                          **{k: float(v.detach()) for k, v in terms.items()}}
                if grad_norm is not None:
                    record["grad_norm"] = grad_norm
                if self.global_step % cfg.val_every_steps == 0:
                    record.update(self.validate())
                    if self.ema is not None:  # the raw weights too, to show what averaging gains
                        raw = self.validate(self.model)
                        record.update(val_nll_raw=raw["val_nll"],
                                      val_force_rmse_raw=raw["val_force_rmse"])
                    bar.set_postfix(val_nll=f"{record['val_nll']:.2f}",
                                    rmse=f"{record['val_force_rmse']:.1f}")
                self._log(record)
                bar.update(1)
                if self.global_step % cfg.checkpoint_every_steps == 0:
                    self._checkpoint()
            if self.step_in_epoch >= steps_per_epoch:
                self.epoch += 1
                self.step_in_epoch = 0
                self.scheduler.step()
                self._checkpoint()
        bar.close()
        final = self.validate()
        self._log({"step": self.global_step, "final": True, **final})
        self._checkpoint()
        path = self.out / MODEL
        if self.dist.main:
            save_energy_model(self.exported_model, self.model_cfg, self.topology_pdb, path,
                              extra={"training": {**cfg.to_dict(), "split_sizes": self.split_sizes,
                                                  "steps": self.global_step, **final}})
        if self.dist.world > 1:
            dist.barrier()
        return path
