"""The ``k8s_cluster`` fixture: one real Kubernetes control plane (etcd, API server, controllers, scheduler, a
simulated node) for the whole test session, started the first time a test asks for it.

Other test folders use the same cluster by re-exporting the fixture in their conftest (one line)::

    from tests.k8s.conftest import k8s_cluster  # noqa: F401

Every re-export shares one cluster (reference counted here), stopped — every process waited for — when the last
user's session teardown runs. See tests/k8s/cluster.py for the ``Cluster`` API. Tests put their objects in a
namespace of their own (``k8s_cluster.create_namespace(...)``) and set agent rules (``k8s_cluster.agent.behave``)
only for that namespace, so they do not see each other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import shared_processes
from .cluster import Cluster, start_cluster

_shared: dict[str, object] = {}  # "cluster", "stack" (an ExitStack owning it), "users" (how many fixtures hold it)


@contextlib.contextmanager
def shared_cluster(folder: Path) -> Iterator[Cluster]:
    """The session's one cluster, started on first use in ``folder``; stopped when its last holder leaves."""
    if "cluster" not in _shared:
        stack = contextlib.ExitStack()
        try:
            # The processes outlive each test on purpose: the leftover-process check skips the cluster's folder
            # until the cluster has been stopped (after which anything left is a leak again).
            stack.enter_context(shared_processes(str(folder)))
            cluster = stack.enter_context(start_cluster(folder))
        except BaseException:
            stack.close()
            raise
        _shared.update(cluster=cluster, stack=stack, users=0)
    _shared["users"] = int(_shared["users"]) + 1  # type: ignore[call-overload]
    try:
        cluster = _shared["cluster"]
        assert isinstance(cluster, Cluster)
        yield cluster
    finally:
        _shared["users"] = int(_shared["users"]) - 1  # type: ignore[call-overload]
        if _shared["users"] == 0:
            stack = _shared.pop("stack")
            _shared.clear()
            assert isinstance(stack, contextlib.ExitStack)
            stack.close()


@pytest.fixture(scope="session")
def k8s_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with shared_cluster(tmp_path_factory.mktemp("k8s-cluster")) as cluster:
        yield cluster
