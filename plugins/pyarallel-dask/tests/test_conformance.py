"""pyarallel's backend conformance kit (``pyarallel.testing``) run against the Dask
backend, as a third party runs it against theirs: through ``executor=<a Client>`` on the
session's ``LocalCluster`` of two single-threaded worker processes."""

from __future__ import annotations

import pytest
from distributed import Client

from pyarallel.testing import BackendConformance


class TestDaskClient(BackendConformance):
    workers = 2
    slack = 2.0  # a task's round trip through the Dask scheduler costs milliseconds

    @pytest.fixture
    def executor(self, client: Client) -> Client:
        return client
