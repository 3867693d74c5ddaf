"""The renderer: picks the tool, runs it, and remembers results by what went into them.

The cache key is the sha256 of the artifact digest (which covers exactly the files the
app's render reads), the tool, the options as canonical JSON, the tool binary's version
and, for Helm only, the cluster capabilities (kube version, API versions). A commit that
does not touch an app's inputs yields the same digest, so the app is not rendered again.
An artifact without a digest is never cached (its content is unknown).

Entries live in a bounded in-memory LRU as compact JSON (encoded and decoded in a worker
thread, so a large render never stalls the event loop); every caller gets freshly decoded
dicts, so a consumer that edits its manifests cannot corrupt the cache. Concurrent renders
of one key share one tool run. Failed renders are not cached.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import shutil
import tempfile
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gitsail import codec, toolchain
from gitsail.model import Artifact, Obj
from gitsail.policy import DEFAULT_POLICY, Policy
from gitsail.render._directory import render_directory_async, uses_jsonnet
from gitsail.render._errors import RenderError
from gitsail.render._helm import helm_template
from gitsail.render._jsonnet import Jsonnet, build_environment, code_imports, substitute
from gitsail.render._kustomize import apply_kustomize_options, kustomize_build
from gitsail.render._options import DirectoryOptions, RenderOptions, detect_tool
from gitsail.render._process import ToolRunner, _scrub_work_dir
from gitsail.render._workspace import copy_artifact, inside
from gitsail.source import PathNotFound, SourceError, input_files

__all__ = ["RenderStats", "Rendered", "Renderer", "cache_key", "render_local"]


@dataclass(frozen=True)
class Rendered:
    """The output of one render: the objects in the order the tool emitted them."""

    manifests: tuple[Obj, ...]
    tool: str  # "directory" | "kustomize" | "helm"
    key: str  # the cache key (sha256 hex)


@dataclass(frozen=True)
class RenderStats:
    hits: int
    misses: int


def cache_key(
    digest: str,
    tool: str,
    options: RenderOptions,
    *,
    tool_version: str = "",
    kube_version: str = "",
    api_versions: Sequence[str] = (),
) -> str:
    """The render cache key; capabilities only count for Helm, the one tool that reads them."""
    capabilities = (
        {"kubeVersion": kube_version, "apiVersions": sorted(set(api_versions))}
        if tool == "helm"
        else {}
    )
    material = json.dumps(
        {
            "digest": digest,
            "tool": tool,
            "toolVersion": tool_version,
            "options": json.loads(options.canonical_json()),
            "capabilities": capabilities,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(material.encode()).hexdigest()


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _find_binary(name: str, explicit: Path | str | None) -> Path:
    """``explicit``, else the pinned binary (``gitsail.toolchain.find_binary``)."""
    if explicit:
        return Path(explicit)
    try:
        return toolchain.find_binary(name)
    except FileNotFoundError as exc:
        raise RenderError(str(exc)) from exc


# Cached renders this small are decoded (at most this many bytes) and encoded (at most this
# many objects) on the event loop: a thread hop costs more.
INLINE_TEXT = 64 << 10
INLINE_OBJECTS = 16


class Renderer:
    """Renders artifacts with a bounded LRU cache; one instance per process is enough.

    ``helm``/``kustomize`` are the binaries (default: ``GITSAIL_BIN_HELM`` /
    ``GITSAIL_BIN_KUSTOMIZE``, then the pinned build cache, then PATH). ``work_dir`` holds
    temporary copies and Helm's private homes; without one a private temporary directory is
    made and removed on ``close()`` (or when the renderer is garbage-collected). ``policy``
    bounds the tools (time, memory, output) and the YAML read from them; ``timeout``
    overrides its ``render_timeout``.
    """

    def __init__(
        self,
        *,
        cache_size: int = 4096,
        cache_bytes: int = 64 << 20,
        work_dir: Path | None = None,
        helm: Path | str | None = None,
        kustomize: Path | str | None = None,
        jsonnet: Path | str | None = None,
        concurrency: int = 2,
        timeout: float | None = None,
        policy: Policy = DEFAULT_POLICY,
    ) -> None:
        if work_dir is None:
            work_dir = Path(tempfile.mkdtemp(prefix="gitsail-render-"))
            self._cleanup: Callable[[], object] | None = weakref.finalize(
                self, _remove_tree, work_dir
            )
        else:
            work_dir.mkdir(parents=True, exist_ok=True)
            self._cleanup = None
        self.work_dir = work_dir
        # Renders kept (as JSON text): at most ``cache_size`` entries and ``cache_bytes`` of
        # text, least recently used first out. A controller polls every app every few
        # minutes: the cache must hold all of them, or every poll renders again.
        self.cache_size = cache_size
        self.cache_bytes = cache_bytes
        self._cache_text = 0
        self._binaries = {"helm": helm, "kustomize": kustomize, "jsonnet": jsonnet}
        self.policy = policy
        self._runner = ToolRunner(
            home=work_dir / "home",
            concurrency=concurrency,
            timeout=policy.render_timeout if timeout is None else timeout,
            policy=policy,
        )
        self._versions: dict[str, str] = {}
        self._cache: OrderedDict[str, tuple[str, bytes]] = OrderedDict()  # tool, JSON
        self._inflight: dict[str, asyncio.Future[Rendered]] = {}
        # What a render finds out before its cache lookup (the path is a directory inside
        # the artifact; the tool; whether a directory holds Jsonnet), by artifact digest,
        # root, path and options: the same inputs answer the same, so a cache hit walks no
        # directory. Only artifacts with a digest (never a SOPS-decrypted one).
        self._facts: OrderedDict[str, tuple[str, bool]] = OrderedDict()
        self._hits = 0
        self._misses = 0

    @property
    def stats(self) -> RenderStats:
        return RenderStats(hits=self._hits, misses=self._misses)

    @property
    def subprocess_calls(self) -> int:
        """How many tool processes this renderer has started (version probes included)."""
        return self._runner.calls

    def close(self) -> None:
        """Drop the cache and remove the work directory if the renderer made it."""
        self._cache.clear()
        self._cache_text = 0
        self._facts.clear()
        if self._cleanup is not None:
            self._cleanup()

    def binary(self, tool: str) -> Path:
        return _find_binary(tool, self._binaries.get(tool))

    async def tool_version(self, tool: str) -> str:
        """The version the binary reports (``v3.22.0``); ``""`` for plain directories."""
        if tool == "directory":
            return ""
        binary = self.binary(tool)
        cached = self._versions.get(str(binary))
        if cached is not None:
            return cached
        argv = [str(binary), "--version" if tool == "jsonnet" else "version"]
        if tool == "helm":
            argv += ["--template", "{{.Version}}"]
        out = await self._runner.run(argv, cwd=self.work_dir, what=f"{tool} version")
        version = out.decode().strip().removeprefix("kustomize/") or str(binary)
        if tool == "jsonnet":  # "Jsonnet commandline interpreter (Go implementation) v0.21.0"
            version = "jsonnet/" + version.rpartition(" ")[2]
        self._versions[str(binary)] = version
        return version

    async def render(
        self,
        artifact: Artifact,
        options: RenderOptions,
        *,
        kube_version: str = "",
        api_versions: Sequence[str] = (),
        scratch: Path | None = None,
    ) -> Rendered:
        """The manifests of ``artifact`` with ``options``; RenderError when it cannot.

        ``scratch`` is where the render's temporary copy goes instead of ``work_dir``: a
        private (``0700``, memory-backed) workspace when the artifact holds decrypted SOPS
        inputs, so that no copy of them lands elsewhere. Such an artifact has no digest
        (never cached)."""
        app_path = artifact.path if artifact.path not in ("", ".") else "."
        tool = ""
        facts_key = (
            repr((artifact.digest, str(artifact.root), artifact.path, artifact.kind, options))
            if artifact.digest and scratch is None
            else ""
        )
        try:
            facts = self._facts.get(facts_key) if facts_key else None
            if facts is None:
                facts = await self._facts_of(artifact, options, app_path)
                if facts_key:
                    self._facts[facts_key] = facts
                    while len(self._facts) > max(self.cache_size, 1):
                        self._facts.popitem(last=False)
            tool, jsonnet = facts
            version = await self.tool_version(tool)
            if jsonnet:
                version = await self.tool_version("jsonnet")
                options = _with_build_environment(options, artifact)
                if code_imports(options.directory):
                    # The digest covers files, not what Jsonnet code in the spec imports.
                    artifact = dataclasses.replace(artifact, digest="")
        except RenderError as err:
            raise err.for_app(app_path, tool) from None
        apis = sorted(set(api_versions))
        key = cache_key(
            artifact.digest,
            tool,
            options,
            tool_version=version,
            kube_version=kube_version,
            api_versions=apis,
        )
        if artifact.digest:
            cached = await self._lookup(key)
            if cached is not None:
                return cached
            pending = self._inflight.get(key)
            if pending is not None:
                self._hits += 1
                return await asyncio.to_thread(_copy, await asyncio.shield(pending))
        self._misses += 1
        future: asyncio.Future[Rendered] = asyncio.get_running_loop().create_future()
        if artifact.digest:
            self._inflight[key] = future
        try:
            manifests = await self._run(tool, artifact, options, kube_version, apis, scratch)
            result = Rendered(manifests=tuple(manifests), tool=tool, key=key)
            if artifact.digest:
                # Stored before the render stops being in flight: a caller arriving in
                # between finds one or the other, never neither (and renders again).
                await self._store(key, tool, manifests)
        except RenderError as err:
            if scratch is not None:  # its paths made repository-relative, as in work_dir
                err = RenderError(
                    _scrub_work_dir(err.detail, scratch), app_path=err.app_path, tool=err.tool
                )
            future.set_exception(err.for_app(app_path, tool))
            future.exception()  # retrieved: waiters see it, nobody logs "never retrieved"
            raise err.for_app(app_path, tool) from None
        except BaseException as err:
            future.set_exception(RenderError(f"render interrupted: {err!r}"))
            future.exception()
            raise
        finally:
            self._inflight.pop(key, None)
        future.set_result(result)
        return result

    async def _facts_of(
        self, artifact: Artifact, options: RenderOptions, app_path: str
    ) -> tuple[str, bool]:
        """(tool, uses Jsonnet) of the artifact's path; RenderError when it is not a
        directory inside the artifact."""
        directory = artifact.directory
        if not directory.is_dir() or not inside(directory.resolve(), artifact.root.resolve()):
            raise RenderError(f"path {app_path!r} is not a directory in the repository")
        tool = "helm" if artifact.kind == "helm" else detect_tool(directory, options)
        jsonnet = tool == "directory" and await asyncio.to_thread(
            uses_jsonnet, directory, artifact.root, options.directory
        )
        return tool, jsonnet

    async def _lookup(self, key: str) -> Rendered | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        self._cache.move_to_end(key)
        self._hits += 1
        tool, text = entry
        # Off the event loop unless small (a thread hop costs more than a few objects).
        if len(text) <= INLINE_TEXT:
            manifests = codec.loads(text)
        else:
            manifests = await asyncio.to_thread(codec.loads, text)
        return Rendered(manifests=tuple(manifests), tool=tool, key=key)

    async def _store(self, key: str, tool: str, manifests: list[Obj]) -> None:
        if self.cache_size <= 0:
            return
        if len(manifests) <= INLINE_OBJECTS:
            text = codec.dumps(manifests)
        else:
            text = await asyncio.to_thread(codec.dumps, manifests)
        previous = self._cache.pop(key, None)
        if previous is not None:
            self._cache_text -= len(previous[1])
        self._cache[key] = (tool, text)
        self._cache_text += len(text)
        while self._cache and (
            len(self._cache) > self.cache_size or self._cache_text > self.cache_bytes
        ):
            _, (_, dropped) = self._cache.popitem(last=False)
            self._cache_text -= len(dropped)

    async def _run(
        self,
        tool: str,
        artifact: Artifact,
        options: RenderOptions,
        kube_version: str,
        api_versions: Sequence[str],
        scratch: Path | None = None,
    ) -> list[Obj]:
        root = artifact.root
        if tool == "directory":
            directory = options.directory

            async def jsonnet(path: Path) -> list[Obj]:  # the binary only when a file needs it
                evaluator = Jsonnet(
                    self._runner,
                    self.binary("jsonnet"),
                    root=root,
                    app_dir=artifact.directory,
                    options=(directory or DirectoryOptions()).jsonnet,
                    policy=self.policy,
                )
                return await evaluator.evaluate(path)

            return await render_directory_async(
                artifact.directory, root, directory, jsonnet=jsonnet
            )
        rel = artifact.directory.relative_to(root)
        with tempfile.TemporaryDirectory(dir=scratch or self.work_dir, prefix="render-") as tmp:
            work = Path(tmp)
            if tool == "kustomize":
                copy = work / "src"
                await asyncio.to_thread(
                    copy_artifact, root, copy, _kustomize_inputs(root, rel, options, self.policy)
                )
                app_dir = copy / rel
                if options.kustomize is not None:
                    await asyncio.to_thread(
                        apply_kustomize_options, app_dir, copy, options.kustomize
                    )
                return await kustomize_build(
                    self._runner,
                    self.binary("kustomize"),
                    app_dir,
                    display=rel.as_posix(),
                    root=copy,
                )
            return await helm_template(
                self._runner,
                self.binary("helm"),
                chart_dir=artifact.directory,
                root=root,
                work=work,
                options=options,
                kube_version=kube_version,
                api_versions=api_versions,
                display=rel.as_posix(),
            )


def _kustomize_inputs(
    root: Path, rel: Path, options: RenderOptions, policy: Policy
) -> list[Path] | None:
    """The files a kustomize render of ``rel`` reads, or None when they cannot be bounded.

    A reference outside the repository, or a kustomization the check cannot read, is a
    RenderError: the render never runs on inputs the check did not see.
    """
    paths = [rel.as_posix()]
    if options.kustomize is not None:
        paths += [str((rel / c).as_posix()) for c in options.kustomize.components]
    files: set[Path] = set()
    for path in paths:
        try:
            found = input_files(root, path, tool_hint="kustomize", policy=policy)
        except PathNotFound:
            continue  # a missing component: apply_kustomize_options reports or skips it
        except SourceError as err:
            # Never render what the check could not read: refuse (fail closed).
            raise RenderError(err.message) from None
        if found is None:
            return None
        files.update(found)
    return sorted(files)


def _with_build_environment(options: RenderOptions, artifact: Artifact) -> RenderOptions:
    """Options with Argo CD's build environment substituted into the Jsonnet values.

    Done before the cache key is computed, so a value naming ``$ARGOCD_APP_REVISION`` gives
    each revision its own key.
    """
    directory = options.directory or DirectoryOptions()
    env = build_environment(
        app_name=options.app_name,
        namespace=options.namespace,
        revision=artifact.revision,
        path=artifact.path,
        repo_url=artifact.url,
        requested=artifact.requested,
    )
    jsonnet = substitute(directory.jsonnet, env)
    return dataclasses.replace(options, directory=dataclasses.replace(directory, jsonnet=jsonnet))


def _copy(rendered: Rendered) -> Rendered:
    manifests = codec.loads(codec.dumps(list(rendered.manifests)))
    return Rendered(manifests=tuple(manifests), tool=rendered.tool, key=rendered.key)


def _repository_root(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if (candidate / ".git").exists():
            return candidate
    return path


def render_local(
    path: Path,
    options: RenderOptions | None = None,
    *,
    root: Path | None = None,
    kube_version: str = "",
    api_versions: Sequence[str] = (),
    helm: Path | str | None = None,
    kustomize: Path | str | None = None,
) -> Rendered:
    """Render a local checkout once, without a cluster (``gitsail render``).

    ``root`` bounds what the render may read (overlays reach up to their bases); by default
    it is the enclosing Git work tree, or ``path`` itself outside one.
    """
    app_dir = path.resolve()
    repo_root = (root or _repository_root(app_dir)).resolve()
    if not inside(app_dir, repo_root):
        raise RenderError(f"{path} is not inside {repo_root}")
    artifact = Artifact(
        url=repo_root.as_uri(),
        revision="",
        requested="",
        root=repo_root,
        path=app_dir.relative_to(repo_root).as_posix(),
        digest="",
    )
    renderer = Renderer(cache_size=0, helm=helm, kustomize=kustomize)
    try:
        return asyncio.run(
            renderer.render(
                artifact,
                options or RenderOptions(),
                kube_version=kube_version,
                api_versions=api_versions,
            )
        )
    finally:
        renderer.close()
