"""The ``k8s_cluster`` fixture: one real Kubernetes control plane (etcd, API server, controllers, scheduler, a
simulated node) for the whole test session, started the first time a test asks for it.

Other test folders use the same cluster by re-exporting the fixture in their conftest (one line)::

    from tests.k8s.conftest import k8s_cluster  # noqa: F401

Every re-export shares one cluster (reference counted here), stopped — every process waited for — when the last
user's session teardown runs. See tests/k8s/cluster.py for the ``Cluster`` API. Tests put their objects in a
namespace of their own (``k8s_cluster.create_namespace(...)``) and set agent rules (``k8s_cluster.agent.behave``)
only for that namespace, so they do not see each other.

The first test that asks for the cluster pays its start (10-15 s on an idle machine, a minute under heavy load):
give such tests ``@pytest.mark.timeout(300)`` or more (the suite's default is 120 s, set-up included).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import shared_processes
from .cluster import Cluster, start_cluster


class _Shared:
    """The session's one cluster, the ExitStack that stops it, and how many fixtures hold it."""

    cluster: Cluster | None = None
    stack: contextlib.ExitStack | None = None
    users = 0


@contextlib.contextmanager
def shared_cluster(folder: Path) -> Iterator[Cluster]:
    """The session's one cluster, started on first use in ``folder``; stopped when its last holder leaves."""
    if _Shared.cluster is None:
        stack = contextlib.ExitStack()
        try:
            # The processes outlive each test on purpose: the leftover-process check skips the cluster's folder
            # until the cluster has been stopped (after which anything left is a leak again).
            stack.enter_context(shared_processes(str(folder)))
            _Shared.cluster = stack.enter_context(start_cluster(folder))
        except BaseException:
            stack.close()
            raise
        _Shared.stack = stack
    _Shared.users += 1
    try:
        yield _Shared.cluster
    finally:
        _Shared.users -= 1
        if _Shared.users == 0 and _Shared.stack is not None:
            stack, _Shared.stack, _Shared.cluster = _Shared.stack, None, None
            stack.close()


@pytest.fixture(scope="session")
def k8s_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with shared_cluster(tmp_path_factory.mktemp("k8s-cluster")) as cluster:
        yield cluster
