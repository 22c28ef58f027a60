"""Adapter discovery through the kiln.adapters entry-point group, and registration rules."""

from __future__ import annotations

from importlib import metadata

import pytest
from kiln.plugins import (
    ENTRY_POINT_GROUP,
    AdapterInfo,
    AdapterLoadError,
    AdapterSpec,
    discover_adapters,
    make_plugin_manager,
    register,
    register_adapters,
)

from tests.lifecycle import plugin_samples

SAMPLES = "tests.lifecycle.plugin_samples"


def ep(name: str, attr: str) -> metadata.EntryPoint:
    return metadata.EntryPoint(name=name, value=f"{SAMPLES}:{attr}", group=ENTRY_POINT_GROUP)


def test_installed_test_adapter_is_found_through_its_entry_point(toy_adapter) -> None:
    found = {info.name: info for info in discover_adapters()}
    toy = found["toy"]
    assert toy.error is None
    assert toy.target == "kiln_test_adapter:plugin"
    assert toy.distribution == "kiln-test-adapter"
    assert toy.version == toy_adapter.version == "0.3.1"
    assert toy.spec is not None and toy.spec.engine == "toy"
    assert toy.spec.engine_versions == ">=0.3,<0.4"
    assert toy.engine_version == "0.3.1"
    assert toy.engine_supported is True


def test_entry_point_value_is_the_plugin_object_itself(toy_adapter) -> None:
    import kiln_test_adapter

    toy = next(info for info in discover_adapters() if info.name == "toy")
    assert toy.plugin is kiln_test_adapter.plugin


def test_an_adapter_that_fails_to_import_is_reported_not_raised() -> None:
    broken = metadata.EntryPoint("broken", "no_such_module_xyz:plugin", ENTRY_POINT_GROUP)
    (info,) = discover_adapters([broken])
    assert info.plugin is None
    assert info.error is not None and "no_such_module_xyz" in info.error


def test_an_adapter_without_spec_is_reported() -> None:
    (info,) = discover_adapters([ep("nospec", "no_spec")])
    assert info.error is not None and "kiln_adapter" in info.error


def test_disabled_adapters_are_not_even_imported() -> None:
    broken = metadata.EntryPoint("broken", "no_such_module_xyz:plugin", ENTRY_POINT_GROUP)
    assert discover_adapters([broken], disabled={"broken"}) == []


def test_two_adapters_with_one_name_report_the_second() -> None:
    first, second = discover_adapters([ep("dup", "observer"), ep("dup", "other_engine")])
    assert first.error is None
    assert second.error is not None and "same name" in second.error


def test_registration_keeps_observers_and_the_engines_adapter_only() -> None:
    pm = make_plugin_manager()
    infos = discover_adapters([ep("observer", "observer"), ep("other", "other_engine")])
    registered = register_adapters(pm, infos, engine="toy")
    assert [info.name for info in registered] == ["observer"]
    assert pm.is_registered(plugin_samples.observer)
    assert not pm.is_registered(plugin_samples.other_engine)


def test_registration_for_the_launcher_keeps_every_engine() -> None:
    pm = make_plugin_manager()
    infos = discover_adapters([ep("observer", "observer"), ep("other", "other_engine")])
    assert len(register_adapters(pm, infos, engine=None)) == 2


def test_a_misspelled_hook_name_is_an_error_naming_the_adapter() -> None:
    pm = make_plugin_manager()
    with pytest.raises(AdapterLoadError, match="'typo'.*kiln_wieghts_loaded"):
        register(pm, plugin_samples.misspelled, "typo")
    assert not pm.is_registered(plugin_samples.misspelled)


def test_hook_arguments_not_in_the_spec_are_an_error() -> None:
    pm = make_plugin_manager()
    with pytest.raises(AdapterLoadError, match="weights"):
        register(pm, plugin_samples.wrong_arguments, "wrong")


@pytest.mark.parametrize(
    ("installed", "supported"), [("0.24.1", True), ("0.25.0", False), (None, None)]
)
def test_engine_support_is_judged_against_the_declared_range(
    installed: str | None, supported: bool | None
) -> None:
    spec = AdapterSpec(engine="vllm", engine_versions=">=0.24,<0.25")
    info = AdapterInfo("vllm", "x:y", spec=spec, engine_version=installed)
    assert info.engine_supported is supported
