"""Which stream a restored graph replays on when none is given, against a stand-in torch:
the current stream's raw handle, read without building a Stream object per replay."""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any

import pytest
from kiln.graphs.restored import _stream_handle, current_stream_handle


def fake_torch(monkeypatch: pytest.MonkeyPatch, *, raw_getter: bool) -> list[Any]:
    calls: list[Any] = []

    def current_stream(device: int) -> Any:
        calls.append(("current_stream", device))
        return SimpleNamespace(cuda_stream=0x5500 + device)

    def raw(device: int) -> int:
        calls.append(("raw", device))
        return 0x7700 + device

    c_module = SimpleNamespace(_cuda_getCurrentRawStream=raw) if raw_getter else SimpleNamespace()
    torch = SimpleNamespace(_C=c_module, cuda=SimpleNamespace(current_stream=current_stream))
    monkeypatch.setitem(sys.modules, "torch", torch)
    return calls


def test_the_current_stream_is_read_through_the_raw_getter(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_torch(monkeypatch, raw_getter=True)
    assert _stream_handle(None, 3) == 0x7703
    assert current_stream_handle(1) == 0x7701
    assert calls == [("raw", 3), ("raw", 1)]  # no Stream object built


def test_without_the_raw_getter_the_current_stream_object_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = fake_torch(monkeypatch, raw_getter=False)
    assert _stream_handle(None, 2) == 0x5502
    assert calls == [("current_stream", 2)]


def test_a_given_stream_or_raw_handle_is_used_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_torch(monkeypatch, raw_getter=True)
    assert _stream_handle(SimpleNamespace(cuda_stream=0x42), 0) == 0x42
    assert _stream_handle(0x43, 0) == 0x43
    assert calls == []
