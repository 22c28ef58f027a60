"""Fresh SAVE/LOAD processes (kiln_workloads.fresh): what a finished process hands back."""

from __future__ import annotations

from pathlib import Path

from kiln_workloads.fresh import run_workload


def test_a_process_that_writes_nothing_never_hands_back_an_older_result(tmp_path: Path) -> None:
    # Regression: a LOAD that died without writing its result used to return the previous
    # run's file from the same archive directory (a benchmark then read stale numbers).
    (tmp_path / "load-none.json").write_text('{"ok": true, "replay_bench": null}')
    # An interpreter that cannot start writes nothing, as a crashed or killed one would.
    result, proc = run_workload(
        "matmul", "load", tmp_path, env={"PYTHONHOME": str(tmp_path / "missing")}, timeout=120
    )
    assert proc.returncode != 0
    assert result is None
