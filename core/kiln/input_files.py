"""Opening files kiln reads but does not own (reports, config files, archives) safely.

Such a path may name a FIFO (reading it would block), a device (``/dev/zero`` never ends) or
a huge file. :func:`open_regular` opens without blocking, refuses anything but a regular
file, and optionally refuses a symbolic link; :func:`read_bounded` also refuses a file
larger than its limit and never reads more than that limit.
"""

from __future__ import annotations

import errno
import os
import stat

from kiln.errors import InputFileError, InputFileMissing

__all__ = ["open_regular", "read_bounded"]


def open_regular(
    path: str | os.PathLike[str], what: str, *, follow_symlinks: bool = True, flags: int = 0
) -> tuple[int, os.stat_result]:
    """A file descriptor of regular file ``path`` and its ``fstat``; the caller closes it.

    ``what`` names the file in errors (``"startup report"``). Opens with ``O_NONBLOCK``
    (a FIFO cannot block the open) and, unless ``follow_symlinks``, ``O_NOFOLLOW``."""
    name = os.fspath(path)
    mode = flags or os.O_RDONLY
    mode |= os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        fd = os.open(name, mode, 0o644)
    except FileNotFoundError:
        raise InputFileMissing(f"cannot open {what} {name}: no such file") from None
    except OSError as err:
        if err.errno == errno.ELOOP and not follow_symlinks:
            raise InputFileError(f"{what} {name} is a symbolic link; kiln does not follow it")
        raise InputFileError(f"cannot open {what} {name}: {err.strerror or err}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputFileError(f"{what} {name} is {_kind(st.st_mode)}, not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_bounded(path: str | os.PathLike[str], limit: int, what: str) -> bytes:
    """The bytes of regular file ``path``; :class:`InputFileError` when it is something else
    or holds more than ``limit`` bytes (:class:`InputFileMissing` when it does not exist)."""
    fd, st = open_regular(path, what)
    try:
        if st.st_size > limit:
            raise InputFileError(
                f"{what} {os.fspath(path)} holds {st.st_size} bytes, more than the {limit} "
                "kiln reads"
            )
        chunks: list[bytes] = []
        left = limit + 1  # one byte more than allowed tells a file that grew while read
        while left > 0:
            try:
                chunk = os.read(fd, min(left, 1 << 20))
            except OSError as err:
                raise InputFileError(
                    f"cannot read {what} {os.fspath(path)}: {err.strerror or err}"
                ) from None
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        if left <= 0:
            raise InputFileError(f"{what} {os.fspath(path)} holds more than {limit} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"
