"""User policy rules: CEL expressions over the change, the environment and the principal.

A rule is compiled once and checked against a sample of every field it may read, so
a rule that does not parse, reads a field that does not exist, or does not yield a
boolean is a validation diagnostic, not a surprise at apply time. CEL (via the
``cel-python`` package) is side-effect free and always terminates, which is why it
is the language for rules that run inside the engine.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import celpy
from celpy import celtypes

# Every field a rule may read, with a sample value of its type (used for the trial evaluation).
SAMPLE: dict[str, dict[str, Any]] = {
    "change": {"address": "staging/service.web", "kind": "service", "name": "web", "action": "update",
               "risk": "safe", "reason": "", "paths": ["replicas"]},
    "env": {"name": "staging", "protected": False},
    "principal": {"id": "user:alice", "role": "admin", "kind": "user"},
}


def _cel(value: Any) -> Any:
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if isinstance(value, int):
        return celtypes.IntType(value)
    if isinstance(value, str):
        return celtypes.StringType(value)
    if isinstance(value, list):
        return celtypes.ListType([_cel(v) for v in value])
    if isinstance(value, dict):
        return celtypes.MapType({celtypes.StringType(k): _cel(v) for k, v in value.items()})
    return celtypes.StringType(str(value))


@lru_cache(maxsize=256)
def compile_rule(expression: str) -> Any:
    """Compile a rule; raise ValueError with a readable reason."""
    env = celpy.Environment()
    try:
        program = env.program(env.compile(expression))
    except Exception as exc:  # celpy raises several parser error types
        raise ValueError(f"the expression does not parse: {str(exc).strip()}") from exc
    try:
        result = program.evaluate({k: _cel(v) for k, v in SAMPLE.items()})
    except Exception as exc:
        raise ValueError(f"the expression cannot be evaluated: {exc}; rules may read "
                         f"{', '.join(f'{k}.{f}' for k, fields in SAMPLE.items() for f in fields)}") from exc
    if isinstance(result, Exception):
        raise ValueError(f"the expression cannot be evaluated: {result}")
    if not isinstance(result, celtypes.BoolType):
        raise ValueError(f"the expression must yield true or false, not {type(result).__name__}")
    return program


def matches(expression: str, activation: dict[str, dict[str, Any]]) -> bool:
    result = compile_rule(expression).evaluate({k: _cel(v) for k, v in activation.items()})
    return bool(result) if isinstance(result, celtypes.BoolType) else False
