"""The hook specification is complete, documented, and marks firstresult where documented."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys

import pluggy
import pytest
from kiln import hookspecs
from kiln.hooks import PROJECT_NAME, hookimpl
from kiln.plugins import make_plugin_manager

from tests.lifecycle.helpers import HOOK_NAMES, subprocess_env

FIRSTRESULT = {"kiln_warmup_policy", "kiln_kv_capacity", "kiln_capture_graph"}
REQUIRED = {
    "kiln_launch_fingerprint",
    "kiln_child_env",
    "kiln_process_init",
    "kiln_pin_settings",
    "kiln_fingerprint",
    "kiln_device_bound",
    "kiln_communicators_ready",
    "kiln_weights_loaded",
    "kiln_collectives_bootstrapped",
    "kiln_warmup_policy",
    "kiln_kv_capacity",
    "kiln_capture_begin",
    "kiln_capture_graph",
    "kiln_capture_end",
    "kiln_region_close",
    "kiln_ready",
    "kiln_failure",
}


def test_spec_defines_every_lifecycle_hook_of_the_issue() -> None:
    assert set(HOOK_NAMES) == REQUIRED


def test_markers_belong_to_project_kiln() -> None:
    assert PROJECT_NAME == "kiln"
    assert isinstance(hookimpl, pluggy.HookimplMarker)
    assert hookimpl.project_name == "kiln"
    pm = make_plugin_manager()
    assert pm.project_name == "kiln"
    assert {
        caller.name for caller in pm.hook.__dict__.values() if hasattr(caller, "name")
    } >= REQUIRED


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_firstresult_is_set_exactly_on_decision_hooks(name: str) -> None:
    opts = getattr(hookspecs, name).kiln_spec
    assert opts["firstresult"] is (name in FIRSTRESULT)
    doc = inspect.getdoc(getattr(hookspecs, name)) or ""
    if name in FIRSTRESULT:
        assert "Stops at the first non-``None`` result (firstresult)." in doc
    elif "returns:" in doc:
        assert "All results are collected" in doc


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_each_hook_documents_when_where_and_every_argument(name: str) -> None:
    function = getattr(hookspecs, name)
    doc = inspect.getdoc(function) or ""
    assert "**When:**" in doc, f"{name} does not say when it fires"
    assert "**Process:**" in doc, f"{name} does not say in which process it fires"
    for parameter in inspect.signature(function).parameters:
        assert f":param {parameter}:" in doc, f"{name} does not document {parameter!r}"
    assert function.__annotations__.get("return") is not None, f"{name} has no return type"


def test_module_doc_lists_engine_hooks_in_the_drivers_stage_order() -> None:
    from kiln.lifecycle.stages import ORDER

    listed = re.findall(r":func:`(kiln_\w+)`", hookspecs.__doc__ or "")
    hookless = ("builds_finished",)  # the driver's own wait inside ready(); no hook fires
    engine_hooks = [
        f"kiln_{stage.value}"
        for stage in ORDER
        if stage.value not in ("pin_settings", "kv_capacity", "capture_graph", *hookless)
    ]
    positions = [listed.index(hook) for hook in engine_hooks]
    assert positions == sorted(positions)


def test_importing_the_public_modules_loads_neither_torch_nor_native_code() -> None:
    code = (
        "import sys, kiln.hookspecs, kiln.plugins, kiln.config, kiln.cli, kiln.lifecycle;"
        "bad = [m for m in ('torch', 'kiln._native', 'rich') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=subprocess_env(),
    )
    assert out.stdout.strip() == ""
