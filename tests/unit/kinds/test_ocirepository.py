"""OCIRepository: the spec parser, and the reconciler against in-memory fakes of its seams
(cluster, registry) and a fake clock: status as Flux writes it, nothing pulled or written
when nothing changed, errors that say retry or stall, the artifact kept on failure."""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from gitsail.kinds.errors import SpecError, UnsupportedField
from gitsail.kinds.flux_gitrepository_reconciler import FINALIZER
from gitsail.kinds.flux_ocirepository import LayerSelector, OCIRef, parse_oci_repository
from gitsail.kinds.flux_ocirepository_reconciler import OCIRepositoryReconciler
from gitsail.model import Obj
from gitsail.source.artifacts import ArtifactStore
from gitsail.source.credentials import RepoCredentials
from gitsail.source.errors import AuthError, RevisionNotFound, SourceError
from gitsail.source.oci import PulledArtifact
from tests.unit.kinds.test_gitrepository_reconciler import FakeClock, FakeControlPlane

BASE = "http://gitsail-controller.gitsail.svc.cluster.local."
URL = "oci://registry.example.com/manifests/podinfo"
DIGEST1 = "sha256:" + "1" * 64
DIGEST2 = "sha256:" + "2" * 64
LAYER = "application/vnd.cncf.flux.content.v1.tar+gzip"


def tgz(files: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def oci_repository(name: str = "podinfo", generation: int = 1, **spec: Any) -> Obj:
    base: dict[str, Any] = {"interval": "5m", "url": URL}
    base.update(spec)
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "OCIRepository",
        "metadata": {
            "name": name,
            "namespace": "flux-system",
            "generation": generation,
            "resourceVersion": "1",
        },
        "spec": {k: v for k, v in base.items() if v is not None},
    }


# -- the spec ------------------------------------------------------------------------------


def test_defaults_are_the_latest_tag_a_minute_timeout_and_the_first_layer() -> None:
    repo = parse_oci_repository(oci_repository())
    assert repo.ref == OCIRef(tag="latest")
    assert (repo.timeout, repo.interval, repo.layer_selector) == (60.0, 300.0, None)
    assert (repo.insecure, repo.suspend, repo.secret_ref) == (False, False, None)


def test_digest_wins_over_semver_which_wins_over_tag() -> None:
    ref = {"tag": "v1", "semver": ">=1.0.0", "digest": DIGEST1}
    assert parse_oci_repository(oci_repository(ref=ref)).ref == OCIRef(digest=DIGEST1)
    ref.pop("digest")
    assert parse_oci_repository(oci_repository(ref=ref)).ref == OCIRef(semver=">=1.0.0")


def test_layer_selector_and_v1beta2_objects_are_read() -> None:
    obj = oci_repository(layerSelector={"mediaType": LAYER, "operation": "copy"}, insecure=True)
    obj["apiVersion"] = "source.toolkit.fluxcd.io/v1beta2"
    repo = parse_oci_repository(obj)
    assert repo.layer_selector == LayerSelector(LAYER, "copy")
    assert repo.layer_selector.to_status() == {"mediaType": LAYER, "operation": "copy"}
    assert repo.insecure


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"url": "oci://ghcr.io/org/app:v1"}, "spec.url"),
        ({"url": "https://ghcr.io/org/app"}, "spec.url"),
        ({"ref": {"digest": "sha256:short"}}, "spec.ref.digest"),
        ({"ref": {"tag": "-bad"}}, "spec.ref.tag"),
        ({"layerSelector": {"operation": "merge"}}, "spec.layerSelector.operation"),
        ({"interval": None}, "spec.interval"),
        ({"unknown": 1}, "spec.unknown"),
    ],
)
def test_invalid_specs_name_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_oci_repository(oci_repository(**spec))
    assert err.value.field == field
    assert "OCIRepository flux-system/podinfo" in str(err.value)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"verify": {"provider": "cosign"}}, "spec.verify"),
        ({"certSecretRef": {"name": "tls"}}, "spec.certSecretRef"),
        ({"provider": "aws"}, "spec.provider"),
        ({"serviceAccountName": "sa"}, "spec.serviceAccountName"),
        ({"ref": {"semver": "*", "semverFilter": ".*-rc"}}, "spec.ref.semverFilter"),
    ],
)
def test_fields_gitsail_does_not_implement_are_refused(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(UnsupportedField) as err:
        parse_oci_repository(oci_repository(**spec))
    assert err.value.field == field


# -- the reconciler ------------------------------------------------------------------------


class FakeRegistry:
    """Tags to (manifest digest, layers); records what was asked."""

    def __init__(self) -> None:
        self.tags: dict[str, tuple[str, list[tuple[str, bytes]]]] = {}
        self.error: SourceError | None = None
        self.hang = False
        self.resolves: list[tuple[str, str, str, RepoCredentials | None, bool]] = []
        self.pulls = 0

    def push(self, tag: str, digest: str, files: dict[str, str], **extra: bytes) -> None:
        layers = [(m, d) for m, d in extra.items()] + [(LAYER, tgz(files))]
        self.tags[tag] = (digest, layers)

    def _pick(self, tag: str, semver: str, digest: str) -> tuple[str, str]:
        if self.error is not None:
            raise self.error
        if digest:
            return "", digest
        chosen = max(self.tags) if semver else tag
        if chosen not in self.tags:
            raise RevisionNotFound(f"manifest {chosen} of {URL} not found (404)")
        return chosen, self.tags[chosen][0]

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
        self.resolves.append((tag, semver, digest, creds, plain_http))
        if self.hang:
            await asyncio.Event().wait()
        chosen, manifest = self._pick(tag, semver, digest)
        return f"{chosen}@{manifest}" if chosen else manifest

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
        self.pulls += 1
        chosen, manifest = self._pick(tag, semver, digest)
        layers = next(v[1] for v in self.tags.values() if v[0] == manifest)
        media, data = next((m, d) for m, d in layers if not media_type or m == media_type)
        return PulledArtifact(
            url=ref,
            tag=chosen,
            digest=manifest,
            media_type=media,
            layer_digest="sha256:" + hashlib.sha256(data).hexdigest(),
            data=data,
            annotations=(("org.opencontainers.image.source", "https://git.example.com/app"),),
        )


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.cluster = FakeControlPlane()
        self.registry = FakeRegistry()
        self.store = ArtifactStore(tmp_path / "store", base_url=BASE)
        self.clock = FakeClock()
        self.reconciler = OCIRepositoryReconciler(
            self.cluster, self.registry, self.store, work_dir=tmp_path, clock=self.clock
        )
        self.registry.push("latest", DIGEST1, {"deploy/app.yaml": "kind: ConfigMap\n"})

    def add(self, obj: Obj) -> Obj:
        self.cluster.add(obj)
        return obj

    async def reconcile(self, name: str = "podinfo") -> float | None:
        obj = self.cluster.objects[("OCIRepository", "flux-system", name)]
        return await self.reconciler.reconcile(copy.deepcopy(obj), frozenset({"test"}))

    def status(self, name: str = "podinfo") -> dict[str, Any]:
        obj = self.cluster.objects[("OCIRepository", "flux-system", name)]
        return dict(obj.get("status") or {})

    def condition(self, ctype: str) -> dict[str, Any] | None:
        for cond in self.status().get("conditions", []):
            if cond["type"] == ctype:
                return dict(cond)
        return None

    def archive(self) -> dict[str, str]:
        path = self.store.local_path(self.status()["artifact"]["path"])
        assert path is not None
        with tarfile.open(path, "r:gz") as tar:
            return {
                m.name: tar.extractfile(m).read().decode()  # type: ignore[union-attr]
                for m in tar.getmembers()
                if m.isfile()
            }


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


async def test_a_new_repository_gets_an_artifact_and_is_ready_as_flux_reports_it(
    world: World,
) -> None:
    world.add(oci_repository())
    assert await world.reconcile() == 300.0
    status = world.status()
    artifact = status["artifact"]
    assert artifact["revision"] == f"latest@{DIGEST1}"
    assert artifact["path"].startswith("ocirepository/flux-system/podinfo/")
    assert artifact["url"] == f"{BASE}/{artifact['path']}"
    assert artifact["metadata"] == {
        "org.opencontainers.image.source": "https://git.example.com/app"
    }
    assert artifact["lastUpdateTime"] == "2026-01-01T00:00:00Z"
    assert world.archive() == {"deploy/app.yaml": "kind: ConfigMap\n"}
    ready = world.condition("Ready")
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("True", "Succeeded")
    assert ready["message"] == f"stored artifact for revision 'latest@{DIGEST1}'"
    assert world.condition("ArtifactInStorage") is not None
    assert status["observedGeneration"] == 1
    assert "observedLayerSelector" not in status
    meta = world.cluster.objects[("OCIRepository", "flux-system", "podinfo")]["metadata"]
    assert FINALIZER in meta["finalizers"]


async def test_an_unchanged_revision_is_neither_pulled_nor_written_again(world: World) -> None:
    world.add(oci_repository())
    await world.reconcile()
    patches = len(world.cluster.status_patches())
    world.clock.advance(600)
    assert await world.reconcile() == 300.0
    assert world.registry.pulls == 1  # resolved, not pulled
    assert len(world.cluster.status_patches()) == patches


async def test_a_new_digest_is_pulled_and_stored_as_a_new_artifact(world: World) -> None:
    world.add(oci_repository())
    await world.reconcile()
    first = world.status()["artifact"]
    world.registry.push("latest", DIGEST2, {"deploy/app.yaml": "kind: Secret\n"})
    world.clock.advance(300)
    await world.reconcile()
    second = world.status()["artifact"]
    assert second["revision"] == f"latest@{DIGEST2}"
    assert second["path"] != first["path"]
    assert second["lastUpdateTime"] == "2026-01-01T00:05:00Z"
    assert world.archive() == {"deploy/app.yaml": "kind: Secret\n"}


async def test_copy_stores_the_selected_layer_as_it_is(world: World) -> None:
    world.registry.push("v1", DIGEST2, {"a.yaml": "x"}, **{"application/vnd.other": b"raw"})
    world.add(
        oci_repository(ref={"tag": "v1"}, layerSelector={"mediaType": LAYER, "operation": "copy"})
    )
    await world.reconcile()
    status = world.status()
    layer = world.registry.tags["v1"][1][1][1]
    assert status["artifact"]["digest"] == "sha256:" + hashlib.sha256(layer).hexdigest()
    assert status["artifact"]["path"].endswith(".tar.gz")
    assert status["observedLayerSelector"] == {"mediaType": LAYER, "operation": "copy"}


async def test_ignore_rules_leave_files_out_of_the_extracted_artifact(world: World) -> None:
    world.registry.push(
        "latest",
        DIGEST2,
        {"deploy/app.yaml": "a", "deploy/notes.md": "b", "deploy/.sourceignore": "*.txt\n"},
    )
    world.add(oci_repository(ignore="*.md\n"))
    await world.reconcile()
    assert set(world.archive()) == {"deploy/app.yaml", "deploy/.sourceignore"}
    assert world.status()["observedIgnore"] == "*.md\n"


async def test_a_missing_tag_is_transient_with_backoff_and_keeps_the_last_artifact(
    world: World,
) -> None:
    world.add(oci_repository())
    await world.reconcile()
    kept = world.status()["artifact"]
    world.registry.error = RevisionNotFound("manifest latest of oci://… not found (404)")
    assert await world.reconcile() == 1.0
    assert await world.reconcile() == 2.0
    status = world.status()
    assert status["artifact"] == kept
    ready = world.condition("Ready")
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", "OCIArtifactPullFailed")
    assert ready["message"].startswith(f"failed to pull artifact from '{URL}'")
    fetch = world.condition("FetchFailed")
    assert fetch is not None
    assert fetch["status"] == "True"
    world.registry.error = None
    assert await world.reconcile() == 300.0
    assert world.condition("FetchFailed") is None


async def test_refused_credentials_are_authentication_failed(world: World) -> None:
    world.add(oci_repository())
    world.registry.error = AuthError("the OCI registry refused access (401)")
    await world.reconcile()
    ready = world.condition("Ready")
    assert ready is not None
    assert ready["reason"] == "AuthenticationFailed"


async def test_an_unsafe_layer_stalls_until_the_next_interval(world: World) -> None:
    world.registry.push("latest", DIGEST2, {"../escape.yaml": "x"})
    world.add(oci_repository())
    assert await world.reconcile() == 300.0
    ready = world.condition("Ready")
    stalled = world.condition("Stalled")
    assert ready is not None
    assert stalled is not None
    assert ready["reason"] == "OCIArtifactLayerOperationFailed"
    assert stalled["status"] == "True"
    assert "artifact" not in world.status()


async def test_a_docker_config_secret_gives_the_credentials_of_the_registry_host(
    world: World,
) -> None:
    auth = base64.b64encode(b"bot:token-123").decode()
    config = {"auths": {"registry.example.com": {"auth": auth}}}
    world.cluster.add(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": "regcred", "namespace": "flux-system"},
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
        }
    )
    world.add(oci_repository(secretRef={"name": "regcred"}, insecure=True))
    await world.reconcile()
    (_, _, _, creds, plain_http) = world.registry.resolves[-1]
    assert creds is not None
    assert (creds.username, creds.password, plain_http) == ("bot", "token-123", True)


async def test_a_missing_secret_is_authentication_failed_and_nothing_is_pulled(
    world: World,
) -> None:
    world.add(oci_repository(secretRef={"name": "nope"}))
    await world.reconcile()
    ready = world.condition("Ready")
    assert ready is not None
    assert ready["reason"] == "AuthenticationFailed"
    assert "does not exist" in ready["message"]
    assert world.registry.resolves == []


async def test_a_registry_that_hangs_is_cut_at_the_spec_timeout(world: World) -> None:
    world.registry.hang = True
    world.add(oci_repository(timeout="50ms"))
    assert await world.reconcile() == 1.0
    ready = world.condition("Ready")
    assert ready is not None
    assert "timed out after 0.05s" in ready["message"]


async def test_an_unsupported_spec_stalls_without_contacting_the_registry(world: World) -> None:
    world.add(oci_repository(verify={"provider": "cosign"}))
    assert await world.reconcile() is None
    ready = world.condition("Ready")
    assert ready is not None
    assert ready["reason"] == "UnsupportedField"
    assert world.registry.resolves == []


async def test_a_suspended_repository_is_left_alone(world: World) -> None:
    world.add(oci_repository(suspend=True))
    assert await world.reconcile() is None
    assert world.cluster.patches == []


async def test_deletion_removes_the_artifacts_then_the_finalizer(world: World) -> None:
    world.add(oci_repository())
    await world.reconcile()
    directory = world.store.object_dir("ocirepository", "flux-system", "podinfo")
    assert any(directory.iterdir())
    obj = world.cluster.objects[("OCIRepository", "flux-system", "podinfo")]
    obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:10:00Z"
    assert await world.reconcile() is None
    assert not directory.exists()
    assert FINALIZER not in (obj["metadata"].get("finalizers") or [])
