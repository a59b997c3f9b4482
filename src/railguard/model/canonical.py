"""Canonical JSON and content digests.

Fingerprints of resources, plan hashes and spec digests must not depend on key
order or whitespace, so everything hashed goes through :func:`canonical_json`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# What json.dumps builds on every call with these arguments, built once (a 10k-service plan makes ~50k calls).
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def canonical_json(value: Any) -> str:
    """``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)``."""
    return _ENCODER.encode(value)


def digest(value: Any) -> str:
    """``sha256:<hex>`` of the canonical JSON of ``value``."""
    return "sha256:" + hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()
