"""One writer per folder: an advisory lock file that names the process holding it.

Two processes resuming the same replica or training run would interleave their chunks or
checkpoints silently; the second one must fail at once instead. ``fcntl.flock`` is released by
the kernel when its holder dies, so a crashed run never leaves a stale lock behind (a written
pid file alone would). Where ``fcntl`` does not exist (Windows) the lock is a no-op.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".flowff.lock"


class FolderLockedError(RuntimeError):
    """Another live process is writing the folder."""


@contextlib.contextmanager
def exclusive_folder_lock(folder: str | os.PathLike[str], what: str) -> Iterator[Path]:
    """Hold ``folder/.flowff.lock`` while the block runs; raise if another process holds it.

    ``what`` names the job in the error ("replica 2 of reference data", "training run").
    """
    path = Path(folder) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover - Windows
        yield path
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise FolderLockedError(
                f"{what} in {Path(folder)} is being written by another process (pid {holder}); "
                "stop it first (two writers would interleave their files)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
