"""How many topology groups one template serves: the caller's limit, else
$KILN_TEMPLATE_GROUPS, else 1 (no merging), for kiln.load and engines alike."""

from __future__ import annotations

import pytest
from kiln.errors import KilnError
from kiln.graphs import store


def test_the_environment_overrides_the_default_and_a_limit_overrides_both(monkeypatch) -> None:
    monkeypatch.delenv("KILN_TEMPLATE_GROUPS", raising=False)
    assert store.template_group_limit() == 1
    monkeypatch.setenv("KILN_TEMPLATE_GROUPS", "0")
    assert store.template_group_limit() == 0
    assert store.template_group_limit(5) == 5


@pytest.mark.parametrize("raw", ["many", "-1", ""])
def test_a_setting_that_is_not_a_group_count_is_refused_by_name(monkeypatch, raw: str) -> None:
    monkeypatch.setenv("KILN_TEMPLATE_GROUPS", raw)
    with pytest.raises(KilnError, match="KILN_TEMPLATE_GROUPS|groups per template"):
        store.template_group_limit()
