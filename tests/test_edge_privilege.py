"""Ports below 1024 on an isolated edge: refused before anything changes when Caddy could not get the capability."""

from __future__ import annotations

import os
import shutil

import pytest

from railguard.model import checks
from railguard.providers.local.edge import EdgeError, needs_low_ports, privileged_argv
from railguard.providers.local.isolation import RunAs


def test_root_without_setpriv_refuses_low_ports_unless_isolation_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        pytest.skip("the root branch of the check")
    real = shutil.which
    monkeypatch.setattr(checks.shutil, "which", lambda name: None if name == "setpriv" else real(name))
    monkeypatch.delenv("RAILGUARD_ISOLATION", raising=False)
    assert checks.lowest_unprivileged_port() == 1024
    monkeypatch.setenv("RAILGUARD_ISOLATION", "off")  # Caddy then runs as root, which binds any port
    assert checks.lowest_unprivileged_port() == 0
    monkeypatch.setattr(checks.shutil, "which", real)
    monkeypatch.delenv("RAILGUARD_ISOLATION")
    assert checks.lowest_unprivileged_port() == (0 if real("setpriv") else 1024)


def test_the_capability_is_asked_for_only_below_1024_and_only_that_one(monkeypatch: pytest.MonkeyPatch) -> None:
    assert needs_low_ports(80, None) and needs_low_ports(8080, 443) and not needs_low_ports(8080, 8443)
    assert not needs_low_ports(1024, None) and not needs_low_ports(None)
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/setpriv" if name == "setpriv" else None)
    argv = privileged_argv(["caddy", "run"], RunAs("rg-edge", 993, 992))
    assert argv[-3:] == ["--", "caddy", "run"] and "--no-new-privs" in argv and "--clear-groups" in argv
    assert [a for a in argv if "caps" in a or "bounding" in a] == [
        "--bounding-set=-all,+net_bind_service", "--inh-caps=-all,+net_bind_service",
        "--ambient-caps=-all,+net_bind_service"]
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(EdgeError, match="setpriv"):
        privileged_argv(["caddy"], RunAs("rg-edge", 993, 992))
