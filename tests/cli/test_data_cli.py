"""``flowff data``: the command end to end, and SIGTERM stopping its worker processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from flowff.cli import main
from flowff.data.reference import load_reference_data
from flowff.utils.locking import FolderLockedError, exclusive_folder_lock

TINY = ["--frames-per-chunk", "4", "--save-interval-ps", "0.01", "--equilibration-ps", "0.05"]


def test_data_command_writes_and_reports_frames(tmp_path, capsys) -> None:
    out = tmp_path / "ref"
    assert main(["data", "--out", str(out), "--replicas", "1", "--ns", "8e-5", "--workers", "1",
                 *TINY]) == 0
    assert "8 frames" in capsys.readouterr().out
    assert len(load_reference_data(out)) == 8


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and locks")
def test_sigterm_stops_the_worker_processes(tmp_path) -> None:
    out = tmp_path / "ref"
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowff", "data", "--out", str(out), "--replicas", "2",
         "--ns", "10", "--workers", "2", *TINY],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while not all(any((out / f"replica_0{r}").glob("chunk_*.npz")) for r in (0, 1)):
            assert proc.poll() is None and time.time() < deadline, "no chunks were written"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) != 0
    finally:
        proc.kill()
        proc.wait()
    # Orphaned workers would still hold their replicas' locks (and keep writing chunks).
    deadline = time.time() + 10
    for r in (0, 1):
        while True:
            try:
                with exclusive_folder_lock(out / f"replica_0{r}", "test"):
                    break
            except FolderLockedError:
                assert time.time() < deadline, f"replica {r}'s worker outlived the command"
                time.sleep(0.2)


def test_resample_command_reports_its_pool(small_model_file, tmp_path, capsys) -> None:
    out = tmp_path / "resampled"
    assert main(["resample", "--model", str(small_model_file), "--out", str(out), "--samples",
                 "12", "--chunk-size", "5", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "12 frames" in printed and "from 12 samples" in printed and "Kish ESS/N" in printed
    assert len(load_reference_data(out)) == 12
