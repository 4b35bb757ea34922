"""The installed entry point registers the plugin, and registering it imports neither
tenacity nor this package's policy module: a process that never uses tenacity pays
nothing for the plugin."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import pyarallel


@pytest.mark.timeout(60)
def test_the_entry_point_registers_the_retry_policy_hook() -> None:
    (plugin,) = [info for info in pyarallel.list_plugins() if info.name == "tenacity"]
    assert plugin.hooks == ("pyarallel_retry_policy",)
    assert plugin.distribution is not None
    assert plugin.distribution.startswith("pyarallel-tenacity ")


@pytest.mark.timeout(60)
def test_loading_the_plugin_imports_no_tenacity() -> None:
    script = textwrap.dedent(
        """
        import sys, warnings
        warnings.simplefilter("ignore")  # other plugins' load warnings are not ours
        import pyarallel
        assert any(info.name == "tenacity" for info in pyarallel.list_plugins())
        assert pyarallel.parallel_map(abs, [-1, 2], retry=pyarallel.Retry(attempts=2)).values() == [1, 2]
        loaded = sorted(name for name in sys.modules if name.startswith(("tenacity", "pyarallel_tenacity")))
        assert loaded == ["pyarallel_tenacity", "pyarallel_tenacity._plugin"], loaded
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=50)


@pytest.mark.timeout(60)
def test_the_typed_forms_need_no_entry_point() -> None:
    # in a process of its own: unregistering the plugin here would change this session's
    script = textwrap.dedent(
        """
        import warnings
        warnings.simplefilter("ignore")  # other plugins' load warnings are not ours
        import pyarallel, tenacity
        from pyarallel_tenacity import TenacityRetry, from_tenacity

        class FailsOnce:
            def __init__(self):
                self.attempts = []

            def __call__(self, item):
                self.attempts.append(item)
                if len(self.attempts) == 1:
                    raise ConnectionError(item)
                return item

        pyarallel.unregister_plugin("tenacity")
        spec = TenacityRetry(stop=tenacity.stop_after_attempt(2))
        wrapped = from_tenacity(tenacity.Retrying(stop=tenacity.stop_after_attempt(2)))
        for retry in (spec, wrapped):
            work = FailsOnce()
            assert pyarallel.parallel_map(work, [7], retry=retry).values() == [7]
            assert work.attempts == [7, 7], work.attempts
        try:  # the untyped form is the plugin's
            pyarallel.parallel_map(abs, [1], retry=tenacity.Retrying())
        except TypeError as error:
            assert "retry must be" in str(error), error
        else:
            raise AssertionError("a Retrying was accepted without the plugin")
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=50)
