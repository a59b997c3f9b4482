"""Orchestration: load the spec, observe, plan, apply. Sits between the CLI and state/providers."""
