"""A lock against two concurrent SAVEs of the same archive.

:func:`archive_lock` takes a non-blocking exclusive ``flock`` on ``<archive>.lock``. The
lock belongs to the open file, so it also excludes a second holder in the same process
(another thread, or a nested ``archive_lock`` on the same path). The kernel drops it when
the holder exits, however it exits. The lock file is opened without following a symbolic
link and must be a regular file. It is left in place: removing it would let
two processes lock different files of the same name.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from kiln.errors import ArchiveError, ArchiveLocked, InputFileError
from kiln.input_files import open_regular

__all__ = ["archive_lock", "lock_path"]


def lock_path(path: str | os.PathLike[str]) -> str:
    """The lock file that guards archive ``path``."""
    return os.fspath(path) + ".lock"


@contextmanager
def archive_lock(path: str | os.PathLike[str]) -> Iterator[str]:
    """Hold the SAVE lock of archive ``path`` for the ``with`` block; yields the lock path.

    Raises :class:`ArchiveLocked` at once (never waits) when another holder has it, and
    :class:`ArchiveError` when the lock file cannot be opened.
    """
    lpath = lock_path(path)
    try:
        # Never through a symbolic link (a dangling one would make kiln create its target),
        # never a FIFO or a device.
        fd, _ = open_regular(
            lpath, "lock file", follow_symlinks=False, flags=os.O_RDWR | os.O_CREAT
        )
    except InputFileError as err:
        raise ArchiveError(str(err)) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ArchiveLocked(
                    f"archive {os.fspath(path)} is locked by another SAVE (lock file {lpath})"
                ) from None
            raise ArchiveError(f"cannot lock {lpath}: {err.strerror or err}") from err
        try:
            yield lpath
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
