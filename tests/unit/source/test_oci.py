"""OCIClient against an in-memory registry speaking the distribution API (httpx transport).

The fake stores blobs and manifests by digest and tags by name, pages its tag list with
``Link`` headers, and guards its API with nothing, HTTP basic auth, or a bearer token handed
out by a token service on another host, as registries do.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from gitsail.model import Obj
from gitsail.policy import Policy
from gitsail.source.credentials import RepoCredentials
from gitsail.source.errors import AuthError, FetchError, InvalidSource, RevisionNotFound
from gitsail.source.oci import (
    HELM_CHART_LAYER,
    HELM_CONFIG,
    OCIClient,
    PulledArtifact,
    credentials_from_docker_config,
    parse_oci_reference,
)

HOST = "registry.test"
TOKEN_HOST = "auth.test"
OPEN = Policy(denied_networks=())  # no DNS in unit tests
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFESTS_LAYER = "application/vnd.cncf.flux.content.v1.tar+gzip"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tgz(files: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@dataclass
class FakeRegistry:
    auth: str = "none"  # "none" | "basic" | "bearer"
    user: tuple[str, str] = ("alice", "s3cret")
    page: int = 0  # tags per page (0: all at once)
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, bytes] = field(default_factory=dict)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)  # repo -> tag -> digest
    requests: list[httpx.Request] = field(default_factory=list)
    blob_host: str = ""  # redirect blob downloads to this host
    tamper: set[str] = field(default_factory=set)  # blob digests served altered
    token: str = "tok-123456"

    # -- content -----------------------------------------------------------------------

    def blob(self, data: bytes) -> dict[str, Any]:
        digest = sha(data)
        self.blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    def push(self, repo: str, tag: str, manifest: Obj) -> str:
        body = json.dumps(manifest).encode()
        digest = sha(body)
        self.manifests[digest] = body
        if tag:
            self.tags.setdefault(repo, {})[tag] = digest
        return digest

    def push_chart(self, repo: str, name: str, version: str, files: dict[str, str]) -> str:
        config = self.blob(json.dumps({"name": name, "version": version}).encode())
        layer = self.blob(tgz({f"{name}/{k}": v for k, v in files.items()}))
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": HELM_CONFIG, **config},
            "layers": [{"mediaType": HELM_CHART_LAYER, **layer}],
        }
        return self.push(repo, version.replace("+", "_"), manifest)

    def push_artifact(
        self, repo: str, tag: str, layers: list[tuple[str, bytes]], **annotations: str
    ) -> str:
        manifest: Obj = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.cncf.flux.config.v1+json", **self.blob(b"{}")},
            "layers": [{"mediaType": m, **self.blob(d)} for m, d in layers],
        }
        if annotations:
            manifest["annotations"] = annotations
        return self.push(repo, tag, manifest)

    # -- HTTP --------------------------------------------------------------------------

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host == TOKEN_HOST:
            return self._token(request)
        if request.url.host == self.blob_host:
            return self._send_blob(request.url.path.rsplit("/", 1)[-1])
        denied = self._denied(request)
        if denied is not None:
            return denied
        path = request.url.path
        if not path.startswith("/v2/"):
            return httpx.Response(404)
        repo, _, rest = path[len("/v2/") :].partition("/tags/list")
        if rest == "" and path.endswith("/tags/list"):
            return self._tags(request, repo)
        for kind in ("/manifests/", "/blobs/"):
            if kind in path:
                repo, _, ref = path[len("/v2/") :].partition(kind)
                if kind == "/blobs/":
                    if self.blob_host:
                        return httpx.Response(
                            307, headers={"location": f"https://{self.blob_host}/b/{ref}"}
                        )
                    return self._send_blob(ref)
                return self._manifest(repo, ref)
        return httpx.Response(404)

    def _denied(self, request: httpx.Request) -> httpx.Response | None:
        header = request.headers.get("authorization", "")
        if self.auth == "basic":
            expected = "Basic " + base64.b64encode(":".join(self.user).encode()).decode()
            if header != expected:
                return httpx.Response(401, headers={"www-authenticate": 'Basic realm="test"'})
        if self.auth == "bearer" and header != f"Bearer {self.token}":
            challenge = (
                f'Bearer realm="https://{TOKEN_HOST}/token",service="{HOST}",'
                'scope="repository:charts/redis:pull"'
            )
            return httpx.Response(
                401,
                headers={"www-authenticate": challenge},
                json={"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
            )
        return None

    def _token(self, request: httpx.Request) -> httpx.Response:
        expected = "Basic " + base64.b64encode(":".join(self.user).encode()).decode()
        if request.headers.get("authorization") != expected:
            return httpx.Response(401)
        return httpx.Response(200, json={"token": self.token, "expires_in": 300})

    def _tags(self, request: httpx.Request, repo: str) -> httpx.Response:
        if repo not in self.tags:
            return httpx.Response(404, json={"errors": [{"code": "NAME_UNKNOWN"}]})
        names = sorted(self.tags[repo])
        last = request.url.params.get("last")
        if last:
            names = [n for n in names if n > last]
        headers = {}
        if self.page and len(names) > self.page:
            names = names[: self.page]
            headers["link"] = f'</v2/{repo}/tags/list?n={self.page}&last={names[-1]}>; rel="next"'
        return httpx.Response(200, headers=headers, json={"name": repo, "tags": names})

    def _manifest(self, repo: str, ref: str) -> httpx.Response:
        digest = ref if ref.startswith("sha256:") else self.tags.get(repo, {}).get(ref, "")
        body = self.manifests.get(digest)
        if body is None:
            return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN"}]})
        media = json.loads(body).get("mediaType", OCI_MANIFEST)
        return httpx.Response(
            200,
            content=body,
            headers={"content-type": media, "docker-content-digest": digest},
        )

    def _send_blob(self, digest: str) -> httpx.Response:
        data = self.blobs.get(digest)
        if data is None:
            return httpx.Response(404)
        if digest in self.tamper:
            data = data + b"x"
        return httpx.Response(200, content=data)


def client(registry: FakeRegistry, **policy: Any) -> OCIClient:
    return OCIClient(
        policy=Policy(denied_networks=(), **policy), transport=registry.transport(), timeout=5
    )


@pytest.fixture
def reg() -> FakeRegistry:
    registry = FakeRegistry()
    for version in ("16.13.2", "17.0.0", "17.3.1", "17.4.0-rc.1", "18.0.0-beta.1", "1.0.0+build"):
        registry.push_chart("charts/redis", "redis", version, {"Chart.yaml": f"version: {version}"})
    return registry


def unpack(data: bytes) -> dict[str, str]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {
            m.name: tar.extractfile(m).read().decode()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


# -- references and credentials --------------------------------------------------------------


def test_reference_keeps_the_port_and_validates_the_repository_name() -> None:
    ref = parse_oci_reference("oci://127.0.0.1:5000/charts/redis")
    assert (ref.host, ref.repository, ref.loopback) == ("127.0.0.1:5000", "charts/redis", True)
    assert not parse_oci_reference("oci://ghcr.io/org/app").loopback


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("https://ghcr.io/org/app", "must start with oci://"),
        ("oci://ghcr.io", "names no repository"),
        ("oci://ghcr.io/Org/App", "not a valid OCI repository name"),
        ("oci://ghcr.io/org/app:1.0", "includes a tag or digest"),
        ("oci://ghcr.io/org/app@sha256:abc", "includes a tag or digest"),
        ("oci://user:pw@ghcr.io/org/app", "carries credentials"),
        ("oci://ghcr.io/org/../etc", "not a valid OCI repository name"),
        ("-oci://x/y", "starts with '-'"),
    ],
)
def test_bad_references_are_refused_naming_the_problem(ref: str, message: str) -> None:
    with pytest.raises(InvalidSource, match=message) as caught:
        parse_oci_reference(ref)
    assert "pw@" not in str(caught.value)


def docker_secret(auths: dict[str, Any]) -> Obj:
    raw = json.dumps({"auths": auths}).encode()
    return {
        "metadata": {"name": "regcred", "namespace": "ns"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(raw).decode()},
    }


def test_docker_config_secret_gives_the_entry_for_the_registry_host() -> None:
    secret = docker_secret(
        {
            "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:x").decode()},
            "127.0.0.1:5000": {"auth": base64.b64encode(b"alice:pa:ss").decode()},
            "ghcr.io": {"username": "bob", "password": "pw"},
        }
    )
    local = credentials_from_docker_config(secret, "127.0.0.1:5000")
    assert local is not None
    assert (local.username, local.password) == ("alice", "pa:ss")
    ghcr = credentials_from_docker_config(secret, "GHCR.io")
    assert ghcr is not None
    assert (ghcr.username, ghcr.password) == ("bob", "pw")
    hub = credentials_from_docker_config(secret, "index.docker.io")
    assert hub is not None
    assert hub.username == "hub"
    assert credentials_from_docker_config(secret, "quay.io") is None
    assert "pa:ss" not in repr(local)


def test_docker_config_secret_that_is_not_one_is_refused() -> None:
    with pytest.raises(InvalidSource, match=r"no \.dockerconfigjson"):
        credentials_from_docker_config({"metadata": {}, "stringData": {"x": "y"}}, HOST)
    bad = {"metadata": {}, "stringData": {".dockerconfigjson": "{not json"}}
    with pytest.raises(InvalidSource, match="not valid JSON"):
        credentials_from_docker_config(bad, HOST)


# -- charts ----------------------------------------------------------------------------------


async def test_chart_range_picks_the_highest_release_that_is_not_a_prerelease(
    reg: FakeRegistry,
) -> None:
    chart = await client(reg).pull_chart(f"oci://{HOST}/charts/redis", "17.x", None)
    assert chart.version == "17.3.1"
    assert chart.manifest_digest == reg.tags["charts/redis"]["17.3.1"]
    assert chart.digest == sha(chart.data)  # the package's digest, as for HTTP charts
    assert unpack(chart.data) == {"redis/Chart.yaml": "version: 17.3.1"}
    assert all(r.url.scheme == "https" for r in reg.requests)  # not a loopback host


async def test_chart_latest_is_the_highest_stable_version(reg: FakeRegistry) -> None:
    chart = await client(reg).pull_chart(f"oci://{HOST}/charts/redis", "", None)
    assert chart.version == "17.3.1"


async def test_chart_exact_version_with_build_metadata_is_the_underscore_tag(
    reg: FakeRegistry,
) -> None:
    chart = await client(reg).pull_chart(f"oci://{HOST}/charts/redis", "1.0.0+build", None)
    assert chart.version == "1.0.0+build"
    assert not any("tags/list" in r.url.path for r in reg.requests)  # no listing needed


async def test_chart_by_digest_reads_its_version_from_the_config(reg: FakeRegistry) -> None:
    digest = reg.tags["charts/redis"]["16.13.2"]
    chart = await client(reg).pull_chart(f"oci://{HOST}/charts/redis", digest, None)
    assert (chart.version, chart.manifest_digest) == ("16.13.2", digest)


async def test_chart_version_not_there_lists_what_is(reg: FakeRegistry) -> None:
    with pytest.raises(RevisionNotFound, match=r"'19\.x'.*17\.3\.1"):
        await client(reg).pull_chart(f"oci://{HOST}/charts/redis", "19.x", None)
    with pytest.raises(RevisionNotFound, match="not found"):
        await client(reg).pull_chart(f"oci://{HOST}/charts/redis", "9.9.9", None)


async def test_an_artifact_that_is_not_a_chart_is_refused(reg: FakeRegistry) -> None:
    reg.push_artifact("charts/redis", "20.0.0", [(MANIFESTS_LAYER, tgz({"a.yaml": "x"}))])
    with pytest.raises(InvalidSource, match="is not a Helm chart"):
        await client(reg).pull_chart(f"oci://{HOST}/charts/redis", "20.0.0", None)


async def test_chart_over_the_archive_limit_is_refused_before_download(reg: FakeRegistry) -> None:
    with pytest.raises(InvalidSource, match="over the limit"):
        await client(reg, chart_archive_bytes=10).pull_chart(
            f"oci://{HOST}/charts/redis", "17.0.0", None
        )
    assert not any("/blobs/" in r.url.path for r in reg.requests)


async def test_a_layer_larger_than_it_declares_is_cut_off_at_the_limit(reg: FakeRegistry) -> None:
    data = tgz({"big.yaml": "x" * 5000})
    layer = reg.blob(data)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.x", **reg.blob(b"{}")},
        "layers": [{"mediaType": MANIFESTS_LAYER, "digest": layer["digest"], "size": 10}],
    }
    reg.push("apps/web", "v1", manifest)
    with pytest.raises(InvalidSource, match=r"over the limit|larger than"):
        await client(reg, oci_layer_bytes=len(data) - 1).pull_artifact(
            f"oci://{HOST}/apps/web", tag="v1"
        )


async def test_a_blob_that_does_not_match_its_digest_is_refused(reg: FakeRegistry) -> None:
    manifest = json.loads(reg.manifests[reg.tags["charts/redis"]["17.0.0"]])
    reg.tamper.add(manifest["layers"][0]["digest"])
    with pytest.raises(FetchError, match="does not match its digest"):
        await client(reg).pull_chart(f"oci://{HOST}/charts/redis", "17.0.0", None)


async def test_a_manifest_that_does_not_match_the_requested_digest_is_refused(
    reg: FakeRegistry,
) -> None:
    real = reg.tags["charts/redis"]["17.0.0"]
    fake = "sha256:" + "0" * 64
    reg.manifests[fake] = reg.manifests[real]
    with pytest.raises(FetchError, match="whose digest"):
        await client(reg).pull_artifact(f"oci://{HOST}/charts/redis", digest=fake)


# -- authentication --------------------------------------------------------------------------


async def test_bearer_token_is_fetched_from_the_realm_with_the_credentials(
    reg: FakeRegistry,
) -> None:
    reg.auth = "bearer"
    creds = RepoCredentials(url=f"oci://{HOST}", username="alice", password="s3cret")
    chart = await client(reg).pull_chart(f"oci://{HOST}/charts/redis", "17.x", creds)
    assert chart.version == "17.3.1"
    token_requests = [r for r in reg.requests if r.url.host == TOKEN_HOST]
    assert len(token_requests) == 1  # one token for the whole pull
    assert token_requests[0].url.params["service"] == HOST
    assert token_requests[0].url.params["scope"] == "repository:charts/redis:pull"


async def test_refused_credentials_are_an_auth_error_without_the_secret(
    reg: FakeRegistry,
) -> None:
    reg.auth = "bearer"
    creds = RepoCredentials(url=f"oci://{HOST}", username="alice", password="wrong-password")
    with pytest.raises(AuthError, match="refused the credentials") as caught:
        await client(reg).pull_chart(f"oci://{HOST}/charts/redis", "17.0.0", creds)
    assert "wrong-password" not in str(caught.value)


async def test_basic_auth_registry_gets_the_username_and_password(reg: FakeRegistry) -> None:
    reg.auth = "basic"
    creds = RepoCredentials(url=f"oci://{HOST}", username="alice", password="s3cret")
    chart = await client(reg).pull_chart(f"oci://{HOST}/charts/redis", "17.0.0", creds)
    assert chart.version == "17.0.0"
    with pytest.raises(AuthError, match="requires credentials"):
        await client(reg).pull_chart(f"oci://{HOST}/charts/redis", "17.0.0", None)


async def test_a_blob_redirected_to_another_host_is_fetched_without_credentials(
    reg: FakeRegistry,
) -> None:
    reg.auth = "basic"
    reg.blob_host = "storage.test"
    creds = RepoCredentials(url=f"oci://{HOST}", username="alice", password="s3cret")
    chart = await client(reg).pull_chart(f"oci://{HOST}/charts/redis", "17.0.0", creds)
    assert chart.version == "17.0.0"
    elsewhere = [r for r in reg.requests if r.url.host == "storage.test"]
    assert elsewhere
    assert all("authorization" not in r.headers for r in elsewhere)


async def test_a_redirect_from_https_to_http_is_refused(reg: FakeRegistry) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": f"http://{HOST}/elsewhere"})

    oci = OCIClient(policy=OPEN, transport=httpx.MockTransport(handler))
    with pytest.raises(InvalidSource, match="redirected to a http URL"):
        await oci.pull_artifact(f"oci://{HOST}/apps/web", tag="v1")


async def test_a_denied_network_is_never_contacted() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(500)

    oci = OCIClient(transport=httpx.MockTransport(handler))  # the default deny-list
    with pytest.raises(InvalidSource, match="denied network"):
        await oci.pull_artifact("oci://169.254.169.254/latest/meta-data", tag="v1")
    assert seen == []


async def test_loopback_registries_and_plain_http_requests_speak_http(reg: FakeRegistry) -> None:
    reg.push_artifact("apps/web", "v1", [(MANIFESTS_LAYER, b"data")])

    def local(request: httpx.Request) -> httpx.Response:
        assert request.url.scheme == "http"
        return reg.handle(request)

    oci = OCIClient(policy=OPEN, transport=httpx.MockTransport(local))
    pulled = await oci.pull_artifact("oci://127.0.0.1:5000/apps/web", tag="v1")
    assert pulled.data == b"data"
    pulled = await oci.pull_artifact(f"oci://{HOST}/apps/web", tag="v1", plain_http=True)
    assert pulled.data == b"data"


def tls_refused(registry: FakeRegistry) -> httpx.MockTransport:
    """A registry that speaks plain HTTP only: an HTTPS connection fails."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "https":
            raise httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER]", request=request)
        return registry.handle(request)

    return httpx.MockTransport(handler)


async def test_an_insecure_registry_without_tls_is_spoken_to_over_plain_http(
    reg: FakeRegistry,
) -> None:
    oci = OCIClient(policy=OPEN, transport=tls_refused(reg))
    insecure = RepoCredentials(url=f"oci://{HOST}", insecure=True)
    chart = await oci.pull_chart(f"oci://{HOST}/charts/redis", "17.x", insecure)
    assert chart.version == "17.3.1"
    assert [r.url.scheme for r in reg.requests] == ["http"] * len(reg.requests)
    with pytest.raises(FetchError, match="cannot reach the OCI registry"):
        await oci.pull_chart(f"oci://{HOST}/charts/redis", "17.x", None)  # not insecure


# -- tags ------------------------------------------------------------------------------------


async def test_tags_are_read_page_by_page(reg: FakeRegistry) -> None:
    reg.page = 2
    tags = await client(reg).tags(f"oci://{HOST}/charts/redis")
    assert sorted(tags) == sorted(reg.tags["charts/redis"])
    assert sum("tags/list" in r.url.path for r in reg.requests) == 3


async def test_a_repository_with_too_many_tags_is_refused(reg: FakeRegistry) -> None:
    with pytest.raises(InvalidSource, match="more than 3 tags"):
        await client(reg, oci_tags=3).tags(f"oci://{HOST}/charts/redis")


async def test_a_tag_list_that_goes_on_page_after_page_is_cut_off(
    reg: FakeRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gitsail.source.oci._PAGES", 3)
    reg.page = 1  # one tag per page, whatever was asked
    with pytest.raises(InvalidSource, match="more than 3 pages"):
        await client(reg).tags(f"oci://{HOST}/charts/redis")


async def test_tags_of_a_missing_repository_is_not_found(reg: FakeRegistry) -> None:
    with pytest.raises(RevisionNotFound, match="NAME_UNKNOWN"):
        await client(reg).tags(f"oci://{HOST}/charts/nope")


# -- artifacts (OCIRepository) ---------------------------------------------------------------


@pytest.fixture
def apps(reg: FakeRegistry) -> FakeRegistry:
    for tag in ("v1.0.0", "v1.1.0", "v2.0.0-rc.1", "latest"):
        reg.push_artifact(
            "apps/web",
            tag,
            [("application/vnd.other", b"other"), (MANIFESTS_LAYER, tgz({"cm.yaml": tag}))],
            **{"org.opencontainers.image.revision": tag},
        )
    return reg


async def test_artifact_semver_wins_over_tag_and_the_revision_is_tag_at_digest(
    apps: FakeRegistry,
) -> None:
    pulled = await client(apps).pull_artifact(
        f"oci://{HOST}/apps/web", tag="latest", semver=">=1.0.0", media_type=MANIFESTS_LAYER
    )
    digest = apps.tags["apps/web"]["v1.1.0"]
    assert pulled.revision == f"v1.1.0@{digest}"
    assert unpack(pulled.data) == {"cm.yaml": "v1.1.0"}
    assert pulled.annotations == (("org.opencontainers.image.revision", "v1.1.0"),)


async def test_artifact_digest_wins_over_everything_and_the_revision_is_the_digest(
    apps: FakeRegistry,
) -> None:
    digest = apps.tags["apps/web"]["v1.0.0"]
    pulled = await client(apps).pull_artifact(
        f"oci://{HOST}/apps/web", tag="latest", semver="*", digest=digest
    )
    assert isinstance(pulled, PulledArtifact)
    assert pulled.revision == digest
    assert pulled.data == b"other"  # no media type: the first layer


async def test_artifact_defaults_to_the_latest_tag(apps: FakeRegistry) -> None:
    oci = client(apps)
    revision = await oci.resolve(f"oci://{HOST}/apps/web")
    assert revision == f"latest@{apps.tags['apps/web']['latest']}"
    assert not any("/blobs/" in r.url.path for r in apps.requests)  # resolve reads no blob


async def test_artifact_without_a_layer_of_the_media_type_names_those_it_has(
    apps: FakeRegistry,
) -> None:
    with pytest.raises(InvalidSource, match=r"no layer of media type x/y.*application/vnd.other"):
        await client(apps).pull_artifact(f"oci://{HOST}/apps/web", media_type="x/y")


async def test_an_index_of_one_manifest_is_followed_and_of_two_refused(
    apps: FakeRegistry,
) -> None:
    inner = apps.tags["apps/web"]["v1.0.0"]
    entry = {"mediaType": OCI_MANIFEST, "digest": inner, "size": 1}
    apps.push("apps/web", "one", {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]})
    apps.push(
        "apps/web",
        "two",
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry, entry]},
    )
    pulled = await client(apps).pull_artifact(f"oci://{HOST}/apps/web", tag="one")
    assert pulled.revision == f"one@{inner}"
    with pytest.raises(InvalidSource, match="image index of 2 manifests"):
        await client(apps).pull_artifact(f"oci://{HOST}/apps/web", tag="two")


async def test_semver_range_matching_no_tag_is_not_found(apps: FakeRegistry) -> None:
    with pytest.raises(RevisionNotFound, match=r"semver range '>=3\.0\.0'"):
        await client(apps).pull_artifact(f"oci://{HOST}/apps/web", semver=">=3.0.0")


async def test_an_unreachable_registry_is_a_fetch_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    oci = OCIClient(policy=OPEN, transport=httpx.MockTransport(handler))
    with pytest.raises(FetchError, match="cannot reach the OCI registry"):
        await oci.pull_artifact(f"oci://{HOST}/apps/web")
