"""A spec cannot make the daemon run a program or send a file through the kubeconfig it names.

The attack (found by review): an agent writes a kubeconfig whose user runs a credential plugin (``exec``) or reads a
file (``tokenFile`` = a file only the daemon can read, sent to a server the kubeconfig names), names it in the spec
and asks for a plan: the daemon used to run the plugin at the first API call, before any approval. Now a kubeconfig
the spec names is used as it is only when inert (credentials inline); otherwise a person trusts that exact file
(``railguard k8s trust``, on a terminal), and a changed file is untrusted again. Real CLI, daemon and control plane.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from railguard.providers.kubernetes import kubeconfig

from ..conftest import stop_daemon
from ..e2e.harness import run_on_terminal
from .cluster import Cluster

pytestmark = pytest.mark.timeout(300)
IMAGE = "registry.example/shop@sha256:" + "0123456789abcdef" * 4
SPEC = """
[app]
name = "trust"

[environments.staging]
target = "kubernetes"
[environments.staging.kubernetes]
namespace = "{namespace}"
kubeconfig = "{kubeconfig}"

[services.web]
run = ["python", "app.py"]
image = "{image}"
"""


def _rg(root: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    env = {**os.environ, "NO_COLOR": "1", "RAILGUARD_KUBE_POD_LOGS": "off"}
    env.pop("RAILGUARD_TOKEN", None)
    done = subprocess.run([sys.executable, "-m", "railguard", *args, "--json"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=180, check=False)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, dict(json.loads(done.stdout)), done.stdout + done.stderr


def _exec_kubeconfig(cluster: Cluster, folder: Path, marker: Path) -> Path:
    """The cluster's kubeconfig with its token handed out by a plugin that also leaves ``marker`` behind."""
    inert = json.loads(cluster.write_kubeconfig(folder / "inert.kubeconfig").read_text())
    token = inert["users"][0]["user"]["token"]
    plugin = folder / "plugin.sh"
    credential = {"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",
                  "status": {"token": token}}
    plugin.write_text(f"#!/bin/sh\ntouch '{marker}'\necho '{json.dumps(credential)}'\n")
    plugin.chmod(0o755)
    inert["users"][0]["user"] = {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1",
                                          "command": str(plugin), "interactiveMode": "Never"}}
    path = folder / "exec.kubeconfig"
    path.write_text(json.dumps(inert, indent=1))
    return path


@pytest.fixture
def workspace(tmp_path: Path, k8s_cluster: Cluster) -> Any:
    (tmp_path / "app.py").write_text("print('app')\n")
    yield tmp_path
    stop_daemon(tmp_path)


def test_a_plugin_kubeconfig_runs_only_once_a_person_trusted_that_exact_file(workspace: Path,
                                                                            k8s_cluster: Cluster) -> None:
    marker = workspace / "plugin-ran"
    path = _exec_kubeconfig(k8s_cluster, workspace, marker)
    (workspace / "railguard.toml").write_text(SPEC.format(namespace="trust-plugin", kubeconfig=path, image=IMAGE))

    code, answer, _ = _rg(workspace, "plan", "--env", "staging")
    assert code == 1 and [d["code"] for d in answer["diagnostics"]] == ["cluster.kubeconfig_untrusted"], answer
    assert "user 'admin': exec" in answer["diagnostics"][0]["detail"], answer
    assert "plugin.sh" not in answer["diagnostics"][0]["detail"], answer  # what it runs: for the person trusting
    assert not marker.exists(), "the daemon ran the spec's credential plugin"

    # An agent (no terminal) cannot trust it for itself.
    code, refused, _ = _rg(workspace, "k8s", "trust", str(path))
    assert code == 1 and refused["diagnostics"][0]["code"] == "auth.needs_terminal", refused
    assert not marker.exists()

    code, screen = run_on_terminal(workspace, ["k8s", "trust", str(path)], "")
    assert code == 0 and "Trusted" in screen and "exec (runs" in screen and "plugin.sh" in screen, screen
    code, listed, _ = _rg(workspace, "k8s", "trusted")
    assert code == 0 and [r["path"] for r in listed["kubeconfigs"]] == [str(path.resolve())], listed

    code, answer, _ = _rg(workspace, "plan", "--env", "staging")
    assert code == 0 and answer["ok"], answer
    assert marker.exists(), "the trusted plugin gave the daemon its credentials"

    # The same path with other bytes is another file: untrusted again, and the new plugin does not run.
    marker.unlink()
    path.write_text(path.read_text().replace('"interactiveMode": "Never"', '"interactiveMode": "Never", "env": []'))
    stop_daemon(workspace)  # a running daemon keeps the connection it made from the trusted bytes
    code, answer, _ = _rg(workspace, "plan", "--env", "staging")
    assert code == 1 and answer["diagnostics"][0]["code"] == "cluster.kubeconfig_untrusted", answer
    assert "changed since it was trusted" in answer["diagnostics"][0]["detail"], answer
    assert not marker.exists()


def test_a_kubeconfig_cannot_send_a_file_or_quote_one(workspace: Path, k8s_cluster: Cluster) -> None:
    secret_file = workspace / "only-the-daemon-reads-this"
    secret_file.write_text("rg-kubeconfig-secret-7f3a\n")
    config = json.loads(k8s_cluster.write_kubeconfig(workspace / "inert.kubeconfig").read_text())
    config["users"][0]["user"] = {"tokenFile": str(secret_file)}
    sends = workspace / "sends.kubeconfig"
    sends.write_text(json.dumps(config))
    (workspace / "railguard.toml").write_text(SPEC.format(namespace="trust-file", kubeconfig=sends, image=IMAGE))
    code, answer, text = _rg(workspace, "plan", "--env", "staging")
    assert code == 1 and answer["diagnostics"][0]["code"] == "cluster.kubeconfig_untrusted", answer
    assert "tokenFile" in answer["diagnostics"][0]["detail"] and "rg-kubeconfig-secret" not in text, text

    # A file that is not YAML: the error says where, never what (it could be any file the daemon can read).
    broken = workspace / "broken.kubeconfig"
    broken.write_text("apiVersion: v1\npassword: rg-kubeconfig-secret-7f3a: [\n")
    (workspace / "railguard.toml").write_text(SPEC.format(namespace="trust-file", kubeconfig=broken, image=IMAGE))
    code, answer, text = _rg(workspace, "plan", "--env", "staging")
    assert code == 1 and answer["diagnostics"][0]["code"] == "cluster.config", answer
    assert "line 2" in answer["diagnostics"][0]["detail"] and "rg-kubeconfig-secret" not in text, text

    # Inline credentials need no trust.
    inert = k8s_cluster.write_kubeconfig(workspace / "inert.kubeconfig")
    (workspace / "railguard.toml").write_text(SPEC.format(namespace="trust-file", kubeconfig=inert, image=IMAGE))
    code, answer, _ = _rg(workspace, "plan", "--env", "staging")
    assert code == 0 and answer["ok"], answer


CASES = [  # (user entry, cluster entry) -> what needs trust
    ({"token": "t"}, {"server": "https://x", "certificate-authority-data": "Y2E="}, []),
    ({"client-certificate-data": "Yw==", "client-key-data": "aw=="}, {"server": "https://x"}, []),
    ({"exec": {"command": "aws", "args": ["eks", "get-token"]}}, {"server": "https://x"}, ["user 'u': exec"]),
    ({"auth-provider": {"name": "gcp"}}, {"server": "https://x"}, ["user 'u': auth-provider"]),
    ({"tokenFile": "/etc/shadow"}, {"server": "https://x"}, ["user 'u': tokenFile"]),
    ({"client-key": "/k", "client-certificate": "/c"}, {"server": "https://x"},
     ["user 'u': client-certificate", "user 'u': client-key"]),
    ({"token": "t"}, {"server": "https://x", "certificate-authority": "/ca"}, ["cluster 'c': certificate-authority"]),
    ({"token": "t", "some-future-key": 1}, {"server": "https://x"}, ["user 'u': some-future-key"]),
]


@pytest.mark.parametrize(("user", "cluster", "expected"), CASES)
def test_what_needs_trust(user: dict[str, Any], cluster: dict[str, Any], expected: list[str]) -> None:
    document = {"current-context": "x", "contexts": [{"name": "x", "context": {"user": "u", "cluster": "c"}}],
                "users": [{"name": "u", "user": user}], "clusters": [{"name": "c", "cluster": cluster}]}
    assert kubeconfig.active_parts(document, None) == expected
    assert kubeconfig.active_parts(document, "x") == expected
