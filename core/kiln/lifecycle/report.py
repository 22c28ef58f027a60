"""The startup report: what kiln did in one engine process and how long it took.

Written as JSON next to the archive (``startup-report.json``) and logged as one line, so
that both scripts and people see, e.g., that a LOAD fell back and why.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kiln.lifecycle import cache_report


@dataclass(frozen=True)
class StartupReport:
    kiln_version: str
    engine: str
    requested_mode: str
    mode: str  # save, load, or native after a fallback
    policy: str
    load_builds: str  # background | before-ready: when LOAD's own executables must exist
    outcome: str  # saved | restored | fallback | failed
    archive: str | None
    rank: int
    world_size: int
    pid: int
    graphs_captured: int
    graphs_restored: int
    # LOAD: of the restored graphs, how many replayed through their own executable when
    # ready ran, and how many still through their topology group's template (own one still
    # being built in the background, or failed); None when nothing was restored.
    graphs_own_executable_at_ready: int | None
    graphs_on_template_at_ready: int | None
    bytes_mapped: int
    kv_capacity: dict[str, int] | None
    fallback_reason: str | None
    error: dict[str, str] | None  # {"stage", "type", "message"} when a stage failed
    phases_s: dict[str, float | None]
    total_s: float | None
    stages: list[dict[str, object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Under `kiln run`: the engine caches (kiln.lifecycle.cache_report): which came from
    # the archive, which SAVE stored, which files were compiled during this start.
    caches: dict[str, object] | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def log_line(self) -> str:
        graphs = (
            f"{self.graphs_restored} graphs restored"
            if self.graphs_restored
            else f"{self.graphs_captured} graphs captured"
        )
        if self.graphs_own_executable_at_ready is not None:
            graphs += (
                f" ({self.graphs_own_executable_at_ready} with their own executable at ready, "
                f"{self.graphs_on_template_at_ready} on templates)"
            )
        phases = " ".join(
            f"{name}={value:.3f}s" for name, value in self.phases_s.items() if value is not None
        )
        total = f" in {self.total_s:.3f}s" if self.total_s is not None else ""
        line = (
            f"kiln: {self.outcome}{total} [{self.engine} rank {self.rank}, {self.mode}] "
            f"{graphs}, {_mib(self.bytes_mapped)} mapped; {phases}"
        )
        line += cache_report.log_text(self.caches)
        if self.fallback_reason:
            line += f"; fell back: {self.fallback_reason}"
        if self.error and self.outcome == "failed":
            line += f"; failed at {self.error['stage']}: {self.error['message']}"
        return line


def write_report(report: StartupReport, path: Path) -> None:
    """Write the report atomically: a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(report.as_dict(), indent=2) + "\n"  # keeps the phases in order
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(data)
            os.fchmod(out.fileno(), 0o644)  # mkstemp's 0600 would hide it from monitoring
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"
