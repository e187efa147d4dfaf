"""Crash-safe file replacement."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile
import time
from pathlib import Path

__all__ = ["atomic_write"]

logger = logging.getLogger(__name__)


def atomic_write(
    path: Path,
    data: bytes,
    *,
    mode: int = 0o600,
    preserve_mode: bool = False,
    min_mtime_ns: int | None = None,
) -> os.stat_result:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never a mix.

    Writes a temporary file in the same directory, fsyncs it, renames it over
    ``path`` and fsyncs the directory. The new file gets ``mode``, unless
    ``preserve_mode`` is true and ``path`` exists: then it keeps the
    permissions of the file it replaces. With ``min_mtime_ns``, its
    modification time is the current time or ``min_mtime_ns``, whichever is
    later. Returns the status of the new file.

    Raises OSError and leaves mapping it to the caller. On failure the
    temporary file is removed and ``path`` is unchanged. When reading the
    status of ``path`` fails, before or after the write, the error's
    ``filename`` is ``path``. Other errors name another file or none. A failed
    fsync of the directory is logged and not raised, because the rename is
    already visible by then.
    """
    directory = path.parent
    if preserve_mode:
        with contextlib.suppress(FileNotFoundError):
            mode = stat.S_IMODE(os.stat(path).st_mode)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)

    try:
        with os.fdopen(descriptor, "wb") as stream:
            os.fchmod(stream.fileno(), mode)
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        if min_mtime_ns is not None:
            mtime_ns = max(time.time_ns(), min_mtime_ns)
            os.utime(temporary, ns=(mtime_ns, mtime_ns))
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise

    _fsync_directory(directory)
    return os.stat(path)


def _fsync_directory(directory: Path) -> None:
    # The rename is already visible, so a failure here only weakens durability
    # across a power loss. The change remains and is not reported as failed.
    try:
        descriptor = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        logger.warning("cannot open directory %s to fsync it: %s", directory, exc.strerror)
        return
    try:
        os.fsync(descriptor)
    except OSError as exc:
        logger.warning("fsync of directory %s failed: %s", directory, exc.strerror)
    finally:
        os.close(descriptor)
