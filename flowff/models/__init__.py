"""Trained models shipped with flowff (small TorchScript model files with metadata)."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

#: The shipped alanine dipeptide flow potential (300 K, trained by NLL + force matching).
ALANINE_DIPEPTIDE_MODEL = "alanine_dipeptide/model.pt"


def default_model_path() -> Path:
    """Path of the shipped alanine dipeptide model file; a clear error if it is missing."""
    path = Path(str(importlib.resources.files("flowff") / "models" / ALANINE_DIPEPTIDE_MODEL))
    if not path.exists():
        raise FileNotFoundError(
            f"the shipped alanine dipeptide model is missing ({path}); train one with "
            "`flowff data` and `flowff train`, or pass --model"
        )
    return path
