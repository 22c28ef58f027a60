"""libkiln_preload.so must be inert in processes that never touch CUDA: same output, same
exit status, with and without LD_PRELOAD."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

native = pytest.importorskip("kiln._native", reason="kiln's native extension is not built")

from kiln._paths import preload_library

PRELOAD = preload_library()
pytestmark = pytest.mark.skipif(not PRELOAD.exists(), reason=f"{PRELOAD} is not built")


def _env(preload: bool) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LD_PRELOAD", "KILN_ENABLE", "KILN_LOG", "KILN_LOG_LEVEL")
    }
    env["LC_ALL"] = "C"
    if preload:
        env["LD_PRELOAD"] = str(PRELOAD)
    return env


def _run(argv: list[str], preload: bool) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=False, capture_output=True, env=_env(preload), timeout=60)


COMMANDS = {
    "python-print": [sys.executable, "-c", "print(42)"],
    "python-exit-code": [
        sys.executable,
        "-c",
        "import sys; sys.stderr.write('err\\n'); sys.exit(3)",
    ],
    "python-ctypes-dlsym": [
        sys.executable,
        "-c",
        "import ctypes; libc = ctypes.CDLL(None); print(bool(libc.getpid), libc.strlen(b'abc'))",
    ],
    "cc-version": ["cc", "--version"],
    "sh-echo": ["sh", "-c", "echo ok"],
    "sh-fail": ["sh", "-c", "echo out; echo err >&2; exit 7"],
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_output_and_status_identical_with_and_without_preload(name):
    argv = COMMANDS[name]
    if shutil.which(argv[0]) is None:
        pytest.skip(f"{argv[0]} is not installed")
    plain = _run(argv, preload=False)
    preloaded = _run(argv, preload=True)
    assert preloaded.returncode == plain.returncode
    assert preloaded.stdout == plain.stdout
    assert preloaded.stderr == plain.stderr


def test_expected_outputs_of_the_plain_runs():
    # Guards the comparison above against both runs failing the same way.
    assert _run(COMMANDS["python-print"], False).stdout == b"42\n"
    assert _run(COMMANDS["sh-echo"], False).stdout == b"ok\n"
    r = _run(COMMANDS["sh-fail"], True)
    assert (r.returncode, r.stdout, r.stderr) == (7, b"out\n", b"err\n")


CHECK = "import kiln._native as n; print(n.interposer_installed())"


def test_interposer_installed_true_under_ld_preload():
    r = _run([sys.executable, "-c", CHECK], preload=True)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b"True\n"
    assert r.stderr == b""


def test_interposer_installed_false_without_ld_preload():
    r = _run([sys.executable, "-c", CHECK], preload=False)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b"False\n"


def test_preloaded_process_can_use_the_fake_driver_region():
    # The interposer loaded first must not disturb the extension's own state.
    code = (
        "import kiln._native as n; from kiln_testing import testing as t;"
        "t.install_fake_driver(granularity=1 << 21);"
        "n.region_open(0, 1 << 40, 1 << 25, 0); print(hex(n.region_allocate(0, 5)));"
        "n.region_close(0); t.uninstall_fake_driver(); print(t.fake_driver_stats()['reservations'])"
    )
    outs = [_run([sys.executable, "-c", code], preload=p) for p in (False, True)]
    for r in outs:
        assert r.returncode == 0, r.stderr.decode()
    assert outs[0].stdout == outs[1].stdout == b"0x10000000000\n0\n"
