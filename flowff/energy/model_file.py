"""The flowff model file: one TorchScript archive that loads with torch alone.

``torch.jit.load(path)`` gives the energy module (positions (R*n, 3) nm -> kJ/mol) that
openmm-torch's TorchForce runs. Extra files inside the archive carry
``flowff/metadata.json`` (format version, atom count, elements, topology fingerprint,
temperature, IC bounds, versions, units) and, optionally, ``flowff/eager.pt`` (the builder config
and state dict, to rebuild the eager module with flowff for the PythonForce backend and training).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import torch

from flowff import __version__
from flowff._torchscript import quiet_jit
from flowff.utils.atomic import atomic_path

MODEL_FORMAT = "flowff-model"
MODEL_FORMAT_VERSION = 1
METADATA_FILE = "flowff/metadata.json"
EAGER_FILE = "flowff/eager.pt"
UNITS = {"positions": "nm", "energy": "kJ/mol", "forces": "kJ/mol/nm", "temperature": "K"}


class ModelFileError(ValueError):
    """A model file is missing, corrupt, not a flowff model, or from an unsupported version."""


def save_model(
    module: torch.nn.Module,
    path: str | os.PathLike[str],
    metadata: dict[str, Any],
    eager_state: dict[str, Any] | None = None,
) -> Path:
    """Script ``module`` (unless it already is) and write it with ``metadata`` (and
    ``eager_state``) atomically."""
    meta = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "flowff_version": __version__,
        "torch_version": torch.__version__,
        "units": UNITS,
        **metadata,
    }
    extra = {METADATA_FILE: json.dumps(meta, indent=2)}
    if eager_state is not None:
        buf = io.BytesIO()
        torch.save(eager_state, buf)
        extra[EAGER_FILE] = buf.getvalue()
    scripted = module
    if not isinstance(module, torch.jit.ScriptModule):
        with quiet_jit():
            scripted = torch.jit.script(module)
    with atomic_path(path) as tmp:
        with quiet_jit():
            torch.jit.save(scripted, str(tmp), _extra_files=extra)
    return Path(path)


def _read_archive(path: str | os.PathLike[str], with_eager: bool):
    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"model file not found: {p}")
    extra = {METADATA_FILE: ""}
    if with_eager:
        extra[EAGER_FILE] = ""
    try:
        with quiet_jit():
            module = torch.jit.load(str(p), map_location="cpu", _extra_files=extra)
    except Exception as exc:  # torch raises RuntimeError/ValueError with C++ text
        raise ModelFileError(f"{p} is not a readable TorchScript model file: {exc}") from exc
    if not extra[METADATA_FILE]:
        raise ModelFileError(f"{p} is a TorchScript file but not a flowff model (no metadata)")
    meta = json.loads(extra[METADATA_FILE])
    if meta.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{p} is not a flowff model file (format {meta.get('format')!r})")
    if meta.get("format_version") != MODEL_FORMAT_VERSION:
        raise ModelFileError(
            f"{p} is a flowff model of format version {meta.get('format_version')} (written by "
            f"flowff {meta.get('flowff_version')}); this flowff {__version__} reads version "
            f"{MODEL_FORMAT_VERSION}"
        )
    return module, meta, extra


def file_digest(path: str | os.PathLike[str]) -> str:
    """First 16 hex digits of the SHA-256 of a file (names a model file in reports)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of a model file (validated format and version)."""
    return _read_archive(path, with_eager=False)[1]


def load_scripted(path: str | os.PathLike[str]) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """The TorchScript energy module and its metadata."""
    module, meta, _ = _read_archive(path, with_eager=False)
    return module, meta


def load_eager_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The eager builder config and state dict stored in a model file."""
    _, _, extra = _read_archive(path, with_eager=True)
    if not extra[EAGER_FILE]:
        raise ModelFileError(f"{path} carries no eager state (TorchScript only)")
    return torch.load(io.BytesIO(extra[EAGER_FILE]), map_location="cpu", weights_only=True)
