"""Which configuration values must never be shown.

Secret values never live in the spec, but a plain variable can still hold one by
mistake (``DB_PASSWORD = "..."``). Plans, diffs and status output replace such
values with :data:`REDACTED`. The guardrails layer adds redaction by known secret
values on top of this; this module is the name-based part, used by the spec checks
and by resource normalisation.
"""

from __future__ import annotations

import re
from functools import lru_cache

REDACTED = "(sensitive)"
_SECRETISH = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIALS?)$", re.IGNORECASE)


@lru_cache(maxsize=4096)  # a large spec asks about the same few variable names tens of thousands of times
def looks_secret(variable: str) -> bool:
    return bool(_SECRETISH.search(variable))
