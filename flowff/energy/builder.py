"""Build a flow energy from a config, save it as a model file, and load it back (eager or not).

The default architecture is the Smooth Flows paper's for alanine dipeptide (sampling direction):
torsions coupled in two halves (T1|T2, T2|T1, twice), then angles | torsions, then
bonds | angles, torsions; 8 mixture components; conditioners 64-64 SiLU; bonds on
[0.05, 0.3] nm, angles on [0.15, 1.0] x pi. Layers are stored in the density direction
(data h -> base z), i.e. in the reverse order.

``angle_coupling_pairs > 0`` adds angle-angle couplings after angles | torsions (A1 | A2,
torsions and A2 | A1, torsions per pair): with angles | torsions alone the angles are
independent given the torsions, which cannot express the correlated angles around one atom
(see docs/training.md). :func:`load_matching_weights` starts such a model from a trained one
without them (``flowff train --init-from``).

``rotor_coupling_pairs > 0`` adds torsion couplings after the alternating ones whose halves
group the torsions by their central bond (:func:`rotor_halves`): torsions about one bond stay
together and neighbouring backbone bonds (phi's N-CA and psi's CA-C) fall into different
halves, so these layers model psi given phi and phi given psi directly; in the alternating split
both sit in one half and are independent given the other half.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openmm.app as app
import torch

from flowff.energy.flow_energy import FlowEnergy
from flowff.energy.model_file import load_eager_state, load_scripted, read_metadata, save_model
from flowff.energy.signature import topology_signature
from flowff.flows.coupling import CouplingLayer
from flowff.flows.flow import Flow
from flowff.flows.priors import UniformPrior
from flowff.ic.layer import InternalCoordinates
from flowff.ic.zmatrix import HYDROGEN_TORSION_CHOICES, ZMatrix
from flowff.transforms import make_transform
from flowff.utils.config import JsonConfig

TRANSFORM_KINDS = ("smooth", "spline")
#: Kinds the bonds' and angles' layers may use instead of ``transform`` (interval coordinates).
INTERVAL_TRANSFORM_KINDS = ("smooth", "spline", "gaussian")


@dataclass
class FlowModelConfig(JsonConfig):
    """Architecture of a flow energy (units: nm, rad, K)."""

    config_name = "model config"

    transform: str = "smooth"
    num_components: int = 8
    hidden: tuple[int, ...] = (64, 64)
    torsion_coupling_pairs: int = 2
    angle_coupling_pairs: int = 0
    #: torsion couplings with halves grouped by central bond, after the alternating ones
    rotor_coupling_pairs: int = 0
    #: one (lo, hi) interval for all bonds (nm) / angles (rad), or one per column
    bond_bounds_nm: tuple[Any, ...] = (0.05, 0.3)
    angle_bounds_rad: tuple[Any, ...] = (0.15 * math.pi, math.pi)
    temperature_K: float = 300.0
    zmatrix: dict[str, Any] | None = None
    #: how a Z-matrix built from the topology picks hydrogens' torsion partners ("sibling":
    #: from an atom on the same bond partner; "chain": proper dihedrals), used only while
    #: ``zmatrix`` is None; model files written before this field existed used "chain"
    hydrogen_torsions: str = "sibling"
    transform_options: dict[str, Any] = field(default_factory=dict)
    #: options of the bonds' layer only, over ``transform_options`` (e.g. a lower
    #: ``max_concentration`` for narrow fitted bond intervals, where a bump of given width in h
    #: is (0.25 nm / w)^2 times stiffer in nm than on the default interval)
    bond_transform_options: dict[str, Any] = field(default_factory=dict)
    #: transform kind of the layers that transform bonds only / angles only (None: ``transform``);
    #: "gaussian" (truncated-Gaussian CDF mixtures, 1 component unless the options say
    #: otherwise) gives a harmonic-like energy without kinks or density floor (docs/training.md)
    bond_transform: str | None = None
    angle_transform: str | None = None
    #: options of the angles' layers only (like ``bond_transform_options``)
    angle_transform_options: dict[str, Any] = field(default_factory=dict)
    #: options of the torsions' (circular) transforms only, over ``transform_options`` (e.g.
    #: ``{"min_identity_share": 0.01}``: a floor under each torsion layer's density, against
    #: the near-empty gaps between bumps that make importance weights explode)
    torsion_transform_options: dict[str, Any] = field(default_factory=dict)
    #: where the wall on the internal coordinates starts, ``{"bond_nm": ..., "angle_rad": ...}``
    #: (one (lo, hi) pair per type or one per column); None: at the intervals' ends
    ic_wall_bounds: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FlowModelConfig:
        """The config from a dict; one with a Z-matrix but no ``hydrogen_torsions`` is "chain"."""
        if data.get("zmatrix") is not None and "hydrogen_torsions" not in data:
            data = {**data, "hydrogen_torsions": "chain"}
        return super().from_dict(data)

    def __post_init__(self) -> None:
        if self.hydrogen_torsions not in HYDROGEN_TORSION_CHOICES:
            raise ValueError(f"hydrogen_torsions must be one of {HYDROGEN_TORSION_CHOICES}, "
                             f"got {self.hydrogen_torsions!r}")
        if self.transform not in TRANSFORM_KINDS:
            raise ValueError(f"transform must be one of {TRANSFORM_KINDS}, got {self.transform!r}")
        for name in ("bond_transform", "angle_transform"):
            kind = getattr(self, name)
            if kind is not None and kind not in INTERVAL_TRANSFORM_KINDS:
                raise ValueError(f"{name} must be None or one of {INTERVAL_TRANSFORM_KINDS}, "
                                 f"got {kind!r}")
        self.hidden = tuple(int(h) for h in self.hidden)
        for name in ("torsion_coupling_pairs", "angle_coupling_pairs", "rotor_coupling_pairs"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        self.bond_bounds_nm = _bounds_tuple(self.bond_bounds_nm)
        self.angle_bounds_rad = _bounds_tuple(self.angle_bounds_rad)


def _bounds_tuple(bounds: Any) -> tuple[Any, ...]:
    """(lo, hi) floats, or a tuple of (lo, hi) pairs (per-column intervals)."""
    items = list(bounds)
    if items and isinstance(items[0], (list, tuple)):
        return tuple((float(lo), float(hi)) for lo, hi in items)
    return tuple(float(v) for v in items)


def _circular_transform(cfg: FlowModelConfig) -> torch.nn.Module:
    """The torsions' transform: the flow's kind and options."""
    size_key = "num_components" if cfg.transform == "smooth" else "num_bins"
    return make_transform(cfg.transform, circular=True,
                          **{size_key: cfg.num_components, **cfg.transform_options,
                             **cfg.torsion_transform_options})


def angle_halves(zmatrix: ZMatrix) -> tuple[list[int], list[int]]:
    """Split the angle columns 0..n-3 (relative to the first angle) into two halves so that
    angles sharing a vertex and a reference atom (e.g. the three H-C-X angles of a methyl
    group, which are strongly correlated) alternate between the halves."""
    keys = [(zmatrix.frame[1], zmatrix.frame[0])] + [(b, a) for _, b, a, _ in zmatrix.rows]
    groups: dict[tuple[int, int], list[int]] = {}
    for column, key in enumerate(keys):
        groups.setdefault(key, []).append(column)
    halves: tuple[list[int], list[int]] = ([], [])
    # Groups first (largest first), each starting in the smaller half; singletons fill in.
    for members in sorted(groups.values(), key=lambda m: (-len(m), m[0])):
        start = 0 if len(halves[0]) <= len(halves[1]) else 1
        for k, column in enumerate(members):
            halves[(start + k) % 2].append(column)
    return sorted(halves[0]), sorted(halves[1])


def rotor_halves(zmatrix: ZMatrix) -> tuple[list[int], list[int]]:
    """Split the torsion columns 0..n-4 (relative to the first torsion) by central bond.

    Torsion row (i, j, k, l) turns about bond j-k. Bonds are taken in the order of their first
    torsion (chain order for a Z-matrix built along the backbone) and given to the halves in
    turn, each with all its torsions; neighbouring rotors thus land in different halves.
    """
    groups: dict[frozenset[int], list[int]] = {}
    for column, (_, j, k, _) in enumerate(zmatrix.rows):
        groups.setdefault(frozenset((j, k)), []).append(column)
    halves: tuple[list[int], list[int]] = ([], [])
    for index, members in enumerate(groups.values()):
        halves[index % 2].extend(members)
    return sorted(halves[0]), sorted(halves[1])


def coupling_schedule(ic: InternalCoordinates, torsion_coupling_pairs: int,
                      angle_coupling_pairs: int = 0, rotor_coupling_pairs: int = 0
                      ) -> list[tuple[list[int], list[int]]]:
    """(transformed, conditioning) column lists in the density direction (h -> z)."""
    bonds = list(range(ic.n_bonds))
    angles = list(range(ic.n_bonds, ic.n_bonds + ic.n_angles))
    torsions = list(range(ic.n_bonds + ic.n_angles, ic.dim))
    t1, t2 = torsions[0::2], torsions[1::2]
    sampling: list[tuple[list[int], list[int]]] = []
    for _ in range(torsion_coupling_pairs):
        sampling += [(t1, t2), (t2, t1)]
    if rotor_coupling_pairs > 0 and len(torsions) > 1:
        r1, r2 = ([torsions[c] for c in half] for half in rotor_halves(ic.zmatrix))
        if r1 and r2:
            for _ in range(rotor_coupling_pairs):
                sampling += [(r1, r2), (r2, r1)]
    sampling += [(angles, torsions)]
    if angle_coupling_pairs > 0 and ic.n_angles > 1:
        a1, a2 = ([ic.n_bonds + c for c in half] for half in angle_halves(ic.zmatrix))
        for _ in range(angle_coupling_pairs):
            sampling += [(a1, a2 + torsions), (a2, a1 + torsions)]
    sampling += [(bonds, angles + torsions)]
    return [step for step in reversed(sampling) if step[0]]


def _typed_interval_transform(cfg: FlowModelConfig, kind: str | None,
                              options: dict[str, Any]) -> torch.nn.Module:
    """The interval transform of the bonds' or angles' layers: ``kind`` (None: the flow's) with
    the flow's options when of the flow's kind, then ``options``."""
    kind = cfg.transform if kind is None else kind
    if kind == "gaussian":
        return make_transform("gaussian", circular=False, **options)
    shared = cfg.transform_options if kind == cfg.transform else {}
    size_key = "num_components" if kind == "smooth" else "num_bins"
    return make_transform(kind, circular=False,
                          **{size_key: cfg.num_components, **shared, **options})


def build_flow(cfg: FlowModelConfig, ic: InternalCoordinates) -> Flow:
    """The coupling flow on the IC space of ``ic``."""
    interval = _typed_interval_transform(cfg, None, {})
    circular = _circular_transform(cfg)
    bond_interval = _typed_interval_transform(cfg, cfg.bond_transform, cfg.bond_transform_options)
    angle_interval = _typed_interval_transform(cfg, cfg.angle_transform,
                                               cfg.angle_transform_options)
    bonds = set(range(ic.n_bonds))
    angles = set(range(ic.n_bonds, ic.n_bonds + ic.n_angles))
    mask = ic.circular_mask

    def interval_for(transformed: list[int]) -> torch.nn.Module:
        if bonds.issuperset(transformed):
            return bond_interval
        if angles.issuperset(transformed):
            return angle_interval
        return interval

    layers = [
        CouplingLayer(mask, transformed, conditioning, interval_for(transformed), circular,
                      hidden=cfg.hidden)
        for transformed, conditioning in coupling_schedule(
            ic, cfg.torsion_coupling_pairs, cfg.angle_coupling_pairs, cfg.rotor_coupling_pairs
        )
    ]
    return Flow(layers, UniformPrior(ic.dim), circular_mask=mask)


def build_energy(cfg: FlowModelConfig, topology_pdb: str | os.PathLike[str] | None = None
                 ) -> FlowEnergy:
    """A freshly initialised FlowEnergy (float64) for the config's molecule.

    The Z-matrix comes from ``cfg.zmatrix`` when set, else from ``topology_pdb``, else the
    alanine dipeptide default; the chosen Z-matrix is written back into ``cfg``.
    """
    if cfg.zmatrix is not None:
        zmatrix = ZMatrix.from_dict(cfg.zmatrix)
    elif topology_pdb is not None:
        zmatrix = ZMatrix.from_topology(app.PDBFile(str(topology_pdb)).topology,
                                        hydrogen_torsions=cfg.hydrogen_torsions)
    else:
        zmatrix = ZMatrix.alanine_dipeptide(cfg.hydrogen_torsions)
    cfg.zmatrix = zmatrix.to_dict()
    ic = InternalCoordinates(zmatrix, cfg.bond_bounds_nm, cfg.angle_bounds_rad)
    flow = build_flow(cfg, ic)
    return FlowEnergy(ic, flow, zmatrix.n_atoms, cfg.temperature_K,
                      ic_wall_bounds=cfg.ic_wall_bounds)


def columns_with_new_transforms(old: FlowModelConfig, new: FlowModelConfig,
                                ic: InternalCoordinates) -> set[int]:
    """Bond / angle columns whose layers' transform kind differs between two configs (a trained
    layer of another kind cannot be carried over to them)."""
    changed: set[int] = set()
    for name, columns in (("bond_transform", range(ic.n_bonds)),
                          ("angle_transform", range(ic.n_bonds, ic.n_bonds + ic.n_angles))):
        if (getattr(old, name) or old.transform) != (getattr(new, name) or new.transform):
            changed.update(columns)
    return changed


def load_matching_weights(target: FlowEnergy, source_state: dict[str, Any],
                          changed_columns: set[int] | frozenset[int] = frozenset(),
                          new_transform_columns: set[int] | frozenset[int] = frozenset(),
                          ) -> list[int]:
    """Load ``source_state`` (a FlowEnergy state dict) into ``target`` whose flow may have extra
    coupling layers; returns the indices of target layers that kept their initialisation.

    Layers are matched by their (transformed, conditioning) columns, so a trained model can be
    grown by new layers, which start near the identity. Layers touching ``changed_columns``
    (columns whose interval differs between source and target, so a trained map would act on
    other physical values) keep their initialisation too, as do layers transforming any of
    ``new_transform_columns`` (another transform kind there). Raises ValueError when a source layer
    or any other entry has no counterpart of the same shape in ``target``.
    """
    def layer_key(state: dict[str, Any], prefix: str) -> tuple[tuple[int, ...], ...]:
        return (tuple(state[prefix + "transformed_index"].tolist()),
                tuple(state[prefix + "conditioning_index"].tolist()))

    def layer_prefixes(state: dict[str, Any]) -> list[str]:
        numbers = {int(k.split(".")[2]) for k in state if k.startswith("flow.layers.")}
        return [f"flow.layers.{n}." for n in sorted(numbers)]

    target_state = target.state_dict()
    source_layers: dict[tuple[tuple[int, ...], ...], list[str]] = {}
    for prefix in layer_prefixes(source_state):  # repeated layers (T1|T2 twice) match in order
        source_layers.setdefault(layer_key(source_state, prefix), []).append(prefix)
    merged = dict(target_state)
    kept: list[int] = []
    for index, prefix in enumerate(layer_prefixes(target_state)):
        columns = layer_key(target_state, prefix)
        candidates = source_layers.get(columns, [])
        if not candidates:
            kept.append(index)
            continue
        source_prefix = candidates.pop(0)
        if (changed_columns.intersection(columns[0] + columns[1])
                or new_transform_columns.intersection(columns[0])):
            kept.append(index)
            continue
        for key in target_state:
            if key.startswith(prefix):
                merged[key] = source_state[source_prefix + key[len(prefix):]]
    unmatched = [p for prefixes in source_layers.values() for p in prefixes]
    if unmatched:
        raise ValueError(f"source coupling layers without a counterpart: {unmatched}")
    for key, value in source_state.items():
        if not key.startswith("flow.layers."):
            if key not in target_state:
                raise ValueError(f"source entry {key!r} has no counterpart")
            merged[key] = value
    for key, value in merged.items():
        if tuple(value.shape) != tuple(target_state[key].shape):
            raise ValueError(
                f"{key}: shape {tuple(value.shape)} in the source, "
                f"{tuple(target_state[key].shape)} here"
            )
    target.load_state_dict(merged)
    return kept


def save_energy_model(
    model: FlowEnergy, cfg: FlowModelConfig, topology_pdb: str | os.PathLike[str],
    path: str | os.PathLike[str], extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (as float64) with its metadata and eager state to a model file."""
    import copy

    model64 = copy.deepcopy(model).to(torch.float64).cpu().eval()
    topology = app.PDBFile(str(topology_pdb)).topology
    metadata = {
        "kind": "flow-energy",
        "topology": topology_signature(topology),
        "temperature_K": cfg.temperature_K,
        "ic": model64.ic.to_metadata(),
        "model_config": cfg.to_dict(),
        **(extra or {}),
    }
    eager = {"model_config": cfg.to_dict(), "state_dict": model64.state_dict()}
    try:  # the MD module: same energy, analytic forces (several times faster per MD step)
        from flowff.energy.md_energy import export_for_md

        scripted: torch.nn.Module = export_for_md(model64)
        metadata["torchscript_module"] = "MDFlowEnergy (analytic forces)"
    except TypeError:  # an architecture MDFlowEnergy does not cover: forces by autograd
        scripted = model64
        metadata["torchscript_module"] = "FlowEnergy (autograd forces)"
    return save_model(scripted, path, metadata, eager)


def load_energy_module(path: str | os.PathLike[str], mode: str = "eager") -> Any:
    """The energy module of a model file: ``"eager"`` FlowEnergy, ``"compile"`` (torch.compile
    of the eager module) or ``"script"`` (the TorchScript module, torch alone)."""
    if mode == "script":
        return load_scripted(path)[0]
    if mode not in ("eager", "compile"):
        raise ValueError(f"mode must be 'eager', 'compile' or 'script', got {mode!r}")
    model, _ = load_energy_and_config(path)
    if mode == "compile":
        return torch.compile(model)
    return model


def load_energy_and_config(path: str | os.PathLike[str]) -> tuple[FlowEnergy, FlowModelConfig]:
    """The eager FlowEnergy of a model file (eval mode) and the model config it was built from."""
    read_metadata(path)  # validates format and version first
    state = load_eager_state(path)
    cfg = FlowModelConfig.from_dict(state["model_config"])
    model = build_energy(cfg)
    model.load_state_dict(state["state_dict"])
    return model.eval(), cfg
