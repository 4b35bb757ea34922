"""The ``pyarallel`` entry point: ``retry=tenacity.Retrying(...)`` (or
``tenacity.AsyncRetrying(...)``) becomes a :class:`~pyarallel_tenacity.TenacityPolicy`.

Registered when pyarallel builds its plugin manager, so this module imports neither
tenacity nor the rest of this package: a tenacity object can only exist once tenacity has
been imported, and a process that never imports it pays nothing for this plugin.
"""

from __future__ import annotations

import sys

import pyarallel
from pyarallel.contracts import RetryPolicy


@pyarallel.hookimpl
def pyarallel_retry_policy(retry: object) -> RetryPolicy | None:
    tenacity = sys.modules.get("tenacity")
    if tenacity is None or not isinstance(retry, tenacity.BaseRetrying):
        return None
    from pyarallel_tenacity._policy import from_tenacity

    return from_tenacity(retry).as_retry_policy()
