"""The files a Jsonnet program names with ``import``, ``importstr`` and ``importbin``.

Jsonnet only accepts a string literal after an import keyword (a computed import is a parse
error), so every file a program can read is written in its text. ``imports`` finds those
literals with a lexer that follows go-jsonnet's rules for what is *not* code: comments
(``//``, ``#``, ``/* */``), quoted strings with backslash escapes, verbatim strings
(``@'…'`` with doubled quotes) and text blocks (``|||`` … ``|||``, ended at the first
non-empty line without the block's indentation). Everything else is scanned as code, and
every ``import``/``importstr``/``importbin`` word followed by a string literal is reported,
even one glued to a number or identifier: reporting too much only means one more path
check, reporting too little would let a file escape the checks built on this.

What this cannot read is an error (``JsonnetImportError``), never a skip: an unterminated
string or comment, a literal with escape sequences (``\\u002e`` can spell ``..``) or a text
block after an import keyword.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["JsonnetImport", "JsonnetImportError", "imports"]

_KEYWORD = re.compile(r"import(?:str|bin)?(?![A-Za-z0-9_])")
_BLOCK_HEADER = re.compile(r"\|\|\|-?[ \t\r]*\n")
_WS = " \t\r\n"


class JsonnetImportError(ValueError):
    """The program's imports cannot be read with certainty."""


@dataclass(frozen=True)
class JsonnetImport:
    kind: str  # "import" | "importstr" | "importbin"
    path: str
    line: int


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _skip_comment(text: str, pos: int) -> int | None:
    """The end of the comment at ``pos``, or None when there is no comment there."""
    if text.startswith(("//", "#"), pos):
        end = text.find("\n", pos)
        return len(text) if end == -1 else end + 1
    if text.startswith("/*", pos):
        end = text.find("*/", pos + 2)
        if end == -1:
            raise JsonnetImportError(f"line {_line(text, pos)}: unterminated /* comment")
        return end + 2
    return None


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text):
        if text[pos] in _WS:
            pos += 1
            continue
        end = _skip_comment(text, pos)
        if end is None:
            return pos
        pos = end
    return pos


def _quoted(text: str, pos: int) -> tuple[int, str, bool]:
    """A ``"…"``/``'…'`` string at ``pos``: (end, raw body, had escapes)."""
    quote = text[pos]
    i = pos + 1
    escaped = False
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            escaped = True
            i += 2
            continue
        if ch == quote:
            return i + 1, text[pos + 1 : i], escaped
        i += 1
    raise JsonnetImportError(f"line {_line(text, pos)}: unterminated string")


def _verbatim(text: str, pos: int) -> tuple[int, str]:
    """An ``@"…"``/``@'…'`` string at ``pos`` (the ``@``): (end, value)."""
    quote = text[pos + 1]
    i = pos + 2
    out: list[str] = []
    while i < len(text):
        ch = text[i]
        if ch == quote:
            if text.startswith(quote, i + 1):
                out.append(quote)
                i += 2
                continue
            return i + 1, "".join(out)
        out.append(ch)
        i += 1
    raise JsonnetImportError(f"line {_line(text, pos)}: unterminated verbatim string")


def _text_block(text: str, pos: int) -> int:
    """The end of the ``|||`` text block at ``pos``, never later than go-jsonnet's end."""
    header = _BLOCK_HEADER.match(text, pos)
    if header is None:
        raise JsonnetImportError(f"line {_line(text, pos)}: ||| must be followed by a newline")
    i = header.end()
    while text.startswith("\n", i):  # blank lines before the first line of the block
        i += 1
    first = re.match(r"[ \t]+", text[i:])
    if first is None:
        raise JsonnetImportError(f"line {_line(text, i)}: text block's first line not indented")
    indent = first.group(0)
    while i < len(text):
        if text.startswith("\n", i):
            i += 1
            continue
        if not text.startswith(indent, i):
            break
        end = text.find("\n", i)
        i = len(text) if end == -1 else end + 1
    closing = re.match(r"[ \t]*\|\|\|", text[i:])
    if closing is None:
        raise JsonnetImportError(f"line {_line(text, i)}: text block not terminated with |||")
    return i + closing.end()


def _literal_after(text: str, pos: int, keyword: str) -> tuple[str | None, int]:
    """The string literal that follows an import keyword ending at ``pos``.

    (None, pos) when no literal follows: then the word is not an import (an identifier like
    ``importer``'s prefix was excluded by the regex; ``import x`` is jsonnet's own error).
    """
    start = _skip_space(text, pos)
    if start >= len(text):
        return None, pos
    ch = text[start]
    if ch in "\"'":
        end, body, escaped = _quoted(text, start)
        if escaped:
            raise JsonnetImportError(
                f"line {_line(text, start)}: {keyword} path {body!r} has escape sequences; "
                "write the path without backslashes"
            )
        return body, end
    if ch == "@" and text[start + 1 : start + 2] in ("'", '"'):
        end, value = _verbatim(text, start)
        return value, end
    if text.startswith("|||", start):
        raise JsonnetImportError(
            f"line {_line(text, start)}: text blocks are not allowed as {keyword} paths"
        )
    return None, pos


def imports(text: str) -> list[JsonnetImport]:
    """Every import of the program ``text``, in the order written."""
    found: list[JsonnetImport] = []
    pos = 0
    n = len(text)
    while pos < n:
        ch = text[pos]
        if ch in _WS:
            pos += 1
            continue
        comment_end = _skip_comment(text, pos)
        if comment_end is not None:
            pos = comment_end
            continue
        if ch in "\"'":
            pos = _quoted(text, pos)[0]
            continue
        if ch == "@" and text[pos + 1 : pos + 2] in ("'", '"'):
            pos = _verbatim(text, pos)[0]
            continue
        if text.startswith("|||", pos):
            pos = _text_block(text, pos)
            continue
        keyword = _KEYWORD.match(text, pos)
        if keyword is not None:
            literal, end = _literal_after(text, keyword.end(), keyword.group(0))
            if literal is not None:
                found.append(JsonnetImport(keyword.group(0), literal, _line(text, pos)))
                pos = end
                continue
            pos = keyword.end()
            continue
        pos += 1
    return found
