"""``railguard promote-step`` and ``railguard abort``: move a canary rollout by hand.

A canary with ``pause = "manual"`` waits at each step for ``promote-step``; any canary can be aborted (every
request back on the stable release, the canary stopped) or advanced early. Through the daemon, whose canary
controller (daemon/canary.py) makes the move and records it. In a protected environment a step is a change
that needs an approval: ``promote-step`` saves it as a plan, ``promote-step --plan ID`` applies it approved.
"""

from __future__ import annotations

from typing import Annotated

import typer

from railguard.cli.common import DEPLOY, EnvOpt, JsonOpt, SpecOpt, add, connect, env_from_spec
from railguard.cli.output import escape, finish, guarded, out
from railguard.model.api import PlanAnswer

ServiceArg = Annotated[str, typer.Argument(help="The service whose canary moves.")]
PlanOpt = Annotated[str | None, typer.Option("--plan", help="The approved plan of this step (protected environments).")]
FromOpt = Annotated[int | None, typer.Option("--from", min=0, max=100, help="Move only from this share (percent, as "
                                            "status shows it): a repeated or retried step moves nothing.")]


def _move(env: str | None, service: str, verb: str, spec: SpecOpt, as_json: bool, plan: str | None = None,
          from_weight: int | None = None) -> None:
    ws, client = connect(spec)
    name = env_from_spec(ws, env)
    moved = client.canary_move(name, service, verb, plan, from_weight)
    if isinstance(moved, PlanAnswer):  # a protected environment: the step waits for an approval
        if as_json:
            finish(True, [], {"plan": moved.model_dump(mode="json")})
        out.print(f"'{escape(name)}' is protected: nothing moved. The step is saved as plan {escape(moved.id)} "
                  f"({escape(moved.changes[0].reason)}).\n  Have it approved (`railguard approve {escape(moved.id)}`, "
                  f"never by you), then run `railguard promote-step {escape(service)} --env {escape(name)} "
                  f"--plan {escape(moved.id)}`.")
        return
    if as_json:
        finish(True, [], {"canary": moved.model_dump(mode="json")})
    what = {"advanced": f"now takes {moved.weight}% of the requests",
            "promoted": "is promoted: it serves every request as the live release",
            "aborted": "is aborted: the stable release serves every request"}[moved.action]
    out.print(f"Canary of {escape(moved.env)}/{escape(moved.service)} {what}.")


@guarded()
def promote_step(service: ServiceArg, env: EnvOpt = None, spec: SpecOpt = None, as_json: JsonOpt = False,
                 plan: PlanOpt = None, from_weight: FromOpt = None) -> None:
    """Move a canary to its next step (the step to 100% makes it the live release). In a protected environment
    the step is saved as a plan that needs an approval; `--plan` applies that approved step. A step just made
    by someone else, not yet begun by the analysis, is not moved again (`canary.step_moved`)."""
    _move(env, service, "promote-step", spec, as_json, plan, from_weight)


@guarded()
def abort(service: ServiceArg, env: EnvOpt = None, spec: SpecOpt = None, as_json: JsonOpt = False) -> None:
    """Abort a canary: every request back on the stable release, the canary stopped."""
    _move(env, service, "abort", spec, as_json)


def register(app: typer.Typer) -> None:
    add(app, promote_step, DEPLOY, "railguard promote-step --env staging web",
        "railguard promote-step --env prod web --plan plan-0123456789", name="promote-step")
    add(app, abort, DEPLOY, "railguard abort --env staging web", "railguard abort --env staging web --json")
