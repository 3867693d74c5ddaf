"""Flux's OCIRepository through the REAL controller, against the real ``distribution``
registry: plain manifests pushed as an OCI artifact (``push_manifests``: blob uploads and a
manifest PUT, as ``flux push artifact`` does) feed a Kustomization.

Each test starts the in-process controller with the test's namespace as its only one, writes
Flux objects as a user would, and waits (polling with a deadline) for what it does.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from gitsail.dev.registry import Registry
from gitsail.kube import Kube
from gitsail.model import Obj
from tests.integration.controller.conftest import (
    RunningController,
    api,
    crds_installed,
    eventually,
    start_controller,
    stop_controller,
)
from tests.integration.helm.conftest import FLUX_CONTENT, OCI_USER, push_manifests

__all__ = ["api", "crds_installed"]  # re-exported fixtures

pytestmark = pytest.mark.integration

SOURCE = "source.toolkit.fluxcd.io/v1"
KS = "kustomize.toolkit.fluxcd.io/v1"


def configmap(name: str, **data: str) -> str:
    body = "".join(f"\n  {k}: {v!r}" for k, v in data.items())
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:{body}\n"


def condition(obj: Obj | None, kind: str = "Ready") -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return dict(c)
    return {}


class Env:
    def __init__(self, api: Kube, running: RunningController, ns: str) -> None:
        self.api = api
        self.running = running
        self.ns = ns

    async def create(self, api_version: str, kind: str, name: str, spec: Obj) -> None:
        await self.api.create(
            {
                "apiVersion": api_version,
                "kind": kind,
                "metadata": {"name": name, "namespace": self.ns},
                "spec": spec,
            }
        )

    async def get(self, api_version: str, kind: str, name: str) -> Obj | None:
        return await self.api.get(api_version, kind, name, self.ns)

    async def source_ready(self, name: str, revision: str = "") -> Obj:
        async def probe() -> Obj | None:
            obj = await self.get(SOURCE, "OCIRepository", name)
            if condition(obj).get("status") != "True":
                return None
            seen = ((obj or {}).get("status") or {}).get("artifact", {}).get("revision")
            return obj if not revision or seen == revision else None

        return await eventually(probe, timeout=60, what=f"OCIRepository {name} {revision}")

    async def applied(self, name: str, revision: str) -> Obj:
        last: list[dict[str, Any]] = [{}]

        async def probe() -> Obj | None:
            obj = await self.get(KS, "Kustomization", name)
            status = (obj or {}).get("status") or {}
            last[0] = condition(obj)
            ok = last[0].get("status") == "True"
            return obj if ok and status.get("lastAppliedRevision") == revision else None

        try:
            return await eventually(probe, timeout=60, what=f"Kustomization {name} at {revision}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; its Ready condition: {last[0]}") from None

    async def request_reconcile(self, name: str) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        await self.api.merge_patch(
            SOURCE,
            "OCIRepository",
            name,
            {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": now}}},
            self.ns,
        )


@pytest.fixture
async def env(
    api: Kube, namespace: str, tmp_path: Path, crds_installed: None
) -> AsyncIterator[Env]:
    running = await start_controller(api, namespace, tmp_path)
    yield Env(api, running, namespace)
    await stop_controller(running)


async def test_oci_manifests_feed_a_kustomization_and_a_new_version_is_applied(
    env: Env, oci_registry: Registry
) -> None:
    repo = f"{env.ns}/manifests"
    v1 = push_manifests(
        oci_registry,
        repo,
        "v1.0.0",
        {"deploy/settings.yaml": configmap("settings", color="blue")},
        annotations={"org.opencontainers.image.revision": "main@sha1:abc"},
    )
    push_manifests(oci_registry, repo, "v2.0.0-rc.1", {"deploy/x.yaml": configmap("rc")})
    await env.create(
        SOURCE,
        "OCIRepository",
        "app",
        {"interval": "10m", "url": f"{oci_registry.url}/{repo}", "ref": {"semver": ">=1.0.0"}},
    )
    await env.create(
        KS,
        "Kustomization",
        "app",
        {
            "interval": "10m",
            "prune": True,
            "path": "./deploy",
            "sourceRef": {"kind": "OCIRepository", "name": "app"},
            "targetNamespace": env.ns,
        },
    )
    source = await env.source_ready("app", f"v1.0.0@{v1}")
    artifact = source["status"]["artifact"]
    assert artifact["path"].startswith(f"ocirepository/{env.ns}/app/")
    assert artifact["metadata"] == {"org.opencontainers.image.revision": "main@sha1:abc"}
    assert source["status"]["observedGeneration"] == 1
    assert {c["type"] for c in source["status"]["conditions"]} >= {"Ready", "ArtifactInStorage"}
    # The controller serves the artifact it advertises.
    async with httpx.AsyncClient() as client:
        got = await client.get(f"{env.running.url}/{artifact['path']}")
    assert got.status_code == 200
    assert "sha256:" + hashlib.sha256(got.content).hexdigest() == artifact["digest"]

    await env.applied("app", f"v1.0.0@{v1}")
    settings = await env.get("v1", "ConfigMap", "settings")
    assert settings is not None
    assert settings["data"] == {"color": "blue"}

    # A new release: the source picks it on request, the Kustomization follows and prunes.
    v11 = push_manifests(
        oci_registry, repo, "v1.1.0", {"deploy/other.yaml": configmap("other", color="red")}
    )
    await env.request_reconcile("app")
    await env.source_ready("app", f"v1.1.0@{v11}")
    await env.applied("app", f"v1.1.0@{v11}")
    other = await env.get("v1", "ConfigMap", "other")
    assert other is not None
    assert other["data"] == {"color": "red"}

    async def pruned() -> bool:
        return await env.get("v1", "ConfigMap", "settings") is None

    await eventually(pruned, timeout=30, what="settings pruned")


async def test_copy_layer_is_stored_as_pushed_and_still_feeds_a_kustomization(
    env: Env, oci_registry_auth: Registry
) -> None:
    repo = f"{env.ns}/bundle"
    files = {"settings.yaml": configmap("copied", mode="copy")}
    digest = push_manifests(oci_registry_auth, repo, "latest", files)
    user, password = OCI_USER
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    config = {"auths": {oci_registry_auth.host: {"auth": auth}}}
    await env.api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": "regcred", "namespace": env.ns},
            "stringData": {".dockerconfigjson": json.dumps(config)},
        }
    )
    await env.create(
        SOURCE,
        "OCIRepository",
        "bundle",
        {
            "interval": "10m",
            "url": f"{oci_registry_auth.url}/{repo}",
            "secretRef": {"name": "regcred"},
            "layerSelector": {"mediaType": FLUX_CONTENT, "operation": "copy"},
        },
    )
    await env.create(
        KS,
        "Kustomization",
        "bundle",
        {
            "interval": "10m",
            "prune": True,
            "sourceRef": {"kind": "OCIRepository", "name": "bundle"},
            "targetNamespace": env.ns,
        },
    )
    source = await env.source_ready("bundle", f"latest@{digest}")
    assert source["status"]["observedLayerSelector"] == {
        "mediaType": FLUX_CONTENT,
        "operation": "copy",
    }
    async with httpx.AsyncClient(auth=OCI_USER) as client:
        response = await client.get(
            f"http://{oci_registry_auth.host}/v2/{repo}/manifests/latest",
            headers={"accept": "application/vnd.oci.image.manifest.v1+json"},
        )
    manifest = response.json()
    # Stored as pushed: the artifact is the layer blob itself.
    assert source["status"]["artifact"]["digest"] == manifest["layers"][0]["digest"]
    await env.applied("bundle", f"latest@{digest}")
    copied = await env.get("v1", "ConfigMap", "copied")
    assert copied is not None
    assert copied["data"] == {"mode": "copy"}


async def test_a_missing_tag_is_a_pull_failure_and_a_spec_flux_cannot_do_is_refused(
    env: Env, oci_registry: Registry
) -> None:
    await env.create(
        SOURCE,
        "OCIRepository",
        "missing",
        {"interval": "10m", "url": f"{oci_registry.url}/{env.ns}/nothing", "ref": {"tag": "v9"}},
    )
    await env.create(
        SOURCE,
        "OCIRepository",
        "signed",
        {
            "interval": "10m",
            "url": f"{oci_registry.url}/{env.ns}/nothing",
            "verify": {"provider": "cosign"},
        },
    )

    async def failed(name: str, reason: str) -> Obj | None:
        obj = await env.get(SOURCE, "OCIRepository", name)
        ready = condition(obj)
        return obj if (ready.get("status"), ready.get("reason")) == ("False", reason) else None

    missing = await eventually(
        lambda: failed("missing", "OCIArtifactPullFailed"), timeout=60, what="pull failure"
    )
    fetch = condition(missing, "FetchFailed")
    assert fetch["status"] == "True"
    assert "not found" in fetch["message"]
    assert "artifact" not in missing["status"]
    signed = await eventually(
        lambda: failed("signed", "UnsupportedField"), timeout=60, what="verify refused"
    )
    assert "spec.verify" in condition(signed)["message"]
    assert condition(signed, "Stalled")["status"] == "True"


async def test_a_v1beta2_object_with_every_honoured_field_is_stored_and_parsed(
    api: Kube, namespace: str, crds_installed: None
) -> None:
    from gitsail.kinds.flux_ocirepository import LayerSelector, OCIRef, parse_oci_repository

    created = await api.create(
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1beta2",
            "kind": "OCIRepository",
            "metadata": {"name": "podinfo", "namespace": namespace},
            "spec": {
                "interval": "5m0s",
                "timeout": "30s",
                "url": "oci://ghcr.io/stefanprodan/manifests/podinfo",
                "ref": {"tag": "latest", "semver": "6.x"},
                "layerSelector": {"mediaType": FLUX_CONTENT, "operation": "copy"},
                "secretRef": {"name": "regcred"},
                "insecure": False,
                "ignore": "*.md\n",
                "suspend": True,
            },
        }
    )
    repo = parse_oci_repository(created)
    assert repo.ref == OCIRef(semver="6.x")
    assert repo.layer_selector == LayerSelector(FLUX_CONTENT, "copy")
    assert (repo.interval, repo.timeout, repo.secret_ref) == (300.0, 30.0, "regcred")
    assert created["spec"]["provider"] == "generic"  # the CRD's default, which gitsail accepts
