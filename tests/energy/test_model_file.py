"""The model file: metadata, loading without flowff, and clear errors for bad files."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest
import torch

from flowff import __version__
from flowff.energy.builder import load_energy_module
from flowff.energy.model_file import (
    MODEL_FORMAT_VERSION,
    ModelFileError,
    load_eager_state,
    load_scripted,
    read_metadata,
)


def test_metadata_records_what_users_need(small_model_file) -> None:
    meta = read_metadata(small_model_file)
    assert meta["format_version"] == MODEL_FORMAT_VERSION
    assert meta["flowff_version"] == __version__
    assert meta["torch_version"] == torch.__version__
    assert meta["temperature_K"] == 300.0
    assert meta["topology"]["n_atoms"] == 22
    assert meta["topology"]["elements"][:2] == ["H", "C"]
    assert len(meta["topology"]["fingerprint"]) == 64
    assert meta["ic"]["bounds"]["bond_nm"] == [0.05, 0.3]
    assert meta["ic"]["bounds"]["angle_rad"] == pytest.approx([0.15 * 3.141592653589793,
                                                               3.141592653589793])
    assert meta["units"]["energy"] == "kJ/mol"


def test_file_loads_with_torch_alone(small_model_file, small_energy, ala_structure) -> None:
    """A fresh interpreter that never imports flowff evaluates the model."""
    _, pos = ala_structure
    code = (
        "import sys, warnings, torch\n"
        "warnings.simplefilter('ignore')\n"
        f"m = torch.jit.load({str(small_model_file)!r})\n"
        f"x = torch.tensor({pos.tolist()!r}, dtype=torch.float64)\n"
        "print(repr(float(m(x))))\n"
        "assert 'flowff' not in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd="/")
    expected = small_energy(torch.tensor(pos)).item()
    assert float(out.stdout.strip().splitlines()[-1]) == pytest.approx(expected, rel=1e-12)


def test_eager_and_scripted_reloads_agree(small_model_file, small_energy, ala_structure) -> None:
    _, pos = ala_structure
    x = torch.tensor(pos)
    eager = load_energy_module(small_model_file, mode="eager")
    scripted = load_energy_module(small_model_file, mode="script")
    ref = small_energy(x).item()
    assert eager(x).item() == pytest.approx(ref, rel=1e-13)
    assert scripted(x).item() == pytest.approx(ref, rel=1e-13)
    state = load_eager_state(small_model_file)
    assert state["model_config"]["num_components"] == 2


def test_missing_corrupt_foreign_and_future_files(tmp_path, small_model_file) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        read_metadata(tmp_path / "nope.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(small_model_file.read_bytes()[:2000])
    with pytest.raises(ModelFileError, match="not a readable TorchScript model file"):
        load_scripted(corrupt)
    foreign = tmp_path / "foreign.pt"
    from flowff._torchscript import quiet_jit

    with quiet_jit():
        torch.jit.script(torch.nn.Linear(2, 2)).save(str(foreign))
    with pytest.raises(ModelFileError, match="not a flowff model"):
        read_metadata(foreign)
    # A file written by a future flowff: rewrite the metadata's format version.
    future = tmp_path / "future.pt"
    with zipfile.ZipFile(small_model_file) as src, zipfile.ZipFile(future, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("extra/flowff/metadata.json"):
                meta = json.loads(data)
                meta["format_version"] = MODEL_FORMAT_VERSION + 1
                meta["flowff_version"] = "9.9.9"
                data = json.dumps(meta).encode()
            dst.writestr(item, data)
    with pytest.raises(ModelFileError, match=r"format version 2 \(written by flowff 9.9.9\)"):
        read_metadata(future)
