"""The built-in rate limiter: ``Limiter`` (shared budgets), one ``Bucket`` per limit and
key, and the ``AdaptiveRate`` that backs off when a service throttles."""

from pyarallel._limiting.limiter import Limiter

__all__ = ["Limiter"]
