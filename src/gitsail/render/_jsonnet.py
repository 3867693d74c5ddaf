"""Jsonnet files of a plain directory, evaluated the way Argo CD's repo server does.

Every ``*.jsonnet`` file that the directory rules select (``recurse``, ``include``,
``exclude``; ``*.libsonnet`` files are only ever imported) is evaluated on its own by the
pinned go-jsonnet binary with the app's ``extVars`` and ``tlas`` (``code: true`` passes
Jsonnet code, otherwise a string) and the library search path Argo CD builds: the app
directory, then each of ``libs`` (relative to the repository root; the last one wins, as
go-jsonnet's ``-J`` does). ``$ARGOCD_APP_NAME``-style references in values are replaced from
the build environment first (``build_environment``), as Argo CD does.

The output must be one Kubernetes object or an array of them; ``kind: List`` objects are
flattened, ``null`` entries skipped; an array inside the array is an error, as it is in
Argo CD (its repo server decodes an object or a flat array).

Jsonnet can read files: ``import``, ``importstr`` and ``importbin`` take any path, absolute
or ``../``-relative, and go-jsonnet follows symlinks. Before the binary runs,
``check_imports`` reads the program (the entry file, everything it imports, the ``code``
values) with ``gitsail.source.jsonnet_imports`` and refuses any import that is absolute,
for which go-jsonnet would try a path outside the repository (next to the importing file,
then in each library directory, up to the first that exists), or a symlink leading out.
go-jsonnet never opens a path that was not checked, so a repository cannot make the
controller read its host's files.

The binary then runs with an argv built from checked values only (names are identifiers,
every path is absolute inside the checkout), a scrubbed environment (no ``JSONNET_PATH``),
``RLIMIT_AS`` and ``GOMEMLIMIT`` at ``Policy.render_memory_bytes``, a deadline of
``Policy.render_timeout`` that kills its process group, and an output cap of
``Policy.render_output_bytes`` enforced while reading. Error messages name files relative to
the repository, never the checkout's location on disk.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import signal
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gitsail.model import Obj
from gitsail.policy import DEFAULT_POLICY, Policy
from gitsail.process import kill_group
from gitsail.render._errors import RenderError
from gitsail.render._manifests import _describe, _is_list, _is_object
from gitsail.render._options import DirectoryOptions, JsonnetOptions, JsonnetVar
from gitsail.render._process import ToolRunner, redact
from gitsail.render._workspace import inside
from gitsail.source.jsonnet_imports import JsonnetImportError, imports

__all__ = [
    "BUILD_ENVIRONMENT",
    "Jsonnet",
    "build_environment",
    "check_imports",
    "code_imports",
    "decode_output",
    "envsubst",
    "substitute",
]

# The build environment Argo CD substitutes into extVars and TLAs (its "build env").
BUILD_ENVIRONMENT = (
    "ARGOCD_APP_NAME",
    "ARGOCD_APP_NAMESPACE",
    "ARGOCD_APP_REVISION",
    "ARGOCD_APP_REVISION_SHORT",
    "ARGOCD_APP_REVISION_SHORT_8",
    "ARGOCD_APP_SOURCE_PATH",
    "ARGOCD_APP_SOURCE_REPO_URL",
    "ARGOCD_APP_SOURCE_TARGET_REVISION",
)
_URL_USERINFO = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@")
_VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[^}]*)\}|(?P<special>[*#$@!?0-9-])|(?P<name>[A-Za-z0-9_]+))"
)
_STDERR_KEEP = 64 * 1024
_CHUNK = 64 * 1024


# --- the build environment ---------------------------------------------------------------


def build_environment(
    *, app_name: str, namespace: str, revision: str, path: str, repo_url: str, requested: str
) -> dict[str, str]:
    """Argo CD's build environment for one render (credentials stripped from the URL)."""
    return {
        "ARGOCD_APP_NAME": app_name,
        "ARGOCD_APP_NAMESPACE": namespace,
        "ARGOCD_APP_REVISION": revision,
        "ARGOCD_APP_REVISION_SHORT": revision[:7],
        "ARGOCD_APP_REVISION_SHORT_8": revision[:8],
        "ARGOCD_APP_SOURCE_PATH": path,
        "ARGOCD_APP_SOURCE_REPO_URL": _URL_USERINFO.sub(r"\g<scheme>", repo_url),
        "ARGOCD_APP_SOURCE_TARGET_REVISION": requested,
    }


def envsubst(value: str, env: Mapping[str, str]) -> str:
    """Go's ``os.Expand`` as Argo CD uses it: ``$NAME``/``${NAME}``, unknown → "", ``$$`` → $."""

    def one(match: re.Match[str]) -> str:
        special = match.group("special")
        if special is not None:
            return "$" if special == "$" else ""
        name = match.group("braced") if match.group("braced") is not None else match["name"]
        return env.get(name, "")

    return _VARIABLE.sub(one, value)


def substitute(options: JsonnetOptions, env: Mapping[str, str]) -> JsonnetOptions:
    """``options`` with the build environment substituted into every value."""

    def each(items: tuple[JsonnetVar, ...]) -> tuple[JsonnetVar, ...]:
        return tuple(replace(v, value=envsubst(v.value, env)) for v in items)

    return replace(options, ext_vars=each(options.ext_vars), tlas=each(options.tlas))


def code_imports(directory: DirectoryOptions | None) -> bool:
    """Whether a ``code: true`` value imports a file (its content is not in the digest)."""
    options = directory.jsonnet if directory else JsonnetOptions()
    for var in (*options.ext_vars, *options.tlas):
        if not var.code:
            continue
        try:
            if imports(var.value):
                return True
        except JsonnetImportError:
            return True  # the render refuses it; never cache on a guess
    return False


# --- import confinement ------------------------------------------------------------------


@dataclass(frozen=True)
class _Program:
    text: str
    base: Path  # the directory its relative imports start from
    display: str  # what errors call it


def _display(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if inside(path, root) else path.name


def _read_program(path: Path, root: Path, limit: int) -> str:
    rel = _display(path, root)
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as err:
        raise RenderError(f"{rel}: cannot read: {err.strerror}") from None
    if len(data) > limit:
        raise RenderError(f"{rel}: larger than {limit} bytes; refusing to evaluate it")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise RenderError(f"{rel}: not UTF-8 text") from None


def check_imports(
    root: Path,
    search_path: Iterable[Path],
    programs: Iterable[tuple[str, Path, str]],
    *,
    max_bytes: int,
) -> None:
    """Refuse any import of ``programs`` (and of what they import) that could leave ``root``.

    ``root`` and ``search_path`` are resolved absolute paths. A program is ``(text or "",
    file, display)``: with empty text the file itself is read. The candidates of an import
    are walked in go-jsonnet's order up to the first that exists, and each one it would open
    must lie in ``root``, symlinks resolved; imported programs are checked in turn.
    """
    jpaths = list(search_path)
    pending: list[_Program] = []
    for text, file, display in programs:
        body = text if text else _read_program(file, root, max_bytes)
        pending.append(_Program(body, file.parent, display))
    scanned: set[Path] = set()
    while pending:
        program = pending.pop()
        try:
            found = imports(program.text)
        except JsonnetImportError as err:
            raise RenderError(f"{program.display}: cannot read its imports: {err}") from None
        for item in found:
            where = f"{program.display}:{item.line}: {item.kind} {item.path!r}"
            if not item.path or item.path.startswith("/") or "\0" in item.path:
                raise RenderError(
                    f"{where} is refused: only paths relative to the file or to a library "
                    "directory of the repository can be imported"
                )
            # go-jsonnet's order: next to the importing file, then the last -J first; it
            # stops at the first candidate that exists, so later ones are never opened.
            for base in (program.base, *reversed(jpaths)):
                candidate = Path(os.path.normpath(base / item.path))
                if not inside(candidate, root):
                    raise RenderError(f"{where} is refused: it leads outside the repository")
                if os.path.lexists(candidate) and not inside(candidate.resolve(), root):
                    raise RenderError(
                        f"{where} is refused: {_display(candidate, root)} is a symlink "
                        "that points outside the repository"
                    )
                if not candidate.exists():
                    continue
                if item.kind == "import" and candidate.is_file() and candidate not in scanned:
                    scanned.add(candidate)
                    text = _read_program(candidate, root, max_bytes)
                    pending.append(_Program(text, candidate.parent, _display(candidate, root)))
                break


# --- output ------------------------------------------------------------------------------


def decode_output(output: bytes, display: str) -> list[Obj]:
    """The objects of one file's JSON output: an object or a flat array of objects."""
    try:
        data: Any = json.loads(output)
    except (ValueError, RecursionError) as err:
        raise RenderError(f"{display}: jsonnet output is not JSON: {err}") from None
    items = data if isinstance(data, list) else [data]
    objs: list[Obj] = []
    for i, item in enumerate(items):
        at = f"{display}: output item {i}" if isinstance(data, list) else f"{display}: output"
        if item is None or item == {}:
            continue
        if isinstance(item, list):
            raise RenderError(
                f"{at} is an array; a Jsonnet file must produce an object or a flat array "
                "of objects (as in Argo CD): flatten it with std.flattenArrays"
            )
        if not _is_object(item):
            raise RenderError(
                f"{at} is not a Kubernetes object: expected a mapping with apiVersion and "
                f"kind, got {_describe(item)}"
            )
        if not _is_list(item):
            objs.append(item)
            continue
        for j, member in enumerate(item.get("items") or []):
            if not _is_object(member):
                raise RenderError(
                    f"{at}, {item['kind']} item {j}, is not a Kubernetes object: expected a "
                    f"mapping with apiVersion and kind, got {_describe(member)}"
                )
            objs.append(member)
    return objs


# --- running the binary ------------------------------------------------------------------


def _limits(memory_bytes: int, cpu_seconds: int) -> Callable[[], None]:
    def apply() -> None:  # runs in the child between fork and exec
        if memory_bytes > 0:
            resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        if cpu_seconds > 0:
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))

    return apply


async def _read_capped(proc: asyncio.subprocess.Process, cap: int) -> tuple[bytes, bool]:
    """Up to ``cap`` bytes of stdout; (b"", True) and the process killed when it had more."""
    assert proc.stdout is not None
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await proc.stdout.read(_CHUNK)
        if not chunk:
            return b"".join(chunks), False
        size += len(chunk)
        if size > cap:
            # Killing the group also ends stderr, which the other reader is waiting on.
            await kill_group(proc, drain=[proc.stdout])
            return b"", True
        chunks.append(chunk)


async def _read_tail(stream: asyncio.StreamReader) -> bytes:
    tail = b""
    while chunk := await stream.read(_CHUNK):
        tail = (tail + chunk)[-_STDERR_KEEP:]
    return tail


class Jsonnet:
    """Evaluates the Jsonnet files of one app directory; one instance per render."""

    def __init__(
        self,
        runner: ToolRunner,
        binary: Path,
        *,
        root: Path,
        app_dir: Path,
        options: JsonnetOptions,
        policy: Policy = DEFAULT_POLICY,
    ) -> None:
        self.runner = runner
        self.binary = binary
        self.root = root.resolve()
        self.app_dir = app_dir.resolve()
        self.options = options
        self.policy = policy
        if not inside(self.app_dir, self.root):
            raise RenderError("the app directory is outside the repository")
        self.search_path = [self.app_dir, *(self._library(lib) for lib in options.libs)]

    def _library(self, lib: str) -> Path:
        path = Path(os.path.normpath(self.root / lib))
        if not inside(path, self.root) or not inside(path.resolve(), self.root):
            raise RenderError(
                f"directory.jsonnet.libs {lib!r} leads outside the repository; library "
                "paths are relative to the repository root"
            )
        return path

    def argv(self, file: Path) -> list[str]:
        args = [str(self.binary)]
        for flag, items in (("ext", self.options.ext_vars), ("tla", self.options.tlas)):
            for var in items:
                args += [f"--{flag}-{'code' if var.code else 'str'}", f"{var.name}={var.value}"]
        for directory in self.search_path:
            args += ["--jpath", str(directory)]
        return [*args, "--", str(file)]

    async def evaluate(self, file: Path) -> list[Obj]:
        """The objects ``file`` evaluates to; RenderError when it cannot be evaluated."""
        display = _display(file, self.root)
        code = [
            (v.value, self.app_dir / f"<{kind} {v.name}>", f"{kind} {v.name}")
            for kind, items in (("extVar", self.options.ext_vars), ("tla", self.options.tlas))
            for v in items
            if v.code
        ]
        await asyncio.to_thread(
            check_imports,
            self.root,
            self.search_path,
            [("", file, display), *code],
            max_bytes=self.policy.render_output_bytes,
        )
        output = await self._run(self.argv(file), display)
        return await asyncio.to_thread(decode_output, output, display)

    async def _run(self, argv: list[str], display: str) -> bytes:
        policy = self.policy
        what = f"jsonnet {display}"
        # The Go runtime collects harder as it nears GOMEMLIMIT, well before RLIMIT_AS bites.
        memory = policy.render_memory_bytes
        env = {"GOMEMLIMIT": str(memory * 3 // 4)} if memory else {}
        async with self.runner._semaphore:  # the renderer's bound on concurrent tools
            self.runner.calls += 1
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    cwd=self.app_dir,
                    env=self.runner.environment(env),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    start_new_session=True,
                    preexec_fn=_limits(policy.render_memory_bytes, int(policy.render_timeout) + 5),
                )
            except OSError as err:
                raise RenderError(f"{what}: cannot run jsonnet: {err}") from None
            assert proc.stderr is not None
            try:
                async with asyncio.timeout(policy.render_timeout or None):
                    (stdout, too_big), stderr = await asyncio.gather(
                        _read_capped(proc, policy.render_output_bytes or 2**62),
                        _read_tail(proc.stderr),
                    )
                    if too_big:
                        raise RenderError(
                            f"{what}: output is larger than {policy.render_output_bytes} bytes "
                            "(GITSAIL_RENDER_OUTPUT_BYTES); refusing it"
                        )
                    await proc.wait()
            except TimeoutError:
                await kill_group(proc)
                raise RenderError(
                    f"{what}: timed out after {policy.render_timeout:g}s (GITSAIL_RENDER_TIMEOUT)"
                ) from None
            except BaseException:
                await kill_group(proc)
                raise
        if proc.returncode != 0:
            raise RenderError(f"{what} failed: {self._message(stderr, proc.returncode)}")
        return stdout

    def _message(self, stderr: bytes, code: int | None) -> str:
        text = stderr.decode("utf-8", "replace")
        if any(s in text for s in ("out of memory", "cannot allocate", "failed to reserve")):
            return (
                f"ran out of memory (limit {self.policy.render_memory_bytes} bytes, "
                "GITSAIL_RENDER_MEMORY_BYTES)"
            )
        if code in (-signal.SIGXCPU, -signal.SIGKILL):
            return (
                "killed by a resource limit (CPU time GITSAIL_RENDER_TIMEOUT or memory "
                "GITSAIL_RENDER_MEMORY_BYTES)"
            )
        # Name files relative to the repository: the checkout's location is nobody's business
        # and changes between checkouts (a message must be stable to be compared).
        for prefix in sorted({str(self.root), os.path.realpath(self.root)}, key=len, reverse=True):
            text = text.replace(prefix + "/", "")
        text = redact(text.strip())
        if len(text) > 4000:
            text = text[:4000] + "…"
        return text or f"exit {code}, no output on stderr"
