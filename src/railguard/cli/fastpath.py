"""The hot command lines of agents and scripts, answered without typer, Rich or pydantic.

Why it exists: ``railguard rollback --env E --json`` and ``railguard deploy --env E --yes --json`` are what an agent
runs when something is on fire, and ``railguard status --env E --json`` what it reads before and after; the
command's own start-up (typer, Rich, the API models: ~0.3 s of CPU) was most of a warm rollback's time from
command to traffic moved (bench/deploy_timing.py). Here those lines are parsed by hand and sent to a running
daemon as raw JSON; the answers are printed as they came, which is what the typer commands print once the same
answers are parsed into their models and dumped again (a golden test, tests/e2e/test_cli_fastpath.py, runs both
on the same command lines against a real daemon). ``status`` still parses the spec here, as its typer command
does (pydantic), but skips typer and the status model. ``plan --env E --json`` (a CI's or an agent's review of a
change, 12 MB of JSON for 10,000 services) sends the overview request and streams the stored body to stdout.

Only the exact forms below are taken, and only while a daemon already listens: anything else (help, a human
rendering, an unknown or repeated option, no daemon yet, shell completion) returns ``None`` before anything was
sent, and :func:`railguard.cli.launch.main` runs the typer tree as before. Every check stays with the daemon:
this path sends the requests the typer commands send, in the same order, and the daemon's answer (a refusal
included) is what is printed. An answer that needs a model (a deploy whose plan is not applied, any refusal)
is handed to the typer command's own code, so its output is that code's.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

FOLLOW_LIMIT_S = 3600.0
FOLLOW_FIRST_S, FOLLOW_MAX_S = 0.02, 0.15  # pauses when the daemon answers without news (one that cannot wait)
FOLLOW_WAIT_S = 10.0  # how long one request may wait for the next step (the daemon answers the moment it is written)

# The options each hot command takes here: name -> (its forms, whether it takes a value). Anything else (or a
# value that looks like an option, or is empty) is left to typer, whose parser and errors are the reference.
_OPTIONS: dict[str, dict[str, tuple[tuple[str, ...], bool]]] = {
    "rollback": {"env": (("--env", "-e"), True), "spec": (("--spec",), True), "to": (("--to",), True),
                 "no_wait": (("--no-wait",), False), "as_json": (("--json",), False)},
    "deploy": {"env": (("--env", "-e"), True), "spec": (("--spec",), True), "yes": (("--yes", "-y"), False),
               "as_json": (("--json",), False)},
    "status": {"env": (("--env", "-e"), True), "spec": (("--spec",), True), "as_json": (("--json",), False)},
    "plan": {"env": (("--env", "-e"), True), "spec": (("--spec",), True), "as_json": (("--json",), False)},
}
# The summary's fields a plan's --json carries beside the stored body (:func:`railguard.cli.deploy._emit_plan_json`).
PLAN_FLAGS = ("errored", "applyable", "max_risk", "counts", "decision")
_NUMBER = re.compile(r"[0-9]{1,9}")


def emit_json(payload: dict[str, Any]) -> None:
    """The one JSON document of a ``--json`` command (also :func:`railguard.cli.output.emit_json`)."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    sys.stdout.flush()


def parse(args: list[str]) -> tuple[str, dict[str, Any]] | None:
    """``(command, options)`` for a command line this module answers, else ``None`` (typer takes it)."""
    if not args or args[0] not in _OPTIONS or "_RAILGUARD_COMPLETE" in os.environ:
        return None
    command, known = args[0], _OPTIONS[args[0]]
    forms = {form: (name, takes) for name, (spelled, takes) in known.items() for form in spelled}
    found: dict[str, Any] = {}
    rest = args[1:]
    i = 0
    while i < len(rest):
        word = rest[i]
        value: str | None = None
        if word.startswith("--") and "=" in word:
            word, value = word.split("=", 1)
        if word not in forms:
            return None
        name, takes = forms[word]
        if name in found:  # typer's rule for a repeated option is its own business
            return None
        if takes:
            if value is None:
                if i + 1 >= len(rest):
                    return None
                i += 1
                value = rest[i]
            if not value or value.startswith("-"):
                return None
            found[name] = value
        elif value is not None:
            return None
        else:
            found[name] = True
        i += 1
    if not found.get("as_json") or (command == "deploy" and not found.get("yes")):
        return None  # people's renderings (Rich) and deploy's confirmation stay with the typer command
    if "to" in found:
        if not _NUMBER.fullmatch(found["to"]):
            return None
        found["to"] = int(found["to"])
    if "spec" in found:
        found["spec"] = Path(found["spec"])
    return command, found


def run(args: list[str]) -> None:
    """Answer ``args`` and exit, or return (nothing sent) when the typer command must answer them."""
    parsed = parse(args)
    if parsed is None:
        return
    command, options = parsed
    from railguard.client import Client
    from railguard.engine.workspace import Workspace

    try:
        ws = Workspace.locate(options.get("spec"))
        client = Client(ws)
        # Without a daemon the typer command checks the spec first (a bad spec must not start one) and names the
        # environment when none is given: that is its work, not this module's.
        # A plan without --env names the spec's only environment, which takes parsing the spec: typer's work too.
        if (command in ("rollback", "plan") and options.get("env") is None) or not client.listening():
            return
        code = {"rollback": _rollback, "deploy": _deploy, "status": _status, "plan": _plan}[command](client, ws,
                                                                                                    options)
    except KeyboardInterrupt:
        sys.exit(130)  # as typer answers an interrupt
    except Exception as exc:
        code = _failed(exc)
    sys.exit(code)


def _rollback(client: Any, ws: Any, options: dict[str, Any]) -> int:
    """``railguard rollback --env E [--to N] [--no-wait] --json`` (:func:`railguard.cli.deploy.rollback`)."""
    body: dict[str, Any] = {"kind": "rollback", "spec": str(ws.spec_path), "env": options["env"]}
    if options.get("to") is not None:
        body["to"] = options["to"]
    body["confirm"] = []  # the request as OperationRequest(...).model_dump(exclude_none=True) writes it
    record = client.call("POST", "operations", body)["operation"]
    if options.get("no_wait"):
        emit_json({"ok": True, "diagnostics": [], "operation": record})
        return 0
    return _finish(follow(client, record["id"]))


def _deploy(client: Any, ws: Any, options: dict[str, Any]) -> int:
    """``railguard deploy [--env E] --yes --json`` (:func:`railguard.cli.deploy.deploy`)."""
    env = options.get("env")
    answer = client.call("POST", "deploys", {"spec": str(ws.spec_path), "apply": True,
                                             **({"env": env} if env is not None else {})})
    url = f"http://127.0.0.1:{answer.get('edge_port')}/"
    if answer.get("operation") is None:  # nothing applied (no changes, errors, denied): the typer command says why
        from railguard.cli.deploy import deployed
        from railguard.model.api import DeployAnswer

        deployed(client, ws, DeployAnswer.model_validate(answer), True)  # prints and exits (typer.Exit)
        return 0
    return _finish(follow(client, answer["operation"]["id"]), url)


def _status(client: Any, ws: Any, options: dict[str, Any]) -> int:
    """``railguard status [--env E] --json`` (:func:`railguard.cli.observe.status`): the spec is parsed here first, as
    there (a bad spec or an unknown environment is refused before the daemon is asked); the answer is printed
    as it came, without typer or the status model."""
    from railguard.engine.workspace import pick_env

    parsed, _ = ws.load_valid()
    name = pick_env(parsed, options.get("env"))
    found = client.call("GET", "status", params={"env": name, "spec": str(ws.spec_path)})["status"]
    emit_json({"ok": True, "diagnostics": [], "status": found})
    return 0


def _plan(client: Any, ws: Any, options: dict[str, Any]) -> int:
    """``railguard plan --env E --json`` (:func:`railguard.cli.deploy.plan`): the request it sends, the overview's
    diagnostics and summary flags as they came, then the stored body streamed. A plan with a ``deny`` verdict is
    handed to the typer command's code, which adds the denial diagnostic (a model of its own)."""
    answer = client.call("POST", "plans", {"spec": str(ws.spec_path), "env": options["env"], "view": "overview",
                                           "per_action": 0})["plan"]
    if any(v.get("effect") == "deny" for v in answer.get("verdicts") or []):
        from railguard.cli.deploy import planned
        from railguard.model.api import PlanOverview

        planned(client, PlanOverview.model_validate(answer), None, False, False, True)  # prints and exits
        return 0
    diagnostics = answer.get("diagnostics") or []
    failed = any(d.get("severity") == "error" for d in diagnostics)
    flags = {k: v for k, v in answer["summary"].items() if k in PLAN_FLAGS}
    stream_plan_json(client, answer["id"], not failed, diagnostics, {**flags, "short_hash": answer["short_hash"]})
    return 1 if failed else 0


def stream_plan_json(client: Any, plan_id: str, ok: bool, diagnostics: list[Any], flags: dict[str, Any]) -> None:
    """``{ok, diagnostics, plan: {flags..., ...the stored plan}}``, with the plan's body streamed from the daemon
    as it was stored: a 10,000-service plan is never parsed or re-encoded on its way to stdout."""
    head = json.dumps({"ok": ok, "diagnostics": diagnostics})
    sys.stdout.flush()
    stream = sys.stdout.buffer
    stream.write(f'{head[:-1]}, "plan": {json.dumps(flags)[:-1]}, '.encode())
    with client.plan_body(plan_id) as chunks:
        first = True
        for chunk in chunks:
            if first:  # the stored body is one JSON object: its fields continue the flags' object
                chunk, first = chunk.lstrip()[1:], False
            stream.write(chunk)
    stream.write(b"}\n")
    stream.flush()


def follow(client: Any, op_id: str) -> dict[str, Any]:
    """The operation's record once it ended: one request waits for the end (the daemon holds it up to
    ``FOLLOW_WAIT_S`` and answers the moment the operation ends), asked again until it did."""
    shown = 0
    deadline = time.monotonic() + FOLLOW_LIMIT_S
    pause = FOLLOW_FIRST_S
    while True:
        record: dict[str, Any] = client.call("GET", f"operations/{op_id}",
                                             params={"until": "end", "wait": FOLLOW_WAIT_S})["operation"]
        news = len(record["journal"]) > shown
        shown = len(record["journal"])
        if record["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return record
        if news:
            pause = FOLLOW_FIRST_S
        else:
            time.sleep(pause)
            pause = min(pause * 1.5, FOLLOW_MAX_S)


def _finish(record: dict[str, Any], url: str | None = None) -> int:
    """``{ok, diagnostics, operation[, url]}`` as :func:`railguard.cli.deploy._finish_operation` prints it."""
    ok = record["status"] == "succeeded"
    problems = (record.get("error") or {}).get("diagnostics") or []
    emit_json({"ok": ok, "diagnostics": problems, "operation": record, **({"url": url} if url and ok else {})})
    return 0 if ok else 1


def _failed(exc: Exception) -> int:
    """A refusal or a bug, printed as the typer commands print it (:func:`railguard.cli.output.failed`)."""
    import typer

    from railguard.cli.output import failed

    if isinstance(exc, typer.Exit):  # the typer command's own code finished the answer
        return int(exc.exit_code)
    try:
        failed(exc, True)
    except typer.Exit as done:
        return int(done.exit_code)
    return 70  # pragma: no cover - failed always exits
