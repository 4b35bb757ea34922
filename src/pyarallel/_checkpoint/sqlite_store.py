"""The built-in checkpoint store: one SQLite file per job, one signed record per write.

The file holds two tables. ``meta`` is the header: the format version and the job's
identity (function, call form, kind of key), signed. ``records`` holds one row per
``record_successes`` call (a batch: the pickle of its keys and values) or
``record_failure`` call (the pickle of the key and the failure as text), each with the
HMAC of :class:`~pyarallel._checkpoint.integrity.Signer`. Every write is its own
transaction, committed before the call returns, in WAL mode with ``synchronous=NORMAL``:
a record survives the process being killed (not a power loss of the machine).
"""

from __future__ import annotations

import os
import reprlib
import sqlite3
import warnings
from collections.abc import Hashable, Sequence
from typing import Any

from pyarallel._checkpoint.integrity import Signer, checkpoint_key
from pyarallel._checkpoint.serializer import (
    Skipped,
    pack_failure,
    pack_successes,
    unpack_failure,
    unpack_successes,
)
from pyarallel._checkpoint.spec import Checkpoint, check_checkpoint_path, check_flag, check_secret
from pyarallel._errors import CheckpointError
from pyarallel.contracts import CheckpointJob, CheckpointState

__all__ = ["APPLICATION_ID", "FORMAT", "SQLiteCheckpointStore"]

FORMAT = 1
"""The version of the file's layout, in its header and in every record's HMAC."""

APPLICATION_ID = 0x70796172
"""What SQLite's ``PRAGMA application_id`` says of a pyarallel checkpoint (``"pyar"``)."""

SUCCESSES, FAILURE, HEADER = "s", "f", "m"  # the kinds of signed rows

_SCHEMA = (
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value NOT NULL) WITHOUT ROWID",
    "CREATE TABLE records (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, blob BLOB NOT NULL, "
    "mac BLOB NOT NULL)",
    f"PRAGMA application_id = {APPLICATION_ID}",
    f"PRAGMA user_version = {FORMAT}",
)
_INSERT = "INSERT INTO records (kind, blob, mac) VALUES (?, ?, ?)"
_START_OVER = "delete the file to start over"


class SQLiteCheckpointStore:
    """A :class:`~pyarallel.contracts.CheckpointStore` in one SQLite file, the store
    ``checkpoint=`` gives for a path or a :class:`~pyarallel.Checkpoint`.

    It takes the same arguments as ``Checkpoint`` and validates them the same way, but
    building it touches no file: ``open()`` creates the file (mode 0600) when the run
    starts. It serves one run at a time, from one thread at a time (any thread), and may
    be opened again once closed (a decorator's default serves every call).

    - ``open(job)`` refuses, with :class:`~pyarallel.CheckpointError` and before anything
      is unpickled, a file of another job, a file that is not a checkpoint, and records
      that fail their HMAC; it returns every recorded success and every failure not
      superseded by a later success (later records win).
    - ``record_successes`` and ``record_failure`` write one row each, committed before
      they return. Items whose key or value cannot be pickled are left out (they run
      again on resume), with one ``RuntimeWarning`` per run.
    - ``retry_failed`` (read-only) says whether the caller should run recorded failures
      again; the store returns them either way.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, secret: bytes | str | None = None, retry_failed: bool = True
    ) -> None:
        self._setup(
            check_checkpoint_path("SQLiteCheckpointStore path", path),
            check_secret("SQLiteCheckpointStore secret", secret),
            check_flag("SQLiteCheckpointStore retry_failed", retry_failed),
        )

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint) -> SQLiteCheckpointStore:
        """A new, unopened store for ``checkpoint`` (already validated)."""
        store = cls.__new__(cls)
        store._setup(checkpoint.path, checkpoint.secret, checkpoint.retry_failed)
        return store

    def _setup(self, path: str, secret: bytes | None, retry_failed: bool) -> None:
        self._path = path
        self._secret = secret
        self._retry_failed = retry_failed
        self._connection: sqlite3.Connection | None = None
        self._cursor: sqlite3.Cursor | None = None
        self._signer: Signer | None = None
        self._warned = False

    @property
    def path(self) -> str:
        """The checkpoint file's path, as given."""
        return self._path

    @property
    def retry_failed(self) -> bool:
        """``True`` when items recorded as failures should run again on resume."""
        return self._retry_failed

    def __repr__(self) -> str:
        return f"SQLiteCheckpointStore({self._path!r}, retry_failed={self._retry_failed!r})"

    def __reduce__(self) -> tuple[object, ...]:
        # An unopened copy: a connection cannot travel, and a copy is never the same run.
        return (_rebuild_store, (self._path, self._secret, self._retry_failed))

    # The run's life: open, record, close.

    def open(self, job: CheckpointJob) -> CheckpointState:
        """Begin or resume ``job``: create the file if needed and return what its earlier
        runs recorded (the failures only with ``retry_failed=False``: otherwise they run
        again). Raises :class:`~pyarallel.CheckpointError` (leaving the store
        closed) if the file cannot be this job's checkpoint or its records cannot be
        trusted, and ``RuntimeError`` if the store is already open."""
        if self._connection is not None:
            raise RuntimeError(
                f"{self!r} is already open: a store serves one run at a time; close() it first"
            )
        signer = Signer(checkpoint_key(self._secret), FORMAT, _identity(job))
        connection = self._connect()
        try:
            state = self._begin(connection, job, signer)
        except BaseException:
            connection.close()
            raise
        self._connection, self._cursor, self._signer = connection, connection.cursor(), signer
        self._warned = False
        if self.retry_failed:
            return CheckpointState(state.values, {})
        return state

    def record_successes(self, keys: Sequence[Hashable], values: Sequence[Any]) -> None:
        """Record that ``keys`` succeeded with ``values``: one row, committed on return.
        Items that cannot be pickled are left out, with a warning (once per run)."""
        cursor, signer = self._cursor, self._signer
        if cursor is None or signer is None:
            raise self._not_open()
        if not keys:
            return
        blob, skipped = pack_successes(keys, values)
        if skipped:
            self._warn_unrecorded(skipped)
        if blob is not None:
            cursor.execute(_INSERT, (SUCCESSES, blob, signer.sign(b"s", blob)))

    def record_failure(self, key: Hashable, error: BaseException) -> None:
        """Record that ``key`` failed with ``error`` (kept as text): one row, committed
        on return. A key that cannot be pickled is left out, with a warning."""
        cursor, signer = self._cursor, self._signer
        if cursor is None or signer is None:
            raise self._not_open()
        blob, reason = pack_failure(key, error)
        if blob is None:
            self._warn_unrecorded([(key, reason or "it cannot be pickled")])
            return
        cursor.execute(_INSERT, (FAILURE, blob, signer.sign(b"f", blob)))

    def close(self) -> None:
        """Commit and close the file. Does nothing if the store is not open; the store
        can be opened again afterwards."""
        connection = self._connection
        if connection is None:
            return
        self._connection = self._cursor = self._signer = None
        try:
            connection.commit()  # nothing is pending (every write commits), but be sure
        finally:
            connection.close()

    # Opening.

    def _connect(self) -> sqlite3.Connection:
        _create_private(self._path)
        try:
            # isolation_level=None: every statement is its own transaction, so one INSERT is
            # one commit. check_same_thread=False: a run may open the store in a thread other
            # than the one that built it (one thread at a time uses it).
            return sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as error:
            raise _unusable(self._path, error) from error

    def _begin(self, connection: sqlite3.Connection, job: CheckpointJob, signer: Signer) -> CheckpointState:
        try:
            new = _is_new(connection, self._path)  # before anything is written to the file
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            if new:
                _initialise(connection, self._path, job, signer)
            _check_header(connection, self._path, job, signer)
            return _load(connection, self._path, signer)
        except sqlite3.Error as error:
            raise _unusable(self._path, error) from error

    # Recording.

    def _not_open(self) -> RuntimeError:
        return RuntimeError(f"{self!r} is not open: open() it before recording (again after a close())")

    def _warn_unrecorded(self, skipped: list[Skipped]) -> None:
        if self._warned:
            return
        self._warned = True
        key, reason = skipped[0]
        warnings.warn(
            f"checkpoint {self._path!r}: item {reprlib.repr(key)} is not recorded, so it will run "
            f"again when the job is resumed: {reason} (other items of this run that cannot be "
            "recorded are not reported)",
            RuntimeWarning,
            stacklevel=3,
        )


def _rebuild_store(path: str, secret: bytes | None, retry_failed: bool) -> SQLiteCheckpointStore:
    store = SQLiteCheckpointStore.__new__(SQLiteCheckpointStore)
    store._setup(path, secret, retry_failed)
    return store


def _identity(job: CheckpointJob) -> tuple[str, str, str]:
    return (job.function, job.form, "1" if job.keyed else "0")


def _describe(function: object, form: object, keyed: object) -> str:
    key = "checkpoint_key=" if keyed else "their input index"
    return f"{function!s} (form {form!r}, items keyed by {key})"


def _create_private(path: str) -> None:
    """Create ``path`` empty with mode 0600 unless it exists, so that SQLite (which gives
    its ``-wal`` and ``-shm`` files the mode of the database) never makes it readable by
    others."""
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0), 0o600)
    except FileExistsError:
        return
    os.close(descriptor)


def _is_new(connection: sqlite3.Connection, path: str) -> bool:
    """True for an empty database (a file just created); False for a pyarallel
    checkpoint; :class:`CheckpointError` for anything else. Only reads."""
    (application_id,) = connection.execute("PRAGMA application_id").fetchone()
    tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if application_id == 0 and not tables:
        return True
    if application_id == APPLICATION_ID and {"meta", "records"} <= tables:
        return False
    raise CheckpointError(
        f"{path!r} is not a pyarallel checkpoint: it is an SQLite database of something else, "
        "left as it is; pass the path of a checkpoint, or of a file that does not exist yet"
    )


def _initialise(connection: sqlite3.Connection, path: str, job: CheckpointJob, signer: Signer) -> None:
    """Write the schema and the signed header, unless another process did so since
    ``_is_new`` (the check is repeated under the write lock)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        if _is_new(connection, path):
            for statement in _SCHEMA:
                connection.execute(statement)
            header = {
                "format": FORMAT,
                "function": job.function,
                "form": job.form,
                "keyed": int(job.keyed),
                "mac": signer.sign(HEADER.encode(), b""),
            }
            connection.executemany("INSERT INTO meta (name, value) VALUES (?, ?)", header.items())
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def _check_header(connection: sqlite3.Connection, path: str, job: CheckpointJob, signer: Signer) -> None:
    """Refuse a checkpoint of another format or another job, or whose header was not
    signed with this key for this job."""
    meta = dict(connection.execute("SELECT name, value FROM meta").fetchall())
    written = meta.get("format")
    if isinstance(written, int) and written > FORMAT:
        raise CheckpointError(
            f"{path!r} was written by a newer pyarallel (checkpoint format {written}; this one "
            f"reads format {FORMAT}): upgrade pyarallel to resume it, or {_START_OVER}"
        )
    recorded = (meta.get("function"), meta.get("form"), meta.get("keyed"))
    if written == FORMAT and recorded != (job.function, job.form, int(job.keyed)):
        raise CheckpointError(
            f"{path!r} is the checkpoint of another job: {_describe(*recorded)}, not this call's "
            f"{_describe(job.function, job.form, job.keyed)}; pass another checkpoint path for "
            f"this job, or {_START_OVER}"
        )
    if written != FORMAT or not signer.verify(HEADER, b"", meta.get("mac")):
        raise CheckpointError(f"the header of {path!r} fails its integrity check: {_untrusted()}")


def _load(connection: sqlite3.Connection, path: str, signer: Signer) -> CheckpointState:
    """Every record, verified (all of them, before anything is unpickled), then replayed
    in the order written."""
    rows = connection.execute("SELECT id, kind, blob, mac FROM records ORDER BY id").fetchall()
    verify = signer.verify
    failed = sum(1 for _, kind, blob, mac in rows if not verify(kind, blob, mac))
    if failed:
        records = "1 record" if failed == 1 else f"{failed} records"
        raise CheckpointError(
            f"{records} of {path!r} (of {len(rows)}) fail their integrity check: {_untrusted()}"
        )
    return _replay(rows, path)


def _untrusted() -> str:
    return (
        "the file was modified outside pyarallel, or written with another secret; pass the "
        f"secret it was written with, or {_START_OVER}"
    )


def _replay(rows: list[tuple[int, str, bytes, bytes]], path: str) -> CheckpointState:
    values: dict[Hashable, Any] = {}
    errors: dict[Hashable, BaseException] = {}
    for record_id, kind, blob, _ in rows:
        try:
            if kind == SUCCESSES:
                keys, batch = unpack_successes(blob)
                if errors:
                    for key in keys:
                        errors.pop(key, None)
                values.update(zip(keys, batch, strict=False))
            elif kind == FAILURE:
                key, failure = unpack_failure(blob)
                values.pop(key, None)
                errors[key] = failure
        except Exception as error:
            raise CheckpointError(
                f"record {record_id} of {path!r} cannot be read back ({type(error).__name__}: "
                f"{error}): most often, it holds a value of a class that cannot be imported in "
                "this program (renamed, or of a module not installed here); resume the job where "
                f"it can be, or {_START_OVER}"
            ) from error
    return CheckpointState(values, errors)


def _unusable(path: str, error: sqlite3.Error) -> CheckpointError:
    if isinstance(error, sqlite3.DatabaseError) and "not a database" in str(error):
        return CheckpointError(
            f"{path!r} is not a pyarallel checkpoint: it is not an SQLite database ({error}); "
            "pass the path of a checkpoint, or of a file that does not exist yet"
        )
    return CheckpointError(f"{path!r} cannot be used as a checkpoint: {error}")
