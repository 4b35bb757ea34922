"""Fixtures shared by the test modules (shared plugin objects live in ``support``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from pyarallel import register_plugin, unregister_plugin
from pyarallel._plugins import plugin_manager


@pytest.fixture
def register() -> Iterator[Callable[..., str]]:
    """Register plugins for one test; whatever is still registered at the end is removed."""
    registered: list[object] = []

    def _register(plugin: object, name: str | None = None) -> str:
        registered.append(plugin)
        return register_plugin(plugin, name)

    yield _register
    manager = plugin_manager()
    for plugin in reversed(registered):
        if manager.is_registered(plugin):
            unregister_plugin(plugin)
