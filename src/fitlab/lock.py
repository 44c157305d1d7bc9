"""One writer per results folder: a lock file held for the life of the run.

Two ``fitlab run`` (or ``batch``) processes writing one scenario folder would run every
fit twice and duplicate rows. :func:`folder_lock` takes an exclusive ``flock`` on
``<folder>/.lock`` for as long as the run lasts; a second process is refused at once with
a :class:`fitlab.errors.FolderBusyError` naming the process that holds it. The kernel drops
the lock when its process dies, however it dies: a lock left by a killed run (its
``.lock`` file still names the dead process) is stale, and the next run takes it over.

The lock is re-entrant within a process (a grid's folder and then its report), and the
``.lock`` file is removed when the outermost holder releases it.

Examples
--------
>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     with folder_lock(d):
...         with folder_lock(d):   # the same process may take it again
...             pass
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from fitlab.errors import FolderBusyError
from fitlab.store import ensure_folder, storage_error

__all__ = ["folder_lock", "LOCK_NAME"]

LOCK_NAME = ".lock"
# folder -> [open lock file, depth] of the locks this process holds
_HELD: dict[Path, list] = {}


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold the lock of ``folder`` (created if missing) while the block runs.

    Raises
    ------
    FolderBusyError
        When another live process holds it.
    StorageError
        When the folder cannot be created or the lock file written.
    """
    ensure_folder(folder)
    key = Path(folder).resolve()
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield key
        finally:
            _HELD[key][1] -= 1
        return
    fh = _acquire(key / LOCK_NAME)
    _HELD[key] = [fh, 1]
    try:
        yield key
    finally:
        del _HELD[key]
        with contextlib.suppress(OSError):
            # unlink while still holding it: a process that opened the old file finds it
            # gone when it checks (see _acquire)
            (key / LOCK_NAME).unlink(missing_ok=True)
        fh.close()


def _acquire(path: Path):
    for _ in range(20):
        try:
            fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held for the run)
        except OSError as exc:
            raise storage_error(exc, path) from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(path)
            fh.close()
            raise FolderBusyError(
                f"{path.parent} is in use by another fitlab run ({holder}); wait for it to "
                "finish or stop it, then run the same command again") from None
        except OSError as exc:
            fh.close()
            raise storage_error(exc, path, "lock") from None
        # the holder before us may have removed the file between our open and our lock
        try:
            same = os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            fh.close()
            continue
        stale = _describe(path) if os.fstat(fh.fileno()).st_size else None
        if stale is not None:
            print(f"fitlab: taking over the lock of a run that is no longer running "
                  f"({stale})", file=sys.stderr)
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "command": " ".join(sys.argv[:6])}))
            fh.flush()
        except OSError as exc:
            fh.close()
            raise storage_error(exc, path) from None
        return fh
    raise FolderBusyError(f"{path.parent}: could not take its lock; try again")


def _describe(path: Path) -> str:
    """``process 123 on host`` from a lock file, or a placeholder."""
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return "an unknown process"
    return f"process {info.get('pid', '?')} on {info.get('host', '?')}"
