"""kiln.env_settings: checked counts and switches from the environment."""

from __future__ import annotations

import pytest
from kiln.env_settings import count_setting, switch_setting
from kiln.errors import KilnError


def test_a_count_comes_from_the_argument_then_the_environment_then_the_default() -> None:
    assert count_setting("N", 3, "things", environ={}) == 3
    assert count_setting("N", 3, "things", environ={"N": "0"}) == 0
    assert count_setting("N", 3, "things", 7, environ={"N": "0"}) == 7


@pytest.mark.parametrize(
    ("raw", "message"), [("", "N='' is not a count of things"), ("-2", ">= 0")]
)
def test_a_bad_count_names_the_variable_or_the_bound(raw: str, message: str) -> None:
    with pytest.raises(KilnError, match=message):
        count_setting("N", 3, "things", environ={"N": raw})


def test_a_switch_is_on_unless_zero_and_refuses_other_values_with_their_meaning() -> None:
    assert switch_setting("S", "go", "stop", environ={}) is True
    assert switch_setting("S", "go", "stop", environ={"S": "0"}) is False
    with pytest.raises(KilnError, match=r"S='on': use 1 \(go\) or 0 \(stop\)"):
        switch_setting("S", "go", "stop", environ={"S": "on"})
