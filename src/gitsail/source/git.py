"""Git repositories as Artifacts: resolve a revision, fetch it once, check it out once.

Layout under the cache directory (one ``GitSource`` per process owns it)::

    repos/<sha256(normalized url)>.git   one bare repository per URL, refs mirrored as fetched
    checkouts/<commit sha>/              one read-only checkout per commit, shared by all apps
    home/                                an empty HOME for git and ssh
    tmp/                                 per-command SSH key and known_hosts (0700, removed)

``resolve`` asks the server with ``git ls-remote`` (one round trip, no objects; concurrent
calls for the same repository share one). ``fetch`` resolves, then, under a per-repository
lock, fetches only when the commit is not in the bare repository yet — so N apps on the same
repository and revision cost one fetch — and materializes the commit with ``read-tree`` +
``checkout-index`` into a private index (the bare repository is never touched by it), so
the files are exactly what a ``git checkout`` gives, without export-ignore/export-subst
surprises. Symlinks that leave the checkout are refused, as Argo CD refuses them.

Mirrors and checkouts are shared by every app naming the repository, whatever credentials
each app has, so a cached commit is served to an app only after the app's own credentials
were accepted by the server: an ``ls-remote`` with them must have succeeded within
``Policy.repo_access_ttl`` (remembered per repository and credential identity, as Argo CD
checks access before serving its cache). Branch and tag revisions get that proof from
their own resolution; a commit SHA, which needs no resolution, pays one ls-remote per TTL.
Without it, an app without credentials pinned to a SHA seen in another app's status would
read a private repository from the mirror.

Before any git process contacts a server, the URL passes the operator's policy
(``_urls.check_destination``: file URLs, denied networks); the mirrors themselves are never
a valid repository URL, even where file URLs are allowed.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gitsail.model import Artifact
from gitsail.policy import DEFAULT_POLICY, Policy
from gitsail.source._cache import CacheLedger
from gitsail.source._fs import remove_tree, replace_dir, seal_tree
from gitsail.source._gitcli import GitCommand, git_session
from gitsail.source._urls import (
    RepoURL,
    check_argument,
    check_destination,
    check_file_url,
    normalize_repo_url,
    parse_repo_url,
    redact_url,
    repo_key,
)
from gitsail.source.credentials import (
    RepoCredentials,
    credential_identity,
    credentials_from_url,
)
from gitsail.source.errors import (
    FetchError,
    InvalidSource,
    PathNotFound,
    RevisionNotFound,
    SourceError,
)
from gitsail.source.inputs import input_digest
from gitsail.source.semver import is_semver_constraint, resolve_semver

__all__ = ["GitSource", "GitStats", "default_cache_dir"]

_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_HEX = re.compile(r"^[0-9a-f]{4,63}$")
_INPUT_OPTIONS = {"tool_hint", "value_files"}


def default_cache_dir() -> Path:
    """``$GITSAIL_CACHE_DIR/source``, else ``$XDG_CACHE_HOME/gitsail/source`` (~/.cache)."""
    override = os.environ.get("GITSAIL_CACHE_DIR")
    if override:
        return Path(override) / "source"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "gitsail" / "source"


@dataclass
class GitStats:
    """What the source did, for metrics and tests: server round trips and checkouts."""

    ls_remotes: int = 0
    fetches: int = 0
    checkouts: int = 0


@dataclass(frozen=True)
class _Refs:
    """``git ls-remote`` output: ref name → commit (tags peeled), and where HEAD points."""

    commits: dict[str, str]
    head_target: str


@dataclass(frozen=True)
class _Resolved:
    sha: str
    ref: str  # the ref to fetch; "" when the revision was a commit SHA


def parse_ls_remote(out: bytes, url: str) -> _Refs:
    """The refs in ``git ls-remote --symref`` output; FetchError for anything else.

    ``url`` (already redacted) names the repository in the error.
    """
    commits: dict[str, str] = {}
    peeled: dict[str, str] = {}
    head_target = ""
    for line in out.decode(errors="replace").splitlines():
        value, _, name = line.partition("\t")
        if value.startswith("ref: "):
            if name == "HEAD":
                head_target = value.removeprefix("ref: ").strip()
            continue
        if not _SHA.match(value) or not name or any(ord(c) < 0x20 for c in name):
            # Every commit later reaches git's argv and a checkout path: an answer that
            # is not a list of "<sha>\t<ref>" lines is refused whole, never half-used.
            raise FetchError(
                f"git ls-remote of {url}: the server's answer is not a list of "
                f"commits and refs (line {line[:80]!r}); refusing it",
                url=url,
            )
        if name.endswith("^{}"):
            peeled[name.removesuffix("^{}")] = value
        else:
            commits[name] = value
    commits.update(peeled)
    return _Refs(commits, head_target)


# At most this many (repository, commit) pairs are remembered as present, and as many input
# digests (then forgotten).
KNOWN_COMMITS_LIMIT = 10_000
# Artifacts remembered for fetches of an unchanged revision (each pins its checkout).
FETCHED_LIMIT = 4096


class GitSource:
    """Git repositories (HTTPS, SSH, file) materialized as Artifacts; owns the clone cache."""

    def __init__(
        self,
        cache_dir: Path | None = None,
        *,
        timeout: float | None = None,
        known_hosts: str = "",
        policy: Policy | None = None,
    ) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.policy = policy if policy is not None else DEFAULT_POLICY
        # Seconds one git command may take (GITSAIL_GIT_TIMEOUT unless given).
        self.timeout = timeout if timeout is not None else self.policy.git_timeout
        self.known_hosts = known_hosts  # argocd-ssh-known-hosts-cm content; may be updated
        self.stats = GitStats()
        self._repo_locks: dict[str, asyncio.Lock] = {}
        # (bare repository, commit) pairs seen present: a commit stays once fetched, so
        # only the first comparison at a revision spawns ``git cat-file`` (a bare
        # repository made anew forgets its pairs).
        self._known_commits: set[tuple[str, str]] = set()
        # Input digests by (commit, path, options): a checkout is the commit's tree, sealed,
        # so its digest is computed once, not on every comparison of every app.
        self._digests: dict[tuple[str, str, str], str] = {}
        self._checkout_locks: dict[str, asyncio.Lock] = {}
        self._ls_remote_calls: dict[tuple[str, str], asyncio.Future[_Refs]] = {}
        self._layout_ready = False
        # How long a repository's refs (one ls-remote) answer every app polling it. 0 (the
        # default, and the CLI's) asks every time; the controller sets a few seconds, so
        # hundreds of apps polling one repository share one ls-remote.
        self.refs_ttl = 0.0
        self._refs_memo: dict[tuple[str, str], tuple[float, _Refs]] = {}
        # The last artifact of each (url, credentials, revision, path, options), with the
        # refs answer it was resolved from and its bare repository: while that answer is
        # the one remembered (refs_ttl) and access is proven, a fetch is that artifact (a
        # poll of an idle app stats, hashes and locks nothing).
        self._fetched: dict[tuple[str, ...], tuple[tuple[float, _Refs] | None, Path, Artifact]]
        self._fetched = {}
        # (normalized url, credential identity) -> when an ls-remote with them last succeeded.
        self._access_proven: dict[tuple[str, str], float] = {}
        # Told of every request to a server ("ls-remote" or "fetch") and its seconds, failed
        # ones included (the controller counts them into metrics).
        self.on_request: Callable[[str, float], None] | None = None
        # Mirrors and checkouts within a byte budget, least recently used evicted first.
        caches = [self.cache_dir / "repos", self.cache_dir / "checkouts"]
        self.cache = CacheLedger(caches, limit=self.policy.source_cache_bytes)

    def forget(self, repo_url: str) -> None:
        """Drop remembered refs of a repository (a webhook said it moved)."""
        clean, _ = credentials_from_url(repo_url)
        normalized = normalize_repo_url(clean)
        for key in [k for k in self._refs_memo if k[0] == normalized]:
            del self._refs_memo[key]

    # -- public --------------------------------------------------------------------------

    async def resolve(
        self, repo_url: str, revision: str, creds: RepoCredentials | None = None
    ) -> str:
        """The full commit SHA ``revision`` names now (branch, tag, SHA, HEAD, semver range)."""
        repo, url, creds = self._prepare(repo_url, creds)
        resolved = await self._resolve(repo, url, revision, creds)
        return resolved.sha

    async def resolve_ref(
        self, repo_url: str, revision: str, creds: RepoCredentials | None = None
    ) -> tuple[str, str]:
        """``(commit SHA, full ref name)`` that ``revision`` names now; the ref name is
        ``refs/tags/v1.2.3`` for a semver range, ``""`` for a commit SHA."""
        repo, url, creds = self._prepare(repo_url, creds)
        resolved = await self._resolve(repo, url, revision, creds)
        return resolved.sha, resolved.ref

    async def branch_contains(
        self, repo_url: str, branch: str, sha: str, creds: RepoCredentials | None = None
    ) -> bool:
        """Whether commit ``sha`` is in the history of ``branch`` as the server has it now
        (Flux's ``ref.commit`` with ``ref.branch``); fetches the branch once, like ``fetch``."""
        repo, url, creds = self._prepare(repo_url, creds)
        if not _SHA.match(sha):
            raise InvalidSource(f"{sha!r} is not a full commit SHA", url=redact_url(url))
        head = await self._resolve(repo, url, f"refs/heads/{branch}", creds)
        await self._check_access(repo, url, creds)
        bare = await self._ensure_commit(repo, url, creds, head)
        if not await self._has_commit(bare, sha):
            return False
        _, failure = await self._local().run(
            ["--git-dir", str(bare), "merge-base", "--is-ancestor", sha, head.sha], check=False
        )
        return failure is None

    async def fetch(
        self,
        repo_url: str,
        revision: str,
        path: str,
        creds: RepoCredentials | None = None,
        *,
        inputs_options: Mapping[str, Any] | None = None,
    ) -> Artifact:
        """Resolve ``revision``, fetch and check it out (once), and describe ``path`` in it.

        ``inputs_options`` are passed to ``input_digest`` (``tool_hint``, ``value_files``).
        """
        options = dict(inputs_options or {})
        unknown = set(options) - _INPUT_OPTIONS
        if unknown:
            raise InvalidSource(f"unknown inputs_options {sorted(unknown)}; use {_INPUT_OPTIONS}")
        repo, url, creds = self._prepare(repo_url, creds)
        shown = redact_url(url)
        rel = _clean_path(path, shown)
        requested = revision.strip() or "HEAD"
        identity = (normalize_repo_url(url), credential_identity(creds))
        fetched_key = (*identity, requested, rel, repr(sorted(options.items())))
        known = self._fetched.get(fetched_key)
        if known is not None and self._still(identity, known[0]):
            self.cache.touch(known[1])
            return known[2]
        resolved = await self._resolve(repo, url, requested, creds)
        await self._check_access(repo, url, creds)
        refs = None if _SHA.match(requested.lower()) else self._refs_memo.get(identity)
        bare = await self._ensure_commit(repo, url, creds, resolved)
        checkout = await self._checkout(bare, resolved.sha, shown)
        if not (checkout / rel).exists():
            raise PathNotFound(
                f"path {rel!r} does not exist in {shown} at {resolved.sha}; "
                "fix spec.source.path or the revision",
                url=shown,
            )
        memo = (resolved.sha, rel, repr(sorted(options.items())))
        digest = self._digests.get(memo)
        if digest is None:
            try:
                digest = await asyncio.to_thread(
                    input_digest, checkout, rel, policy=self.policy, **options
                )
            except SourceError as exc:
                raise type(exc)(f"{shown} at {resolved.sha}: {exc.message}", url=shown) from exc
            if len(self._digests) >= KNOWN_COMMITS_LIMIT:
                self._digests.clear()
            self._digests[memo] = digest
        artifact = Artifact(
            url=shown,
            revision=resolved.sha,
            requested=requested,
            root=checkout,
            path=rel,
            digest=digest,
            kind="git",
        )
        self.cache.lease(checkout, artifact)
        if self.refs_ttl > 0 and (refs is not None or _SHA.match(requested.lower())):
            if len(self._fetched) >= FETCHED_LIMIT:
                del self._fetched[next(iter(self._fetched))]  # the oldest
            self._fetched[fetched_key] = (refs, bare, artifact)
        return artifact

    def _still(self, identity: tuple[str, str], refs: tuple[float, _Refs] | None) -> bool:
        """Whether an artifact resolved from ``refs`` (None: a commit SHA, nothing to
        resolve) is still the answer: the same refs remembered and fresh, access proven."""
        now = time.monotonic()
        proven = self._access_proven.get(identity)
        if proven is None or now - proven >= self.policy.repo_access_ttl:
            return False
        if refs is None:
            return True
        return self._refs_memo.get(identity) is refs and now - refs[0] < self.refs_ttl

    # -- resolution ----------------------------------------------------------------------

    def _prepare(
        self, repo_url: str, creds: RepoCredentials | None
    ) -> tuple[RepoURL, str, RepoCredentials | None]:
        clean, from_url = credentials_from_url(repo_url)
        repo = parse_repo_url(clean)
        shown = redact_url(clean)
        check_file_url(repo, self.policy, what=shown)
        if repo.scheme == "file":
            cache = self.cache_dir.resolve()
            target = Path(repo.path).resolve()
            if target == cache or cache in target.parents:
                raise InvalidSource(
                    f"{shown} is inside gitsail's source cache; the cached mirrors of other "
                    "repositories are never a repository URL",
                    url=shown,
                )
        return repo, clean, creds if creds is not None else from_url

    async def _check_access(self, repo: RepoURL, url: str, creds: RepoCredentials | None) -> None:
        """Prove that the server accepts these credentials for ``url`` (see the docstring)."""
        key = (normalize_repo_url(url), credential_identity(creds))
        proven = self._access_proven.get(key)
        if proven is not None and time.monotonic() - proven < self.policy.repo_access_ttl:
            return
        await self._ls_remote(repo, url, creds)  # raises AuthError when refused

    def _remember_access(self, key: tuple[str, str]) -> None:
        if len(self._access_proven) > 10_000:
            self._access_proven.clear()
        self._access_proven[key] = time.monotonic()

    async def _resolve(
        self, repo: RepoURL, url: str, revision: str, creds: RepoCredentials | None
    ) -> _Resolved:
        shown = redact_url(url)
        revision = revision.strip() or "HEAD"
        check_argument(revision, "revision", url=shown)
        if _SHA.match(revision.lower()):
            return _Resolved(revision.lower(), "")
        refs = await self._ls_remote(repo, url, creds)
        if is_semver_constraint(revision):
            tags = {
                name.removeprefix("refs/tags/"): sha
                for name, sha in refs.commits.items()
                if name.startswith("refs/tags/")
            }
            best = resolve_semver(revision, tags)
            if best is None:
                raise RevisionNotFound(
                    f"no tag of {shown} matches the semver range {revision!r} "
                    f"({_sample(sorted(tags))}); push a matching tag or change targetRevision",
                    url=shown,
                )
            return _Resolved(tags[best], f"refs/tags/{best}")
        if revision == "HEAD":
            if "HEAD" not in refs.commits:
                raise RevisionNotFound(
                    f"{shown} has no HEAD (an empty repository?); push a commit or set "
                    "targetRevision to a branch",
                    url=shown,
                )
            return _Resolved(refs.commits["HEAD"], refs.head_target or "HEAD")
        for name in (revision, f"refs/heads/{revision}", f"refs/tags/{revision}"):
            if name in refs.commits and name != "HEAD":
                return _Resolved(refs.commits[name], name)
        hint = (
            " (abbreviated commit SHAs are not resolved; use the full SHA)"
            if _HEX.match(revision.lower())
            else ""
        )
        raise RevisionNotFound(
            f"revision {revision!r} is not a branch, tag or commit of {shown}{hint}; "
            "check targetRevision",
            url=shown,
        )

    async def _ls_remote(self, repo: RepoURL, url: str, creds: RepoCredentials | None) -> _Refs:
        # Concurrent resolutions of one repository (same credentials) share one round trip.
        key = (normalize_repo_url(url), credential_identity(creds))
        remembered = self._refs_memo.get(key)
        if remembered is not None and time.monotonic() - remembered[0] < self.refs_ttl:
            self._remember_access(key)
            return remembered[1]
        pending = self._ls_remote_calls.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[_Refs] = asyncio.get_running_loop().create_future()
        self._ls_remote_calls[key] = future
        try:
            refs = await self._ls_remote_uncached(repo, url, creds)
        except BaseException as exc:
            shared = exc
            if not isinstance(exc, Exception):  # our task was cancelled, not theirs
                shared = FetchError(f"ls-remote of {redact_url(url)} was interrupted; retry")
            future.set_exception(shared)
            future.exception()  # mark retrieved: there may be no waiters
            raise
        else:
            future.set_result(refs)
            self._remember_access(key)
            if self.refs_ttl > 0:
                self._refs_memo[key] = (time.monotonic(), refs)
            return refs
        finally:
            del self._ls_remote_calls[key]

    async def _ls_remote_uncached(
        self, repo: RepoURL, url: str, creds: RepoCredentials | None
    ) -> _Refs:
        self._ensure_layout()
        await self._check_destination(repo, url)
        self.stats.ls_remotes += 1
        with self._session(repo, url, creds) as git, self._timed("ls-remote"):
            out, _ = await git.run(["ls-remote", "--symref", "--", url], action="ls-remote")
        return parse_ls_remote(out, redact_url(url))

    # -- fetch and checkout --------------------------------------------------------------

    def _session(
        self, repo: RepoURL, url: str, creds: RepoCredentials | None
    ) -> AbstractContextManager[GitCommand]:
        return git_session(
            repo,
            creds,
            home=self.cache_dir / "home",
            scratch=self.cache_dir / "tmp",
            # A credential's own known_hosts (a Flux Secret's) replaces the process-wide one.
            known_hosts=creds.known_hosts if creds and creds.known_hosts else self.known_hosts,
            timeout=self.timeout,
            url=redact_url(url),
            allow_file=self.policy.allow_file_urls,
        )

    async def _check_destination(self, repo: RepoURL, url: str) -> None:
        await check_destination(
            repo, self.policy, what=redact_url(url), resolve_timeout=min(self.timeout, 30.0)
        )

    def _local(self) -> GitCommand:
        return GitCommand(home=self.cache_dir / "home", timeout=self.timeout)

    def _ensure_layout(self) -> None:
        if self._layout_ready:
            return
        for sub in ("repos", "checkouts", "home", "tmp"):
            (self.cache_dir / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        self._layout_ready = True

    async def _has_commit(self, bare: Path, sha: str) -> bool:
        key = (str(bare), sha)
        if key in self._known_commits:
            return True
        _, failure = await self._local().run(
            ["--git-dir", str(bare), "cat-file", "-e", f"{sha}^{{commit}}"], check=False
        )
        if failure is None:
            if len(self._known_commits) >= KNOWN_COMMITS_LIMIT:
                self._known_commits.clear()
            self._known_commits.add(key)
        return failure is None

    async def _ensure_commit(
        self, repo: RepoURL, url: str, creds: RepoCredentials | None, resolved: _Resolved
    ) -> Path:
        self._ensure_layout()
        key = repo_key(url)
        lock = self._repo_locks.setdefault(key, asyncio.Lock())
        async with lock:
            bare = self.cache_dir / "repos" / f"{key}.git"
            self.cache.touch(bare)
            if not (bare / "HEAD").is_file():
                await self._init_bare(bare)
            if await self._has_commit(bare, resolved.sha):
                return bare
            await self._check_destination(repo, url)
            self.stats.fetches += 1
            with self._session(repo, url, creds) as git:
                if resolved.ref:
                    target = resolved.ref if resolved.ref != "HEAD" else "refs/gitsail/HEAD"
                    await self._fetch(git, bare, url, f"+{resolved.ref}:{target}")
                if not await self._has_commit(bare, resolved.sha):
                    # A commit SHA, or the ref moved since ls-remote: ask for the commit itself.
                    pinned = f"+{resolved.sha}:refs/gitsail/pinned/{resolved.sha}"
                    try:
                        await self._fetch(git, bare, url, pinned)
                    except RevisionNotFound:
                        raise RevisionNotFound(
                            f"commit {resolved.sha} does not exist in {redact_url(url)}; "
                            "check targetRevision",
                            url=redact_url(url),
                        ) from None
            if not await self._has_commit(bare, resolved.sha):
                raise RevisionNotFound(
                    f"commit {resolved.sha} was not found in {redact_url(url)} after fetching",
                    url=redact_url(url),
                )
            await self.cache.record(bare)
            return bare

    async def _init_bare(self, bare: Path) -> None:
        self._known_commits = {k for k in self._known_commits if k[0] != str(bare)}
        partial = bare.with_name(f".{bare.name}.{uuid.uuid4().hex}.partial")
        await self._local().run(["init", "--quiet", "--bare", "--", str(partial)], action="init")
        await asyncio.to_thread(replace_dir, partial, bare)

    async def _fetch(self, git: GitCommand, bare: Path, url: str, refspec: str) -> None:
        check_argument(refspec.lstrip("+"), "refspec", url=git.url)
        with self._timed("fetch"):
            await self._run_fetch(git, bare, url, refspec)

    @contextmanager
    def _timed(self, request_type: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            if self.on_request is not None:
                self.on_request(request_type, time.monotonic() - started)

    async def _run_fetch(self, git: GitCommand, bare: Path, url: str, refspec: str) -> None:
        await git.run(
            [
                "--git-dir",
                str(bare),
                "fetch",
                "--quiet",
                "--no-tags",
                "--no-write-fetch-head",
                "--no-recurse-submodules",
                "--",
                url,
                refspec,
            ],
            action="fetch",
        )

    async def _checkout(self, bare: Path, sha: str, shown: str) -> Path:
        target = self.cache_dir / "checkouts" / sha
        if target.is_dir():
            self.cache.touch(target)
            return target
        lock = self._checkout_locks.setdefault(sha, asyncio.Lock())
        async with lock:
            if target.is_dir():
                return target
            partial = target.with_name(f".{sha}.{uuid.uuid4().hex}.partial")
            index = partial.with_name(partial.name + ".index")
            partial.mkdir(mode=0o700)
            git = self._local()
            env = {"GIT_INDEX_FILE": str(index)}
            base = ["--git-dir", str(bare), "--work-tree", str(partial)]
            try:
                await git.run([*base, "read-tree", sha], extra_env=env, action="read-tree")
                await git.run(
                    [*base, "checkout-index", "--all", "--force"],
                    extra_env=env,
                    action="checkout",
                )
                await asyncio.to_thread(seal_tree, partial, f"{shown} at {sha}")
                await asyncio.to_thread(replace_dir, partial, target)
            except BaseException:
                await asyncio.to_thread(remove_tree, partial)
                raise
            finally:
                index.unlink(missing_ok=True)
            self.stats.checkouts += 1
            await self.cache.record(target)
            return target


def _clean_path(path: str, shown: str) -> str:
    rel = path.strip().strip("/")
    if rel in ("", "."):
        return "."
    parts = rel.split("/")
    if ".." in parts or "\x00" in rel:
        raise InvalidSource(f"path {path!r} for {shown} must stay inside the repository")
    return "/".join(p for p in parts if p not in ("", "."))


def _sample(items: list[str], n: int = 8) -> str:
    if not items:
        return "the repository has no tags"
    shown = ", ".join(items[-n:])
    return f"tags: {'..., ' if len(items) > n else ''}{shown}"
