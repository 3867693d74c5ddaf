"""The jq worker: a small process that compiles and runs jq programs for ``jqpath``.

Run as ``python -I _jqworker.py <address-space-bytes>`` (by file path, so it imports only
the standard library and ``jq``, not gitsail). It caps its own address space, then answers
a ready line, then one request per line on stdin with one reply per line on stdout, both JSON:

- ``{"op": "check", "expr": E}`` → ``{"ok": true}`` or ``{"error": "compile"}``;
- ``{"op": "delete", "expr": E, "obj": O}`` → ``{"result": R}`` (``del(E)`` of O, or O when
  E does not fit O's shape), ``{"error": "compile"}`` or ``{"error": "not-path"}``.

jq's own messages are never sent back: they can quote the object's values. When jq runs out
of memory it aborts the process; the parent sees the pipe close and replaces the worker.
"""

from __future__ import annotations

import json
import resource
import sys
from typing import Any


def _compile(jq: Any, programs: dict[str, Any], expr: str) -> Any:
    program = programs.get(expr)
    if program is None:
        jq.compile(expr)  # alone first: ``.a) | (.b`` must not escape the wrapper
        program = jq.compile("del(\n" + expr + "\n)")
        if len(programs) >= 256:
            programs.clear()
        programs[expr] = program
    return program


def _answer(jq: Any, programs: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    try:
        program = _compile(jq, programs, str(request["expr"]))
    except ValueError:
        return {"error": "compile"}
    if request.get("op") == "check":
        return {"ok": True}
    obj = request.get("obj")
    try:
        return {"result": program.input_value(obj).first()}
    except ValueError as err:
        if "Invalid path expression" in str(err):
            return {"error": "not-path"}
        return {"result": obj}  # a runtime error: the expression does not fit this object
    except StopIteration:
        return {"result": obj}


def main() -> None:
    import jq  # type: ignore[import-not-found]  # compiled binding without stubs

    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    if limit > 0:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    programs: dict[str, Any] = {}
    out = sys.stdout.buffer
    out.write(b'{"ready":true}\n')  # deadlines start once the worker is ready
    out.flush()
    for line in sys.stdin.buffer:
        reply = _answer(jq, programs, json.loads(line))
        out.write(json.dumps(reply, separators=(",", ":")).encode() + b"\n")
        out.flush()


if __name__ == "__main__":
    main()
