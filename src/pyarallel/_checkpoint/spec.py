"""The ``Checkpoint`` value object: where a job records its finished items, and how.

Everything is validated when the object is built (or when ``checkpoint=`` is given a plain
path), before any work starts; nothing is created or opened until the run starts.
"""

from __future__ import annotations

import os

from pyarallel._values import FrozenValue

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

__all__ = ["Checkpoint", "check_checkpoint_path", "check_flag", "check_secret"]


class Checkpoint(FrozenValue):
    """A checkpoint file and how to use it, passed as ``checkpoint=`` (a plain path is
    short for ``Checkpoint(path)``). A frozen value object.

    - ``path``: the SQLite file, a ``str`` or ``os.PathLike`` (kept as a ``str``; a
      relative path is relative to the working directory when the run starts). Its
      directory must exist and it must not be a directory; the file is created, with
      mode 0600, when the first run starts.
    - ``secret``: the key of the HMAC that proves each record was written by pyarallel
      for this job: ``bytes``, or a ``str`` (kept as its UTF-8 bytes), never empty.
      ``None``: the ``PYARALLEL_CHECKPOINT_SECRET`` environment variable, else a
      per-user key file (see ``docs/checkpoints.md``). Hidden in ``repr``.
    - ``retry_failed``: ``True`` (the default) runs items recorded as failures again on
      resume; ``False`` reports their recorded failure without running them.

    Raises ``TypeError`` for a value of the wrong type and ``ValueError`` for a path that
    cannot be a checkpoint file or an empty secret, naming the parameter and the value.
    """

    __slots__ = ("path", "retry_failed", "secret")
    __match_args__ = ("path", "secret", "retry_failed")
    if TYPE_CHECKING:  # read-only to type checkers, as they are at run time

        @property
        def path(self) -> str: ...
        @property
        def secret(self) -> bytes | None: ...
        @property
        def retry_failed(self) -> bool: ...

    def __init__(
        self, path: str | os.PathLike[str], *, secret: bytes | str | None = None, retry_failed: bool = True
    ) -> None:
        self._init("Checkpoint path", path, secret, retry_failed)

    @classmethod
    def from_argument(cls, checkpoint: str | os.PathLike[str]) -> Checkpoint:
        """``Checkpoint(checkpoint)`` for a plain path given as ``checkpoint=``, with errors
        naming ``checkpoint``."""
        spec = cls.__new__(cls)
        spec._init("checkpoint", checkpoint, None, True)
        return spec

    def _init(self, parameter: str, path: object, secret: object, retry_failed: object) -> None:
        self._set("path", check_checkpoint_path(parameter, path))
        self._set("secret", check_secret("Checkpoint secret", secret))
        self._set("retry_failed", check_flag("Checkpoint retry_failed", retry_failed))

    def __repr__(self) -> str:
        secret = "None" if self.secret is None else "<hidden>"
        return f"Checkpoint({self.path!r}, secret={secret}, retry_failed={self.retry_failed!r})"

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_checkpoint, self._fields())  # the constructor's options are keyword-only


def _rebuild_checkpoint(path: str, secret: bytes | None, retry_failed: bool) -> Checkpoint:
    return Checkpoint(path, secret=secret, retry_failed=retry_failed)


def check_checkpoint_path(parameter: str, path: object) -> str:
    """``path`` as a ``str`` if it can name a checkpoint file: a non-empty ``str`` or
    ``os.PathLike`` path, not a directory, in a directory that exists. Else ``TypeError``
    or ``ValueError`` naming ``parameter`` and the path."""
    if not isinstance(path, str | os.PathLike):
        _refuse(parameter, path, "a path (str or os.PathLike) of a file", TypeError)
    name = os.fspath(path)
    if not isinstance(name, str):
        _refuse(parameter, path, "a str path or an os.PathLike giving one, not bytes", TypeError)
    if not name:
        _refuse(parameter, path, "the path of a file, not an empty string")
    if os.path.isdir(name):
        raise ValueError(
            f"{parameter}={name!r}: it is a directory; give the path of a file, e.g. "
            f"{os.path.join(name, 'job.db')!r}"
        )
    directory = os.path.dirname(name)
    if directory and not os.path.isdir(directory):
        raise ValueError(
            f"{parameter}={name!r}: the directory {directory!r} does not exist; create it, or "
            "give a path in an existing directory"
        )
    return name


def check_secret(parameter: str, secret: object) -> bytes | None:
    """``secret`` as bytes (a ``str`` encoded as UTF-8), or ``None``; ``TypeError`` for
    another type and ``ValueError`` for an empty one, naming ``parameter``. A value of the
    wrong type is described by its type only: it may be a secret all the same."""
    if secret is None:
        return None
    key = secret.encode("utf-8", "surrogatepass") if isinstance(secret, str) else secret
    if not isinstance(key, bytes):
        raise TypeError(
            f"{parameter} must be bytes or a str (the HMAC key), or None; got a value of type "
            f"{type(secret).__qualname__} (not shown, as it may be secret)"
        )
    if not key:
        _refuse(parameter, secret, "non-empty bytes or str, or None")
    return key


def check_flag(parameter: str, value: object) -> bool:
    """``value`` if it is ``True`` or ``False``, else a ``TypeError`` naming ``parameter``."""
    if not isinstance(value, bool):
        _refuse(parameter, value, "True or False", TypeError)
    return value


def _refuse(parameter: str, value: object, allowed: str, error: type[Exception] = ValueError) -> NoReturn:
    raise error(f"{parameter} must be {allowed}; got {value!r}")
