"""``railguard mcp``: the Model Context Protocol server that gives coding agents the deploy loop.

Tools read the live state, plan, apply, follow, diagnose and roll back, always through the
daemon's API with the principal the server was started with, so the engine (never the model)
enforces the guardrails. Modules: ``gateway`` (the daemon client and the principal), ``inputs``
and ``outputs`` (schemas), ``catalog`` (tool registry and annotations), ``results`` (the result
envelope), ``briefs`` (daemon answers shaped for models), ``tools_read``, ``tools_spec``,
``tools_plans``, ``tools_run`` and ``diagnose`` (the tools), ``suggest`` (next actions),
``resources`` (resources and the prompt), ``server`` (dispatch, stdio) and ``http`` (Streamable
HTTP with a bearer token). Started by :mod:`railguard.cli.mcp_cmd`.
"""
