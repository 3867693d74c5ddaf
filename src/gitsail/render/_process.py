"""Running helm and kustomize: argv lists, a scrubbed environment, timeouts, bounded fan-out.

Every call goes through ``ToolRunner.run``. The child gets a new session so a timeout kills
the whole process group (kustomize may start ``git`` for remote bases). Its address space is
capped (``RLIMIT_AS`` = ``Policy.render_memory_bytes``, set in the child between fork and
exec, inherited by its children), and its stdout is read in chunks up to
``Policy.render_output_bytes``: more, and the group is killed and the render refused.
Its environment is built from scratch: ``PATH``, a private ``HOME`` and ``TMPDIR``, plus
what the caller adds (Helm's home directories), so no cloud, cluster or Git credentials of
the controller reach a chart or a kustomization. Errors carry the tool's stderr with URL
credentials and known secret values redacted.

Go tools reserve about 800 MiB of address space when they start, so a memory limit below
about 1 GiB makes helm and kustomize fail before they read anything.

Callers build argv so that no tenant value can be read as a flag (``--flag=value`` forms,
``--`` before positionals; see ``_helm``); ``run`` itself refuses a NUL character in any
argument or environment value, which the OS cannot pass and would otherwise crash the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import resource
import signal
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from gitsail.policy import DEFAULT_POLICY, Policy
from gitsail.process import kill_group
from gitsail.render._errors import RenderError

__all__ = ["ToolRunner", "redact"]

_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]+@")
_STDERR_LIMIT = 4000


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without URL credentials and without any of ``secrets`` (non-empty ones)."""
    text = _URL_USERINFO.sub(r"\g<scheme>***@", text)
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _scrub_work_dir(text: str, work_dir: Path) -> str:
    """``text`` with paths in the renderer's private work dir made repository-relative.

    Each render runs in ``<work_dir>/<random>/`` with the copied sources under ``src/``;
    the random part would make every failure message unique, and a status that changes on
    every reconcile is written on every reconcile.
    """
    for base in dict.fromkeys((str(work_dir), str(work_dir.resolve()))):
        text = re.sub(re.escape(base) + r"/[^/\s'\"]+/(?:src/)?", "", text)
        text = text.replace(base, "<work dir>")
    return text


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _STDERR_LIMIT else "…" + text[-_STDERR_LIMIT:]


class ToolRunner:
    """Runs pinned tool binaries with at most ``concurrency`` children at a time."""

    def __init__(
        self,
        *,
        home: Path,
        concurrency: int = 2,
        timeout: float = 90.0,
        policy: Policy = DEFAULT_POLICY,
    ) -> None:
        self.home = home
        self.timeout = timeout
        self.policy = policy
        self._semaphore = asyncio.Semaphore(concurrency)
        self.calls = 0  # children started, for tests and metrics

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        tmp = self.home / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(self.home),
            "TMPDIR": str(tmp),
            "LANG": "C.UTF-8",
            "GIT_TERMINAL_PROMPT": "0",
            "KUBECONFIG": os.devnull,
        }
        env.update(extra or {})
        return env

    async def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        what: str,
        env: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (),
        time_limit: float | None = None,
    ) -> bytes:
        """stdout of ``argv``; RenderError with ``what`` and the stderr when it fails."""
        limit = self.timeout if time_limit is None else time_limit
        environment = self.environment(env)
        if any("\x00" in part for part in [*argv, *environment.values()]):
            raise RenderError(
                f"{what}: an argument contains a NUL character; refusing to run "
                f"{Path(argv[0]).name} (remove it from the Application's spec)"
            )
        async with self._semaphore:
            self.calls += 1
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    cwd=cwd,
                    env=environment,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    start_new_session=True,
                    preexec_fn=_memory_limit(self.policy.render_memory_bytes),
                )
            except OSError as err:
                raise RenderError(f"{what}: cannot run {Path(argv[0]).name}: {err}") from None
            try:
                stdout, stderr = await asyncio.wait_for(
                    _communicate_bounded(proc, self.policy.render_output_bytes), limit
                )
            except _OutputTooLarge:
                await kill_group(proc)
                raise RenderError(
                    f"{what}: output over {self.policy.render_output_bytes} bytes "
                    "(GITSAIL_RENDER_OUTPUT_BYTES); the render was stopped"
                ) from None
            except TimeoutError:
                await kill_group(proc)
                raise RenderError(
                    f"{what}: timed out after {limit:g}s (GITSAIL_RENDER_TIMEOUT)"
                ) from None
            except asyncio.CancelledError:
                await kill_group(proc)
                raise
        if proc.returncode != 0 and stderr.startswith(_OUT_OF_MEMORY):
            raise RenderError(
                f"{what} ran out of memory: it may use at most "
                f"{self.policy.render_memory_bytes} bytes (GITSAIL_RENDER_MEMORY_BYTES)"
            )
        if proc.returncode != 0:
            text = _scrub_work_dir(stderr.decode("utf-8", "replace"), self.home.parent)
            message = _tail(redact(text, secrets))
            raise RenderError(
                f"{what} failed (exit {proc.returncode}): {message or 'no output on stderr'}"
            )
        return stdout


# --- resource limits of a child (time: ``run``'s deadline; memory and output: here) --------


def _memory_limit(max_bytes: int) -> Callable[[], None] | None:
    """A preexec hook capping the child's address space; None when unlimited (0).

    It only calls ``setrlimit`` (no locks, no allocation), which is what makes a preexec
    hook safe to run in the child of a multi-threaded parent.
    """
    if max_bytes <= 0:
        return None
    return functools.partial(resource.setrlimit, resource.RLIMIT_AS, (max_bytes, max_bytes))


class _OutputTooLarge(Exception):
    pass


_OUT_OF_MEMORY = b"out of memory"


async def _communicate_bounded(
    proc: asyncio.subprocess.Process, max_stdout: int
) -> tuple[bytes, bytes]:
    """stdout (at most ``max_stdout`` bytes, else _OutputTooLarge) and the tail of stderr."""
    if proc.stdout is None or proc.stderr is None:  # pragma: no cover - run() pipes both
        raise RenderError("internal error: the tool's output is not piped")
    out, err = proc.stdout, proc.stderr

    async def read_stdout() -> bytes:
        chunks: list[bytes] = []
        size = 0
        killed = False
        while chunk := await out.read(1 << 16):
            size += len(chunk)
            if max_stdout and size > max_stdout:
                if not killed:
                    killed = True
                    chunks.clear()
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                continue  # drain to EOF: asyncio only reaps a child whose pipes closed
            chunks.append(chunk)
        if max_stdout and size > max_stdout:
            raise _OutputTooLarge
        return b"".join(chunks)

    async def read_stderr() -> bytes:
        tail = b""
        out_of_memory = False  # Go's message leads a long trace the tail would lose
        while chunk := await err.read(1 << 16):
            out_of_memory = out_of_memory or _OUT_OF_MEMORY in tail[-64:] + chunk
            tail = (tail + chunk)[-(_STDERR_LIMIT * 4) :]
        return (_OUT_OF_MEMORY + b"\n" if out_of_memory else b"") + tail

    stdout, stderr = await asyncio.gather(read_stdout(), read_stderr())
    await proc.wait()
    return stdout, stderr
