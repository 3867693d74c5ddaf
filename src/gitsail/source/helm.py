"""Charts from Helm HTTP repositories as Artifacts.

A Helm repository is an ``index.yaml`` listing, per chart, its versions with download
``urls`` (relative to the repository or absolute) and a sha256 ``digest`` of the package.
``fetch_chart`` reads the index, picks a version — exact, a semver range with the same
syntax as git tags, or the latest stable release for ``""``/``*`` — downloads the ``.tgz``,
checks the digest, and unpacks it once into ``charts/<sha256 of the tgz>/``. When the index
gives a digest and that directory already exists, nothing is downloaded.

Charts in OCI registries (an ``oci://`` URL, or Argo CD's ``repoURL`` without a scheme and a
repository Secret with ``enableOCI: "true"``) are pulled with ``OCIClient.pull_chart`` and
unpacked the same way; the chart layer's digest is the package's sha256, so a chart already
unpacked is not downloaded again (the manifest is read each time, as the index is).

Credentials (basic auth or a bearer token) are sent to the repository's own origin only,
as Helm does unless ``--pass-credentials`` is given: a chart hosted elsewhere is fetched
without them.

A package is an outsider's archive, so unpacking is bounded by the operator's ``Policy``:
the download by ``chart_archive_bytes``, the decompressed stream and the files by
``chart_unpacked_bytes``, the members by ``chart_entries``. Only directories and regular
files are unpacked (Helm's own loader reads nothing else; a link, a device or a sparse file
refuses the package), every name must be relative and stay inside the package, and files are
written by us, byte-counted, never by ``tarfile``'s extraction. Unpacked charts are
cache entries under ``chart_cache_bytes`` (see ``_cache``): least recently used ones go.

Indexes: a repository's ``index.yaml`` (at most ``helm_index_bytes``) is parsed once per
digest (the sha256 of its bytes as served) into a ``HelmIndex`` kept in an ``IndexCache``
(least recently used dropped beyond ``helm_index_cache_bytes`` of raw index), shared by
every chart fetched from it — Argo CD's ``fetch_chart`` and Flux's HelmCharts alike. A large
index is parsed again only when its bytes change. Flux's HelmRepository stores the raw
index as its artifact (``fetch_index``) and its HelmCharts read the parsed one
(``parse_index``), pick a version and download the package (``download_chart``).

TLS (Flux's ``certSecretRef``): a ``TLSConfig`` gives a CA to trust and/or a client
certificate; the private key is written to a private temporary file only while the SSL
context loads it.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import os
import re
import ssl
import stat
import tarfile
import tempfile
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import yaml

from gitsail.model import Artifact
from gitsail.policy import DEFAULT_POLICY, Policy
from gitsail.source._cache import CacheLedger
from gitsail.source._fs import remove_tree, replace_dir, seal_tree
from gitsail.source._urls import check_argument, http_guard, parse_repo_url, redact_url
from gitsail.source.boundedyaml import YAMLLimitError, load_document
from gitsail.source.credentials import RepoCredentials, credentials_from_url
from gitsail.source.errors import (
    AuthError,
    FetchError,
    InvalidSource,
    RevisionNotFound,
)
from gitsail.source.git import default_cache_dir
from gitsail.source.oci import OCIClient
from gitsail.source.semver import (
    Version,
    is_semver_constraint,
    parse_version,
    resolve_semver,
)

__all__ = [
    "ChartPackage",
    "HelmIndex",
    "HelmRepoSource",
    "HelmStats",
    "IndexCache",
    "TLSConfig",
    "is_oci_repository",
    "oci_chart_ref",
    "pack_chart",
    "pick_chart_version",
    "unpack_chart",
]

_CHART_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,249}$")
_TAR_OVERHEAD = 4096  # per member: header, extended headers and padding
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class HelmStats:
    index_fetches: int = 0
    index_parses: int = 0
    downloads: int = 0


@dataclass(frozen=True)
class HelmIndex:
    """A parsed ``index.yaml``: the digest of its bytes and, per chart name, its entries."""

    digest: str  # sha256:<hex> of the index as served
    size: int  # bytes of the raw index
    entries: Mapping[str, list[dict[str, Any]]] = field(repr=False)


class IndexCache:
    """Parsed indexes by digest; least recently used ones go once the raw sizes of those
    kept pass ``limit`` bytes (the one just added always stays)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[str, HelmIndex] = OrderedDict()
        self._bytes = 0

    def get(self, digest: str) -> HelmIndex | None:
        index = self._items.get(digest)
        if index is not None:
            self._items.move_to_end(digest)
        return index

    def put(self, index: HelmIndex) -> None:
        if index.digest in self._items:
            self._items.move_to_end(index.digest)
            return
        self._items[index.digest] = index
        self._bytes += index.size
        while self._bytes > self.limit and len(self._items) > 1:
            _, dropped = self._items.popitem(last=False)
            self._bytes -= dropped.size

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class TLSConfig:
    """TLS for a Helm repository: a CA bundle to trust, a client certificate and key (PEM)."""

    ca: str = ""
    cert: str = ""
    key: str = field(default="", repr=False)

    def context(self, *, insecure: bool = False) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if self.ca:
            ctx.load_verify_locations(cadata=self.ca)
        if insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert or self.key:
            with tempfile.TemporaryDirectory(prefix="gitsail-tls-") as tmp:
                cert, key = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
                for path, text in ((cert, self.cert), (key, self.key)):
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "w") as out:
                        out.write(text)
                ctx.load_cert_chain(cert, key)
        return ctx


@dataclass(frozen=True)
class ChartPackage:
    """A chart package downloaded from a repository, its digest checked against the index."""

    name: str
    version: str
    digest: str  # sha256:<hex> of ``data``
    data: bytes = field(repr=False)


class HelmRepoSource:
    """Helm HTTP(S) chart repositories; shares the cache directory with ``GitSource``."""

    def __init__(
        self, cache_dir: Path | None = None, *, timeout: float = 60.0, policy: Policy | None = None
    ) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.timeout = timeout
        self.policy = policy if policy is not None else DEFAULT_POLICY
        self.stats = HelmStats()
        self.cache = CacheLedger([self.cache_dir / "charts"], limit=self.policy.chart_cache_bytes)
        self.indexes = IndexCache(self.policy.helm_index_cache_bytes)
        self._locks: dict[str, asyncio.Lock] = {}
        self._parsing: dict[str, asyncio.Future[HelmIndex]] = {}
        self.oci = OCIClient(policy=self.policy, timeout=timeout)

    async def fetch_chart(
        self, repo_url: str, chart: str, version: str, creds: RepoCredentials | None = None
    ) -> Artifact:
        """The chart ``chart`` at ``version`` (exact, semver range, or ``""``/``*`` = latest)."""
        if is_oci_repository(repo_url, creds):
            return await self._fetch_oci_chart(repo_url, chart, version, creds)
        clean, from_url = _split_credentials(repo_url)
        creds = creds if creds is not None else from_url
        shown = redact_url(clean)
        if not _CHART_NAME.match(chart):
            raise InvalidSource(f"chart name {chart!r} for {shown} is not a valid chart name")
        requested = version.strip()
        if requested:
            check_argument(requested, "chart version", url=shown)
        base = clean.rstrip("/") + "/"
        async with httpx.AsyncClient(
            timeout=self.timeout,
            verify=not (creds is not None and creds.insecure),
            follow_redirects=True,
            # Every request and redirect: denied networks refused, no redirect to another host.
            event_hooks=http_guard(self.policy, resolve_timeout=min(self.timeout, 30.0)),
        ) as client:
            index = await self._index(client, base, shown, creds)
            entry = pick_chart_version(index, chart, requested, shown)
            chosen = str(entry.get("version"))
            urls = entry.get("urls") or []
            if not urls or not isinstance(urls[0], str):
                raise FetchError(
                    f"{shown}: chart {chart} {chosen} has no download URL in the index"
                )
            tgz_url = urljoin(base, urls[0])
            if urlsplit(tgz_url).scheme not in ("http", "https"):
                raise InvalidSource(
                    f"{shown}: chart {chart} {chosen} is hosted at a non-HTTP URL "
                    f"{redact_url(tgz_url)}; only http(s) downloads are supported"
                )
            expected = str(entry.get("digest") or "").lower().removeprefix("sha256:")
            if expected and not _HEX64.match(expected):
                expected = ""
            charts = self.cache_dir / "charts"
            if expected and (charts / expected / chart).is_dir():
                artifact = _artifact(shown, chart, chosen, requested, charts / expected, expected)
                self.cache.lease(charts / expected, artifact)
                return artifact
            data = await self._download(client, tgz_url, base, shown, creds)
        sha = hashlib.sha256(data).hexdigest()
        if expected and sha != expected:
            raise FetchError(
                f"{shown}: chart {chart} {chosen} does not match the digest in index.yaml "
                f"(expected sha256:{expected}, got sha256:{sha}); the repository is "
                "inconsistent or the download was altered"
            )
        root = await self._unpack(data, sha, chart, f"{shown} chart {chart} {chosen}")
        artifact = _artifact(shown, chart, chosen, requested, root, sha)
        self.cache.lease(root, artifact)
        return artifact

    async def _fetch_oci_chart(
        self, repo_url: str, chart: str, version: str, creds: RepoCredentials | None
    ) -> Artifact:
        """The chart from an OCI registry (``OCIClient``), unpacked like an HTTP one; the
        layer's digest is the package's sha256, so a chart already unpacked is not pulled."""
        ref = oci_chart_ref(repo_url, chart)
        if not _CHART_NAME.match(chart):
            raise InvalidSource(f"chart name {chart!r} for {ref} is not a valid chart name")
        charts = self.cache_dir / "charts"
        self.stats.index_fetches += 1
        pulled = await self.oci.pull_chart(
            ref, version, creds, skip_blob=lambda sha: (charts / sha / chart).is_dir()
        )
        sha = pulled.digest.removeprefix("sha256:")
        if pulled.data:
            self.stats.downloads += 1
            sha = hashlib.sha256(pulled.data).hexdigest()
            root = await self._unpack(pulled.data, sha, chart, f"{ref} {pulled.version}")
        else:
            root = charts / sha
        artifact = _artifact(ref, chart, pulled.version, version.strip(), root, sha)
        self.cache.lease(root, artifact)
        return artifact

    async def _get(
        self,
        client: httpx.AsyncClient,
        url: str,
        shown: str,
        creds: RepoCredentials | None,
        *,
        send_credentials: bool,
        limit: int,
    ) -> bytes:
        auth: httpx.BasicAuth | None = None
        headers: dict[str, str] = {}
        if creds is not None and send_credentials:
            if creds.username or creds.password:
                auth = httpx.BasicAuth(creds.username, creds.password)
            if creds.bearer_token:
                headers["Authorization"] = f"Bearer {creds.bearer_token}"
        what = redact_url(url)
        try:
            async with client.stream("GET", url, auth=auth, headers=headers) as response:
                if response.status_code in (401, 403):
                    raise AuthError(
                        f"{what} answered {response.status_code}: the Helm repository {shown} "
                        "refused the credentials (or requires some); check the repository "
                        "Secret (type: helm)",
                        url=shown,
                    )
                if response.status_code >= 400:
                    raise FetchError(
                        f"GET {what} answered {response.status_code}; check the Helm "
                        f"repository URL {shown}",
                        url=shown,
                    )
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise FetchError(
                            f"{what} is larger than {limit} bytes; refusing it (an operator "
                            "can raise the limit)",
                            url=shown,
                        )
                    chunks.append(chunk)
                return b"".join(chunks)
        except (httpx.HTTPError, ssl.SSLError) as exc:
            # ssl.SSLError: a TLS 1.3 server refuses a missing client certificate after the
            # handshake, on the first read, which httpcore does not wrap.
            raise FetchError(
                f"cannot reach the Helm repository {shown} ({type(exc).__name__}: "
                f"{redact_url(str(exc))}); the next reconcile retries",
                url=shown,
            ) from None

    async def _index(
        self, client: httpx.AsyncClient, base: str, shown: str, creds: RepoCredentials | None
    ) -> HelmIndex:
        raw = await self._index_bytes(client, base, shown, creds)
        return await self.parse_index(raw, shown)

    async def _index_bytes(
        self, client: httpx.AsyncClient, base: str, shown: str, creds: RepoCredentials | None
    ) -> bytes:
        self.stats.index_fetches += 1
        return await self._get(
            client,
            base + "index.yaml",
            shown,
            creds,
            send_credentials=True,
            limit=self.policy.helm_index_bytes,
        )

    async def fetch_index(
        self,
        repo_url: str,
        creds: RepoCredentials | None = None,
        *,
        tls: TLSConfig | None = None,
    ) -> bytes:
        """The raw ``index.yaml`` of an HTTP(S) repository (at most ``helm_index_bytes``)."""
        clean, from_url = _split_credentials(repo_url)
        creds = creds if creds is not None else from_url
        async with self._client(creds, tls) as client:
            return await self._index_bytes(
                client, clean.rstrip("/") + "/", redact_url(clean), creds
            )

    async def parse_index(self, raw: bytes, shown: str) -> HelmIndex:
        """``raw`` parsed, from the cache when an index with the same digest was parsed
        before; concurrent callers with the same index share one parse."""
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        cached = self.indexes.get(digest)
        if cached is not None:
            return cached
        pending = self._parsing.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[HelmIndex] = asyncio.get_running_loop().create_future()
        self._parsing[digest] = future
        try:
            index = await asyncio.to_thread(_parse_index, raw, digest, shown, self.policy)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        else:
            self.stats.index_parses += 1
            self.indexes.put(index)
            future.set_result(index)
            return index
        finally:
            self._parsing.pop(digest, None)

    async def download_chart(
        self,
        repo_url: str,
        index: HelmIndex,
        chart: str,
        version: str,
        creds: RepoCredentials | None = None,
        *,
        tls: TLSConfig | None = None,
        pass_credentials: bool = False,
    ) -> ChartPackage:
        """The package of ``chart`` at ``version`` (exact, range, ``""``/``*``) listed in
        ``index``, its digest checked. Credentials go to the repository's origin only,
        unless ``pass_credentials`` (Flux's ``passCredentials``)."""
        clean, from_url = _split_credentials(repo_url)
        creds = creds if creds is not None else from_url
        shown = redact_url(clean)
        if not _CHART_NAME.match(chart):
            raise InvalidSource(f"chart name {chart!r} for {shown} is not a valid chart name")
        requested = version.strip()
        if requested:
            check_argument(requested, "chart version", url=shown)
        entry = pick_chart_version(index, chart, requested, shown)
        chosen = str(entry.get("version"))
        base = clean.rstrip("/") + "/"
        tgz_url = _download_url(entry, base, chart, chosen, shown)
        expected = _expected_digest(entry)
        async with self._client(creds, tls) as client:
            self.stats.downloads += 1
            data = await self._get(
                client,
                tgz_url,
                shown,
                creds,
                send_credentials=pass_credentials or _origin(tgz_url) == _origin(base),
                limit=self.policy.chart_archive_bytes,
            )
        sha = hashlib.sha256(data).hexdigest()
        if expected and sha != expected:
            raise FetchError(
                f"{shown}: chart {chart} {chosen} does not match the digest in index.yaml "
                f"(expected sha256:{expected}, got sha256:{sha}); the repository is "
                "inconsistent or the download was altered"
            )
        return ChartPackage(chart, chosen, f"sha256:{sha}", data)

    def _client(self, creds: RepoCredentials | None, tls: TLSConfig | None) -> httpx.AsyncClient:
        insecure = creds is not None and creds.insecure
        verify: ssl.SSLContext | bool = (
            tls.context(insecure=insecure) if tls is not None else not insecure
        )
        return httpx.AsyncClient(
            timeout=self.timeout,
            verify=verify,
            follow_redirects=True,
            event_hooks=http_guard(self.policy, resolve_timeout=min(self.timeout, 30.0)),
        )

    async def _download(
        self,
        client: httpx.AsyncClient,
        url: str,
        base: str,
        shown: str,
        creds: RepoCredentials | None,
    ) -> bytes:
        same_origin = _origin(url) == _origin(base)
        self.stats.downloads += 1
        return await self._get(
            client,
            url,
            shown,
            creds,
            send_credentials=same_origin,
            limit=self.policy.chart_archive_bytes,
        )

    async def _unpack(self, data: bytes, sha: str, chart: str, what: str) -> Path:
        charts = self.cache_dir / "charts"
        target = charts / sha
        lock = self._locks.setdefault(sha, asyncio.Lock())
        async with lock:
            if (target / chart).is_dir():
                self.cache.touch(target)
                return target
            charts.mkdir(parents=True, exist_ok=True, mode=0o700)
            partial = charts / f".{sha}.{uuid.uuid4().hex}.partial"
            try:
                await asyncio.to_thread(_extract, data, partial, what, self.policy)
                if not (partial / chart).is_dir():
                    raise FetchError(f"{what}: the package has no top-level directory {chart!r}")
                await asyncio.to_thread(seal_tree, partial, what)
                await asyncio.to_thread(replace_dir, partial, target)
            except BaseException:
                await asyncio.to_thread(remove_tree, partial)
                raise
            await self.cache.record(target)
            return target


def is_oci_repository(repo_url: str, creds: RepoCredentials | None) -> bool:
    """An ``oci://`` URL, or (Argo CD) a URL without a scheme whose repository Secret says
    ``enableOCI: "true"``."""
    url = repo_url.strip()
    return url.lower().startswith("oci://") or (
        creds is not None and creds.enable_oci and "://" not in url
    )


def oci_chart_ref(repo_url: str, chart: str) -> str:
    """``oci://host/path/chart`` for a chart of the OCI repository ``repo_url``. Argo CD's
    ``repoURL: host/path`` + ``chart`` appends the chart; ``repoURL: oci://host/path/chart``
    already names it (its last path segment is the chart)."""
    url = repo_url.strip().rstrip("/")
    if url.lower().startswith("oci://"):
        return url if url.rsplit("/", 1)[-1] == chart else f"{url}/{chart}"
    return f"oci://{url}/{chart}"


def _split_credentials(repo_url: str) -> tuple[str, RepoCredentials | None]:
    raw = repo_url.strip()
    if raw.lower().startswith("oci://"):
        raise InvalidSource(
            f"{redact_url(raw)} is an OCI registry; HelmRepoSource reads HTTP(S) chart "
            "repositories (index.yaml) only"
        )
    parsed = parse_repo_url(raw)
    if not parsed.is_http:
        raise InvalidSource(f"Helm repository URL {redact_url(raw)} must be http:// or https://")
    return credentials_from_url(raw)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def _parse_index(raw: bytes, digest: str, shown: str, policy: Policy) -> HelmIndex:
    try:
        doc = load_document(raw, f"{shown}/index.yaml", policy)
    except YAMLLimitError as exc:
        raise FetchError(str(exc), url=shown) from None
    except yaml.YAMLError as exc:
        raise FetchError(f"{shown}/index.yaml is not valid YAML: {exc}", url=shown) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("entries"), dict):
        raise FetchError(f"{shown}/index.yaml has no entries; is it a Helm repository?")
    entries = {
        str(name): [e for e in versions if isinstance(e, dict)]
        for name, versions in doc["entries"].items()
        if isinstance(versions, list)
    }
    return HelmIndex(digest=digest, size=len(raw), entries=entries)


def _download_url(entry: dict[str, Any], base: str, chart: str, version: str, shown: str) -> str:
    urls = entry.get("urls") or []
    if not urls or not isinstance(urls[0], str):
        raise FetchError(f"{shown}: chart {chart} {version} has no download URL in the index")
    tgz_url = urljoin(base, urls[0])
    if urlsplit(tgz_url).scheme not in ("http", "https"):
        raise InvalidSource(
            f"{shown}: chart {chart} {version} is hosted at a non-HTTP URL "
            f"{redact_url(tgz_url)}; only http(s) downloads are supported"
        )
    return tgz_url


def _expected_digest(entry: dict[str, Any]) -> str:
    expected = str(entry.get("digest") or "").lower().removeprefix("sha256:")
    return expected if _HEX64.match(expected) else ""


def pick_chart_version(index: HelmIndex, chart: str, requested: str, shown: str) -> dict[str, Any]:
    """The index entry of ``chart`` matching ``requested``: an exact version, a semver
    range (pre-releases only for a range that names one), or ``""``/``*`` for the latest
    stable release. Raises ``RevisionNotFound`` naming what is available."""
    entries: list[dict[str, Any]] = list(index.entries.get(chart) or [])
    if not entries:
        raise RevisionNotFound(
            f"chart {chart!r} is not in the Helm repository {shown}; check the chart name",
            url=shown,
        )
    by_version: dict[str, dict[str, Any]] = {
        str(e.get("version")): e for e in reversed(entries) if e.get("version")
    }
    if requested in ("", "*") or is_semver_constraint(requested):
        best = resolve_semver(requested or "*", by_version)
        if best is not None:
            return by_version[best]
    else:
        if requested in by_version:
            return by_version[requested]
        wanted = parse_version(requested)
        for text, entry in by_version.items():
            if wanted is not None and parse_version(text) == wanted:
                return entry
    floor = Version(0, 0, 0, "0")
    known = sorted(by_version, key=lambda v: parse_version(v) or floor)
    listed = ", ".join(known[-8:])
    raise RevisionNotFound(
        f"no version of chart {chart!r} in {shown} matches {requested or 'latest stable'!r} "
        f"(available: {listed}); change the requested version",
        url=shown,
    )


class _BoundedStream(io.RawIOBase):
    """A read-only stream that fails once more than ``limit`` bytes were read from it.

    Each read asks the inner stream for at most what is left (plus one byte to notice the
    overflow), so a header that declares gigabytes cannot make anyone buffer them.
    """

    def __init__(self, inner: io.BufferedIOBase, limit: int, what: str) -> None:
        super().__init__()
        self._inner = inner
        self._left = limit
        self._limit = limit
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), self._left + 1)
        chunk = self._inner.read(wanted)
        if len(chunk) > self._left:
            raise FetchError(
                f"{self._what}: the package unpacks to more than {self._limit} bytes; "
                "refusing it (an operator can raise GITSAIL_CHART_UNPACKED_BYTES)"
            )
        self._left -= len(chunk)
        view[: len(chunk)] = chunk
        return len(chunk)


def _member_path(member: tarfile.TarInfo, destination: Path, what: str) -> Path | None:
    """Where ``member`` goes under ``destination``; None for the archive root itself."""
    name = member.name.replace("\\", "/")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or ".." in parts or any("\x00" in p for p in parts):
        raise FetchError(f"{what}: the package contains the unsafe path {member.name!r}")
    return destination.joinpath(*parts) if parts else None


def _extract(data: bytes, destination: Path, what: str, policy: Policy) -> None:
    """Unpack the gzipped tar ``data`` into the new directory ``destination``, within limits."""
    destination.mkdir(mode=0o700)
    stream_limit = policy.chart_unpacked_bytes + policy.chart_entries * _TAR_OVERHEAD
    raw = gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb")
    stream = io.BufferedReader(_BoundedStream(raw, stream_limit, what))
    entries = 0
    unpacked = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                entries += 1
                if entries > policy.chart_entries:
                    raise FetchError(
                        f"{what}: the package has more than {policy.chart_entries} entries; "
                        "refusing it (an operator can raise GITSAIL_CHART_ENTRIES)"
                    )
                target = _member_path(member, destination, what)
                if member.isdir():
                    if target is not None:
                        target.mkdir(mode=0o755, parents=True, exist_ok=True)
                    continue
                if not member.isreg() or member.issparse() or target is None:
                    raise FetchError(
                        f"{what}: the package entry {member.name!r} is not a regular file or "
                        "directory (links, devices and sparse files are refused)"
                    )
                unpacked += member.size
                if unpacked > policy.chart_unpacked_bytes:
                    raise FetchError(
                        f"{what}: the package unpacks to more than "
                        f"{policy.chart_unpacked_bytes} bytes; refusing it (an operator can "
                        "raise GITSAIL_CHART_UNPACKED_BYTES)"
                    )
                _write_member(archive, member, target, what)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise FetchError(f"{what}: the chart package cannot be unpacked safely: {exc}") from None


def _write_member(
    archive: tarfile.TarFile, member: tarfile.TarInfo, target: Path, what: str
) -> None:
    source = archive.extractfile(member)
    if source is None:  # pragma: no cover - a regular member always has a file object
        raise FetchError(f"{what}: cannot read {member.name!r} from the package")
    target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    if target.is_symlink() or target.is_dir():
        raise FetchError(f"{what}: the package entry {member.name!r} is listed twice")
    written = 0
    with source, target.open("wb") as out:
        while chunk := source.read(1024 * 1024):
            written += len(chunk)
            if written > member.size:  # pragma: no cover - tarfile reads exactly .size
                raise FetchError(f"{what}: {member.name!r} is longer than its header says")
            out.write(chunk)
    mode = stat.S_IMODE(member.mode) & 0o755
    target.chmod(mode | 0o600)


def _artifact(
    shown: str, chart: str, version: str, requested: str, root: Path, sha: str
) -> Artifact:
    return Artifact(
        url=shown,
        revision=version,
        requested=requested,
        root=root,
        path=chart,
        digest=f"sha256:{sha}",
        kind="helm",
        chart=chart,
    )


def unpack_chart(
    data: bytes, destination: Path, what: str, policy: Policy = DEFAULT_POLICY
) -> None:
    """Unpack the chart package ``data`` into the new directory ``destination``, bounded as
    ``fetch_chart`` bounds it (see the module docstring). Blocking: call it in a thread."""
    _extract(data, destination, what, policy)


def pack_chart(directory: Path, name: str, *, limit: int) -> bytes:
    """A deterministic chart package of ``directory`` (files under ``<name>/``, sorted, no
    times or owners), as ``helm`` loads it. Symbolic links are refused (Helm refuses those
    leaving the chart; we refuse all, as for downloaded packages). Blocking."""
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as raw,
        tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        total = 0
        for path in sorted(directory.rglob("*")):
            rel = path.relative_to(directory).as_posix()
            if path.is_symlink():
                raise InvalidSource(f"chart {name}: {rel} is a symbolic link; refusing it")
            if not path.is_file():
                continue
            data = path.read_bytes()
            total += len(data)
            if total > limit:
                raise InvalidSource(f"chart {name} is larger than {limit} bytes; refusing it")
            info = tarfile.TarInfo(f"{name}/{rel}")
            info.size = len(data)
            info.mode = 0o755 if path.stat().st_mode & 0o100 else 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
