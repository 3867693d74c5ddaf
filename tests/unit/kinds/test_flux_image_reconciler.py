"""ImageRepository and ImagePolicy reconcilers against in-memory fakes (the registry and
the control plane); the automation's git push runs in the integration test."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gitsail.kinds.flux_image_reconciler import (
    ImagePolicyReconciler,
    ImageRepositoryReconciler,
    ImageUpdateAutomationReconciler,
    TagStore,
    canonical_image,
)
from gitsail.model import Obj
from gitsail.source.credentials import RepoCredentials
from gitsail.source.errors import AuthError, InvalidSource
from gitsail.source.git import GitSource

API = "image.toolkit.fluxcd.io/v1"
NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)


class FakePlane:
    def __init__(self, *objs: Obj) -> None:
        self.objs = {
            (o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objs
        }
        self.patches: list[dict[str, Any]] = []

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None:
        return self.objs.get((kind, namespace or "", name))

    async def list(self, api_version: str, kind: str, namespace: str | None = None,
                   label_selector: str | None = None,
                   field_selector: str | None = None) -> list[Obj]:  # fmt: skip
        return [o for (k, ns, _), o in self.objs.items() if k == kind and ns == namespace]

    async def merge_patch(self, api_version: str, kind: str, name: str, patch: dict[str, Any],
                          namespace: str | None = None, subresource: str | None = None,
                          field_manager: str = "gitsail") -> Obj:  # fmt: skip
        self.patches.append(patch)
        obj = self.objs[(kind, namespace or "", name)]
        status = dict(obj.get("status") or {})
        for key, value in patch["status"].items():
            if value is None:
                status.pop(key, None)
            else:
                status[key] = value
        obj["status"] = status
        return obj


class FakeRegistry:
    def __init__(self, tags: list[str] | Exception) -> None:
        self.answer = tags
        self.asked: list[tuple[str, RepoCredentials | None, bool]] = []

    async def tags(
        self, ref: str, creds: RepoCredentials | None = None, *, plain_http: bool = False
    ) -> list[str]:
        self.asked.append((ref, creds, plain_http))
        if isinstance(self.answer, Exception):
            raise self.answer
        return list(self.answer)


def _obj(kind: str, spec: dict[str, Any], name: str = "app") -> Obj:
    return {
        "apiVersion": API,
        "kind": kind,
        "metadata": {"name": name, "namespace": "flux-system", "generation": 2},
        "spec": spec,
    }


def _ready(obj: Obj) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")


def test_canonical_names() -> None:
    assert canonical_image("nginx") == "docker.io/library/nginx"
    assert canonical_image("org/app") == "docker.io/org/app"
    assert canonical_image("ghcr.io/org/app") == "ghcr.io/org/app"
    assert canonical_image("127.0.0.1:5000/app") == "127.0.0.1:5000/app"


async def test_scan_keeps_what_the_exclusion_list_lets_through() -> None:
    repo = _obj("ImageRepository", {"image": "ghcr.io/org/app", "interval": "5m",
                                    "exclusionList": ["^.*\\.sig$", "^dev-"]})  # fmt: skip
    plane, store = FakePlane(repo), TagStore()
    registry = FakeRegistry(["1.0.0", "1.2.0", "sha256-ab.sig", "dev-1", "latest"])
    reconciler = ImageRepositoryReconciler(plane, registry, store, clock=lambda: NOW)
    assert await reconciler.reconcile(repo) == 300.0
    assert registry.asked == [("oci://ghcr.io/org/app", None, False)]
    status = repo["status"]
    assert status["canonicalImageName"] == "ghcr.io/org/app"
    assert status["lastScanResult"]["tagCount"] == 3
    assert status["lastScanResult"]["latestTags"] == ["latest", "1.2.0", "1.0.0"]
    assert status["lastScanResult"]["scanTime"] == "2026-12-02T12:00:00Z"
    assert status["observedGeneration"] == 2
    assert _ready(repo)["message"] == "successful scan: found 3 tags"
    revision, tags = store.get(("flux-system", "app")) or ("", ())
    assert tags == ("1.0.0", "1.2.0", "latest")
    assert status["lastScanResult"]["revision"] == revision
    # The same tags again: no status write at all.
    writes = len(plane.patches)
    await reconciler.reconcile(repo)
    assert len(plane.patches) == writes


async def test_docker_config_secret_and_insecure_reach_the_registry() -> None:
    auth = base64.b64encode(b"robot:t0ken").decode()
    config = {"auths": {"registry.example:5000": {"auth": auth}}}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "pull", "namespace": "flux-system"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
    }
    repo = _obj("ImageRepository", {"image": "registry.example:5000/team/app", "interval": "1m",
                                    "secretRef": {"name": "pull"}, "insecure": True})  # fmt: skip
    registry = FakeRegistry(["1.0.0"])
    reconciler = ImageRepositoryReconciler(FakePlane(repo, secret), registry, TagStore())
    await reconciler.reconcile(repo)
    ((ref, creds, plain_http),) = registry.asked
    assert ref == "oci://registry.example:5000/team/app"
    assert creds is not None
    assert (creds.username, creds.password, creds.insecure, plain_http) == (
        "robot", "t0ken", True, True
    )  # fmt: skip
    assert "t0ken" not in json.dumps(repo["status"])


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (AuthError("refused"), "AuthenticationFailed"),
        (InvalidSource("more than 10000 tags"), "ReadOperationFailed"),
    ],
)
async def test_a_failed_scan_keeps_the_last_result(error: Exception, reason: str) -> None:
    repo = _obj("ImageRepository", {"image": "ghcr.io/org/app", "interval": "1m"})
    repo["status"] = {"lastScanResult": {"tagCount": 4}}
    reconciler = ImageRepositoryReconciler(FakePlane(repo), FakeRegistry(error), TagStore())
    delay = await reconciler.reconcile(repo)
    assert delay == 1.0  # a backoff, then doubling
    assert _ready(repo)["status"] == "False"
    assert _ready(repo)["reason"] == reason
    assert repo["status"]["lastScanResult"] == {"tagCount": 4}


async def test_a_missing_secret_is_retried_not_fatal() -> None:
    repo = _obj("ImageRepository", {"image": "ghcr.io/org/app", "interval": "1m",
                                    "secretRef": {"name": "gone"}})  # fmt: skip
    reconciler = ImageRepositoryReconciler(FakePlane(repo), FakeRegistry([]), TagStore())
    await reconciler.reconcile(repo)
    assert _ready(repo)["reason"] == "AuthenticationFailed"
    assert "does not exist" in _ready(repo)["message"]


async def test_policy_waits_for_a_scan_then_chooses_and_remembers_the_previous() -> None:
    repo = _obj("ImageRepository", {"image": "ghcr.io/org/app", "interval": "1m"})
    policy = _obj("ImagePolicy", {"imageRepositoryRef": {"name": "app"},
                                  "policy": {"semver": {"range": ">=1.0.0 <2.0.0"}}})  # fmt: skip
    plane, store = FakePlane(repo, policy), TagStore()
    policies = ImagePolicyReconciler(plane, store, clock=lambda: NOW)
    assert await policies.reconcile(policy) == 5.0
    assert _ready(policy)["reason"] == "DependencyNotReady"

    scans = ImageRepositoryReconciler(plane, FakeRegistry(["1.2.0", "2.0.0"]), store)
    await scans.reconcile(repo)
    assert await policies.reconcile(policy) is None  # a new scan wakes it
    assert policy["status"]["latestRef"] == {"name": "ghcr.io/org/app", "tag": "1.2.0"}
    assert policy["status"]["latestImage"] == "ghcr.io/org/app:1.2.0"
    assert _ready(policy)["message"] == "Latest image tag for 'ghcr.io/org/app' resolved to 1.2.0"

    scans.registry = FakeRegistry(["1.2.0", "2.0.0", "1.3.0"])
    await scans.reconcile(repo)
    await policies.reconcile(policy)
    assert policy["status"]["latestRef"]["tag"] == "1.3.0"
    assert policy["status"]["observedPreviousRef"] == {"name": "ghcr.io/org/app", "tag": "1.2.0"}


async def test_policy_without_a_matching_tag_is_not_ready() -> None:
    repo = _obj("ImageRepository", {"image": "ghcr.io/org/app", "interval": "1m"})
    policy = _obj("ImagePolicy", {"imageRepositoryRef": {"name": "app"},
                                  "policy": {"semver": {"range": ">=3.0.0"}}})  # fmt: skip
    plane, store = FakePlane(repo, policy), TagStore()
    await ImageRepositoryReconciler(plane, FakeRegistry(["1.0.0"]), store).reconcile(repo)
    assert await ImagePolicyReconciler(plane, store).reconcile(policy) is None
    assert _ready(policy)["status"] == "False"
    assert "cannot determine latest tag" in _ready(policy)["message"]
    assert "latestRef" not in policy["status"]


async def test_a_bad_spec_is_stalled_without_a_scan() -> None:
    repo = _obj("ImageRepository", {"image": "https://user:pw@host/app", "interval": "1m"})
    registry = FakeRegistry(["1.0.0"])
    assert await ImageRepositoryReconciler(FakePlane(repo), registry, TagStore()).reconcile(
        repo
    ) is None  # fmt: skip
    assert registry.asked == []
    stalled = next(c for c in repo["status"]["conditions"] if c["type"] == "Stalled")
    assert "pw" not in stalled["message"]


@pytest.mark.parametrize(
    ("access", "allowed"),
    [
        (None, False),
        ({"namespaceSelectors": [{"matchLabels": {"team": "b"}}]}, False),
        ({"namespaceSelectors": [{"matchLabels": {"team": "a"}}]}, True),
        ({"namespaceSelectors": [{"matchLabels": {}}]}, True),
    ],
)
async def test_a_policy_in_another_namespace_needs_access_from(
    access: dict[str, Any] | None, allowed: bool
) -> None:
    repo = _obj("ImageRepository", {"image": "ghcr.io/org/app", "interval": "1m"})
    if access is not None:
        repo["spec"]["accessFrom"] = access
    policy = _obj("ImagePolicy", {"imageRepositoryRef": {"name": "app", "namespace": "flux-system"},
                                  "policy": {"alphabetical": {}}})  # fmt: skip
    policy["metadata"]["namespace"] = "tenant-a"
    labels = {"team": "a"}
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "tenant-a", "namespace": "", "labels": labels},
    }
    plane, store = FakePlane(repo, policy, namespace), TagStore()
    await ImageRepositoryReconciler(plane, FakeRegistry(["1.0.0"]), store).reconcile(repo)
    await ImagePolicyReconciler(plane, store).reconcile(policy)
    if allowed:
        assert policy["status"]["latestRef"]["tag"] == "1.0.0"
    else:
        assert _ready(policy)["reason"] == "AccessDenied"
        assert "latestRef" not in policy["status"]


async def test_an_automation_never_pushes_through_another_namespace_s_repository() -> None:
    auto = _obj(
        "ImageUpdateAutomation",
        {
            "interval": "1m",
            "sourceRef": {"kind": "GitRepository", "name": "repo", "namespace": "other"},
            "git": {"commit": {"author": {"name": "bot", "email": "bot@example.invalid"}}},
        },
    )
    git = GitSource(Path("/nonexistent-never-used"))
    assert await ImageUpdateAutomationReconciler(FakePlane(auto), git).reconcile(auto) == 60.0
    assert _ready(auto)["reason"] == "AccessDenied"
    assert "lastPushCommit" not in auto["status"]
