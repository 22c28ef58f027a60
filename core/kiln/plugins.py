"""Adapter discovery and the plugin manager.

Adapters are separate distributions (``kiln-vllm``, ``kiln-sglang``, ``kiln-trtllm``) that
register one object under the entry-point group ``kiln.adapters``::

    [project.entry-points."kiln.adapters"]
    vllm = "kiln_vllm:plugin"

The object (a module or an instance) carries its hook implementations
(:data:`kiln.hooks.hookimpl`) and declares what it adapts::

    kiln_adapter = AdapterSpec(engine="vllm", engine_versions=">=0.24,<0.25")

``engine=None`` declares an observer that applies to every engine (metrics, logging).
Importing an adapter must not import its engine: every adapter is imported in the launcher
and in every engine process, and only the ones for the running engine are registered there.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata

import pluggy

from kiln import hookspecs
from kiln.errors import KilnError
from kiln.hooks import PROJECT_NAME

ENTRY_POINT_GROUP = "kiln.adapters"
#: The attribute of an adapter object that holds its :class:`AdapterSpec`.
SPEC_ATTRIBUTE = "kiln_adapter"

log = logging.getLogger("kiln.plugins")


class AdapterLoadError(KilnError):
    """An adapter could not be loaded or does not follow the hook specification."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        super().__init__(f"adapter {name!r}: {reason}")


@dataclass(frozen=True)
class AdapterSpec:
    """What an adapter adapts, declared as ``kiln_adapter`` on the registered object."""

    engine: str | None
    #: PEP 440 specifier of the engine versions the adapter supports, e.g. ``">=0.24,<0.25"``.
    engine_versions: str = ""
    #: The distribution that carries the engine's version (default: ``engine``).
    engine_distribution: str | None = None
    summary: str = ""


@dataclass(frozen=True)
class AdapterInfo:
    """One ``kiln.adapters`` entry point, loaded or not."""

    name: str
    target: str
    distribution: str | None = None
    version: str | None = None
    spec: AdapterSpec | None = None
    engine_version: str | None = None  # the installed engine's version, if installed
    error: str | None = None
    plugin: object | None = field(default=None, compare=False, repr=False)

    @property
    def engine_supported(self) -> bool | None:
        """Whether the installed engine is in the supported range; ``None`` when unknown."""
        if self.spec is None or self.engine_version is None or not self.spec.engine_versions:
            return None
        from packaging.specifiers import InvalidSpecifier, SpecifierSet
        from packaging.version import InvalidVersion

        try:
            return SpecifierSet(self.spec.engine_versions).contains(
                self.engine_version, prereleases=True
            )
        except (InvalidSpecifier, InvalidVersion):
            return None

    def as_dict(self) -> dict[str, object]:
        spec = self.spec
        return {
            "name": self.name,
            "target": self.target,
            "distribution": self.distribution,
            "version": self.version,
            "engine": spec.engine if spec else None,
            "engine_versions": spec.engine_versions if spec else None,
            "engine_installed": self.engine_version,
            "engine_supported": self.engine_supported,
            "summary": spec.summary if spec else None,
            "error": self.error,
        }


def make_plugin_manager() -> pluggy.PluginManager:
    """A plugin manager that knows kiln's hook specifications and nothing else yet."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def discover_adapters(
    entry_points: Iterable[metadata.EntryPoint] | None = None,
    disabled: Collection[str] = (),
) -> list[AdapterInfo]:
    """Load every ``kiln.adapters`` entry point; failures are reported, not raised."""
    if entry_points is None:
        entry_points = metadata.entry_points(group=ENTRY_POINT_GROUP)
    found: list[AdapterInfo] = []
    seen: set[str] = set()
    for ep in sorted(entry_points, key=lambda e: e.name):
        if ep.name in disabled:
            continue
        dist = ep.dist
        base = AdapterInfo(
            name=ep.name,
            target=ep.value,
            distribution=dist.metadata["Name"] if dist is not None else None,
            version=dist.version if dist is not None else None,
        )
        if ep.name in seen:
            found.append(replace(base, error="another installed adapter has the same name"))
            continue
        seen.add(ep.name)
        found.append(_load(ep, base))
    return found


def register_adapters(
    pm: pluggy.PluginManager, adapters: Iterable[AdapterInfo], engine: str | None
) -> list[AdapterInfo]:
    """Register the loaded adapters for ``engine`` (all of them when ``engine`` is None).

    Returns the registered ones. An adapter that failed to load is logged; one whose hook
    implementations do not match the specification raises :class:`AdapterLoadError`.
    """
    registered: list[AdapterInfo] = []
    for info in adapters:
        if info.error is not None or info.spec is None:
            log.warning("kiln: adapter %s not loaded: %s", info.name, info.error)
            continue
        if engine is not None and info.spec.engine not in (None, engine):
            continue
        if pm.is_registered(info.plugin):
            continue
        register(pm, info.plugin, info.name)
        registered.append(info)
    return registered


def register(pm: pluggy.PluginManager, plugin: object, name: str) -> None:
    """Register one plugin and check its hook names and arguments against the specs."""
    try:
        pm.register(plugin, name=name)
        # Unknown kiln_* hook names would otherwise be accepted silently (a typo = dead hook).
        pm.check_pending()
    except (pluggy.PluginValidationError, ValueError) as err:
        if pm.is_registered(plugin):
            pm.unregister(plugin)
        raise AdapterLoadError(name, str(err)) from None


def _load(ep: metadata.EntryPoint, base: AdapterInfo) -> AdapterInfo:
    try:
        plugin = ep.load()
    except Exception as err:  # noqa: BLE001 - one broken adapter must not break the others
        return replace(base, error=f"import of {ep.value} failed: {type(err).__name__}: {err}")
    spec = getattr(plugin, SPEC_ATTRIBUTE, None)
    if not isinstance(spec, AdapterSpec):
        return replace(
            base,
            error=f"{ep.value} does not declare {SPEC_ATTRIBUTE} = kiln.plugins.AdapterSpec(...)",
        )
    return replace(base, spec=spec, plugin=plugin, engine_version=_engine_version(spec))


def _engine_version(spec: AdapterSpec) -> str | None:
    name = spec.engine_distribution or spec.engine
    if not name:
        return None
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def unsupported_engine(plugin: object) -> str | None:
    """Why the engine an adapter plugin adapts cannot run under it (installed outside the
    adapter's supported versions), or None. An engine that is not installed, or an adapter
    that declares no range, is not judged here."""
    spec = getattr(plugin, SPEC_ATTRIBUTE, None)
    if not isinstance(spec, AdapterSpec) or not spec.engine_versions:
        return None
    info = AdapterInfo(
        name=spec.engine or "?", target="", spec=spec, engine_version=_engine_version(spec)
    )
    if info.engine_supported is False:
        return (
            f"{spec.engine_distribution or spec.engine} {info.engine_version} is installed; its kiln "
            f"adapter supports {spec.engine_versions} (the engine code it attaches to may have "
            "changed)"
        )
    return None


def command_runs(command: Sequence[str], package: str, clis: Collection[str] = ()) -> bool:
    """Whether a `kiln run` command starts the engine whose Python package is `package`: one
    of its console scripts (`clis`), `python -m package...`, or a Python script (the first
    `.py` argument) that imports the package."""
    if not command:
        return False
    if os.path.basename(command[0]) in clis:
        return True
    for i, arg in enumerate(command[:-1]):
        if arg == "-m" and command[i + 1].split(".")[0] == package:
            return True
    scripts = [a for a in command[1:] if a.endswith(".py") and os.path.isfile(a)]
    for script in scripts[:1]:
        try:
            with open(script, encoding="utf-8", errors="replace") as f:
                text = f.read(1 << 20)
        except OSError:
            return False
        return f"import {package}" in text or f"from {package}" in text
    return False


def installed_version(distribution: str) -> str | None:
    """The installed version of a distribution, or None."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
