"""The two ways a reconcile can fail, shared by every layer that reports one.

Errors say what happens next (kopf's model), so no caller matches messages by prefix::

    ReconcileError(reason, message)
    ├── Transient   the world may change on its own (a server down, a fetch that failed, a
    │               dependency not ready): retry with backoff (``retry_after`` seconds when
    │               the cause knows better)
    └── Stalled     only a change of the spec or of the source can help (a bad path, a
                    render that fails, an undefined variable): wait for one, do not retry

``reason`` is the CamelCase word a user reads in a condition (``FetchFailed``,
``RenderFailed``); ``message`` says what failed and on what. The tree sits at the bottom of
the layers so the delivery driver (``gitsail.app``) can raise it and the kind adapters
(``gitsail.kinds``, which re-exports it from ``kinds.status``) can turn it into conditions.
"""

from __future__ import annotations

__all__ = ["ReconcileError", "Stalled", "Transient"]


class ReconcileError(Exception):
    """A reconcile that could not finish; ``reason`` is the condition reason users read."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    @property
    def transient(self) -> bool:
        """Whether retrying (with backoff) may help without anyone changing anything."""
        return isinstance(self, Transient)


class Transient(ReconcileError):
    """Retry with backoff: the cause may go away without anyone changing anything."""

    def __init__(self, reason: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason, message)
        self.retry_after = retry_after


class Stalled(ReconcileError):
    """Do not retry: wait for a change of the object's spec or of its source."""
