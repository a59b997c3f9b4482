"""Error classes by what the caller should do, not by where they come from (kopf's model).

Every class is a :class:`RailguardError` carrying diagnostics, so code that catches ``RailguardError``
keeps working; code that can act on the difference catches the subclass instead of reading the text:

- :class:`PermanentError`: the same request fails the same way until the input or the world changes
  (a bad spec, a port taken by another program). Report it; do not retry.
- :class:`TemporaryError`: something in flight is in the way (the state lock, an operation running in the
  environment). Retry after :attr:`TemporaryError.delay` seconds.
- :class:`DeadlineError`: the time allowed ran out. Retrying with the same time budget is likely to time
  out again, so it is permanent for automatic retries (kopf treats handler timeouts the same way).

Raised by the store (``state.locked``: temporary), the daemon (``operation.busy``: temporary), the
daemon's housekeeping (which retries a temporary failure after its delay) and the client (a daemon that
did not answer in time: deadline).
"""

from __future__ import annotations

from railguard.model.diagnostics import Diagnostic, RailguardError


class PermanentError(RailguardError):
    """Retrying as is cannot help: fix the input or the environment first."""


class TemporaryError(RailguardError):
    """Something in flight is in the way; retrying after ``delay`` seconds may succeed."""

    def __init__(self, *diagnostics: Diagnostic, delay: float = 5.0) -> None:
        super().__init__(*diagnostics)
        self.delay = delay


class DeadlineError(PermanentError):
    """The time allowed ran out."""
