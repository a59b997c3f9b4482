"""Spec rules about databases: services name databases that exist, and their URL variable is free.

A service's ``databases = ["main"]`` must name a ``[databases.main]`` table (one that is not being
deleted), and the variable its URL arrives in must not also be a plain variable or a secret of that
service (the URL would silently win or lose). Called by :func:`railguard.model.checks.check`.
"""

from __future__ import annotations

from collections.abc import Iterator

from railguard.model.diagnostics import Diagnostic, error
from railguard.model.spec import Spec


def database_rules(spec: Spec) -> Iterator[Diagnostic]:
    names = sorted(n for n, d in spec.databases.items() if not d.delete)
    for env_name in [None, *spec.environments]:
        overrides = {} if env_name is None else spec.environments[env_name].services
        for name in spec.services:
            if env_name is not None and name not in overrides:
                continue  # the service as its own table says: reported once, below
            service = spec.services[name] if env_name is None else spec.resolved_service(env_name, name)
            if env_name is not None and service.databases == spec.services[name].databases:
                continue  # the same list as the service's own: reported once
            where = f"services.{name}" if env_name is None else f"environments.{env_name}.services.{name}"
            for i, db in enumerate(service.databases):
                found = spec.databases.get(db)
                if found is None or found.delete:
                    why = "is being deleted (delete = true)" if found else "is not defined"
                    yield error(
                        "spec.unknown_database", f"Service '{name}' uses database '{db}', which {why}",
                        f"'{where}.databases[{i}]' names '{db}'; the spec's databases are: "
                        f"{', '.join(names) or 'none'}.",
                        f"Add a [databases.{db}] table with engine = \"postgres\" (or \"sqlite\"), or remove "
                        f"'{db}' from the service's databases, then run `railguard validate`.",
                        address=f"{where}.databases[{i}]")
                    continue
                if found.env_var in service.env or found.env_var in service.secrets:
                    yield error(
                        "spec.database_variable", f"Service '{name}' sets {found.env_var} itself",
                        f"Database '{db}' injects its connection URL as {found.env_var}, which '{where}' also "
                        "sets (env or secrets); one of the two values would be lost.",
                        f"Remove {found.env_var} from the service's env/secrets, or set env_var = \"OTHER_NAME\" "
                        f"in [databases.{db}].", address=f"{where}.databases[{i}]")
