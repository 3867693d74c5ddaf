"""The diff package's one error type.

``DiffError`` is raised for bad input that the caller must fix (an ignoreDifferences entry
without a kind, a jq expression that does not compile or exceeds its budget, an invalid JSON
pointer). Its message names the offending entry or expression and never quotes object data,
so it is safe to put in a condition or an event even when the object is a Secret.
"""

from __future__ import annotations

__all__ = ["DiffError"]


class DiffError(Exception):
    """Bad diff input: the message says which rule or expression, and what to change."""
