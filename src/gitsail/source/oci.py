"""OCI registries (the distribution API): Helm charts and Flux artifacts, pulled over HTTP.

A reference is ``oci://host[:port]/repository`` (a repository name as the distribution
spec defines it: lower-case components separated by ``/``). What is read, in order:

1. **Tags** (only for a version range or "latest"): ``GET /v2/<name>/tags/list?n=..``,
   following ``Link: <..>; rel="next"`` on the same host, at most ``Policy.oci_tags`` tags.
2. **The manifest**: ``GET /v2/<name>/manifests/<tag or digest>`` accepting the OCI image
   manifest and index and Docker's v2 manifest and list. Its digest is the sha256 of the
   bytes received (checked against a requested digest and the ``Docker-Content-Digest``
   header); an index with exactly one manifest is followed, a larger one is refused (these
   are artifacts, not multi-platform images).
3. **One blob** (a layer, or a chart's config): ``GET /v2/<name>/blobs/<digest>``, its
   declared size checked before and its bytes counted while streaming, its sha256 checked
   after. A registry may redirect a blob to another host (object storage): the redirect is
   followed without credentials, at most a few hops, never from HTTPS to HTTP.

Authentication follows the registry's ``WWW-Authenticate`` answer to an anonymous
request: ``Basic`` sends the username/password, ``Bearer realm=..,service=..,scope=..``
asks the realm for a token (with the username/password when there are some) and sends it.
Tokens live for one pull. Credentials come from a username/password (Argo CD repository
Secrets) or a ``kubernetes.io/dockerconfigjson`` Secret (``credentials_from_docker_config``).

Transport: HTTPS, except for loopback hosts and when the caller asks for plain HTTP
(Flux's ``spec.insecure``). ``RepoCredentials.insecure`` makes an "insecure registry" as
Docker has them: HTTPS without verification, and plain HTTP when the registry does not
speak TLS at all (the connection fails). Every
request (redirects and token realms included) is checked against the operator's denied
networks (``_urls.http_guard``), and a response body is never read past its bound:
manifests and tag pages by ``oci_manifest_bytes``, chart layers by ``chart_archive_bytes``,
other layers by ``oci_layer_bytes``.

Helm's conventions for charts (``pull_chart``): the config blob has media type
``application/vnd.cncf.helm.config.v1+json``, the chart is the layer
``application/vnd.cncf.helm.chart.content.v1.tar+gzip``, and a ``+`` in a version is ``_``
in its tag.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import io
import ipaddress
import json
import re
import tarfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from gitsail.model import Obj
from gitsail.policy import DEFAULT_POLICY, Policy
from gitsail.source._urls import check_argument, http_guard
from gitsail.source.credentials import RepoCredentials, secret_values
from gitsail.source.errors import AuthError, FetchError, InvalidSource, RevisionNotFound
from gitsail.source.semver import is_semver_constraint, parse_version, resolve_semver

__all__ = [
    "HELM_CHART_LAYER",
    "HELM_CONFIG",
    "OCIClient",
    "OCIReference",
    "PulledArtifact",
    "PulledChart",
    "credentials_from_docker_config",
    "extract_layer",
    "parse_oci_reference",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
_ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))
_INDEXES = (OCI_INDEX, DOCKER_LIST)
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
_HELM_LEGACY_LAYER = "application/tar+gzip"  # charts pushed by Helm before 3.7

# The distribution spec's grammar for repository names, and for tags.
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_PAGE = 1000  # tags asked per page
_PAGES = 200  # pages of tags read at most (a registry may answer fewer per page than asked)
_REDIRECTS = 5
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
_AUTH_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


@dataclass(frozen=True)
class OCIReference:
    """``oci://host[:port]/repository``, parsed and validated."""

    host: str  # "registry.example.com" or "127.0.0.1:5000" (port kept)
    repository: str  # "charts/redis"

    @property
    def url(self) -> str:
        return f"oci://{self.host}/{self.repository}"

    @property
    def hostname(self) -> str:
        return urlsplit(f"//{self.host}").hostname or self.host

    @property
    def loopback(self) -> bool:
        name = self.hostname
        if name == "localhost":
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False


@dataclass(frozen=True)
class PulledChart:
    """A Helm chart from a registry: its version and ``.tgz`` bytes.

    ``digest`` is the chart layer's, i.e. ``sha256:`` of ``data`` (checked), as a chart's
    digest is everywhere else; ``manifest_digest`` is the OCI manifest's. ``data`` is empty
    only when the caller's ``skip_blob`` said it has that layer already."""

    version: str
    digest: str
    data: bytes = field(repr=False)
    manifest_digest: str = ""


@dataclass(frozen=True)
class PulledArtifact:
    """One layer of an OCI artifact, and where it came from.

    ``revision`` is what Flux writes in ``status.artifact.revision``: ``<tag>@sha256:<hex>``
    (the manifest digest), or ``sha256:<hex>`` for an artifact pulled by digest.
    ``annotations`` are the manifest's (Flux's ``status.artifact.metadata``).
    """

    url: str
    tag: str
    digest: str
    media_type: str
    layer_digest: str
    data: bytes = field(repr=False)
    annotations: tuple[tuple[str, str], ...] = ()

    @property
    def revision(self) -> str:
        return f"{self.tag}@{self.digest}" if self.tag else self.digest


def parse_oci_reference(ref: str) -> OCIReference:
    """Parse ``oci://host[:port]/repository``; InvalidSource naming what is wrong."""
    raw = ref.strip()
    check_argument(raw, "OCI reference")
    if not raw.lower().startswith("oci://"):
        raise InvalidSource(f"{raw!r} is not an OCI reference; it must start with oci://")
    rest = raw[len("oci://") :]
    host, _, repository = rest.partition("/")
    repository = repository.strip("/")
    if "@" in host:
        raise InvalidSource(
            f"OCI reference oci://{host.rsplit('@', 1)[-1]}/{repository} carries credentials "
            "in the URL; put them in a Secret"
        )
    try:
        parts = urlsplit(f"//{host}")
        port = parts.port
    except ValueError:
        raise InvalidSource(f"OCI reference {raw!r} has an invalid host or port") from None
    if not parts.hostname or (port is not None and not 0 < port < 65536):
        raise InvalidSource(f"OCI reference {raw!r} has no host")
    if not repository:
        raise InvalidSource(f"OCI reference {raw!r} names no repository (oci://host/name)")
    if ":" in repository.rsplit("/", 1)[-1] or "@" in repository:
        raise InvalidSource(
            f"OCI reference {raw!r} includes a tag or digest; give the version separately"
        )
    if len(repository) > 255 or not _REPOSITORY.match(repository):
        raise InvalidSource(
            f"{repository!r} in {raw!r} is not a valid OCI repository name (lower-case "
            "letters, digits and separators . _ -, components joined by /)"
        )
    return OCIReference(host=host.lower(), repository=repository)


def credentials_from_docker_config(secret: Obj, host: str) -> RepoCredentials | None:
    """The credentials for registry ``host`` in a ``kubernetes.io/dockerconfigjson`` (or
    legacy ``.dockercfg``) Secret, or None when it has none for that host.

    Keys may be ``host``, ``host:port``, or a URL (``https://host/v1/``); ``auth`` is
    base64 ``user:password`` and wins over ``username``/``password``."""
    values = secret_values(secret)
    meta = secret.get("metadata") or {}
    shown = f"Secret {meta.get('namespace', '')}/{meta.get('name', '')}"
    raw = values.get(".dockerconfigjson") or values.get(".dockercfg")
    if raw is None:
        raise InvalidSource(f"{shown} has no .dockerconfigjson key (type dockerconfigjson)")
    try:
        doc = json.loads(raw)
    except ValueError:
        raise InvalidSource(f"{shown}: .dockerconfigjson is not valid JSON") from None
    auths = doc.get("auths", doc) if isinstance(doc, dict) else None
    if not isinstance(auths, dict):
        raise InvalidSource(f"{shown}: .dockerconfigjson has no auths")
    wanted = host.lower()
    for key, entry in auths.items():
        if not isinstance(entry, dict) or _registry_key(str(key)) != wanted:
            continue
        username = str(entry.get("username") or "")
        password = str(entry.get("password") or "")
        encoded = entry.get("auth")
        if encoded:
            try:
                username, _, password = base64.b64decode(str(encoded)).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise InvalidSource(
                    f"{shown}: auths.{key}.auth is not base64 user:password"
                ) from None
        token = str(entry.get("registrytoken") or entry.get("identitytoken") or "")
        return RepoCredentials(
            url=f"oci://{wanted}", username=username, password=password, bearer_token=token
        )
    return None


def _registry_key(key: str) -> str:
    text = key.strip().lower()
    if "://" in text:
        text = text.split("://", 1)[1]
    return text.split("/", 1)[0]


# -- the client --------------------------------------------------------------------------


class OCIClient:
    """Pulls charts and artifacts from OCI registries (see the module docstring)."""

    def __init__(
        self,
        *,
        policy: Policy = DEFAULT_POLICY,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.policy = policy
        self.timeout = timeout
        self.transport = transport  # a seam for tests; None: the network

    async def pull_chart(
        self,
        ref: str,
        version: str,
        creds: RepoCredentials | None,
        *,
        plain_http: bool = False,
        skip_blob: Callable[[str], bool] | None = None,
    ) -> PulledChart:
        """The chart at ``ref`` (``oci://host/path/chart``): ``version`` exact, a semver
        range (``17.x``), a digest (``sha256:..``) or ``""`` for the latest stable one.

        ``skip_blob(hex)`` is asked with the chart layer's sha256 before the download; when
        it answers True the layer is not downloaded and ``data`` is empty."""
        target = parse_oci_reference(ref)
        requested = version.strip()
        if requested:
            check_argument(requested, "chart version", url=target.url)
        async with _Session(self, target, creds, plain_http=plain_http) as session:
            if _DIGEST.match(requested):
                reference, chosen = requested, ""
            elif requested in ("", "*") or is_semver_constraint(requested):
                chosen = _pick_chart_version(await session.tags(), requested, target)
                reference = chosen.replace("+", "_")
            else:
                chosen = requested
                reference = requested.replace("+", "_")
                _check_tag(reference, target)
            digest, manifest = await session.manifest(reference)
            config = manifest.get("config") or {}
            if config.get("mediaType") != HELM_CONFIG:
                raise InvalidSource(
                    f"{target.url}:{reference} is not a Helm chart (its config media type is "
                    f"{config.get('mediaType')!r}, not {HELM_CONFIG})"
                )
            layer = _layer(manifest, (HELM_CHART_LAYER, _HELM_LEGACY_LAYER), target, reference)
            if not chosen:
                meta = await session.blob_json(config)
                chosen = str(meta.get("version") or "")
            layer_digest = _hex_digest(layer, target)
            if skip_blob is not None and skip_blob(layer_digest.removeprefix("sha256:")):
                data = b""
            else:
                data = await session.blob(layer, self.policy.chart_archive_bytes)
        return PulledChart(
            version=chosen or reference, digest=layer_digest, data=data, manifest_digest=digest
        )

    async def pull_artifact(
        self,
        ref: str,
        *,
        tag: str = "",
        semver: str = "",
        digest: str = "",
        media_type: str = "",
        creds: RepoCredentials | None = None,
        plain_http: bool = False,
    ) -> PulledArtifact:
        """One layer of the artifact at ``ref``, chosen as Flux's OCIRepository chooses:
        ``digest`` over ``semver`` over ``tag`` (default ``latest``); the first layer of
        ``media_type``, or the first layer."""
        target = parse_oci_reference(ref)
        async with _Session(self, target, creds, plain_http=plain_http) as session:
            chosen, reference = await session.choose(tag=tag, semver=semver, digest=digest)
            manifest_digest, manifest = await session.manifest(reference)
            wanted = (media_type,) if media_type else ()
            layer = _layer(manifest, wanted, target, reference)
            data = await session.blob(layer, self.policy.oci_layer_bytes)
        annotations = manifest.get("annotations") or {}
        return PulledArtifact(
            url=target.url,
            tag=chosen,
            digest=manifest_digest,
            media_type=str(layer.get("mediaType") or ""),
            layer_digest=str(layer.get("digest")),
            data=data,
            annotations=tuple(
                sorted(
                    (str(k), str(v))
                    for k, v in (annotations.items() if isinstance(annotations, dict) else ())
                )
            ),
        )

    async def resolve(
        self,
        ref: str,
        *,
        tag: str = "",
        semver: str = "",
        digest: str = "",
        creds: RepoCredentials | None = None,
        plain_http: bool = False,
    ) -> str:
        """The revision ``pull_artifact`` would produce now (``<tag>@sha256:..``), reading
        the tags and the manifest only: a cheap check that nothing changed upstream."""
        target = parse_oci_reference(ref)
        async with _Session(self, target, creds, plain_http=plain_http) as session:
            chosen, reference = await session.choose(tag=tag, semver=semver, digest=digest)
            manifest_digest, _ = await session.manifest(reference)
        return f"{chosen}@{manifest_digest}" if chosen else manifest_digest

    async def manifest_digest(
        self,
        ref: str,
        reference: str,
        creds: RepoCredentials | None = None,
        *,
        plain_http: bool = False,
    ) -> str:
        """The digest of the manifest (or image index, not followed) that ``reference`` (a
        tag or ``sha256:`` digest) names in ``ref``; RevisionNotFound when there is none."""
        target = parse_oci_reference(ref)
        if not _DIGEST.match(reference):
            _check_tag(reference, target)
        async with _Session(self, target, creds, plain_http=plain_http) as session:
            digest, _ = await session._manifest(reference)
        return digest

    async def tags(
        self, ref: str, creds: RepoCredentials | None = None, *, plain_http: bool = False
    ) -> list[str]:
        """Every tag of the repository at ``ref`` (at most ``Policy.oci_tags``)."""
        target = parse_oci_reference(ref)
        async with _Session(self, target, creds, plain_http=plain_http) as session:
            return await session.tags()


# -- unpacking a layer ----------------------------------------------------------------------

_TAR_OVERHEAD = 4096  # per member: header, extended headers and padding


class _CountingReader(io.RawIOBase):
    """A read-only stream that fails once more than ``limit`` bytes were read from it, so
    a small layer that decompresses to gigabytes is stopped at the limit."""

    def __init__(self, inner: Any, limit: int, what: str) -> None:
        super().__init__()
        self._inner = inner
        self._left = limit
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        chunk = self._inner.read(min(len(view), self._left + 1))
        if len(chunk) > self._left:
            raise InvalidSource(f"{self._what} decompresses past the artifact limits")
        self._left -= len(chunk)
        view[: len(chunk)] = chunk
        return len(chunk)


def extract_layer(data: bytes, target: Path, *, what: str, policy: Policy = DEFAULT_POLICY) -> None:
    """Unpack the ``tar+gzip`` layer ``data`` into the new directory ``target``. Blocking.

    Bounded like an artifact: ``artifact_bytes`` of file content, ``artifact_files``
    entries; tarfile's "data" filter refuses absolute paths, ``..``, links that leave
    ``target``, devices. InvalidSource names the layer (``what``) and the problem."""
    stream_limit = policy.artifact_bytes + policy.artifact_files * _TAR_OVERHEAD
    target.mkdir(parents=True)
    entries = size = 0
    try:
        raw = gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb")
        stream = io.BufferedReader(_CountingReader(raw, stream_limit, what))
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                entries += 1
                size += max(member.size, 0)
                if entries > policy.artifact_files or size > policy.artifact_bytes:
                    raise InvalidSource(
                        f"{what} unpacks to more than {policy.artifact_files} entries or "
                        f"{policy.artifact_bytes} bytes (GITSAIL_ARTIFACT_FILES / "
                        "GITSAIL_ARTIFACT_BYTES)"
                    )
                archive.extract(member, target, filter="data")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise InvalidSource(f"{what} is not a tar+gzip layer that unpacks safely: {exc}") from None


def _check_tag(tag: str, target: OCIReference) -> None:
    if not _TAG.match(tag):
        raise InvalidSource(f"{tag!r} is not a valid OCI tag for {target.url}")


def _pick_chart_version(tags: list[str], requested: str, target: OCIReference) -> str:
    versions = [t.replace("_", "+") for t in tags]
    best = resolve_semver(requested or "*", versions)
    if best is None:
        parsed = sorted((v, t) for t in versions if (v := parse_version(t)) is not None)
        listed = ", ".join(t for _, t in parsed[-8:]) or "none"
        raise RevisionNotFound(
            f"no version of the chart {target.url} matches {requested or 'latest stable'!r} "
            f"(tags that are versions: {listed})",
            url=target.url,
        )
    return best


def _layer(
    manifest: Mapping[str, Any], media_types: tuple[str, ...], target: OCIReference, ref: str
) -> Mapping[str, Any]:
    layers = manifest.get("layers")
    if not isinstance(layers, list) or not layers:
        raise InvalidSource(f"{target.url}:{ref} has no layers")
    for layer in layers:
        if not isinstance(layer, Mapping):
            continue
        if not media_types or layer.get("mediaType") in media_types:
            return layer
    types = ", ".join(sorted({str(x.get("mediaType")) for x in layers if isinstance(x, Mapping)}))
    raise InvalidSource(
        f"{target.url}:{ref} has no layer of media type {' or '.join(media_types)} "
        f"(it has: {types})"
    )


def _hex_digest(descriptor: Mapping[str, Any], target: OCIReference) -> str:
    digest = str(descriptor.get("digest") or "")
    if not _DIGEST.match(digest):
        raise InvalidSource(
            f"{target.url}: the descriptor digest {digest[:80]!r} is not sha256:<64 hex>; "
            "gitsail verifies sha256 digests only"
        )
    return digest


def _auth_params(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = {
        m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
        for m in _AUTH_PARAM.finditer(rest)
    }
    return scheme.lower(), params


class _NoTLS(Exception):
    """An insecure registry refused the TLS handshake: speak plain HTTP to it instead."""


class _Session:
    """One pull: one HTTP client, the authorization it earned, the limits of the client."""

    def __init__(
        self,
        client: OCIClient,
        target: OCIReference,
        creds: RepoCredentials | None,
        *,
        plain_http: bool,
    ) -> None:
        self.policy = client.policy
        self.target = target
        self.creds = creds
        self.scheme = "http" if plain_http or target.loopback else "https"
        self.base = f"{self.scheme}://{target.host}/v2/{target.repository}"
        # An "insecure" registry, as Docker treats one: HTTPS without verification, then
        # plain HTTP when it does not speak TLS at all.
        self.may_downgrade = self.scheme == "https" and creds is not None and creds.insecure
        guard = http_guard(self.policy, resolve_timeout=min(client.timeout, 30.0))
        self.http = httpx.AsyncClient(
            timeout=client.timeout,
            verify=not (creds is not None and creds.insecure),
            follow_redirects=False,  # redirects are followed below, by hand
            transport=client.transport,
            event_hooks={"request": guard["request"]},
        )
        self.authorization = ""

    async def __aenter__(self) -> _Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    # -- what a pull reads -----------------------------------------------------------------

    async def choose(self, *, tag: str, semver: str, digest: str) -> tuple[str, str]:
        """(the tag for the revision, the manifest reference): digest > semver > tag."""
        if digest:
            if not _DIGEST.match(digest):
                raise InvalidSource(f"{digest!r} is not a sha256:<64 hex> digest")
            return "", digest
        if semver:
            tags = await self.tags()
            best = resolve_semver(semver, tags)
            if best is None:
                raise RevisionNotFound(
                    f"no tag of {self.target.url} matches the semver range {semver!r}",
                    url=self.target.url,
                )
            return best, best
        chosen = tag or "latest"
        _check_tag(chosen, self.target)
        return chosen, chosen

    async def tags(self) -> list[str]:
        found: list[str] = []
        url: str | None = f"{self.base}/tags/list?{urlencode({'n': _PAGE})}"
        pages = 0
        while url is not None:
            pages += 1
            if pages > _PAGES:
                raise InvalidSource(
                    f"{self.target.url}: the tag list goes on for more than {_PAGES} pages; "
                    "refusing to read further",
                    url=self.target.url,
                )
            response, body = await self._get(url, self.policy.oci_manifest_bytes, "tags")
            try:
                page = json.loads(body)
            except ValueError:
                raise FetchError(f"{self.target.url}: the tag list is not JSON") from None
            tags = page.get("tags") if isinstance(page, dict) else None
            for item in tags or []:
                if isinstance(item, str) and _TAG.match(item):
                    found.append(item)
            if len(found) > self.policy.oci_tags:
                raise InvalidSource(
                    f"{self.target.url} has more than {self.policy.oci_tags} tags; refusing "
                    "to list them (an operator can raise GITSAIL_OCI_TAGS)",
                    url=self.target.url,
                )
            url = self._next_page(response, url, bool(tags))
        return found

    def _next_page(self, response: httpx.Response, current: str, progressed: bool) -> str | None:
        match = _LINK_NEXT.search(response.headers.get("link", ""))
        if match is None or not progressed:
            return None
        following = httpx.URL(current).join(match.group(1))
        if following.host != httpx.URL(current).host or str(following) == current:
            return None  # another host, or a loop: stop listing
        return str(following)

    async def manifest(self, reference: str) -> tuple[str, dict[str, Any]]:
        """(sha256 digest, the manifest); an index of one manifest is followed."""
        digest, manifest = await self._manifest(reference)
        media = manifest.get("mediaType")
        if media in _INDEXES or (media is None and "manifests" in manifest):
            entries = [m for m in manifest.get("manifests") or [] if isinstance(m, Mapping)]
            if len(entries) != 1:
                raise InvalidSource(
                    f"{self.target.url}:{reference} is an image index of {len(entries)} "
                    "manifests; point at one of them by digest",
                    url=self.target.url,
                )
            digest, manifest = await self._manifest(_hex_digest(entries[0], self.target))
        return digest, manifest

    async def _manifest(self, reference: str) -> tuple[str, dict[str, Any]]:
        url = f"{self.base}/manifests/{reference}"
        response, body = await self._get(
            url, self.policy.oci_manifest_bytes, f"manifest {reference}", accept=_ACCEPT
        )
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        announced = response.headers.get("docker-content-digest", "")
        if _DIGEST.match(reference) and digest != reference:
            raise FetchError(
                f"{self.target.url}@{reference}: the registry sent a manifest whose digest "
                f"is {digest}; refusing it",
                url=self.target.url,
            )
        if announced.startswith("sha256:") and announced != digest:
            raise FetchError(
                f"{self.target.url}:{reference}: the manifest's digest {digest} is not the "
                f"one the registry announced ({announced}); refusing it",
                url=self.target.url,
            )
        try:
            manifest = json.loads(body)
        except ValueError:
            raise FetchError(f"{self.target.url}:{reference}: the manifest is not JSON") from None
        if not isinstance(manifest, dict):
            raise FetchError(f"{self.target.url}:{reference}: the manifest is not an object")
        return digest, manifest

    async def blob(self, descriptor: Mapping[str, Any], limit: int) -> bytes:
        digest = _hex_digest(descriptor, self.target)
        declared = descriptor.get("size")
        if isinstance(declared, int) and declared > limit:
            raise InvalidSource(
                f"{self.target.url}: the layer {digest} is {declared} bytes, over the limit "
                f"of {limit}; refusing it (an operator can raise the limit)",
                url=self.target.url,
            )
        _, body = await self._get(f"{self.base}/blobs/{digest}", limit, f"blob {digest}")
        actual = "sha256:" + hashlib.sha256(body).hexdigest()
        if actual != digest:
            raise FetchError(
                f"{self.target.url}: the blob {digest} does not match its digest (got "
                f"{actual}); the registry is inconsistent or the download was altered",
                url=self.target.url,
            )
        return body

    async def blob_json(self, descriptor: Mapping[str, Any]) -> dict[str, Any]:
        body = await self.blob(descriptor, self.policy.oci_manifest_bytes)
        try:
            doc = json.loads(body)
        except ValueError:
            raise FetchError(f"{self.target.url}: the config blob is not JSON") from None
        return doc if isinstance(doc, dict) else {}

    # -- HTTP ------------------------------------------------------------------------------

    async def _get(
        self, url: str, limit: int, what: str, *, accept: str = ""
    ) -> tuple[httpx.Response, bytes]:
        """GET ``url`` with this session's authorization, authenticating on a 401 once and
        following redirects by hand (credentials only to the registry's own host)."""
        authenticated = False
        hops = 0
        current = url
        while True:
            own_host = httpx.URL(current).host == httpx.URL(self.base).host
            headers = {"Accept": accept} if accept else {}
            if own_host and self.authorization:
                headers["Authorization"] = self.authorization
            try:
                response, body = await self._fetch(current, headers, limit, what)
            except _NoTLS:
                self.may_downgrade = False
                self.scheme = "http"
                self.base = f"http://{self.target.host}/v2/{self.target.repository}"
                current = str(httpx.URL(current).copy_with(scheme="http"))
                continue
            if response.status_code == 401 and own_host and not authenticated:
                authenticated = True
                await self._authenticate(response.headers.get("www-authenticate", ""))
                continue
            if response.is_redirect:
                hops += 1
                current = self._redirect(response, current, hops)
                continue
            self._raise_for_status(response, what, body)
            return response, body

    def _redirect(self, response: httpx.Response, current: str, hops: int) -> str:
        location = response.headers.get("location", "")
        try:
            target = httpx.URL(current).join(location)
        except httpx.InvalidURL:
            raise FetchError(f"{self.target.url}: an invalid redirect {location[:200]!r}") from None
        if hops > _REDIRECTS:
            raise FetchError(f"{self.target.url}: more than {_REDIRECTS} redirects")
        if target.scheme not in ("http", "https") or (
            httpx.URL(current).scheme == "https" and target.scheme == "http"
        ):
            raise InvalidSource(
                f"{self.target.url} redirected to a {target.scheme} URL; refusing it",
                url=self.target.url,
            )
        return str(target)

    async def _fetch(
        self, url: str, headers: dict[str, str], limit: int, what: str
    ) -> tuple[httpx.Response, bytes]:
        try:
            async with self.http.stream("GET", url, headers=headers) as response:
                if response.status_code >= 300:
                    # error and redirect bodies: a little, for the message
                    body = await _read_bounded(response, 4096, truncate=True)
                    return response, body or b""
                length = response.headers.get("content-length", "")
                if length.isdigit() and int(length) > limit:
                    raise InvalidSource(
                        f"{self.target.url}: the {what} is {length} bytes, over the limit of "
                        f"{limit}; refusing it (an operator can raise the limit)",
                        url=self.target.url,
                    )
                body = await _read_bounded(response, limit)
                if body is None:
                    raise InvalidSource(
                        f"{self.target.url}: the {what} is larger than {limit} bytes; "
                        "refusing it (an operator can raise the limit)",
                        url=self.target.url,
                    )
                return response, body
        except httpx.ConnectError as exc:
            if self.may_downgrade and httpx.URL(url).host == httpx.URL(self.base).host:
                raise _NoTLS from None
            raise self._unreachable(exc) from None
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: httpx.HTTPError) -> FetchError:
        return FetchError(
            f"cannot reach the OCI registry {self.target.host} for {self.target.url} "
            f"({type(exc).__name__}: {exc}); the next reconcile retries",
            url=self.target.url,
        )

    def _raise_for_status(self, response: httpx.Response, what: str, body: bytes | None) -> None:
        code = response.status_code
        if code < 300:
            return
        detail = _registry_error(body)
        if code in (401, 403):
            raise AuthError(
                f"the OCI registry {self.target.host} refused access to {self.target.url} "
                f"({code}{detail}); check the credentials (repository Secret, secretRef)",
                url=self.target.url,
            )
        if code == 404:
            raise RevisionNotFound(
                f"{what} of {self.target.url} not found ({code}{detail})", url=self.target.url
            )
        raise FetchError(
            f"the OCI registry {self.target.host} answered {code} for the {what} of "
            f"{self.target.url}{detail}; the next reconcile retries",
            url=self.target.url,
        )

    async def _authenticate(self, challenge: str) -> None:
        scheme, params = _auth_params(challenge)
        username = self.creds.username if self.creds else ""
        password = self.creds.password if self.creds else ""
        if scheme == "basic":
            if not (username or password):
                raise AuthError(
                    f"the OCI registry {self.target.host} requires credentials for "
                    f"{self.target.url}; none were given",
                    url=self.target.url,
                )
            pair = f"{username}:{password}".encode()
            self.authorization = "Basic " + base64.b64encode(pair).decode()
            return
        if scheme != "bearer" or not params.get("realm"):
            raise AuthError(
                f"the OCI registry {self.target.host} asks for an authentication gitsail "
                f"does not speak ({challenge[:80]!r})",
                url=self.target.url,
            )
        if self.creds is not None and self.creds.bearer_token and not (username or password):
            self.authorization = f"Bearer {self.creds.bearer_token}"
            return
        self.authorization = "Bearer " + await self._token(params, username, password)

    async def _token(self, params: dict[str, str], username: str, password: str) -> str:
        realm = httpx.URL(params["realm"])
        if realm.scheme not in ("http", "https") or (
            realm.scheme == "http" and self.scheme == "https"
        ):
            raise AuthError(
                f"the OCI registry {self.target.host} names the token service "
                f"{realm.scheme}://{realm.host}, which is not HTTPS; refusing it",
                url=self.target.url,
            )
        query = {"scope": params.get("scope") or f"repository:{self.target.repository}:pull"}
        if params.get("service"):
            query["service"] = params["service"]
        auth = httpx.BasicAuth(username, password) if (username or password) else None
        url = realm.copy_merge_params(query)
        try:
            async with self.http.stream("GET", url, auth=auth) as response:
                body = await _read_bounded(response, 1024 * 1024)
        except httpx.HTTPError as exc:
            raise FetchError(
                f"cannot reach the token service of the OCI registry {self.target.host} "
                f"({type(exc).__name__}); the next reconcile retries",
                url=self.target.url,
            ) from None
        if response.status_code in (401, 403):
            raise AuthError(
                f"the token service of the OCI registry {self.target.host} refused the "
                f"credentials for {self.target.url} ({response.status_code})",
                url=self.target.url,
            )
        try:
            doc = json.loads(body or b"")
            token = str(doc.get("token") or doc.get("access_token") or "")
        except (ValueError, AttributeError):
            token = ""
        if response.status_code >= 300 or not token:
            raise AuthError(
                f"the token service of the OCI registry {self.target.host} gave no token "
                f"for {self.target.url} ({response.status_code})",
                url=self.target.url,
            )
        return token


async def _read_bounded(
    response: httpx.Response, limit: int, *, truncate: bool = False
) -> bytes | None:
    """The body, or None once it passes ``limit`` (the first ``limit`` bytes if
    ``truncate``)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            if truncate:
                chunks.append(chunk[: max(0, limit - (size - len(chunk)))])
                return b"".join(chunks)
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _registry_error(body: bytes | None) -> str:
    """The first error of a distribution error body (``{"errors": [{code, message}]}``)."""
    try:
        doc = json.loads(body or b"")
        first = doc["errors"][0]
        text = f"{first.get('code', '')}: {first.get('message', '')}"
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return ""
    return ", " + re.sub(r"[\x00-\x1f\x7f]", " ", text)[:200]
