"""Guardrail commands: tokens, secrets, approvals, promotion, policies, the audit log, whoami.

The daemon decides every one of them; these commands collect what a person must type
(a secret on stdin or a hidden prompt, never an argument; the plan's short hash for an
approval) and render the answer.
"""

from __future__ import annotations

import getpass
import sys
from typing import Annotated, Optional

import typer

from railguard.cli import render
from railguard.cli.common import DEPLOY, GUARD, EnvOpt, JsonOpt, SpecOpt, add, connect, env_from_spec
from railguard.cli.output import escape, finish, guarded, out
from railguard.model.diagnostics import RailguardError, error
from railguard.model.plans import denial

token_app = typer.Typer(help="API tokens for agents, CI and people (printed once, stored as a hash).",
                        no_args_is_help=True)
secret_app = typer.Typer(help="Secrets: values are encrypted at rest and never printed.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", invoke_without_command=True)


def _typed(prompt: str) -> str | None:
    """What a person types on the terminal; None without one (the daemon then refuses power-widening)."""
    if not sys.stdin.isatty():
        return None
    return str(typer.prompt(prompt)).strip()


@guarded()
def token_create(
    name: Annotated[str, typer.Option("--name", help="Unique name, shown in the audit log.")],
    role: Annotated[str, typer.Option("--role", help="viewer | agent | deployer | approver | admin")],
    env: Annotated[Optional[list[str]], typer.Option("--env", help="Limit to these environments.")] = None,
    expires_hours: Annotated[Optional[int], typer.Option("--expires-hours", min=1, help="Lifetime in hours.")] = None,
    spec: SpecOpt = None, as_json: JsonOpt = False,
) -> None:
    """Create a token and print it once."""
    _, client = connect(spec)
    typed = _typed(f"Type '{role}:{name}' to confirm") if role in ("deployer", "approver", "admin") else None
    lifetime = expires_hours * 3600 if expires_hours else None
    created = client.create_token(name, role, env or [], lifetime, typed)
    if as_json:
        # Like `token list`/`token revoke`, "token" is the token's record; its value is "value" (the
        # only answer that has it). token.token repeats it for scripts written before "value" existed.
        finish(True, [], {"token": created.model_dump(mode="json"), "value": created.token})
    out.print(f"Token [bold]{escape(created.name)}[/] ({created.role}"
              + (f", {', '.join(created.envs)}" if created.envs else "") + "). Shown once, store it now:")
    out.print(created.token, markup=False, highlight=False)


@guarded()
def token_list(spec: SpecOpt = None, as_json: JsonOpt = False) -> None:
    """List tokens (never their values)."""
    _, client = connect(spec)
    rows = client.tokens()
    if as_json:
        finish(True, [], {"tokens": [r.model_dump(mode="json") for r in rows]})
    from rich.table import Table  # Rich only when a table is shown

    table = Table(show_edge=False, pad_edge=False)
    for column in ("id", "name", "role", "envs", "created", "by", "expires", "revoked", "last used"):
        table.add_column(column, no_wrap=True)
    for r in rows:
        table.add_row(r.id, escape(r.name), r.role, ", ".join(r.envs or ["all"]), r.created_at[:19],
                      escape(r.created_by), (r.expires_at or "-")[:19], (r.revoked_at or "-")[:19],
                      (r.last_used_at or "-")[:19])
    out.print(table)


@guarded()
def token_revoke(token: Annotated[str, typer.Argument(help="Token name or id.")], spec: SpecOpt = None,
                 as_json: JsonOpt = False) -> None:
    """Revoke a token at once."""
    _, client = connect(spec)
    record = client.revoke_token(token)
    if as_json:
        finish(True, [], {"token": record.model_dump(mode="json")})
    out.print(f"Revoked {escape(record.name)} at {record.revoked_at}.")


@guarded()
def secret_set(
    name: str,
    env: EnvOpt = None, spec: SpecOpt = None,
    value: Annotated[Optional[str], typer.Option("--value", hidden=True)] = None,
    extra: Annotated[Optional[list[str]], typer.Argument(hidden=True)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Set a secret; the value is read from stdin (or a hidden prompt), never from an argument."""
    if value is not None or extra:
        raise RailguardError(error(
            "secret.on_command_line", "Secret values are never taken from the command line",
            "Arguments end up in shell history, process listings and agent transcripts. Nothing was stored, and "
            "the value is not repeated here.",
            f"Pipe it in: `printf %s \"$VALUE\" | railguard secret set {name} --env <env>`, or type it at the "
            "prompt."))
    ws, client = connect(spec)
    name_env = env_from_spec(ws, env)
    if sys.stdin.isatty():
        secret = getpass.getpass(f"Value of {name} for {name_env}: ")
    else:
        secret = sys.stdin.read()
    secret = secret.rstrip("\r\n")
    stored = client.set_secret(name_env, name, secret)
    if as_json:
        finish(True, [], {"secret": stored.model_dump(mode="json")})
    out.print(f"{stored.name} set for {stored.env} (version {stored.version}). Services that use it "
              "change on the next plan.")


@guarded()
def secret_list(env: EnvOpt = None, spec: SpecOpt = None, as_json: JsonOpt = False) -> None:
    """Secret names, versions and who set them; never values."""
    _, client = connect(spec)
    rows = client.secrets(env)
    if as_json:
        finish(True, [], {"secrets": [r.model_dump(mode="json") for r in rows]})
    for r in rows:
        out.print(f"{r.env:<12} {r.name:<28} v{r.version:<4} set {r.set_at[:19]} by {escape(r.set_by)}")
    if not rows:
        out.print("No secrets yet. Set one with `railguard secret set NAME --env ENV` (value on stdin).")



@guarded()
def approve(
    plan_id: str,
    confirm: Annotated[Optional[list[str]], typer.Option(
        "--confirm", help="Address of a deleted resource, typed back (once per delete).")] = None,
    reason: Annotated[str, typer.Option("--reason")] = "",
    spec: SpecOpt = None, as_json: JsonOpt = False,
) -> None:
    """Approve exactly this plan (never your own). As the local user, type its short hash on a terminal."""
    _, client = connect(spec)
    found = client.plan_record(plan_id).plan
    if not as_json:
        render.plan(found.as_plan(), next_step=False)
    typed = _typed(f"Type the plan's short hash ({found.short_hash}) to approve it")
    record = client.decide(plan_id, "approve", typed=typed, reason=reason, confirm=confirm or [])
    if as_json:
        finish(True, [], {"approval": record.model_dump(mode="json")})
    out.print(f"Approved {plan_id} (hash {record.plan_hash[:19]}…) until {record.expires_at[:19]}.")

@guarded()
def reject(plan_id: str, reason: Annotated[str, typer.Option("--reason", help="Why (required).")] = "",
           spec: SpecOpt = None, as_json: JsonOpt = False) -> None:
    """Reject a plan: it can never be applied."""
    _, client = connect(spec)
    found = client.plan_record(plan_id).plan
    typed = _typed(f"Type the plan's short hash ({found.short_hash}) to reject it")
    record = client.decide(plan_id, "reject", typed=typed, reason=reason)
    if as_json:
        finish(True, [], {"approval": record.model_dump(mode="json")})
    out.print(f"Rejected {plan_id}: {escape(reason)}")

@guarded()
def promote(
    source: Annotated[str, typer.Option("--from", help="Environment whose live artifact is promoted.")],
    target: Annotated[str, typer.Option("--to", help="Environment to plan for.")],
    spec: SpecOpt = None, as_json: JsonOpt = False,
) -> None:
    """Plan the target environment with exactly the artifact live in the source environment."""
    ws, client = connect(spec)
    env_from_spec(ws, target)
    answer = client.promote(str(ws.spec_path), source, target)
    refused = denial(answer.id, answer.verdicts)  # saved for the record, but nothing may apply it
    problems = [*answer.diagnostics, *([refused] if refused is not None else [])]
    if as_json:
        finish(True, problems, {"plan": answer.model_dump(mode="json")})
    render.plan(answer.as_plan())
    if refused is not None:
        raise typer.Exit(1)

@guarded()
def policies(env: EnvOpt = None, spec: SpecOpt = None, as_json: JsonOpt = False) -> None:
    """The guardrails and rules that apply to an environment."""
    ws, client = connect(spec)
    found = client.policies(str(ws.spec_path), env_from_spec(ws, env))
    if as_json:
        finish(True, [], {"policies": found.model_dump(mode="json")})
    render.policies(found)

@guarded()
def whoami(spec: SpecOpt = None, as_json: JsonOpt = False) -> None:
    """Who the daemon thinks you are (token or OS user), and your role."""
    _, client = connect(spec)
    found = client.whoami()
    if as_json:
        finish(True, [], found.model_dump(mode="json"))
    p = found.principal
    out.print(f"{escape(p.id)}: {p.role}" + (f" in {', '.join(p.envs)}" if p.envs else "")
              + ("; terminal" if p.tty else "; no terminal"))
    if found.shared_user_allowed:
        out.print("[yellow]This daemon runs without workload isolation (--allow-shared-user): app code runs as the "
                  "daemon's user, so tokens do not bound what it can do (docs/guardrails.md).[/]")


@audit_app.callback(epilog="Examples:\n\n  $ railguard audit --env production --limit 20\n\n  $ railguard audit verify")
@guarded()
def audit_show(ctx: typer.Context, env: EnvOpt = None, spec: SpecOpt = None,
               limit: Annotated[int, typer.Option(min=1, max=100_000)] = 100, as_json: JsonOpt = False) -> None:
    """Read the audit log (who decided what). `railguard audit verify` checks it was not edited."""
    if ctx.invoked_subcommand is not None:
        return
    _, client = connect(spec)
    rows = client.audit(env, limit)
    if as_json:
        finish(True, [], {"audit": [r.model_dump(mode="json") for r in rows]})
    for r in rows:
        out.print(f"{r.id:>5} {r.at[:19]} {escape(r.principal):<24} {escape(r.action):<22} "
                  f"{r.env or '-':<12} {r.plan_id or '':<18} {escape(r.outcome)}")


@guarded()
def audit_verify(spec: SpecOpt = None, as_json: JsonOpt = False) -> None:
    """Check the hash chain: an edited, reordered or removed entry is reported."""
    _, client = connect(spec)
    found = client.audit_verify()
    if as_json:
        finish(True, [], {"verify": found.model_dump(mode="json")})
    out.print(f"[green]Intact:[/] {found.entries} entries, hash chain verified.")


def register(app: typer.Typer) -> None:
    add(token_app, token_create, GUARD, "railguard token create --name ci --role deployer --env staging",
        "railguard token create --name claude --role agent --expires-hours 8 --json", name="create")
    add(token_app, token_list, GUARD, "railguard token list --json", name="list")
    add(token_app, token_revoke, GUARD, "railguard token revoke claude", name="revoke")
    add(secret_app, secret_set, GUARD, "printf %s \"$DATABASE_URL\" | railguard secret set DATABASE_URL --env staging",
        name="set")
    add(secret_app, secret_list, GUARD, "railguard secret list --env production", name="list")
    add(audit_app, audit_verify, GUARD, "railguard audit verify --json", name="verify")
    add(app, approve, GUARD, "railguard approve plan-3f2a9c1d7e04 --reason 'reviewed with the team'",
        "railguard approve plan-3f2a9c1d7e04 --confirm production/service.worker")
    add(app, reject, GUARD, "railguard reject plan-3f2a9c1d7e04 --reason 'drops the worker'")
    add(app, promote, DEPLOY, "railguard promote --from staging --to production")
    add(app, policies, GUARD, "railguard policies --env production")
    add(app, whoami, GUARD, "railguard whoami", "RAILGUARD_TOKEN=... railguard whoami --json")
    app.add_typer(token_app, name="token", rich_help_panel=GUARD)
    app.add_typer(secret_app, name="secret", rich_help_panel=GUARD)
    app.add_typer(audit_app, name="audit", rich_help_panel=GUARD)
