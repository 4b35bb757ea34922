"""The secret a checkpoint's records are signed with, and the HMAC that signs them.

Every record carries an HMAC-SHA256 over the file format's version, the job's identity,
the record's kind and its blob, so a record that was changed, copied from another job's
checkpoint or forged without the key fails verification, which happens before anything
is unpickled. The key is, in order: the ``secret=`` given; the
``PYARALLEL_CHECKPOINT_SECRET`` environment variable; a per-user key file of 32 random
bytes, created with mode 0600 on first use.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets

from pyarallel._errors import CheckpointError

__all__ = ["KEY_BYTES", "SECRET_ENV", "Signer", "checkpoint_key", "key_file_path"]

SECRET_ENV = "PYARALLEL_CHECKPOINT_SECRET"
"""The environment variable holding the checkpoint secret, when ``secret=`` is not given."""

KEY_BYTES = 32
"""The size of the key the per-user key file holds."""

_PRIVATE = 0o600


def checkpoint_key(secret: bytes | None) -> bytes:
    """The HMAC key: ``secret`` if given, else ``$PYARALLEL_CHECKPOINT_SECRET`` (UTF-8),
    else the per-user key file's (created on first use). Raises :class:`CheckpointError`
    for an empty environment variable or a key file that is not private or not a key."""
    if secret is not None:
        return secret
    from_env = os.environ.get(SECRET_ENV)
    if from_env is not None:
        if not from_env:
            raise CheckpointError(
                f"the environment variable {SECRET_ENV} is set but empty: set it to the checkpoint "
                "secret, or unset it to use the per-user key file"
            )
        return from_env.encode("utf-8", "surrogateescape")
    return _key_from_file(key_file_path())


def key_file_path() -> str:
    """``$XDG_DATA_HOME/pyarallel/checkpoint.key``; ``XDG_DATA_HOME`` defaults (when unset,
    empty or relative, as the XDG specification says) to ``~/.local/share``."""
    data_home = os.environ.get("XDG_DATA_HOME", "")
    if not os.path.isabs(data_home):
        data_home = os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(data_home, "pyarallel", "checkpoint.key")


def _key_from_file(path: str) -> bytes:
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    _create_key_file(path)
    return _read_key(path)


def _read_key(path: str) -> bytes:
    with open(path, "rb") as file:
        mode = os.fstat(file.fileno()).st_mode
        key = file.read(KEY_BYTES + 1)
    if os.name == "posix" and mode & 0o077:
        raise CheckpointError(
            f"the checkpoint key file {path!r} can be read or written by other users (mode "
            f"{mode & 0o777:03o}), who could then forge checkpoint records: run 'chmod 600 {path}', "
            f"or pass secret= (or set {SECRET_ENV})"
        )
    if len(key) != KEY_BYTES:
        raise CheckpointError(
            f"the checkpoint key file {path!r} does not hold a key ({len(key)} bytes, not "
            f"{KEY_BYTES}): delete it to have a new one made (checkpoints written with the old "
            f"key can then not be resumed), or pass secret= (or set {SECRET_ENV})"
        )
    return key


def _create_key_file(path: str) -> None:
    """Write a new random key to ``path``, unless another process does so first: the key
    is written to a private temporary file and linked into place, so that a reader never
    sees a partial key and two processes never end up with different keys."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    temporary = os.path.join(directory, f".checkpoint.key.{os.getpid()}.{secrets.token_hex(8)}")
    _write_private(temporary, secrets.token_bytes(KEY_BYTES))
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass  # another process made the key first: use theirs
    except OSError:  # a file system without hard links
        with contextlib.suppress(FileExistsError):
            _write_private(path, secrets.token_bytes(KEY_BYTES))
    finally:
        os.unlink(temporary)


def _write_private(path: str, data: bytes) -> None:
    """Create ``path`` (which must not exist) with mode 0600, write ``data`` and flush it
    to disk."""
    descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0), _PRIVATE)
    try:
        os.write(descriptor, data)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class Signer:
    """Signs and verifies the records of one job's checkpoint: an HMAC-SHA256 keyed with
    ``key`` over the format ``version``, the job's ``identity`` (its fields, each length
    prefixed so that no two identities share an encoding), a one-byte record kind and the
    record's blob. The prefix is hashed once; each record costs one copy of that state."""

    __slots__ = ("_keyed",)

    def __init__(self, key: bytes, version: int, identity: tuple[str, ...]) -> None:
        fields = [b"pyarallel checkpoint", str(version).encode()]
        fields.extend(field.encode("utf-8", "surrogatepass") for field in identity)
        self._keyed = hmac.new(key, digestmod="sha256")
        for field in fields:
            self._keyed.update(len(field).to_bytes(8, "big"))
            self._keyed.update(field)

    def sign(self, kind: bytes, blob: bytes) -> bytes:
        """The 32-byte HMAC of a record of ``kind`` (one byte) holding ``blob``."""
        mac = self._keyed.copy()
        mac.update(kind)
        mac.update(blob)
        return mac.digest()

    def verify(self, kind: object, blob: object, mac: object) -> bool:
        """True when ``mac`` is the HMAC of ``kind`` and ``blob`` as read back from a file
        (anything that is not a one-character kind and bytes fails), compared in constant
        time."""
        if not (isinstance(kind, str) and len(kind) == 1 and isinstance(blob, bytes)):
            return False
        if not isinstance(mac, bytes):
            return False
        return hmac.compare_digest(self.sign(kind.encode(), blob), mac)
