"""Process pools after a timeout: the items that timed out are really gone, even when the
next call replaces the pool, so the interpreter exits at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import time
    from pyarallel import parallel_map

    if __name__ == "__main__":
        result = parallel_map(time.sleep, [120, 120], executor="process", workers=2, timeout=1)
        assert [type(e).__name__ for _, e in result.failures()] == ["ItemTimeoutError"] * 2
        # the next call replaces the killed pool; it must not undo the kill
        assert parallel_map(abs, [-1, -2], executor="process", workers=2).values() == [1, 2]
        print("done", flush=True)
    """
)


@pytest.mark.timeout(120)
def test_exit_is_prompt_after_a_timeout_and_another_process_call(tmp_path: Path) -> None:
    script = tmp_path / "timeout_then_call.py"
    script.write_text(SCRIPT)
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=110, check=False
    )
    elapsed = time.monotonic() - started
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "done"
    # the timed-out items sleep 120 s: exiting in well under that proves they were killed
    assert elapsed < 60, f"the interpreter took {elapsed:.1f} s to finish"
