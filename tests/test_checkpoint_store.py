"""The SQLite checkpoint store on its own: real files in ``tmp_path``, real SQLite, real
subprocesses where a process must die. No test reads or writes the real home directory:
``XDG_DATA_HOME`` points into ``tmp_path`` and the secret variable is unset."""

from __future__ import annotations

import hmac
import os
import pickle
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest

from pyarallel._builtin import sqlite_checkpoint
from pyarallel._builtin.sqlite_checkpoint import pyarallel_checkpoint_store
from pyarallel._checkpoint import Checkpoint, RecordedFailure, SQLiteCheckpointStore
from pyarallel._checkpoint.integrity import KEY_BYTES, SECRET_ENV, key_file_path
from pyarallel._checkpoint.sqlite_store import APPLICATION_ID
from pyarallel._errors import CheckpointError, PyarallelError
from pyarallel._plugins import BUILTIN_PLUGINS, plugin_manager
from pyarallel.contracts import CheckpointJob, CheckpointState, CheckpointStore

JOB = CheckpointJob("jobs:fetch", "map", False)
SECRET = b"test secret"


@pytest.fixture(autouse=True)
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Key files go under ``tmp_path``; no secret comes from the environment."""
    data_home = tmp_path / "xdg"
    monkeypatch.setenv("XDG_DATA_HOME", str(data_home))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(SECRET_ENV, raising=False)
    return data_home


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "job.db"


def failure(message: str = "boom") -> ValueError:
    try:
        raise ValueError(message)
    except ValueError as error:
        return error


def reopen(path: Path, job: CheckpointJob = JOB, **options: object) -> CheckpointState:
    """Everything recorded (``retry_failed=False`` unless given: the failures too)."""
    options.setdefault("retry_failed", False)
    store = SQLiteCheckpointStore(path, **options)  # type: ignore[arg-type]
    try:
        return store.open(job)
    finally:
        store.close()


def test_failures_to_retry_are_left_out_of_what_open_returns(tmp_path: Path) -> None:
    db = tmp_path / "job.db"
    store = SQLiteCheckpointStore(db, secret=SECRET)
    store.open(JOB)
    store.record_successes([0], ["a"])
    store.record_failure(1, failure("boom"))
    store.close()
    assert list(reopen(db, secret=SECRET, retry_failed=True).errors) == []
    assert dict(reopen(db, secret=SECRET, retry_failed=True).values) == {0: "a"}
    assert list(reopen(db, secret=SECRET).errors) == [1]


def records(path: Path) -> list[tuple[int, str, bytes, bytes]]:
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT id, kind, blob, mac FROM records ORDER BY id").fetchall()


def execute(path: Path, statement: str, *parameters: object) -> None:
    connection = sqlite3.connect(path)
    try:
        with connection:
            connection.execute(statement, parameters)
    finally:
        connection.close()


# Recording and reading back.


def test_a_new_file_starts_empty_and_records_round_trip(db: Path) -> None:
    store = SQLiteCheckpointStore(db, secret=SECRET)
    state = store.open(JOB)
    assert (dict(state.values), dict(state.errors)) == ({}, {})
    store.record_successes(range(0, 3), ["a", "b", "c"])
    store.record_successes([3, 4], [{"x": 1}, None])
    store.record_failure(5, failure("bad input"))
    store.close()

    state = reopen(db, secret=SECRET)
    assert dict(state.values) == {0: "a", 1: "b", 2: "c", 3: {"x": 1}, 4: None}
    assert list(state.errors) == [5]
    recorded = state.errors[5]
    assert isinstance(recorded, RecordedFailure)
    assert isinstance(recorded, PyarallelError)
    assert (recorded.error_type, recorded.message, recorded.key) == ("ValueError", "bad input", 5)
    assert "raise ValueError(message)" in recorded.traceback
    assert str(recorded) == "the recorded failure of an earlier run: ValueError: bad input"
    assert recorded.__notes__ == [
        f"The traceback recorded by the earlier run:\n{recorded.traceback.rstrip()}"
    ]


def test_keys_may_be_any_hashable_picklable_value(db: Path) -> None:
    store = SQLiteCheckpointStore(db, secret=SECRET)
    keyed = CheckpointJob("jobs:fetch", "starmap", True)
    store.open(keyed)
    store.record_successes(["https://a", ("host", 443), 7, frozenset({1})], [1, 2, 3, 4])
    store.record_failure(("host", 80), failure())
    store.close()
    state = reopen(db, keyed, secret=SECRET)
    assert dict(state.values) == {"https://a": 1, ("host", 443): 2, 7: 3, frozenset({1}): 4}
    assert list(state.errors) == [("host", 80)]


def test_later_records_win(db: Path) -> None:
    store = SQLiteCheckpointStore(db, secret=SECRET)
    store.open(JOB)
    store.record_failure(0, failure("first run"))
    store.record_failure(1, failure("first run"))
    store.record_failure(2, failure("first run"))
    store.close()
    store.open(JOB)
    store.record_successes(range(0, 2), ["fixed", "fixed"])  # the failures that succeeded
    store.record_failure(2, failure("second run"))
    store.record_successes([3], ["first value"])
    store.record_failure(3, failure("after a success"))  # never done by the scheduler: later wins
    store.record_successes([4], ["old"])
    store.record_successes([4], ["new"])
    store.close()
    state = reopen(db, secret=SECRET)
    assert dict(state.values) == {0: "fixed", 1: "fixed", 4: "new"}
    assert {key: error.message for key, error in state.errors.items()} == {  # type: ignore[attr-defined]
        2: "second run",
        3: "after a success",
    }


def test_a_batch_is_one_row_and_index_keys_stay_a_range(db: Path) -> None:
    store = SQLiteCheckpointStore(db, secret=SECRET)
    store.open(JOB)
    store.record_successes(range(1000, 2000), list(range(1000)))
    store.record_successes([], [])  # nothing to record: no row
    store.close()
    (row,) = records(db)
    keys, values = pickle.loads(row[2])
    assert keys == range(1000, 2000)
    assert values == list(range(1000))


def test_a_recorded_failure_recorded_again_keeps_its_original_text(db: Path) -> None:
    store = SQLiteCheckpointStore(db, secret=SECRET)
    store.open(JOB)
    store.record_failure(0, failure("original"))
    store.close()
    earlier = reopen(db, secret=SECRET).errors[0]
    store.open(JOB)
    store.record_failure(0, earlier)
    store.close()
    again = reopen(db, secret=SECRET).errors[0]
    assert (again.error_type, again.message, again.traceback) == (  # type: ignore[attr-defined]
        "ValueError",
        "original",
        earlier.traceback,  # type: ignore[attr-defined]
    )


def test_a_recorded_failure_pickles_and_names_a_non_builtin_type(db: Path) -> None:
    store = SQLiteCheckpointStore(db, secret=SECRET)
    store.open(JOB)
    store.record_failure("k", CheckpointError("custom"))
    store.close()
    recorded = reopen(db, secret=SECRET).errors["k"]
    assert recorded.error_type == "pyarallel._errors.CheckpointError"  # type: ignore[attr-defined]
    copy = pickle.loads(pickle.dumps(recorded))
    assert (copy.error_type, copy.message, copy.traceback, copy.key) == (
        recorded.error_type,  # type: ignore[attr-defined]
        "custom",
        recorded.traceback,  # type: ignore[attr-defined]
        "k",
    )


# Values and keys that cannot be pickled.


def test_an_unpicklable_value_is_left_out_with_one_warning(db: Path) -> None:
    store = SQLiteCheckpointStore(db, secret=SECRET)
    store.open(JOB)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store.record_successes(range(0, 4), [1, lambda: 2, 3, threading.Lock()])
        store.record_successes([4], [lambda: 4])
    assert [warning.category for warning in caught] == [RuntimeWarning]
    message = str(caught[0].message)
    assert "item 1 is not recorded" in message
    assert "its value cannot be pickled" in message
    assert "run again when the job is resumed" in message
    store.close()
    assert dict(reopen(db, secret=SECRET).values) == {0: 1, 2: 3}


def test_unpicklable_keys_are_left_out_and_each_run_warns_again(db: Path) -> None:
    class Key:  # a local class: hashable, not picklable
        pass

    store = SQLiteCheckpointStore(db, secret=SECRET)
    store.open(JOB)
    with pytest.warns(RuntimeWarning, match=r"its key cannot be pickled"):
        store.record_successes([Key(), "fine"], [1, 2])
    store.close()
    store.open(JOB)
    with pytest.warns(RuntimeWarning, match=r"its key cannot be pickled"):
        store.record_failure(Key(), failure())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store.record_successes([Key()], [3])  # this run has warned already
    store.close()
    state = reopen(db, secret=SECRET)
    assert (dict(state.values), dict(state.errors)) == ({"fine": 2}, {})


# The file: creation, permissions, durability.


def test_building_a_store_touches_no_file(db: Path) -> None:
    store = SQLiteCheckpointStore(db, secret=SECRET)
    assert pyarallel_checkpoint_store(checkpoint=db) is not None
    assert pyarallel_checkpoint_store(checkpoint=Checkpoint(db)) is not None
    assert not db.exists()
    store.close()  # closing a store never opened does nothing
    assert not db.exists()


def test_the_file_and_its_wal_and_shm_are_private(db: Path, private_home: Path) -> None:
    previous = os.umask(0)  # nothing masks the mode: pyarallel must ask for 0600 itself
    try:
        store = SQLiteCheckpointStore(db)  # the key file is created too
        store.open(JOB)
        store.record_successes([0], [0])
        modes = {suffix: stat.S_IMODE(os.stat(f"{db}{suffix}").st_mode) for suffix in ("", "-wal", "-shm")}
        store.close()
    finally:
        os.umask(previous)
    assert modes == {"": 0o600, "-wal": 0o600, "-shm": 0o600}
    key_file = Path(key_file_path())
    assert key_file == private_home / "pyarallel" / "checkpoint.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert len(key_file.read_bytes()) == KEY_BYTES
    assert [name for name in os.listdir(key_file.parent) if name != "checkpoint.key"] == []


def test_the_file_is_in_wal_mode_and_marked_as_a_checkpoint(db: Path) -> None:
    reopen(db, secret=SECRET)
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert connection.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
        meta = dict(connection.execute("SELECT name, value FROM meta WHERE name != 'mac'"))
    assert meta == {"format": 1, "function": "jobs:fetch", "form": "map", "keyed": 0}


def test_an_empty_existing_file_is_taken_as_new(db: Path) -> None:
    db.write_bytes(b"")  # as left by a process killed between creating and initialising it
    store = SQLiteCheckpointStore(db, secret=SECRET)
    store.open(JOB)
    store.record_successes([0], ["x"])
    store.close()
    assert dict(reopen(db, secret=SECRET).values) == {0: "x"}


CHILD = """
import os, signal, sys
from pyarallel._checkpoint import SQLiteCheckpointStore
from pyarallel.contracts import CheckpointJob

store = SQLiteCheckpointStore(sys.argv[1], secret=b"test secret")
store.open(CheckpointJob("jobs:fetch", "map", False))
for batch in range(50):
    store.record_successes(range(batch * 100, batch * 100 + 100), [f"v{n}" for n in range(100)])
    if batch == 39:
        store.record_failure(-1, ValueError("recorded last"))
        print("recorded", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_every_record_survives_the_process_being_killed(db: Path) -> None:
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(db)], capture_output=True, text=True, timeout=60, check=False
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert child.stdout == "recorded\n"
    assert Path(f"{db}-wal").exists()  # nothing was checkpointed into the main file by a close
    state = reopen(db, secret=SECRET)
    assert len(state.values) == 4000
    assert state.values[3999] == "v99"
    assert list(state.errors) == [-1]


# Stores may be used from any thread, and opened again.


def test_open_close_life(db: Path) -> None:
    store = SQLiteCheckpointStore(db, secret=SECRET)
    with pytest.raises(RuntimeError, match=r"is not open"):
        store.record_successes([0], [0])
    store.open(JOB)
    with pytest.raises(RuntimeError, match=r"already open"):
        store.open(JOB)
    store.record_successes([0], [0])
    store.close()
    store.close()
    with pytest.raises(RuntimeError, match=r"is not open"):
        store.record_failure(1, failure())
    assert dict(store.open(JOB).values) == {0: 0}  # a second run with the same object
    store.close()


def test_a_store_fails_to_open_cleanly_and_can_open_later(db: Path) -> None:
    other = CheckpointJob("jobs:other", "map", False)
    reopen(db, other, secret=SECRET)
    store = SQLiteCheckpointStore(db, secret=SECRET)
    with pytest.raises(CheckpointError):
        store.open(JOB)
    with pytest.raises(RuntimeError, match=r"is not open"):
        store.record_successes([0], [0])
    store.close()
    assert dict(store.open(other).values) == {}
    store.close()


def test_a_store_built_in_one_thread_runs_in_another(db: Path) -> None:
    store = SQLiteCheckpointStore(db, secret=SECRET)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            store.open(JOB)
            store.record_successes(range(0, 10), list(range(10)))
            store.close()
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert errors == []
    assert len(reopen(db, secret=SECRET).values) == 10


def test_two_stores_of_one_job_on_one_file_add_up(db: Path) -> None:
    first = SQLiteCheckpointStore(db, secret=SECRET)
    second = SQLiteCheckpointStore(db, secret=SECRET)
    first.open(JOB)
    second.open(JOB)
    first.record_successes([0], ["first"])
    second.record_successes([1], ["second"])
    first.close()
    second.close()
    assert dict(reopen(db, secret=SECRET).values) == {0: "first", 1: "second"}


def test_an_unopened_copy_pickles(db: Path) -> None:
    store = SQLiteCheckpointStore(db, secret=SECRET, retry_failed=False)
    store.open(JOB)
    copy = pickle.loads(pickle.dumps(store))
    store.close()
    assert (copy.path, copy.retry_failed) == (str(db), False)
    assert dict(copy.open(JOB).values) == {}
    copy.close()


# Refusing files of other jobs, and files that are not checkpoints.


@pytest.mark.parametrize(
    ("other", "written", "asked"),
    [
        (CheckpointJob("jobs:other", "map", False), "jobs:other (form 'map'", "jobs:fetch (form 'map'"),
        (CheckpointJob("jobs:fetch", "starmap", False), "(form 'starmap'", "(form 'map'"),
        (CheckpointJob("jobs:fetch", "map", True), "keyed by checkpoint_key=", "keyed by their input index"),
    ],
)
def test_refuses_the_checkpoint_of_another_job(
    db: Path, other: CheckpointJob, written: str, asked: str
) -> None:
    store = SQLiteCheckpointStore(db, secret=SECRET)
    store.open(other)
    store.record_successes([0], [0])
    store.close()
    with pytest.raises(CheckpointError, match=r"is the checkpoint of another job") as raised:
        reopen(db, secret=SECRET)
    message = str(raised.value)
    assert message.index(written) < message.index("not this call's") < message.index(asked)
    assert "pass another checkpoint path" in message
    assert "delete the file to start over" in message


def test_refuses_an_sqlite_database_of_something_else_and_leaves_it_alone(db: Path) -> None:
    execute(db, "CREATE TABLE customers (name TEXT)")
    execute(db, "INSERT INTO customers VALUES (?)", "Ada")
    before = db.read_bytes()
    with pytest.raises(CheckpointError, match=r"not a pyarallel checkpoint: it is an SQLite database of"):
        reopen(db, secret=SECRET)
    assert db.read_bytes() == before
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("delete",)


def test_refuses_a_file_that_is_not_sqlite(db: Path) -> None:
    data = os.urandom(4096)
    db.write_bytes(data)
    with pytest.raises(CheckpointError, match=r"not a pyarallel checkpoint: it is not an SQLite database"):
        reopen(db, secret=SECRET)
    assert db.read_bytes() == data


def test_refuses_a_checkpoint_of_a_newer_format(db: Path) -> None:
    reopen(db, secret=SECRET)
    execute(db, "UPDATE meta SET value = 2 WHERE name = 'format'")
    with pytest.raises(CheckpointError, match=r"newer pyarallel .checkpoint format 2"):
        reopen(db, secret=SECRET)


# Integrity: nothing that fails its HMAC is ever unpickled.


def recorded_file(path: Path, job: CheckpointJob = JOB, secret: bytes | None = SECRET) -> None:
    store = SQLiteCheckpointStore(path, secret=secret)
    store.open(job)
    store.record_successes(range(0, 3), [10, 11, 12])
    store.record_failure(3, failure())
    store.close()


@pytest.mark.parametrize("row", [1, 2])
def test_a_changed_byte_is_detected(db: Path, row: int) -> None:
    recorded_file(db)
    blob = bytearray(records(db)[row - 1][2])
    blob[len(blob) // 2] ^= 0x01
    execute(db, "UPDATE records SET blob = ? WHERE id = ?", bytes(blob), row)
    with pytest.raises(CheckpointError) as raised:
        reopen(db, secret=SECRET)
    assert str(raised.value) == (
        f"1 record of {str(db)!r} (of 2) fail their integrity check: the file was modified outside "
        "pyarallel, or written with another secret; pass the secret it was written with, or "
        "delete the file to start over"
    )


class Planted:
    """Unpickling this creates ``path``: a stand-in for a forged record running code."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[object, ...]:
        return (open, (self.path, "w"))


def test_a_forged_record_is_never_unpickled(db: Path, tmp_path: Path) -> None:
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(Planted(control)))
    assert control.exists()  # the payload works when unpickled...

    marker = tmp_path / "marker"
    payload = pickle.dumps(([0], [Planted(marker)]))
    recorded_file(db)
    forged_macs = [os.urandom(32), hmac.new(b"guessed secret", b"s" + payload, "sha256").digest()]
    for mac in forged_macs:
        execute(db, "INSERT INTO records (kind, blob, mac) VALUES ('s', ?, ?)", payload, mac)
    with pytest.raises(CheckpointError, match=r"2 records of .* .of 4. fail their integrity check"):
        reopen(db, secret=SECRET)
    assert not marker.exists()  # ...and was never unpickled


def test_a_record_copied_from_another_jobs_file_is_refused(tmp_path: Path) -> None:
    donor, target = tmp_path / "donor.db", tmp_path / "target.db"
    recorded_file(donor, CheckpointJob("jobs:other", "map", False))  # same secret, another job
    recorded_file(target)
    _, kind, blob, mac = records(donor)[0]
    execute(target, "INSERT INTO records (kind, blob, mac) VALUES (?, ?, ?)", kind, blob, mac)
    with pytest.raises(CheckpointError, match=r"1 record of .* fail their integrity check"):
        reopen(target, secret=SECRET)


def test_a_header_copied_from_another_file_is_refused(tmp_path: Path) -> None:
    donor, target = tmp_path / "donor.db", tmp_path / "target.db"
    recorded_file(donor, secret=b"another secret")
    recorded_file(target)
    with sqlite3.connect(donor) as connection:
        (mac,) = connection.execute("SELECT value FROM meta WHERE name = 'mac'").fetchone()
    execute(target, "UPDATE meta SET value = ? WHERE name = 'mac'", mac)
    with pytest.raises(CheckpointError, match=r"the header of .* fails its integrity check"):
        reopen(target, secret=SECRET)


def test_a_wrong_secret_is_refused(db: Path) -> None:
    recorded_file(db)
    with pytest.raises(CheckpointError, match=r"written with another secret; pass the secret"):
        reopen(db, secret=b"not the secret")
    assert len(reopen(db, secret=SECRET).values) == 3


def test_a_genuine_record_that_cannot_be_unpickled_here_is_refused(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "checkpoint_value_module.py").write_text("class Value:\n    pass\n")
    monkeypatch.syspath_prepend(str(modules))
    import checkpoint_value_module  # type: ignore[import-not-found]

    store = SQLiteCheckpointStore(db, secret=SECRET)
    store.open(JOB)
    store.record_successes([0], [checkpoint_value_module.Value()])
    store.close()
    monkeypatch.delitem(sys.modules, "checkpoint_value_module")
    (modules / "checkpoint_value_module.py").unlink()
    with pytest.raises(CheckpointError, match=r"record 1 of .* cannot be read back .ModuleNotFoundError"):
        reopen(db, secret=SECRET)


# Where the key comes from: secret=, then the environment, then the key file.


def test_the_secret_argument_wins_over_the_environment(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, "from the environment")
    recorded_file(db, secret=b"argument")
    monkeypatch.delenv(SECRET_ENV)
    assert len(reopen(db, secret="argument").values) == 3  # a str secret is its UTF-8 bytes
    with pytest.raises(CheckpointError, match=r"fails its integrity check"):
        reopen(db)  # the key file


def test_the_environment_wins_over_the_key_file(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, "from the environment")
    recorded_file(db, secret=None)
    assert not Path(key_file_path()).exists()  # never needed
    assert len(reopen(db, secret=b"from the environment").values) == 3
    monkeypatch.delenv(SECRET_ENV)
    with pytest.raises(CheckpointError, match=r"fails its integrity check"):
        reopen(db)


def test_the_key_file_is_made_once_and_kept(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded_file(db, secret=None)
    key = Path(key_file_path()).read_bytes()
    assert len(reopen(db).values) == 3
    assert Path(key_file_path()).read_bytes() == key
    assert len(reopen(db, secret=key).values) == 3  # the key file holds the secret itself
    monkeypatch.setenv(SECRET_ENV, "something else")
    with pytest.raises(CheckpointError, match=r"fails its integrity check"):
        reopen(db)
    monkeypatch.delenv(SECRET_ENV)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "elsewhere"))  # another user, another key
    with pytest.raises(CheckpointError, match=r"fails its integrity check"):
        reopen(db)


def test_a_relative_xdg_data_home_is_ignored(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", "relative/dir")
    assert key_file_path() == str(tmp_path / "home" / ".local" / "share" / "pyarallel" / "checkpoint.key")


def test_a_key_file_others_can_read_is_refused(db: Path) -> None:
    recorded_file(db, secret=None)
    key_file = Path(key_file_path())
    key_file.chmod(0o644)
    with pytest.raises(
        CheckpointError, match=r"can be read or written by other users \(mode 644\).*chmod 600"
    ):
        reopen(db)


def test_a_key_file_that_holds_no_key_is_refused(db: Path) -> None:
    key_file = Path(key_file_path())
    key_file.parent.mkdir(parents=True)
    key_file.write_bytes(b"short")
    key_file.chmod(0o600)
    with pytest.raises(CheckpointError, match=r"does not hold a key .5 bytes, not 32"):
        reopen(db)
    assert not db.exists()  # refused before the file is created


def test_an_empty_secret_variable_is_refused(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, "")
    with pytest.raises(CheckpointError, match=f"{SECRET_ENV} is set but empty"):
        reopen(db)


# Validation of Checkpoint and of the store's arguments.


def test_checkpoint_is_a_frozen_value(tmp_path: Path) -> None:
    spec = Checkpoint(tmp_path / "job.db", secret="s3cret", retry_failed=False)
    assert spec.path == str(tmp_path / "job.db")
    assert spec.secret == b"s3cret"
    assert spec.retry_failed is False
    assert spec == Checkpoint(str(tmp_path / "job.db"), secret=b"s3cret", retry_failed=False)
    assert hash(spec) == hash(Checkpoint(str(tmp_path / "job.db"), secret=b"s3cret", retry_failed=False))
    assert "s3cret" not in repr(spec)
    assert repr(spec) == f"Checkpoint({str(tmp_path / 'job.db')!r}, secret=<hidden>, retry_failed=False)"
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert Checkpoint("job.db").path == "job.db"  # the working directory exists
    with pytest.raises(AttributeError, match=r"immutable"):
        spec.path = "other.db"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        (
            ("missing/job.db",),
            ValueError,
            "Checkpoint path='missing/job.db': the directory 'missing' does not exist",
        ),
        (("",), ValueError, "Checkpoint path must be the path of a file, not an empty string; got ''"),
        ((42,), TypeError, r"Checkpoint path must be a path \(str or os.PathLike\) of a file; got 42"),
        (
            (b"job.db",),
            TypeError,
            r"Checkpoint path must be a path \(str or os.PathLike\) of a file; got b'job.db'",
        ),
    ],
)
def test_checkpoint_refuses_bad_paths(
    arguments: tuple[object, ...], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=f"^{message}"):
        Checkpoint(*arguments)  # type: ignore[arg-type]


def test_checkpoint_refuses_a_directory(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=f"^Checkpoint path='{tmp_path}': it is a directory; give the path of a file"
    ):
        Checkpoint(tmp_path)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"secret": ""}, ValueError, "Checkpoint secret must be non-empty bytes or str, or None; got ''"),
        ({"secret": b""}, ValueError, "Checkpoint secret must be non-empty bytes or str, or None; got b''"),
        (
            {"secret": 1234},
            TypeError,
            r"Checkpoint secret must be bytes or a str \(the HMAC key\), or None; got a value of type int",
        ),
        ({"retry_failed": 1}, TypeError, "Checkpoint retry_failed must be True or False; got 1"),
    ],
)
def test_checkpoint_refuses_bad_options(
    options: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=f"^{message}") as raised:
        Checkpoint("job.db", **options)  # type: ignore[arg-type]
    assert "1234" not in str(raised.value)


def test_the_store_validates_like_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^SQLiteCheckpointStore path='missing/job.db': the directory"):
        SQLiteCheckpointStore("missing/job.db")
    with pytest.raises(ValueError, match=r"^SQLiteCheckpointStore secret must be non-empty"):
        SQLiteCheckpointStore(tmp_path / "job.db", secret="")
    with pytest.raises(TypeError, match=r"^SQLiteCheckpointStore retry_failed must be True or False"):
        SQLiteCheckpointStore(tmp_path / "job.db", retry_failed="yes")  # type: ignore[arg-type]
    store = SQLiteCheckpointStore(tmp_path / "job.db", retry_failed=False)
    assert (store.path, store.retry_failed) == (str(tmp_path / "job.db"), False)
    with pytest.raises(AttributeError):
        store.retry_failed = True  # type: ignore[misc]


# The plugin hook.


def test_the_hook_builds_a_store_from_a_path_or_a_checkpoint(tmp_path: Path, db: Path) -> None:
    for given in (str(db), db):
        store = pyarallel_checkpoint_store(checkpoint=given)
        assert isinstance(store, SQLiteCheckpointStore)
        assert (store.path, store.retry_failed) == (str(db), True)
    store = pyarallel_checkpoint_store(checkpoint=Checkpoint(db, secret=SECRET, retry_failed=False))
    assert isinstance(store, SQLiteCheckpointStore)
    assert (store.path, store.retry_failed) == (str(db), False)
    store.open(JOB)
    store.record_successes([0], [0])
    store.close()
    assert dict(reopen(db, secret=SECRET).values) == {0: 0}  # the secret was passed on


def test_the_hook_validates_a_plain_path_naming_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        ValueError, match=r"^checkpoint='missing/job.db': the directory 'missing' does not exist"
    ):
        pyarallel_checkpoint_store(checkpoint="missing/job.db")
    with pytest.raises(ValueError, match=r"^checkpoint='.': it is a directory"):
        pyarallel_checkpoint_store(checkpoint=".")


class DictStore:
    """A store kept in memory: anything with the four methods is used as it is."""

    def __init__(self) -> None:
        self.values: dict[object, object] = {}

    def open(self, job: CheckpointJob) -> CheckpointState:
        return CheckpointState(dict(self.values))

    def record_successes(self, keys: object, values: object) -> None:
        self.values.update(zip(keys, values))  # type: ignore[call-overload]

    def record_failure(self, key: object, error: BaseException) -> None:
        pass

    def close(self) -> None:
        pass


def test_the_hook_passes_a_store_through_and_ignores_the_rest(db: Path) -> None:
    custom = DictStore()
    assert pyarallel_checkpoint_store(checkpoint=custom) is custom
    built = SQLiteCheckpointStore(db)
    assert pyarallel_checkpoint_store(checkpoint=built) is built
    assert isinstance(built, CheckpointStore)
    assert pyarallel_checkpoint_store(checkpoint=42) is None
    assert pyarallel_checkpoint_store(checkpoint=b"job.db") is None
    half = DictStore()
    half.close = None  # type: ignore[assignment,method-assign]
    assert pyarallel_checkpoint_store(checkpoint=half) is None


def test_the_hook_is_a_builtin_plugin(db: Path) -> None:
    assert "pyarallel._builtin.sqlite_checkpoint" in BUILTIN_PLUGINS
    manager = plugin_manager()
    assert manager.is_registered(sqlite_checkpoint)
    store = manager.hook.pyarallel_checkpoint_store(checkpoint=str(db))
    assert isinstance(store, SQLiteCheckpointStore)


def test_loading_the_plugins_or_checkpoint_imports_no_sqlite() -> None:
    script = (
        "import sys\n"
        "from pyarallel._plugins import plugin_manager\n"
        "plugin_manager()\n"
        "from pyarallel._checkpoint import Checkpoint\n"
        "Checkpoint('job.db')\n"
        "print(sorted(name for name in ('sqlite3', 'hmac', 'secrets') if name in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout == "[]\n"
