"""The one-off command tool: ``run_command``, ``railguard exec`` for agents.

An agent has no terminal to lend, so the daemon runs the command with its output captured in memory and
redacted (secret values become ``(sensitive:NAME)``) and answers with the exit status and the output's last
lines. In a protected environment nothing runs: the daemon saves the command as a plan with one ``command``
change, and the agent goes through the same loop as any change (``request_approval``, a person approves,
``apply_plan``). Registered in :mod:`railguard.mcp.catalog`.
"""

from __future__ import annotations

from railguard.mcp import briefs, suggest
from railguard.mcp.catalog import tool
from railguard.mcp.inputs import RunCommandArgs
from railguard.mcp.outputs import RunCommandOut
from railguard.mcp.results import Call, Outcome
from railguard.model.api import ExecRequest, PlanAnswer, PlanStatus
from railguard.model.principals import Permission


@tool("run_command", title="Run a one-off command in an environment", inputs=RunCommandArgs,
      outputs=RunCommandOut, permission=Permission.apply, destructive=True)
async def run_command(call: Call, args: RunCommandArgs) -> Outcome:
    """Run a one-off command (a migration, a data fix, a check) with `env`'s variables, secrets and data folder in
    the live release of `service` (or `release`), and return its exit status and output (secret values redacted;
    no stdin). It can change the environment's data. In a protected environment it runs nothing: it saves a plan
    with one `command` change that runs once a person approves it and you apply it."""
    request = ExecRequest(spec=call.gw.spec_path(), env=args.env, service=args.service, argv=list(args.command),
                          release=args.release, attach=False, timeout_s=args.timeout_s)
    found = await call.gw.run(lambda c: c.exec(request))
    if isinstance(found, PlanAnswer):
        return Outcome(f"{args.env} is protected: the command was saved as plan {found.id}, which runs once a "
                       "person approves it and you apply it.",
                       RunCommandOut(plan=briefs.plan_brief(found, PlanStatus.saved, False)),
                       next_actions=suggest.after_plan(found, False, PlanStatus.saved))
    how = "timed out" if found.timed_out else f"exited with {found.exit_code}"
    return Outcome(f"{' '.join(found.argv)} in {args.service} (release {found.release}) {how}.",
                   RunCommandOut(exec=found), error=found.exit_code != 0, details=list(found.output or [])[-20:])
