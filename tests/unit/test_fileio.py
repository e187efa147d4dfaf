"""Unit tests of hyok.common.fileio: atomic file replacement, on real files in tmp_path."""

from __future__ import annotations

import errno
import logging
import multiprocessing
import os
import resource
import signal
import stat
import time
from pathlib import Path

import pytest

from hyok.common.fileio import atomic_write

OLD = b"old contents of the file"
NEW = b"new contents of the file"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_over_file_size_limit(path: str, limit: int) -> None:
    """Run in a child process: a write past ``limit`` bytes must raise EFBIG."""
    # Writes past the limit fail with EFBIG instead of killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        atomic_write(Path(path), b"x" * (limit + 1))
    except OSError as exc:
        assert exc.errno == errno.EFBIG
    else:
        raise AssertionError("atomic_write succeeded despite the file size limit")


# -- contents and mode ----------------------------------------------------------------


def test_new_file_gets_default_mode(tmp_path: Path) -> None:
    path = tmp_path / "file"
    atomic_write(path, NEW)
    assert path.read_bytes() == NEW
    assert mode_of(path) == 0o600
    assert os.listdir(tmp_path) == ["file"]


@pytest.mark.parametrize("preserve_mode", [False, True])
def test_new_file_gets_given_mode(tmp_path: Path, preserve_mode: bool) -> None:
    path = tmp_path / "file"
    atomic_write(path, NEW, mode=0o640, preserve_mode=preserve_mode)
    assert mode_of(path) == 0o640


def test_replaced_file_gets_given_mode(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(OLD)
    path.chmod(0o644)
    atomic_write(path, NEW, mode=0o600)
    assert path.read_bytes() == NEW
    assert mode_of(path) == 0o600


def test_replaced_file_keeps_mode_when_preserved(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(OLD)
    path.chmod(0o640)
    atomic_write(path, NEW, mode=0o600, preserve_mode=True)
    assert path.read_bytes() == NEW
    assert mode_of(path) == 0o640
    assert os.listdir(tmp_path) == ["file"]


def test_returns_status_of_new_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(OLD)
    old_inode = path.stat().st_ino
    status = atomic_write(path, NEW)
    current = path.stat()
    assert status.st_ino == current.st_ino
    assert status.st_ino != old_inode
    assert status.st_size == len(NEW)
    assert status.st_mtime_ns == current.st_mtime_ns


# -- modification time ------------------------------------------------------------------


def test_min_mtime_in_future_is_used(tmp_path: Path) -> None:
    path = tmp_path / "file"
    future_ns = time.time_ns() + 3600 * 10**9
    status = atomic_write(path, NEW, min_mtime_ns=future_ns)
    assert status.st_mtime_ns == future_ns
    assert path.stat().st_mtime_ns == future_ns


def test_min_mtime_in_past_uses_current_time(tmp_path: Path) -> None:
    path = tmp_path / "file"
    before_ns = time.time_ns()
    status = atomic_write(path, NEW, min_mtime_ns=0)
    # The file system may round the time down to its timestamp granularity.
    assert status.st_mtime_ns >= before_ns - 10**9
    assert status.st_mtime_ns <= time.time_ns()


def test_min_mtime_grows_with_each_write(tmp_path: Path) -> None:
    path = tmp_path / "file"
    times = [atomic_write(path, NEW, min_mtime_ns=0).st_mtime_ns]
    for _ in range(10):
        times.append(atomic_write(path, NEW, min_mtime_ns=times[-1] + 1).st_mtime_ns)
    assert times == sorted(set(times))


# -- failures ----------------------------------------------------------------------------


def test_write_failure_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(OLD)
    context = multiprocessing.get_context("spawn")
    child = context.Process(target=write_over_file_size_limit, args=(str(path), 100))
    child.start()
    child.join(timeout=90)
    assert child.exitcode == 0
    assert path.read_bytes() == OLD
    assert os.listdir(tmp_path) == ["file"]


def test_rename_failure_leaves_no_temporary_file(tmp_path: Path) -> None:
    # A non-empty directory at the path makes the final rename fail.
    path = tmp_path / "target"
    path.mkdir()
    (path / "inside").write_bytes(OLD)
    with pytest.raises(OSError) as caught:
        atomic_write(path, NEW)
    assert caught.value.filename is not None
    assert os.fspath(caught.value.filename) != os.fspath(path)
    assert os.listdir(tmp_path) == ["target"]
    assert (path / "inside").read_bytes() == OLD


def test_stat_failure_names_the_path(tmp_path: Path) -> None:
    parent = tmp_path / "not-a-directory"
    parent.write_bytes(OLD)
    path = parent / "file"
    with pytest.raises(NotADirectoryError) as caught:
        atomic_write(path, NEW, preserve_mode=True)
    assert caught.value.filename is not None
    assert os.fspath(caught.value.filename) == os.fspath(path)
    assert os.listdir(tmp_path) == ["not-a-directory"]


def test_create_failure_names_another_file(tmp_path: Path) -> None:
    parent = tmp_path / "not-a-directory"
    parent.write_bytes(OLD)
    path = parent / "file"
    with pytest.raises(NotADirectoryError) as caught:
        atomic_write(path, NEW)
    assert os.fspath(caught.value.filename) != os.fspath(path)
    assert parent.read_bytes() == OLD
    assert os.listdir(tmp_path) == ["not-a-directory"]


def test_directory_fsync_failure_only_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_fsync = os.fsync

    def fsync_failing_on_directories(descriptor: int) -> None:
        if stat.S_ISDIR(os.fstat(descriptor).st_mode):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync_failing_on_directories)
    path = tmp_path / "file"
    with caplog.at_level(logging.WARNING, logger="hyok.common.fileio"):
        atomic_write(path, NEW)
    assert path.read_bytes() == NEW
    assert [record.getMessage() for record in caplog.records] == [
        f"fsync of directory {tmp_path} failed: {os.strerror(errno.EIO)}"
    ]
