"""How ``@parallel`` and ``@async_parallel`` functions pickle: as the name they are found
under, like the functions they wrap (see ``reduce_decorated``)."""

from __future__ import annotations

import sys
from contextvars import ContextVar
from typing import Any, Protocol

from pyarallel._plan import RunOptions

__all__ = ["reduce_decorated"]


class _Decorated(Protocol):
    """What ``@parallel`` and ``@async_parallel`` functions share, for pickling."""

    _fn: Any
    _defaults: RunOptions
    _looked_up_on: object | None
    _attribute: str


def reduce_decorated(decorated: _Decorated) -> str | tuple[object, ...]:
    """How a decorated function pickles: as the name it is found under, like a function.

    - Looked up on a class or an instance (a method): as that attribute of that object.
    - Defined at module level: by reference to its module and qualified name, so that
      ``pickle`` (a ``ProcessPoolExecutor``) and cloudpickle both send only the name.
    - Defined in ``__main__``: by name when the other side has it (a forked or spawned
      ``multiprocessing`` worker), else rebuilt from the function sent by value with
      cloudpickle (a loky worker has no ``__main__`` of the caller's).
    - Otherwise (``fast = parallel(slow)``, a local function): rebuilt from the wrapped
      function, which pickles under its own name.
    """
    if decorated._looked_up_on is not None:
        return (getattr, (decorated._looked_up_on, decorated._attribute))
    module = getattr(decorated, "__module__", None)
    qualname = getattr(decorated, "__qualname__", "")
    if module == "__main__":
        if id(decorated) in _pickling.get():  # it refers to itself: see _MainReference
            return (_MainReference, (qualname,))
        return (_from_main, (type(decorated), qualname, _by_value(decorated)))
    if _find(sys.modules.get(module or ""), qualname) is decorated:
        return qualname
    return (type(decorated), (decorated._fn, _portable(decorated._defaults)))


_pickling: ContextVar[frozenset[int]] = ContextVar("pyarallel_pickling_decorated", default=frozenset())


def _by_value(decorated: _Decorated) -> bytes | None:
    """The wrapped function and the defaults, pickled with cloudpickle (None if they cannot be)."""
    import cloudpickle

    token = _pickling.set(_pickling.get() | {id(decorated)})
    try:
        return cloudpickle.dumps((decorated._fn, _portable(decorated._defaults)))  # type: ignore[no-any-return]
    except Exception:
        return None
    finally:
        _pickling.reset(token)


def _portable(defaults: RunOptions) -> RunOptions:
    """``defaults``, or no defaults when they cannot travel (such as an executor object):
    on the other side the function is called, not fanned out again."""
    import pickle

    try:
        pickle.dumps(defaults)
    except Exception:
        return RunOptions()
    return defaults


def _find(module: object, qualname: str) -> object:
    found = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found


_rebuilt: dict[str, Any] = {}  # decorated functions of __main__ rebuilt here, by qualname


def _from_main(kind: type[Any], qualname: str, blob: bytes | None) -> Any:
    """Unpickle a decorated function of ``__main__`` (see ``reduce_decorated``)."""
    found = _find(sys.modules.get("__main__"), qualname)
    if isinstance(found, kind):
        return found
    if blob is None:
        raise LookupError(
            f"{qualname!r} was defined in __main__ of the process that sent it and could not be "
            "pickled by value; define it in an importable module instead"
        )
    import cloudpickle

    fn, defaults = cloudpickle.loads(blob)
    decorated = _rebuilt[qualname] = kind(fn, defaults)
    return decorated


class _MainReference:
    """Stands for a decorated function of ``__main__`` inside its own pickled globals (it
    calls itself): resolved on use, once the function itself has been rebuilt."""

    def __init__(self, qualname: str) -> None:
        self._qualname = qualname

    def _target(self) -> Any:
        found = _find(sys.modules.get("__main__"), self._qualname)
        return found if found is not None else _rebuilt[self._qualname]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._target()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target(), name)
