"""``railguard init``: detect the app in a folder and write a commented starter spec.

Detection reads files, never runs or imports anything (:mod:`railguard.engine.appdetect` decides from
what :mod:`railguard.engine.appscan` parsed). This module writes the decisions as railguard.toml, each
with a comment saying why, picks two free edge ports, and refuses to overwrite a spec. The starter spec
is valid as written, so ``railguard validate`` passes right after ``init``. Called by ``railguard init``.
"""

from __future__ import annotations

import json
import os
import socket
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from railguard.engine.appdetect import Choices, detect_choices, install_command
from railguard.model.diagnostics import RailguardError, error

__all__ = ["Detected", "detect", "free_ports", "install_command", "render", "write_starter"]

FIRST_EDGE_PORT = 8080


@dataclass(frozen=True)
class Detected:
    """What ``railguard init`` found, in the shape ``init --json`` reports (framework, entry, run, ...)."""

    name: str
    framework: str
    entry: str
    run: list[str]
    build: list[str] | None
    health: str | None
    choices: Choices


def detect(folder: Path) -> Detected | None:
    found = detect_choices(folder)
    if found is None:
        return None
    return Detected(found.name, found.framework, found.entry, found.run, found.build, found.health, found)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int = 2, first: int = FIRST_EDGE_PORT,
               bindable: Callable[[int], bool] = _bindable) -> list[int]:
    """``count`` edge ports from ``first`` up that nothing listens on now (another app's edge, a dev server)."""
    ports: list[int] = []
    port = first
    while len(ports) < count and port < 65535:
        if bindable(port):
            ports.append(port)
        port += 1
    return ports


def _toml(value: str) -> str:
    return json.dumps(value)  # a TOML basic string is a JSON string for everything init writes


def _argv(items: list[str]) -> str:
    return "[" + ", ".join(_toml(i) for i in items) + "]"


def _comment(text: str) -> str:
    return "\n".join(textwrap.wrap(text, 110, initial_indent="# ", subsequent_indent="#   ", break_on_hyphens=False,
                                   break_long_words=False))


def render(found: Detected, ports: list[int]) -> str:
    c = found.choices
    staging, production = ports
    lines = [
        "# railguard.toml: the desired state of this app in every environment (written by `railguard init`).",
        f"# Detected: a {c.framework} app ({c.entry}); each choice below says why it was made.",
        "# Check the commands below, then run",
        "#   railguard validate            # every problem at once, with line numbers",
        "#   railguard plan --env staging  # what would change, saved for review",
        "# The JSON Schema of this file: `railguard schema`.",
    ]
    if c.changes:
        lines += ["#", "# Change these lines of the app (its data into $RAILGUARD_DATA_DIR, its settings from "
                       "variables):"]
        lines += [f"#   {change}" for change in c.changes]
    lines += [
        "",
        "[app]",
        f"name = {_toml(c.name)}",
        'source = "."            # folder snapshotted for each release (honours .gitignore and .railguardignore)',
        "",
        "[environments.staging]",
        f"edge_port = {staging}        # free when init ran; the environment's public port, served by the Caddy edge",
        "# Data (SQLite files, uploads) lives here, outside the release, and survives redeploys and rollbacks;",
        "# replicas see the absolute path as $RAILGUARD_DATA_DIR.",
        'data_dir = ".railguard/data/staging"',
        "",
        "[environments.production]",
        f"edge_port = {production}",
        'data_dir = ".railguard/data/production"',
        "protected = true        # changes that are not \"safe\" need approval",
        "# Per-environment overrides of any service field:",
        "# [environments.production.services.web]",
        "# replicas = 2",
        "",
        "[services.web]",
        _comment(f"Build: {c.build_why}."),
        f"build = {_argv(c.build)}" if c.build else "# build = [\"python\", \"-m\", \"pip\", \"install\", "
                                                  "\"-r\", \"requirements.txt\"]",
        _comment(f"Run: {c.run_why}. argv, no shell; $PORT is the port Railguard allocates."),
        f"run = {_argv(c.run)}",
    ]
    if c.release:
        lines += [_comment(f"Release: {c.release_why}."), f"release = {_argv(c.release)}"]
    else:
        lines += ["# release = [\"python\", \"migrate.py\"]   # runs once per release, before any traffic"]
    lines.append("replicas = 1")
    lines.append("secrets = [" + ", ".join(_toml(s) for s in c.secrets)
                 + "]  # names only; set each with `railguard secret set NAME --env ENV`")
    if c.required:
        lines.append("# The app reads these without a default: " + ", ".join(c.required) + "; give them a value.")
    if c.optional_secrets:
        lines.append(_comment("Optional secrets the app reads (it runs without them): "
                              + ", ".join(c.optional_secrets) + "; list each here once you set it."))
    unset = [n for n in c.dotenv if n not in c.env and n not in c.secrets and n not in c.optional_secrets]
    if c.dotenv:
        lines.append(_comment(".env is not deployed (files named like secrets stay out of releases); it sets "
                              + ", ".join(c.dotenv) + (f": give {', '.join(unset)} values in env or secrets"
                                                       if unset else "") + "."))
    if c.database:
        lines.append('databases = ["main"]  # [databases.main] below: its URL arrives in '
                     f'{c.database[0]} (and libpq\'s PG* variables)')
    if c.static:
        path, folder, why = c.static
        lines += [_comment(f"Static: {why}."),
                  f"static = [{{ path = {_toml(path)}, folder = {_toml(folder)}, cache = \"1h\" }}]"]
    lines += [
        'start_timeout = "60s"',
        'stop_timeout = "10s"',
        'drain_timeout = "30s"',
        "",
        "[services.web.env]",
        "# Plain values only, never secrets; \"$RAILGUARD_DATA_DIR\" in a value becomes the data folder's path.",
    ]
    lines += [f"{name} = {_toml(value)}  # {why}" for name, (value, why) in sorted(c.env.items())]
    lines += [
        "",
        "[services.web.health]",
        _comment(f"Health: {c.health_why}."),
        f"http = {_toml(c.health)}" if c.health else "tcp = true",
        'interval = "2s"',
        'timeout = "1s"',
        "# 5xx answers are forgiven this long after start; then the same 5xx 3 times in a row fails the deploy.",
        'start_period = "10s"',
        "healthy_threshold = 2",
        "unhealthy_threshold = 3",
        "",
        "[[services.web.routes]]",
        'path = "/"',
    ]
    if c.database:
        lines += ["", "[databases.main]", _comment(f"Database: {c.database[1]}."), 'engine = "postgres"']
        if c.database[0] != "DATABASE_URL":
            lines.append(f"env_var = {_toml(c.database[0])}")
    return "\n".join(lines) + "\n"


def write_starter(folder: Path, force: bool = False, ports: list[int] | None = None) -> tuple[Path, Detected]:
    target = folder / "railguard.toml"
    if target.exists() and not force:
        raise RailguardError(error(
            "init.exists", "railguard.toml already exists",
            f"{target} is already there; init never overwrites a spec.",
            "Edit it, or run `railguard init --force` to replace it.", file=str(target),
        ))
    found = detect(folder)
    if found is None:
        # A repository whose Django project sits one folder down (repo/requirements.txt, repo/site/manage.py)
        # is common: name that folder rather than the generic advice.
        below = sorted(p.parent.name for p in folder.glob("*/manage.py"))
        deps = sorted(p.name for p in folder.glob("requirements*.txt"))
        where = (f"Run `railguard init` in {', '.join(below)} (its manage.py is there)"
                 + (f", and copy {', '.join(deps)} into it: a release holds only the spec's folder" if deps else "")
                 + ". " if below else "Run `railguard init` in the app's folder, ")
        raise RailguardError(error(
            "init.no_app", "No app found in this folder",
            "No Python web app (a Flask, FastAPI, Starlette, Quart, Litestar, Falcon, Bottle or Django app, a "
            "WSGI/ASGI callable, a package "
            f"with __main__.py or a script with `if __name__ == \"__main__\"`) was found in {folder}, so "
            "Railguard cannot guess how to run it.",
            where + ("Otherwise write" if below else "or write") + " railguard.toml by hand (`railguard schema` "
            "lists every field; any program that listens on $PORT runs, e.g. run = [\"node\", \"index.js\"]).",
            address=str(folder),
        ))
    target.write_text(render(found, ports or free_ports()), encoding="utf-8")
    if os.geteuid() == 0 and (owner := folder.stat()).st_uid != 0:
        # The folder's owner's spec, as every file of the app: root reads a spec only from the folder's owner
        # (sources/readfile.py), so one left root's would be refused by the next `railguard validate`.
        os.chown(target, owner.st_uid, owner.st_gid)
    return target, found
