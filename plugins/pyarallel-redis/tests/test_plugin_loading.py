"""The installed entry point registers the plugin (it shows in ``pyarallel plugins``), and
registering it imports neither redis nor the limiter: a process that never uses Redis pays
nothing for the plugin."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import pyarallel


def test_the_entry_point_registers_the_rate_limiter_hook() -> None:
    (plugin,) = [info for info in pyarallel.list_plugins() if info.name == "redis"]
    assert plugin.hooks == ("pyarallel_rate_limiter",)
    assert plugin.distribution is not None
    assert plugin.distribution.startswith("pyarallel-redis ")


@pytest.mark.timeout(60)
def test_pyarallel_plugins_lists_it() -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "pyarallel", "plugins"], capture_output=True, text=True, timeout=50, check=True
    )
    assert "redis  [pyarallel-redis 0.1.0]" in listed.stdout
    assert "hooks: pyarallel_rate_limiter" in listed.stdout.split("redis  [pyarallel-redis", 1)[1]


@pytest.mark.timeout(60)
def test_loading_the_plugin_imports_no_redis() -> None:
    script = textwrap.dedent(
        """
        import sys, warnings
        warnings.simplefilter("ignore")  # other plugins' load warnings are not ours
        import pyarallel
        assert any(info.name == "redis" for info in pyarallel.list_plugins())
        assert pyarallel.parallel_map(abs, [-1, 2], rate_limit=1000).values() == [1, 2]
        loaded = sorted(name for name in sys.modules if name.startswith(("redis", "pyarallel_redis")))
        assert loaded == ["pyarallel_redis", "pyarallel_redis._plugin"], loaded
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=50)


@pytest.mark.timeout(60)
def test_making_a_spec_connects_to_nothing_and_imports_no_redis() -> None:
    script = textwrap.dedent(
        """
        import sys
        from pyarallel_redis import RedisRateLimit
        spec = RedisRateLimit(10, url="redis://127.0.0.1:1/0", name="nowhere")
        assert "redis" not in sys.modules, sorted(sys.modules)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=50)


@pytest.mark.timeout(60)
def test_the_typed_forms_need_no_entry_point() -> None:
    # in a process of its own: unregistering the plugin here would change this session's
    script = textwrap.dedent(
        """
        import warnings
        warnings.simplefilter("ignore")
        import pyarallel
        from pyarallel_redis import RedisLimiter, RedisRateLimit

        pyarallel.unregister_plugin("redis")
        for rate_limit in (
            RedisLimiter(1, url="redis://127.0.0.1:1/0", name="n", on_unavailable="fail_open"),
            RedisRateLimit(1, url="redis://127.0.0.1:1/0", name="n", on_unavailable="fail_open"),
        ):
            assert pyarallel.parallel_map(abs, [-3], rate_limit=rate_limit).values() == [3]
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=50)
