"""jq path expressions for ignoreDifferences, run where they can be stopped.

An expression such as ``.spec.template.spec.initContainers[] | select(.name == "istio-init")``
selects paths; ``delete_paths`` returns the object without them (jq's ``del(<expr>)``).

Mechanism:

- Static check, in-process: the builtins that loop without bound or touch the process are
  refused before anything runs (``def``, ``repeat``, ``while``, ``until``, ``range``,
  ``recurse(f)``, ``input``/``inputs``, ``combinations``, ``env``/``$ENV``,
  ``debug``/``stderr``, ``import``/``include``, ``halt``/``halt_error``, …).
- Compiling and running, in a worker process (``_jqworker``): jq's C code holds the GIL and
  cannot be interrupted, and even *compiling* ``"x" * 2000000000`` constant-folds a 2 GB
  string. So jq never runs in the controller: a small pool of worker processes (one per
  core, started lazily) compiles and runs each expression, with a deadline
  (``Policy.jq_timeout``, from the request being sent to the reply being read) and an
  address-space limit the worker sets on itself (``Policy.jq_memory_bytes``). A worker
  that overruns either is killed and replaced, and the call raises ``DiffError`` naming
  the expression. The expression is then quarantined for the life of the process (it
  costs one deadline, not one per reconcile); the refusal reaches the app's status as a
  ``ComparisonError`` condition, so after a restart it is recomputed once and shown again.
- Steady state: each expression is compiled once per worker; results are cached per
  (expression, sha256 of the input object), so an unchanged object costs a hash, not a
  round trip. The calls block (up to the deadline): callers run them off the event loop.
- An expression that does not fit the object's shape (``.spec.initContainers[]`` on an
  object without init containers) matches nothing for that object. One that is not a path
  expression (``.a | tostring``) raises. jq's own message is never passed on: it can quote
  the object's values.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import queue
import select
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Any

from gitsail.diff.errors import DiffError
from gitsail.policy import DEFAULT_POLICY, Policy

__all__ = [
    "DEFAULT_BUDGET_SECONDS",
    "JqRunner",
    "check_expression",
    "configure",
    "delete_paths",
]

DEFAULT_BUDGET_SECONDS = DEFAULT_POLICY.jq_timeout

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
_WORKER = Path(__file__).with_name("_jqworker.py")
_WORKER_START_SECONDS = 30.0
_RESULT_CACHE_ENTRIES = 2048
_RESULT_CACHE_MAX_TEXT = 256 * 1024  # larger results are recomputed, not kept


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


class _Overrun(Exception):
    """The worker missed its deadline, died (out of memory) or answered too much."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class _Worker:
    """One worker process and its pipes; used by one thread at a time."""

    def __init__(self, memory_bytes: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", str(_WORKER), str(memory_bytes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,
        )
        try:
            self.read_reply(_clock() + _WORKER_START_SECONDS, 4096)
        except _Overrun:
            self.kill()
            raise DiffError("the jq worker process could not start; retrying later") from None

    def call(self, request: dict[str, Any], timeout: float, max_reply: int) -> dict[str, Any]:
        stdin, stdout = self.proc.stdin, self.proc.stdout
        if stdin is None or stdout is None:  # pragma: no cover - both are pipes
            raise _Overrun("crashed")
        data = json.dumps(request, separators=(",", ":")).encode() + b"\n"
        deadline = _clock() + timeout
        try:
            stdin.write(data)
        except (BrokenPipeError, OSError):
            raise _Overrun("crashed") from None
        return self.read_reply(deadline, max_reply)

    def read_reply(self, deadline: float, max_reply: int) -> dict[str, Any]:
        stdout = self.proc.stdout
        if stdout is None:  # pragma: no cover - a pipe
            raise _Overrun("crashed")
        reply = bytearray()
        while not reply.endswith(b"\n"):
            remaining = deadline - _clock()
            ready = select.select([stdout], [], [], remaining)[0] if remaining > 0 else []
            if not ready:
                raise _Overrun("timeout")
            chunk = os.read(stdout.fileno(), 1 << 16)
            if not chunk:
                raise _Overrun("memory")  # jq aborts when an allocation fails
            reply += chunk
            if len(reply) > max_reply:
                raise _Overrun("output")
        answer: dict[str, Any] = json.loads(reply)
        return answer

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


class JqRunner:
    """A lazily started pool of jq workers with a deadline and a memory limit per call."""

    def __init__(self, policy: Policy = DEFAULT_POLICY, *, workers: int | None = None) -> None:
        self.timeout = policy.jq_timeout
        self.memory_bytes = policy.jq_memory_bytes
        self._idle: queue.LifoQueue[_Worker | None] = queue.LifoQueue()
        for _ in range(workers or min(4, os.cpu_count() or 1)):
            self._idle.put(None)
        self._lock = threading.Lock()
        self._quarantined: dict[str, str] = {}
        self._compiles: set[str] = set()
        self._results: OrderedDict[tuple[str, str], str] = OrderedDict()
        self.calls = 0  # requests sent to a worker, for tests

    def close(self) -> None:
        """Stop every idle worker (busy ones are stopped when they are returned)."""
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                return
            if worker is not None:
                worker.kill()

    def _refuse(self, expr: str, why: str, timeout: float) -> DiffError:
        reason = {
            "timeout": f"took longer than {timeout:g}s (GITSAIL_JQ_TIMEOUT)",
            "memory": f"needed more than {self.memory_bytes} bytes (GITSAIL_JQ_MEMORY_BYTES)",
            "output": "produced more output than its input",
            "crashed": "crashed the jq worker",
        }.get(why, why)
        message = (
            f"jq path expression {expr!r} {reason}; it is disabled until gitsail restarts; "
            "simplify it or remove it"
        )
        with self._lock:
            self._quarantined[expr] = message
        return DiffError(message)

    def _call(
        self, expr: str, request: dict[str, Any], size: int, timeout: float | None = None
    ) -> dict[str, Any]:
        with self._lock:
            refused = self._quarantined.get(expr)
        if refused is not None:
            raise DiffError(refused)
        worker = self._idle.get()
        try:
            if worker is None or worker.proc.poll() is not None:
                worker = _Worker(self.memory_bytes)
            self.calls += 1
            try:
                limit = self.timeout if timeout is None else timeout
                return worker.call(request, limit, max_reply=2 * size + 4096)
            except _Overrun as err:
                worker.kill()
                worker = None
                raise self._refuse(expr, err.why, limit) from None
        finally:
            self._idle.put(worker)

    def check(self, expr: str) -> None:
        """Raise DiffError unless ``expr`` compiles (in a worker, within the limits)."""
        with self._lock:
            if expr in self._compiles:
                return
        reply = self._call(expr, {"op": "check", "expr": expr}, len(expr))
        if reply.get("error") == "compile":
            raise DiffError(f"jq path expression {expr!r} does not compile")
        with self._lock:
            if len(self._compiles) > 4096:
                self._compiles.clear()
            self._compiles.add(expr)

    def delete(self, obj: Any, expr: str, *, timeout: float | None = None) -> Any:
        """``del(expr)`` of ``obj``, from the cache or a worker (``timeout``: deadline)."""
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
        key = (expr, hashlib.sha256(text.encode()).hexdigest())
        with self._lock:
            cached = self._results.get(key)
            if cached is not None:
                self._results.move_to_end(key)
        if cached is not None:
            return json.loads(cached)
        request = {"op": "delete", "expr": expr, "obj": obj}
        reply = self._call(expr, request, len(text), timeout)
        error = reply.get("error")
        if error == "compile":
            raise DiffError(f"jq path expression {expr!r} does not compile")
        if error == "not-path":
            raise DiffError(
                f"jq expression {expr!r} is not a path expression (it must select fields, "
                'like .metadata.labels.foo or .spec.containers[] | select(.name == "x"))'
            )
        result = reply.get("result")
        encoded = json.dumps(result, separators=(",", ":"))
        if len(encoded) <= _RESULT_CACHE_MAX_TEXT:
            with self._lock:
                self._results[key] = encoded
                while len(self._results) > _RESULT_CACHE_ENTRIES:
                    self._results.popitem(last=False)
        return result


_runner = JqRunner()
atexit.register(lambda: _runner.close())


def configure(policy: Policy) -> None:
    """Use ``policy``'s jq limits from now on (call once at start-up)."""
    global _runner
    old, _runner = _runner, JqRunner(policy)
    old.close()


def check_expression(expr: str) -> None:
    """Raise DiffError unless ``expr`` uses no refused builtin and compiles."""
    _static_check(expr)
    _runner.check(expr)


@lru_cache(maxsize=1024)
def _static_check(expr: str) -> None:
    if not expr.strip():
        raise DiffError("jq path expression is empty")
    for word, following in _code_tokens(expr):
        if word in _DENIED or (word == "recurse" and following == "("):
            raise DiffError(
                f"jq path expression {expr!r} uses {word!r}, which gitsail refuses in "
                "ignoreDifferences (it can run without bound or touch the process); "
                "select the paths without it"
            )


def delete_paths(obj: Any, expr: str, *, budget: float | None = None) -> Any:
    """``obj`` without the paths ``expr`` selects; ``obj`` itself if it selects nothing.

    Blocks for up to the deadline (``budget``, default the runner's ``jq_timeout``).
    """
    _static_check(expr)
    return _runner.delete(obj, expr, timeout=budget)
