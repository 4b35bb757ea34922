"""The documentation site builds, and every example in it runs.

- ``mkdocs build --strict`` succeeds: no warning, no broken link or anchor, every page in
  the nav, the API reference rendered from the docstrings.
- Every ```` ```python ```` block of every page under ``docs/`` (and of ``README.md``)
  runs. The blocks of one page run in one interpreter, in order, sharing one namespace
  (the ``__main__`` module's, like a script a reader builds up by following the page),
  in a temporary working directory, with ``PYARALLEL_CHECKPOINT_SECRET`` set. A failure
  names the page, the block and its line. Snippets that are not Python use other fences
  (```` ```text ````, ```` ```console ````, ```` ```sh ````); no Python block is exempt.
- Blocks that need a service get a local one, started here and passed in the environment
  variable the page documents: a user API (``USERS_API_URL``, the demo's server of
  ``examples/_demo_server.py``), an LLM-style API with requests- and tokens-per-minute
  quotas (``LLM_API_URL``, ``tests/quota_server.py``), a Dask scheduler
  (``PYARALLEL_DASK_ADDRESS``, a ``LocalCluster`` of threads on 127.0.0.1), a Redis
  server (``REDIS_URL``, ``redis-server`` on a free port of 127.0.0.1). A page gets a
  service only if one of its blocks names its variable.

The pages run concurrently (a few at a time: most of their time is spent in rate-limited
waits and sleeps), started by the first test that needs one; each test then reports its
own page.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MKDOCS = Path(sys.executable).with_name("mkdocs")

# How many pages run at once. Their blocks mostly wait (rate limits, sleeps); more would
# only make the CPU-bound ones (process pools, Dask) fight over two cores.
CONCURRENT_PAGES = 4
PAGE_TIMEOUT = 90.0

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$")
_INCLUDE = re.compile(r'^--8<-- "([^"]+)"\s*$', re.M)


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the block's first line of code in its file
    source: str


def _pages() -> list[Path]:
    return sorted([*DOCS.rglob("*.md"), ROOT / "README.md"])


def _page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def _text(page: Path) -> str:
    """The page's Markdown, with a whole-line snippet include (``--8<-- "FILE"``) expanded."""
    text = page.read_text(encoding="utf-8")
    return _INCLUDE.sub(lambda m: (ROOT / m.group(1)).read_text(encoding="utf-8"), text)


def fenced_blocks(text: str) -> list[tuple[str, Block, bool]]:
    """Every fenced code block of a Markdown text, in order, as ``(info, block, closed)``:
    the fence's info string (``python``, ``text``...), the block (dedented when the fence is
    indented, in a list), and whether a closing fence was found before the end."""
    blocks: list[tuple[str, Block, bool]] = []
    lines = text.split("\n")
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        index += 1
        if not match:
            continue
        indent, fence, info = match.group("indent"), match.group("fence"), match.group("info").strip()
        body: list[str] = []
        start = index + 1
        closed = False
        while index < len(lines):
            closing = _FENCE.match(lines[index])
            if closing and closing.group("fence").startswith(fence) and not closing.group("info").strip():
                closed = True
                break
            body.append(lines[index][len(indent) :] if lines[index].startswith(indent) else lines[index])
            index += 1
        index += 1  # the closing fence
        blocks.append((info.split(" ")[0], Block(start, "\n".join(body) + "\n"), closed))
    return blocks


def python_blocks(text: str) -> list[Block]:
    """The ```python blocks of a Markdown text, in order."""
    return [block for info, block, _ in fenced_blocks(text) if info in ("python", "py", "python3")]


PAGES = {_page_id(page): python_blocks(_text(page)) for page in _pages()}
RUNNABLE = sorted(page for page, blocks in PAGES.items() if blocks)

# Runs one page's blocks in order in the namespace of ``__main__``; the first block that
# raises ends the run with its traceback (whose file and line are the page's).
RUNNER = r"""
def _run_page():
    import json, sys, time, traceback
    import __main__
    page, blocks = json.load(open(sys.argv[1], encoding="utf-8"))
    for number, (line, source) in enumerate(blocks, 1):
        print(f"--- {page}: block {number} of {len(blocks)} (line {line})", flush=True)
        print(f"--- {page}: block {number} of {len(blocks)} (line {line})", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            exec(compile("\n" * (line - 1) + source, page, "exec"), vars(__main__))
        except BaseException as error:  # SystemExit and KeyboardInterrupt fail the block too
            traceback.print_exc()
            print(f"DOCS-BLOCK-FAILED {number} {line} {type(error).__name__}", file=sys.stderr, flush=True)
            sys.exit(1)
        sys.stdout.flush()
        print(f"--- block {number} took {time.perf_counter() - started:.2f} s", file=sys.stderr, flush=True)
_run_page()
del _run_page
"""


@dataclass(frozen=True)
class PageRun:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


# -- services ---------------------------------------------------------------------------


# A LocalCluster of threads on 127.0.0.1 (tcp: the pages connect from their own process)
# that prints its address and runs until its stdin is closed.
_DASK_CLUSTER = """
import sys
from distributed import LocalCluster

with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp://",
                  host="127.0.0.1", dashboard_address=None) as cluster:
    print(cluster.scheduler_address, flush=True)
    sys.stdin.read()
"""


class Services:
    """The local services the pages need, each started on first use and stopped at the end."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._env: dict[str, str] = {}
        self._stops: list[Callable[[], object]] = []

    def env_for(self, text: str) -> dict[str, str]:
        env: dict[str, str] = {}
        with self._lock:
            for name, start in (
                ("USERS_API_URL", self._users_api),
                ("LLM_API_URL", self._llm_api),
                ("PYARALLEL_DASK_ADDRESS", self._dask),
                ("REDIS_URL", self._redis),
            ):
                if name in text:
                    if name not in self._env:
                        self._env[name] = start()
                    env[name] = self._env[name]
        return env

    def _users_api(self) -> str:
        sys.path.insert(0, str(ROOT / "examples"))
        from _demo_server import running_server

        manager = running_server(quota=200, window=1.0)  # 200 requests in any second
        server = manager.__enter__()
        self._stops.append(lambda: manager.__exit__(None, None, None))
        return server.url

    def _llm_api(self) -> str:
        from quota_server import Quota, QuotaServer

        # What docs/cookbook/llm-quotas.md says the service allows, per sliding minute.
        server = QuotaServer(
            [Quota(1_200, 60.0, "requests"), Quota(24_000, 60.0, "tokens")], latency=0.02, charge="used"
        ).start()
        self._stops.append(server.close)
        return server.url

    def _dask(self) -> str:
        # In a process of its own: importing distributed here would install tblib's
        # exception pickling in the test process and change what later tests see.
        cluster = subprocess.Popen(
            [sys.executable, "-c", _DASK_CLUSTER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert cluster.stdout is not None
        assert cluster.stdin is not None
        address = cluster.stdout.readline().strip()
        if not address.startswith("tcp://"):
            cluster.kill()
            raise RuntimeError(f"the Dask cluster did not start: {address!r}")
        stdin = cluster.stdin

        def stop() -> None:
            stdin.close()  # the cluster closes when its stdin does
            try:
                cluster.wait(timeout=30)
            except subprocess.TimeoutExpired:
                cluster.kill()
                cluster.wait()

        self._stops.append(stop)
        return address

    def _redis(self) -> str:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            raise RuntimeError("redis-server is not installed (`make pytest` installs it)")
        with socket.socket() as probe:  # a free port: redis-server cannot pick one itself
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._stops.append(lambda: (server.kill(), server.wait()))
        import redis

        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 10
        while True:  # wait until it accepts connections
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.01)
            finally:
                client.close()
        return f"redis://127.0.0.1:{port}/0"

    def close(self) -> None:
        for stop in reversed(self._stops):
            stop()


# -- running the pages ------------------------------------------------------------------


def _run_page(page: str, services: Services, workdir: Path) -> PageRun:
    blocks = PAGES[page]
    script = workdir / "blocks.json"
    script.write_text(json.dumps([page, [(b.line, b.source) for b in blocks]]), encoding="utf-8")
    env = {
        **os.environ,
        "PYARALLEL_CHECKPOINT_SECRET": "docs-test-secret",  # not the real home's key file
        "PYTHONUNBUFFERED": "1",
        **services.env_for("\n".join(b.source for b in blocks)),
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    out_path, err_path = workdir / "stdout.txt", workdir / "stderr.txt"
    started = time.perf_counter()
    # Output goes to files, not pipes, and the page runs in a session of its own: a worker
    # process it leaves behind can neither hold a pipe open nor outlive the test.
    with out_path.open("w") as out, err_path.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-c", RUNNER, str(script)],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        try:
            returncode = process.wait(timeout=PAGE_TIMEOUT)
            note = ""
        except subprocess.TimeoutExpired:
            returncode = -1
            note = f"\n{page}: timed out after {PAGE_TIMEOUT} s"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    seconds = time.perf_counter() - started
    return PageRun(returncode, out_path.read_text(), err_path.read_text() + note, seconds)


@pytest.fixture(scope="module")
def page_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Starts every selected page at once (``CONCURRENT_PAGES`` at a time); maps each page
    to the future of its run."""
    selected = [
        item.callspec.params["page"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_every_python_block_of_the_page_runs"
        and hasattr(item, "callspec")
    ]
    services = Services()
    pool = ThreadPoolExecutor(CONCURRENT_PAGES, thread_name_prefix="docs-page")
    slowest_first = sorted(dict.fromkeys(selected), key=lambda p: (p not in _SLOW_PAGES, p))
    futures: dict[str, Future[PageRun]] = {}
    for page in slowest_first:
        workdir = tmp_path_factory.mktemp(re.sub(r"\W+", "-", page))
        futures[page] = pool.submit(_run_page, page, services, workdir)
    try:
        yield futures
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        services.close()


# Pages that take longest (rate-limited runs, process pools, Dask): started first.
_SLOW_PAGES = frozenset(
    {
        "docs/quotas.md",
        "README.md",
        "docs/cookbook/cpu-fan-out.md",
        "docs/troubleshooting.md",
        "docs/cookbook/llm-quotas.md",
        "docs/cookbook/dask-cluster.md",
        "docs/user-guide/dask.md",
    }
)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("page", RUNNABLE)
def test_every_python_block_of_the_page_runs(page: str, page_runs: dict[str, Future[PageRun]]) -> None:
    run = page_runs[page].result()
    failed = re.search(r"DOCS-BLOCK-FAILED (\d+) (\d+) (\w+)", run.stderr)
    where = f"{page}, block {failed.group(1)} (line {failed.group(2)})" if failed else page
    assert run.returncode == 0, f"{where} failed:\n{run.stderr[-6000:]}\n--- stdout:\n{run.stdout[-2000:]}"


def test_the_pages_have_no_unrunnable_python_fences() -> None:
    """Every Python snippet is runnable: a ```pycon or ```py3 fence would escape the run,
    and an unclosed fence would hide the blocks after it."""
    for page in _pages():
        for info, block, closed in fenced_blocks(_text(page)):
            where = f"{_page_id(page)}, line {block.line - 1}"
            assert closed, f"{where}: a code fence that is never closed"
            assert info not in ("pycon", "py3", "ipython", "pytb"), f"{where}: a ```{info} block"


# -- the site ------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    build = subprocess.run(
        [str(MKDOCS), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert build.returncode == 0, build.stderr
    warnings = [line for line in build.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert not warnings, "\n".join(warnings)
    assert (
        (tmp_path / "site" / "api" / "running" / "index.html")
        .read_text(encoding="utf-8")
        .count("parallel_map")
    ), "the API reference was not rendered"


def test_the_api_reference_covers_every_public_name() -> None:
    import pyarallel

    pages = "\n".join(p.read_text(encoding="utf-8") for p in (DOCS / "api").glob("*.md"))
    documented = set(re.findall(r"^::: pyarallel\.(\w+)\s*$", pages, re.M))
    missing = set(pyarallel.__all__) - documented
    assert not missing, f"not in docs/api/: {sorted(missing)}"
    for module in ("contracts", "hookspecs", "testing"):
        assert module in documented, module
