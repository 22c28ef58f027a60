"""Adapter objects for discovery tests, loaded through hand-made entry points."""

from __future__ import annotations

from typing import ClassVar

from kiln.hooks import hookimpl
from kiln.plugins import AdapterSpec


class Observer:
    kiln_adapter = AdapterSpec(engine=None, summary="observes every engine")
    seen: ClassVar[list[str]] = []

    @hookimpl
    def kiln_process_init(self, ctx: object) -> None:
        self.seen.append("process_init")


class OtherEngine:
    kiln_adapter = AdapterSpec(engine="other", engine_versions=">=1")

    @hookimpl
    def kiln_process_init(self, ctx: object) -> None:
        raise AssertionError("an adapter for another engine must not be registered")


class NoSpec:
    @hookimpl
    def kiln_process_init(self, ctx: object) -> None:
        pass


class Misspelled:
    kiln_adapter = AdapterSpec(engine="toy")

    @hookimpl
    def kiln_wieghts_loaded(self, ctx: object) -> None:
        pass


class WrongArguments:
    kiln_adapter = AdapterSpec(engine="toy")

    @hookimpl
    def kiln_weights_loaded(self, ctx: object, weights: object) -> None:
        pass


observer = Observer()
other_engine = OtherEngine()
no_spec = NoSpec()
misspelled = Misspelled()
wrong_arguments = WrongArguments()
