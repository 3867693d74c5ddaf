"""jq path expressions for ignoreDifferences, with a time budget that can be kept.

An expression such as ``.spec.template.spec.initContainers[] | select(.name == "istio-init")``
selects paths; ``delete_paths`` returns the object without them (jq's ``del(<expr>)``).

Mechanism and its limits:

- Each expression is compiled once (cached) both alone and as ``del(...)``; a syntax error
  raises ``DiffError`` naming the expression. Compiling it alone first keeps it from escaping
  the wrapper (``.a) | (.b`` does not compile alone), and putting it on its own lines keeps a
  trailing ``# comment`` from swallowing the wrapper's closing parenthesis.
- An expression that does not fit the object's shape (``.spec.initContainers[]`` on an object
  without init containers) is a jq runtime error; for that object it matches nothing. An
  expression that is not a path expression at all (``.a | tostring``) is a user error and
  raises. jq's own message is never passed on: it can quote the object's values.
- The budget. The ``jq`` binding evaluates in C while holding the GIL, so a watchdog thread
  cannot interrupt a runaway program. gitsail therefore (1) refuses, before running, the
  builtins that loop without bound or touch the process (``def``, ``repeat``, ``while``,
  ``until``, ``range``, ``recurse(f)``, ``input``/``inputs``, ``combinations``,
  ``env``/``$ENV``, ``debug``/``stderr``, ``import``/``include``, ``halt``/``halt_error``),
  and (2) measures every run: an expression that exceeds its budget
  raises ``DiffError`` and is quarantined for the life of the process, so a slow expression
  costs one run, not one run per reconcile.
"""

from __future__ import annotations

import threading
import time
from functools import lru_cache
from typing import Any

import jq  # type: ignore[import-not-found]  # compiled binding without stubs

from gitsail.diff.errors import DiffError

__all__ = ["DEFAULT_BUDGET_SECONDS", "check_expression", "delete_paths"]

DEFAULT_BUDGET_SECONDS = 1.0

_DENIED = frozenset(
    {
        "def",
        "repeat",
        "while",
        "until",
        "range",
        "input",
        "inputs",
        "combinations",
        "env",
        "$ENV",
        "debug",
        "stderr",
        "import",
        "include",
        "halt",
        "halt_error",
        "input_filename",
        "get_search_list",
        "modulemeta",
    }
)

_clock = time.monotonic  # a seam for tests
_quarantined: set[str] = set()
_quarantine_lock = threading.Lock()


def _code_tokens(expr: str) -> list[tuple[str, str]]:
    """(identifier, following character) pairs in ``expr``, outside string literals.

    Interpolations ``\\(...)`` inside strings are code and are scanned; the literal text of
    strings is not, so ``select(.name == "debug")`` is fine.
    """
    found: list[tuple[str, str]] = []
    i, n = 0, len(expr)
    # Stack of contexts: "code" or "string"; for code opened by \( we track paren depth.
    stack: list[list[Any]] = [["code", 0]]
    while i < n:
        ctx = stack[-1]
        ch = expr[i]
        if ctx[0] == "string":
            if ch == "\\" and i + 1 < n and expr[i + 1] == "(":
                stack.append(["interp", 0])
                i += 2
                continue
            if ch == "\\":
                i += 2
                continue
            if ch == '"':
                stack.pop()
            i += 1
            continue
        if ch == '"':
            stack.append(["string", 0])
            i += 1
            continue
        if ch == "#":
            while i < n and expr[i] != "\n":
                i += 1
            continue
        if ch == "(":
            ctx[1] += 1
        elif ch == ")":
            if ctx[0] == "interp" and ctx[1] == 0:
                stack.pop()
                i += 1
                continue
            ctx[1] -= 1
        if ch.isalpha() or ch in "_$":
            j = i + 1
            while j < n and (expr[j].isalnum() or expr[j] in "_:"):
                j += 1
            word = expr[i:j]
            # A field access (.env, ."range") is data, not a builtin.
            if i == 0 or expr[i - 1] != ".":
                k = j
                while k < n and expr[k] in " \t\r\n":
                    k += 1
                found.append((word, expr[k] if k < n else ""))
            i = j
            continue
        i += 1
    return found


def check_expression(expr: str) -> None:
    """Raise DiffError unless ``expr`` compiles and uses no refused builtin."""
    _compiled(expr)


@lru_cache(maxsize=512)
def _compiled(expr: str) -> Any:
    if not expr.strip():
        raise DiffError("jq path expression is empty")
    for word, following in _code_tokens(expr):
        if word in _DENIED or (word == "recurse" and following == "("):
            raise DiffError(
                f"jq path expression {expr!r} uses {word!r}, which gitsail refuses in "
                "ignoreDifferences (it can run without bound or touch the process); "
                "select the paths without it"
            )
    try:
        jq.compile(expr)
        return jq.compile("del(\n" + expr + "\n)")
    except ValueError:
        raise DiffError(f"jq path expression {expr!r} does not compile") from None


def delete_paths(obj: Any, expr: str, *, budget: float = DEFAULT_BUDGET_SECONDS) -> Any:
    """``obj`` without the paths ``expr`` selects; ``obj`` itself if it selects nothing."""
    with _quarantine_lock:
        if expr in _quarantined:
            raise DiffError(
                f"jq path expression {expr!r} exceeded its {budget:g}s budget earlier and "
                "is disabled until gitsail restarts; simplify it"
            )
    program = _compiled(expr)
    started = _clock()
    try:
        result = program.input_value(obj).first()
    except ValueError as err:
        if "Invalid path expression" in str(err):
            raise DiffError(
                f"jq expression {expr!r} is not a path expression (it must select fields, "
                'like .metadata.labels.foo or .spec.containers[] | select(.name == "x"))'
            ) from None
        result = obj
    except StopIteration:
        result = obj
    elapsed = _clock() - started
    if elapsed > budget:
        with _quarantine_lock:
            _quarantined.add(expr)
        raise DiffError(
            f"jq path expression {expr!r} took {elapsed:.2f}s, over its {budget:g}s budget; "
            "it is disabled until gitsail restarts; simplify it"
        )
    return result
