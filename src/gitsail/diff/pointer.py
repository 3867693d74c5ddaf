"""JSON Pointers (RFC 6901) over plain-dict objects: parse, format, remove.

``/spec/template/metadata/annotations/example.com~1rev`` addresses the annotation
``example.com/rev``: tokens are separated by ``/``, and ``~1`` stands for ``/`` and ``~0``
for ``~`` inside a token (decoded in that order, so ``~01`` is the literal ``~1``). A token
addressing a list must be a decimal index; ``-`` (one past the end) addresses nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gitsail.diff.errors import DiffError

__all__ = ["escape", "format_pointer", "parse_pointer", "remove_pointer"]


def escape(token: str | int) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


def format_pointer(tokens: Sequence[str | int]) -> str:
    """``("spec", "containers", 0)`` → ``/spec/containers/0``; ``()`` → ``""`` (whole doc)."""
    return "".join("/" + escape(t) for t in tokens)


def parse_pointer(pointer: str) -> tuple[str, ...]:
    """The unescaped tokens of ``pointer``; raises DiffError unless it is "" or starts with /."""
    if pointer == "":
        return ()
    if not pointer.startswith("/"):
        raise DiffError(f"JSON pointer {pointer!r} must start with '/' (RFC 6901)")
    return tuple(t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/"))


def _index(token: str, length: int) -> int | None:
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        return None
    index = int(token)
    return index if index < length else None


def remove_pointer(doc: Any, tokens: Sequence[str]) -> bool:
    """Delete the value at ``tokens`` from ``doc`` in place; False if the path does not exist.

    The empty pointer (the whole document) cannot be removed and is reported as absent.
    """
    if not tokens:
        return False
    parent = doc
    for token in tokens[:-1]:
        if isinstance(parent, dict):
            if token not in parent:
                return False
            parent = parent[token]
        elif isinstance(parent, list):
            index = _index(token, len(parent))
            if index is None:
                return False
            parent = parent[index]
        else:
            return False
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        del parent[last]
        return True
    if isinstance(parent, list):
        index = _index(last, len(parent))
        if index is not None:
            del parent[index]
            return True
    return False
