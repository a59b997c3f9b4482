"""``railguard edge-ca``: where the edge's internal CA root certificate is, and how to trust it.

Routes with a ``host`` in an environment with ``https_port`` get certificates from the edge's own CA (Caddy's
internal issuer); browsers and clients trust them once its root is trusted. Railguard never installs it into
the machine's trust store itself: this command says where it is (from ``railguard status``, through the
daemon) and how to trust it, so a person decides.
"""

from __future__ import annotations

import typer

from railguard.cli.common import OBSERVE, EnvOpt, JsonOpt, SpecOpt, add, connect, env_from_spec
from railguard.cli.output import err, finish, guarded
from railguard.model.diagnostics import RailguardError, error


@guarded()
def edge_ca(env: EnvOpt = None, spec: SpecOpt = None, as_json: JsonOpt = False) -> None:
    """Print the path of the edge's internal CA root certificate (PEM) and how to trust it."""
    ws, client = connect(spec)
    name = env_from_spec(ws, env)
    found = client.status(name, str(ws.spec_path)).edge
    if found.https_port is None or found.ca_root is None:
        why = ("the environment has no https_port" if found.https_port is None
               else "the edge has not issued a certificate yet")
        raise RailguardError(error(
            "edge.no_ca", f"No internal CA root for '{name}' yet",
            f"The edge of '{name}' has no CA root to trust: {why}.",
            f"Set https_port under [environments.{name}], give a route a `host`, then `railguard deploy --env "
            f"{name}`; run this command again afterwards.", address=f"environments.{name}.https_port"))
    if as_json:
        finish(True, [], {"env": name, "ca_root": found.ca_root, "https_port": found.https_port})
    typer.echo(found.ca_root)
    err.print(f"Trust it: curl --cacert {found.ca_root} https://HOST:{found.https_port}/ ; "
              "Debian/Ubuntu: copy it to /usr/local/share/ca-certificates/railguard.crt and run "
              "update-ca-certificates; browsers: import it as an authority.", highlight=False)


def register(app: typer.Typer) -> None:
    add(app, edge_ca, OBSERVE, "railguard edge-ca --env staging",
        "curl --cacert \"$(railguard edge-ca --env staging)\" https://app.localhost:8443/", name="edge-ca")
