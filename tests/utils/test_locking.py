"""One writer per folder: the lock refuses a second holder and dies with its process."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from flowff.utils.locking import LOCK_NAME, FolderLockedError, exclusive_folder_lock

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fcntl locks are POSIX only")


def test_second_holder_is_refused_with_the_holders_pid(tmp_path) -> None:
    with exclusive_folder_lock(tmp_path, "the job"):
        with pytest.raises(FolderLockedError, match=r"the job in .* another process \(pid \d+\)"):
            with exclusive_folder_lock(tmp_path, "the job"):
                pass
    with exclusive_folder_lock(tmp_path, "the job"):  # released after the block
        pass


def test_lock_of_a_killed_process_is_released(tmp_path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from flowff.utils.locking import exclusive_folder_lock
            with exclusive_folder_lock({str(tmp_path)!r}, "x"):
                print("locked", flush=True)
                time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert (tmp_path / LOCK_NAME).read_text() == str(holder.pid)
        with pytest.raises(FolderLockedError, match=f"pid {holder.pid}"):
            with exclusive_folder_lock(tmp_path, "x"):
                pass
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    with exclusive_folder_lock(tmp_path, "x"):  # no stale lock after a crash
        pass
