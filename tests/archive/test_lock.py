"""The SAVE lock: exclusive, non-blocking, across processes and within one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from kiln.archive import archive_lock, lock_path
from kiln.errors import ArchiveError, ArchiveLocked

CORE = Path(__file__).resolve().parents[2] / "core"

_CHILD = """
import sys
from kiln.archive import archive_lock
from kiln.errors import ArchiveLocked
mode, path = sys.argv[1], sys.argv[2]
if mode == "try":
    try:
        with archive_lock(path):
            print("acquired", flush=True)
    except ArchiveLocked as err:
        print("locked:", err, flush=True)
else:  # hold until stdin closes
    with archive_lock(path):
        print("holding", flush=True)
        sys.stdin.read()
"""


def _child(mode: str, path: Path) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CORE), env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, mode, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_lock_yields_and_releases(tmp_path: Path) -> None:
    path = tmp_path / "a.kiln"
    with archive_lock(path) as held:
        assert held == str(path) + ".lock" == lock_path(path)
        assert os.path.exists(held)
    with archive_lock(path):  # released: can be taken again
        pass
    assert os.path.exists(lock_path(path))  # the lock file stays, by design


def test_second_holder_in_subprocess_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.kiln"
    with archive_lock(path):
        out, _ = _child("try", path).communicate(timeout=60)
    assert out.startswith("locked:"), out
    assert str(path) in out
    out, _ = _child("try", path).communicate(timeout=60)
    assert out.strip() == "acquired"


def test_lock_held_by_subprocess_refuses_us(tmp_path: Path) -> None:
    path = tmp_path / "a.kiln"
    holder = _child("hold", path)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(ArchiveLocked, match=str(path)), archive_lock(path):
            pass
    finally:
        holder.communicate(timeout=60)  # closes stdin: the holder exits, the lock goes
    assert holder.returncode == 0
    with archive_lock(path):
        pass


def test_second_holder_in_same_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.kiln"
    with archive_lock(path), pytest.raises(ArchiveLocked), archive_lock(path):
        pass


def test_lock_released_on_exception(tmp_path: Path) -> None:
    path = tmp_path / "a.kiln"
    with pytest.raises(RuntimeError), archive_lock(path):
        raise RuntimeError("save failed")
    with archive_lock(path):
        pass


def test_unopenable_lock_file(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "a.kiln"
    with pytest.raises(ArchiveError, match="cannot open lock file"), archive_lock(missing):
        pass


def test_a_dangling_symlink_at_the_lock_creates_nothing_at_its_target(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "created-by-kiln"
    target.parent.mkdir()
    archive = tmp_path / "graphs.kiln"
    Path(lock_path(archive)).symlink_to(target)
    with pytest.raises(ArchiveError, match="symbolic link"), archive_lock(archive):
        pass
    assert not target.exists()


def test_a_fifo_at_the_lock_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "graphs.kiln"
    os.mkfifo(lock_path(archive))
    with pytest.raises(ArchiveError, match="a FIFO, not a regular file"), archive_lock(archive):
        pass
