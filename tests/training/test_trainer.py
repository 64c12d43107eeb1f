"""Training: Eq. 5 losses, determinism, resume, guards, DDP with torchrun (gloo)."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from flowff.energy.builder import load_energy_module
from flowff.training.config import TrainConfig
from flowff.training.trainer import Trainer

SMALL = {"num_components": 2, "hidden": [16, 16], "torsion_coupling_pairs": 1}


def _trained_two_steps(data, out) -> tuple[Trainer, Path]:
    """A trainer of the small model after 2 steps, and its model file (a start for init_from)."""
    trainer = Trainer(_config(data, out, max_steps=2), progress=False)
    return trainer, trainer.train()


def _config(data, out, **kw) -> TrainConfig:
    base = dict(data_dir=str(data), out_dir=str(out), model=SMALL, batch_size=8, epochs=50,
                block_ps=0.05, val_every_steps=5, val_frames=10, checkpoint_every_steps=2,
                lr=3e-3, lr_gamma=1.0)
    base.update(kw)
    return TrainConfig(**base)


def test_nll_training_improves_and_logs(tiny_reference_data, tmp_path) -> None:
    trainer = Trainer(_config(tiny_reference_data, tmp_path, w_nll=1.0, w_fm=0.0,
                              max_steps=25, lr=2e-2), progress=False)
    before = trainer.validate()
    trainer.train()
    after = trainer.validate()
    assert after["val_nll"] < before["val_nll"] - 1.0
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "final" not in r] == list(range(1, 26))
    assert all(np.isfinite(r["loss"]) for r in lines if "loss" in r)
    reloaded = load_energy_module(tmp_path / "model.pt", mode="eager")
    x = trainer.val_x[:3].to(torch.float64)
    torch.testing.assert_close(reloaded.reduced_energy(x),
                               trainer.model.to(torch.float64).reduced_energy(x))


def test_force_matching_gradient_is_a_descent_direction(tiny_reference_data, tmp_path) -> None:
    """A small step against the FM gradient lowers the FM loss of the same batch (float64)."""
    trainer = Trainer(_config(tiny_reference_data, tmp_path, w_nll=0.0, w_fm=1.0,
                              dtype="float64"), progress=False)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    x, f = trainer.train_x[:8], trainer.train_f[:8]
    loss0 = trainer.loss_terms(x, f)["loss"]
    grads = torch.autograd.grad(loss0, list(trainer.model.parameters()))
    norm2 = sum(float((g * g).sum()) for g in grads)
    step = 1e-6 * float(loss0.detach()) / norm2  # predicted decrease: 1e-4 % of the loss
    with torch.no_grad():
        for p, g in zip(trainer.model.parameters(), grads, strict=True):
            p.sub_(step * g)
    loss1 = float(trainer.loss_terms(x, f)["loss"].detach())
    predicted = step * norm2
    assert float(loss0.detach()) - loss1 == pytest.approx(predicted, rel=0.2)


def test_force_matching_reaches_every_parameter(tiny_reference_data, tmp_path) -> None:
    """FM needs second derivatives of the flow: every parameter gets a gradient from FM alone.

    (At initialisation the conditioners' last layers are zero, which zeroes the hidden layers'
    gradients of any loss, so the parameters are moved off the initialisation first.)"""
    trainer = Trainer(_config(tiny_reference_data, tmp_path, w_nll=0.0, w_fm=1.0),
                      progress=False)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    terms = trainer.loss_terms(trainer.train_x[:4], trainer.train_f[:4])
    assert set(terms) == {"fm", "loss"}
    terms["loss"].backward()
    missing = [n for n, p in trainer.model.named_parameters()
               if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not missing, missing


def test_resume_continues_exactly(tiny_reference_data, tmp_path) -> None:
    straight = Trainer(_config(tiny_reference_data, tmp_path / "a", max_steps=8),
                       progress=False)
    straight.train()
    Trainer(_config(tiny_reference_data, tmp_path / "b", max_steps=4), progress=False).train()
    resumed = Trainer(_config(tiny_reference_data, tmp_path / "b", max_steps=8), progress=False)
    assert resumed.global_step == 4
    resumed.train()
    for (name, p), q in zip(straight.model.named_parameters(), resumed.model.parameters(),
                            strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)


def test_copied_run_folder_resumes(tiny_reference_data, tmp_path) -> None:
    """A run folder copied elsewhere (e.g. to branch a run) resumes from its checkpoint."""
    Trainer(_config(tiny_reference_data, tmp_path / "a", max_steps=4), progress=False).train()
    shutil.copytree(tmp_path / "a", tmp_path / "copy")
    resumed = Trainer(_config(tiny_reference_data, tmp_path / "copy", max_steps=6),
                      progress=False)
    assert resumed.global_step == 4
    resumed.train()  # the leg records its configuration once it holds the folder
    saved = json.loads((tmp_path / "copy" / "config.json").read_text())
    assert saved["out_dir"] == str(tmp_path / "copy")


def test_ema_weights_follow_the_recursion_and_are_exported(tiny_reference_data,
                                                          tmp_path) -> None:
    """ema_decay d: e_1 = p_1, e_k = d e_(k-1) + (1 - d) p_k over the optimizer's steps; the
    averaged weights are validated and exported, the raw ones keep training."""
    decay = 0.6
    trainer = Trainer(_config(tiny_reference_data, tmp_path, max_steps=5, ema_decay=decay,
                              lr=2e-2), progress=False)
    history: list[list[torch.Tensor]] = []
    trainer.optimizer.register_step_post_hook(
        lambda *_: history.append([p.detach().clone() for p in trainer.model.parameters()]))
    path = trainer.train()
    assert len(history) == 5
    expected = history[0]
    for params in history[1:]:
        expected = [decay * e + (1 - decay) * p for e, p in zip(expected, params, strict=True)]
    for e, q in zip(expected, trainer.ema.module.parameters(), strict=True):
        torch.testing.assert_close(q, e, rtol=1e-6, atol=1e-7)
    x = trainer.val_x[:3].to(torch.float64)
    with torch.no_grad():
        averaged = copy.deepcopy(trainer.ema.module).to(torch.float64).reduced_energy(x)
        raw = copy.deepcopy(trainer.model).to(torch.float64).reduced_energy(x)
        exported = load_energy_module(path, mode="eager").reduced_energy(x)
    assert float((averaged - raw).abs().max()) > 1e-4  # averaging changed something
    torch.testing.assert_close(exported, averaged)
    last = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    validated = [r for r in last if "val_force_rmse_raw" in r]
    assert validated and validated[0]["val_force_rmse"] != validated[0]["val_force_rmse_raw"]


def test_ema_resumes_exactly_and_can_start_on_resume(tiny_reference_data, tmp_path) -> None:
    straight = Trainer(_config(tiny_reference_data, tmp_path / "a", max_steps=6,
                               ema_decay=0.7), progress=False)
    straight.train()
    Trainer(_config(tiny_reference_data, tmp_path / "b", max_steps=3, ema_decay=0.7),
            progress=False).train()
    resumed = Trainer(_config(tiny_reference_data, tmp_path / "b", max_steps=6,
                              ema_decay=0.7), progress=False)
    resumed.train()
    for p, q in zip(straight.ema.module.parameters(), resumed.ema.module.parameters(),
                    strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    # a run without averaging may switch it on when resumed: the average starts there
    Trainer(_config(tiny_reference_data, tmp_path / "c", max_steps=3), progress=False).train()
    switched = Trainer(_config(tiny_reference_data, tmp_path / "c", max_steps=5,
                               ema_decay=0.7), progress=False)
    assert switched.exported_model is switched.model  # nothing averaged yet
    switched.train()
    assert int(switched.ema.n_averaged) == 2
    saved = json.loads((tmp_path / "c" / "config.json").read_text())
    assert saved["ema_decay"] == 0.7 and saved["max_steps"] == 5  # the run folder says so


def test_split_does_not_follow_the_training_seed(tiny_reference_data, tmp_path) -> None:
    """Fine-tuning with another --seed keeps the held-out blocks (split_seed, default 0)."""
    runs = {seed: Trainer(_config(tiny_reference_data, tmp_path / f"s{seed}", seed=seed,
                                  max_steps=1), progress=False) for seed in (0, 5)}
    torch.testing.assert_close(runs[0].val_x, runs[5].val_x, rtol=0, atol=0)
    other = Trainer(_config(tiny_reference_data, tmp_path / "split5", split_seed=5,
                            max_steps=1), progress=False)
    assert not torch.equal(other.val_x, runs[0].val_x)


def test_runs_saved_before_split_seed_resume_on_their_split(tiny_reference_data,
                                                            tmp_path) -> None:
    """A config.json without split_seed split with its training seed, and resumes so."""
    Trainer(_config(tiny_reference_data, tmp_path, seed=5, split_seed=5, max_steps=2),
            progress=False).train()
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["split_seed"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert TrainConfig.from_saved(saved).split_seed == 5
    resumed = Trainer(_config(tiny_reference_data, tmp_path, seed=5, split_seed=5, max_steps=4),
                      progress=False)
    assert resumed.global_step == 2
    with pytest.raises(ValueError, match=r"differs in \['split_seed'\]"):
        Trainer(_config(tiny_reference_data, tmp_path, seed=5, max_steps=4), progress=False)


def test_resume_refuses_grown_data(tiny_reference_data, tmp_path) -> None:
    """Grown data would reshuffle the time blocks: resuming on it is refused by name."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_reference_data, data)
    held_back = tmp_path / "held_back"
    held_back.mkdir()
    for replica in sorted(data.glob("replica_*")):
        last = sorted(replica.glob("chunk_*.npz"))[-1]
        shutil.move(last, held_back / f"{replica.name}_{last.name}")
    Trainer(_config(data, tmp_path / "run", max_steps=2), progress=False).train()
    for moved in held_back.iterdir():
        replica, name = moved.name.split("_", 2)[:2], moved.name.split("_", 2)[2]
        shutil.move(moved, data / "_".join(replica) / name)
    with pytest.raises(ValueError, match="reference data changed"):
        Trainer(_config(data, tmp_path / "run", max_steps=4), progress=False)


def test_tail_force_matching_trains_and_resumes_exactly(tiny_reference_data, tmp_path) -> None:
    """The tail term is logged, and its noise stream is checkpointed: resume == straight run."""
    kw = dict(w_fm_tail=1.0, tail_fraction=0.3)
    straight = Trainer(_config(tiny_reference_data, tmp_path / "a", max_steps=6, **kw),
                       progress=False)
    straight.train()
    lines = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text()
             .splitlines() if "final" not in line]
    assert all(np.isfinite(r["fm_tail"]) and r["fm_tail"] > 0 for r in lines)
    Trainer(_config(tiny_reference_data, tmp_path / "b", max_steps=2, **kw),
            progress=False).train()
    resumed = Trainer(_config(tiny_reference_data, tmp_path / "b", max_steps=6, **kw),
                      progress=False)
    resumed.train()
    for (name, p), q in zip(straight.model.named_parameters(), resumed.model.parameters(),
                            strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)


def test_init_from_starts_at_the_model_weights(tiny_reference_data, tmp_path) -> None:
    first = Trainer(_config(tiny_reference_data, tmp_path / "a", max_steps=3), progress=False)
    path = first.train()
    start = Trainer(_config(tiny_reference_data, tmp_path / "b", max_steps=3,
                            init_from=str(path)), progress=False)
    for (name, p), q in zip(first.model.named_parameters(), start.model.parameters(),
                            strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
    other = dict(SMALL, hidden=[8])
    with pytest.raises(ValueError, match="architecture differs"):
        Trainer(_config(tiny_reference_data, tmp_path / "c", model=other, init_from=str(path)),
                progress=False)
    chain = dict(SMALL, hydrogen_torsions="chain")  # same shapes, other internal coordinates
    with pytest.raises(ValueError, match=r"Z-matrix differs.*--hydrogen-torsions sibling"):
        Trainer(_config(tiny_reference_data, tmp_path / "d", model=chain, init_from=str(path)),
                progress=False)


def test_other_configuration_in_same_folder_is_refused(tiny_reference_data, tmp_path) -> None:
    Trainer(_config(tiny_reference_data, tmp_path, max_steps=1), progress=False)
    with pytest.raises(ValueError, match=r"another configuration \(differs in \['lr'\]\)"):
        Trainer(_config(tiny_reference_data, tmp_path, max_steps=1, lr=1.0), progress=False)


def test_run_folder_in_use_by_another_process_is_refused(tiny_reference_data, tmp_path) -> None:
    from flowff.utils.locking import FolderLockedError, exclusive_folder_lock

    Trainer(_config(tiny_reference_data, tmp_path, max_steps=2), progress=False)
    recorded = (tmp_path / "config.json").read_text()
    with exclusive_folder_lock(tmp_path, "test holder"):
        trainer = Trainer(_config(tiny_reference_data, tmp_path, max_steps=3), progress=False)
        with pytest.raises(FolderLockedError, match="the training run"):
            trainer.train()
    assert not (tmp_path / "checkpoint.pt").exists()
    # the refused leg left the holder's record alone (max_steps 2, not 3)
    assert (tmp_path / "config.json").read_text() == recorded
    assert trainer.train().exists()  # free again once the other writer is gone


def test_reverse_kl_term_trains_through_the_inverse(tiny_reference_data, tmp_path) -> None:
    trainer = Trainer(_config(tiny_reference_data, tmp_path, w_nll=0.9, w_fm=0.0, w_kl=0.1,
                              kl_batch_size=4), progress=False)
    terms = trainer.loss_terms(trainer.train_x[:4], trainer.train_f[:4])
    assert set(terms) == {"nll", "kl", "loss"} and torch.isfinite(terms["kl"])
    terms["kl"].backward()
    grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_data_parallel_with_torchrun_gloo(tiny_reference_data, tmp_path) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-port", "29517", "-m", "flowff", "train", "--data",
           str(tiny_reference_data), "--out", str(tmp_path), "--max-steps", "3",
           "--batch-size", "4", "--block-ps", "0.05", "--components", "2", "--hidden", "16,16",
           "--no-progress", "--device", "cpu", "--w-fm-tail", "1.0"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "model.pt").exists()
    steps = [json.loads(line)["step"] for line in
             (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps[:3] == [1, 2, 3]  # only rank 0 logs


def test_init_from_grows_a_model_by_angle_couplings(tiny_reference_data, tmp_path) -> None:
    first, path = _trained_two_steps(tiny_reference_data, tmp_path / "a")
    grown = Trainer(_config(tiny_reference_data, tmp_path / "b", max_steps=2,
                            model=dict(SMALL, angle_coupling_pairs=1), init_from=str(path)),
                    progress=False)
    assert len(grown.model.flow.layers) == len(first.model.flow.layers) + 2
    x = first.train_x[:4]
    torch.testing.assert_close(grown.model.reduced_energy(x), first.model.reduced_energy(x),
                               rtol=0, atol=0.1)
    grown.train()


def test_fitted_bond_intervals_enclose_the_data_and_reset_the_bond_layer(
    tiny_reference_data, tmp_path
) -> None:
    first, path = _trained_two_steps(tiny_reference_data, tmp_path / "a")
    fitted = Trainer(_config(tiny_reference_data, tmp_path / "b", max_steps=2,
                             fit_ic_bounds=["bonds"], init_from=str(path)), progress=False)
    ic = fitted.model.ic
    bonds = ic.physical(ic(fitted.train_x.double())[0])[0]
    assert (bonds > ic.bond_lo).all() and (bonds < ic.bond_lo + ic.bond_width).all()
    assert float(ic.bond_width.max()) < 0.05  # far narrower than the fixed 0.25 nm
    torch.testing.assert_close(ic.angle_width, first.model.ic.angle_width)
    # the bond layer (first in the density direction) restarts; the others keep their weights
    bond_layer = 0
    assert fitted.model.flow.layers[bond_layer].transformed_index.min() == 0
    old_state, new_state = first.model.state_dict(), fitted.model.state_dict()
    prefix = f"flow.layers.{bond_layer}."
    kept = [k for k in new_state if k.startswith("flow.layers.") and not k.startswith(prefix)]
    reset = [k for k in new_state if k.startswith(prefix) and new_state[k].is_floating_point()]
    assert kept and reset
    for key in kept:
        torch.testing.assert_close(new_state[key], old_state[key], rtol=0, atol=0, msg=key)
    assert any(not torch.equal(new_state[k], old_state[k]) for k in reset)
    # the intervals travel in the model file
    saved = load_energy_module(fitted.train(), mode="eager")
    torch.testing.assert_close(saved.ic.bond_lo, ic.bond_lo.double())
    with pytest.raises(ValueError, match="fit_ic_bounds"):
        _config(tiny_reference_data, tmp_path / "c", fit_ic_bounds=["torsions"])


def test_fitted_walls_keep_the_flow_and_its_weights(tiny_reference_data, tmp_path) -> None:
    first, path = _trained_two_steps(tiny_reference_data, tmp_path / "a")
    walled = Trainer(_config(tiny_reference_data, tmp_path / "b", max_steps=2,
                             fit_ic_walls=["bonds", "angles"], init_from=str(path)),
                     progress=False)
    walls = walled.model_cfg.ic_wall_bounds
    assert len(walls["bond_nm"]) == 21 and len(walls["angle_rad"]) == 20
    torch.testing.assert_close(walled.model.ic.bond_width, first.model.ic.bond_width)
    for (name, p), q in zip(first.model.named_parameters(), walled.model.parameters(),
                            strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
    # the training frames feel no wall; a bond stretched by 0.05 nm past its wall does
    x = walled.train_x.double()
    model = copy.deepcopy(walled.model).double()
    torch.testing.assert_close(model.reduced_energy(x),
                               copy.deepcopy(first.model).double().reduced_energy(x))
    wall = model.ic_wall
    h, _ = model.ic(x[:1])
    h[0, 3] = float(wall.upper[3]) + 0.05 / float(model.ic.bond_width[3])
    assert float(wall(h)) > 10.0
    saved = load_energy_module(walled.train(), mode="eager")
    assert saved.ic_wall.upper.tolist() == pytest.approx(wall.upper.tolist())


def test_init_from_restarts_only_the_layer_with_a_new_transform_kind(
    tiny_reference_data, tmp_path
) -> None:
    first, path = _trained_two_steps(tiny_reference_data, tmp_path / "a")
    gaussian = Trainer(_config(tiny_reference_data, tmp_path / "b", max_steps=2,
                               model=dict(SMALL, bond_transform="gaussian"),
                               init_from=str(path)), progress=False)
    bond_layer = gaussian.model.flow.layers[0]  # density direction: bonds first
    assert type(bond_layer.groups[0].transform).__name__ == "GaussianMixtureTransform"
    fresh = Trainer(_config(tiny_reference_data, tmp_path / "c", max_steps=2,
                            model=dict(SMALL, bond_transform="gaussian")), progress=False)
    for (name, p), q in zip(bond_layer.named_parameters(),
                            fresh.model.flow.layers[0].parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)  # its initialisation
    for index in range(1, len(first.model.flow.layers)):
        for (name, p), q in zip(first.model.flow.layers[index].named_parameters(),
                                gaussian.model.flow.layers[index].parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=0, msg=f"layer {index} {name}")
    gaussian.train()


def _copy_data(data: Path, out: Path, edit_config=None) -> Path:
    shutil.copytree(data, out)
    if edit_config is not None:
        record = json.loads((out / "config.json").read_text())
        edit_config(record["config"])
        (out / "config.json").write_text(json.dumps(record))
    return out


def test_extra_data_folder_joins_the_training_frames(tiny_reference_data, tmp_path) -> None:
    alone = Trainer(_config(tiny_reference_data, tmp_path / "alone"), progress=False)
    extra = _copy_data(tiny_reference_data, tmp_path / "extra")
    both = Trainer(_config(tiny_reference_data, tmp_path / "both",
                           extra_data_dirs=(str(extra),)), progress=False)
    n = len(alone.train_x)
    assert both.folder_sizes == [n, n]
    torch.testing.assert_close(both.train_x[n:], alone.train_x)  # same split of a copy
    torch.testing.assert_close(both.train_f[:n], alone.train_f)
    torch.testing.assert_close(both.val_x, alone.val_x)  # validation stays on data_dir
    assert both.split_sizes["train_by_folder"] == [n, n]
    assert "train_by_folder" not in alone.split_sizes  # older runs' checkpoints still match
    both.train()
    assert (tmp_path / "both" / "model.pt").exists()


def test_data_shares_set_each_folders_share_of_the_draws(tiny_reference_data, tmp_path) -> None:
    extra = _copy_data(tiny_reference_data, tmp_path / "extra")
    only_extra = Trainer(_config(tiny_reference_data, tmp_path / "a",
                                 extra_data_dirs=(str(extra),), data_shares=(0.0, 2.0)),
                         progress=False)
    n = only_extra.folder_sizes[0]
    order = only_extra._epoch_order(0)
    assert len(order) == 2 * n and bool((order >= n).all())
    quarter = Trainer(_config(tiny_reference_data, tmp_path / "b",
                              extra_data_dirs=(str(extra),), data_shares=(3.0, 1.0)),
                      progress=False)
    draws = torch.cat([quarter._epoch_order(e) for e in range(200)])
    assert abs(float((draws >= n).double().mean()) - 0.25) < 0.02
    torch.testing.assert_close(quarter._epoch_order(3), quarter._epoch_order(3))
    assert not torch.equal(quarter._epoch_order(3), quarter._epoch_order(4))


def test_weighted_draws_resume_exactly(tiny_reference_data, tmp_path) -> None:
    extra = _copy_data(tiny_reference_data, tmp_path / "extra")
    kw = dict(extra_data_dirs=(str(extra),), data_shares=(0.7, 0.3))
    straight = Trainer(_config(tiny_reference_data, tmp_path / "straight", max_steps=6, **kw),
                       progress=False)
    straight.train()
    Trainer(_config(tiny_reference_data, tmp_path / "legs", max_steps=3, **kw),
            progress=False).train()
    resumed = Trainer(_config(tiny_reference_data, tmp_path / "legs", max_steps=6, **kw),
                      progress=False)
    resumed.train()
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda c: c.update(temperature_K=350.0), "temperature_K"),
    (lambda c: c.update(forcefield=["amber14-all.xml"]), "forcefield"),
])
def test_extra_data_of_another_protocol_is_refused(tiny_reference_data, tmp_path, edit,
                                                   message) -> None:
    extra = _copy_data(tiny_reference_data, tmp_path / "extra", edit)
    with pytest.raises(ValueError, match=message):
        Trainer(_config(tiny_reference_data, tmp_path / "run", extra_data_dirs=(str(extra),)),
                progress=False)


def test_extra_data_of_another_molecule_is_refused(tiny_reference_data, tmp_path) -> None:
    extra = _copy_data(tiny_reference_data, tmp_path / "extra")
    pdb = extra / "topology.pdb"
    lines = pdb.read_text().splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if line.startswith(("ATOM", "HETATM")))
    lines[first] = lines[first][:12] + " HX " + lines[first][16:]
    pdb.write_text("".join(lines))
    with pytest.raises(ValueError, match="topology mismatch.*differ at atom"):
        Trainer(_config(tiny_reference_data, tmp_path / "run", extra_data_dirs=(str(extra),)),
                progress=False)


def test_data_shares_need_one_share_per_folder(tiny_reference_data, tmp_path) -> None:
    with pytest.raises(ValueError, match="one share per data folder"):
        _config(tiny_reference_data, tmp_path, data_shares=(0.5, 0.5))
    with pytest.raises(ValueError, match="non-negative"):
        _config(tiny_reference_data, tmp_path, extra_data_dirs=("x",), data_shares=(1.0, -0.1))
