"""The Kustomization reconciler with an in-memory control plane and a fake clock: what it
writes (one status patch, none when nothing changed), when it runs again, dependencies,
health waits and deletion policy. The cluster tests cover fetch, build and apply."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from gitsail.kinds import parse_kustomization
from gitsail.kinds.flux_kustomization_reconciler import (
    FINALIZER,
    KustomizationReconciler,
    _deletes,
    _Target,
)
from gitsail.kinds.status import Transient
from gitsail.kube import NotFoundKind
from gitsail.model import Obj, ResourceKey
from gitsail.render import Renderer
from gitsail.source import GitSource

KS = "kustomize.toolkit.fluxcd.io/v1"
SHA = "c" * 40


class FakeKube:
    """Objects by (kind, namespace, name); merge patches applied and recorded."""

    def __init__(self, *objects: Obj) -> None:
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self.patches: list[tuple[str, str, dict[str, Any], str | None]] = []
        for obj in objects:
            self.put(obj)

    def put(self, obj: Obj) -> None:
        meta = obj["metadata"]
        self.objects[(obj["kind"], meta.get("namespace", ""), meta["name"])] = obj

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None:
        if kind == "Application":
            raise NotFoundKind(api_version, kind)
        found = self.objects.get((kind, namespace or "", name))
        return copy.deepcopy(found) if found is not None else None

    async def merge_patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: dict[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
        field_manager: str = "",
    ) -> Obj:
        self.patches.append((kind, name, patch, subresource))
        obj = self.objects[(kind, namespace or "", name)]
        for part, values in patch.items():
            target = obj.setdefault(part, {})
            for key, value in values.items():
                if value is None:
                    target.pop(key, None)
                elif key != "resourceVersion":
                    target[key] = value
        return copy.deepcopy(obj)


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds


def kustomization(name: str = "apps", *, status: Obj | None = None, **spec: Any) -> Obj:
    obj: Obj = {
        "apiVersion": KS,
        "kind": "Kustomization",
        "metadata": {
            "name": name,
            "namespace": "flux",
            "generation": 2,
            "finalizers": [FINALIZER],
        },
        "spec": {
            "interval": "5m",
            "retryInterval": "20s",
            "prune": True,
            "sourceRef": {"kind": "GitRepository", "name": "repo"},
            **spec,
        },
    }
    if status is not None:
        obj["status"] = status
    return obj


def git_repository(revision: str | None = f"main@sha1:{SHA}") -> Obj:
    obj: Obj = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": "repo", "namespace": "flux", "generation": 1},
        "spec": {"interval": "1m", "url": "https://git.example/repo.git"},
    }
    if revision:
        obj["status"] = {"artifact": {"revision": revision}}
    return obj


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def reconciler(kube: FakeKube, clock: FakeClock, tmp_path: Path) -> KustomizationReconciler:
    return KustomizationReconciler(
        kube,  # type: ignore[arg-type]
        git=GitSource(tmp_path / "cache"),
        renderer=Renderer(work_dir=tmp_path / "render"),
        now=lambda: "2026-01-01T00:00:00Z",
        monotonic=clock.monotonic,
        sleep=clock.sleep,
        poll_interval=1.0,
    )


def ready(obj: Obj) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")


async def test_a_suspended_kustomization_is_left_alone(tmp_path: Path, clock: FakeClock) -> None:
    kube = FakeKube(kustomization(suspend=True), git_repository())
    after = await reconciler(kube, clock, tmp_path).reconcile(
        await kube.get(KS, "Kustomization", "apps", "flux")
    )  # type: ignore[arg-type]
    assert after is None
    assert kube.patches == []


async def test_the_finalizer_is_added_before_anything_else(
    tmp_path: Path, clock: FakeClock
) -> None:
    obj = kustomization(suspend=True)
    obj["metadata"]["finalizers"] = []
    kube = FakeKube(obj)
    await reconciler(kube, clock, tmp_path).reconcile(copy.deepcopy(obj))
    assert kube.patches[0][2]["metadata"]["finalizers"] == [FINALIZER]


async def test_an_unsupported_spec_is_stalled_with_one_status_patch(
    tmp_path: Path, clock: FakeClock
) -> None:
    obj = kustomization(decryption={"provider": "sops", "serviceAccountName": "kms"})
    kube = FakeKube(obj)
    after = await reconciler(kube, clock, tmp_path).reconcile(copy.deepcopy(obj))
    assert after is None
    assert len(kube.patches) == 1
    kind, _, patch, subresource = kube.patches[0]
    assert (kind, subresource) == ("Kustomization", "status")
    conditions = {c["type"]: c for c in patch["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Stalled"]["status"] == "True"
    assert "decryption" in conditions["Ready"]["message"]
    assert patch["status"]["observedGeneration"] == 2


async def test_a_dependency_not_ready_is_retried_and_an_unchanged_status_is_not_written(
    tmp_path: Path, clock: FakeClock
) -> None:
    infra = kustomization("infra", status={"conditions": [], "observedGeneration": 1})
    apps = kustomization(dependsOn=[{"name": "infra"}])
    kube = FakeKube(apps, infra, git_repository())
    r = reconciler(kube, clock, tmp_path)

    after = await r.reconcile(copy.deepcopy(apps))

    assert after == 20.0
    stored = await kube.get(KS, "Kustomization", "apps", "flux")
    assert stored is not None
    assert ready(stored)["reason"] == "DependencyNotReady"
    assert "dependency 'flux/infra' is not ready" in ready(stored)["message"]
    assert stored["status"]["lastAttemptedRevision"] == f"main@sha1:{SHA}"
    reconciling = next(c for c in stored["status"]["conditions"] if c["type"] == "Reconciling")
    assert reconciling["status"] == "True"
    assert len(kube.patches) == 1

    await r.reconcile(stored)
    assert len(kube.patches) == 1  # same facts, same status: no write


async def test_a_dependency_of_the_same_source_must_have_applied_its_revision(
    tmp_path: Path, clock: FakeClock
) -> None:
    ready_status = {
        "conditions": [{"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded"}],
        "observedGeneration": 2,
        "lastAppliedRevision": "main@sha1:" + "d" * 40,
    }
    kube = FakeKube(
        kustomization("apps", dependsOn=[{"name": "infra"}]),
        kustomization("infra", status=ready_status),
        git_repository(),
    )
    obj = await kube.get(KS, "Kustomization", "apps", "flux")
    assert obj is not None
    await reconciler(kube, clock, tmp_path).reconcile(obj)
    stored = await kube.get(KS, "Kustomization", "apps", "flux")
    assert stored is not None
    assert "revision is not up to date" in ready(stored)["message"]


async def test_a_missing_application_dependency_is_not_ready(
    tmp_path: Path, clock: FakeClock
) -> None:
    apps = kustomization(dependsOn=[{"kind": "Application", "name": "db"}])
    kube = FakeKube(apps, git_repository())
    await reconciler(kube, clock, tmp_path).reconcile(copy.deepcopy(apps))
    stored = await kube.get(KS, "Kustomization", "apps", "flux")
    assert stored is not None
    assert ready(stored)["message"].startswith("dependency Application 'flux/db' not found")


async def test_a_source_without_artifact_fails_with_artifact_failed(
    tmp_path: Path, clock: FakeClock
) -> None:
    apps = kustomization()
    kube = FakeKube(apps, git_repository(revision=None))
    after = await reconciler(kube, clock, tmp_path).reconcile(copy.deepcopy(apps))
    assert after == 20.0
    stored = await kube.get(KS, "Kustomization", "apps", "flux")
    assert stored is not None
    assert (ready(stored)["reason"], ready(stored)["message"]) == (
        "ArtifactFailed",
        "Source artifact not found, retrying",
    )


async def test_a_cel_expression_that_does_not_compile_stalls(
    tmp_path: Path, clock: FakeClock
) -> None:
    apps = kustomization(
        healthCheckExprs=[{"apiVersion": "x.io/v1", "kind": "X", "current": "status.(("}]
    )
    kube = FakeKube(apps, git_repository())
    await reconciler(kube, clock, tmp_path).reconcile(copy.deepcopy(apps))
    stored = await kube.get(KS, "Kustomization", "apps", "flux")
    assert stored is not None
    assert "spec.healthCheckExprs[0].current: invalid CEL expression" in ready(stored)["message"]
    assert any(c["type"] == "Stalled" for c in stored["status"]["conditions"])


async def test_ready_expr_replaces_the_built_in_dependency_check(
    tmp_path: Path, clock: FakeClock
) -> None:
    infra = kustomization("infra", status={"conditions": []})
    infra["metadata"]["labels"] = {"version": "v2"}
    expr = "dep.metadata.labels['version'] == self.metadata.labels['version']"
    apps = kustomization(dependsOn=[{"name": "infra", "readyExpr": expr}])
    apps["metadata"]["labels"] = {"version": "v1"}
    kube = FakeKube(apps, infra, git_repository())
    r = reconciler(kube, clock, tmp_path)
    ks = parse_kustomization(apps)
    with pytest.raises(Transient, match="not ready according to readyExpr"):
        await r._check_dependencies(ks, apps)
    apps["metadata"]["labels"] = {"version": "v2"}  # not Ready by conditions, ready by expr
    await r._check_dependencies(parse_kustomization(apps), apps)


# -- health waits on the fake clock ---------------------------------------------------------------


def deployment(name: str, *, available: bool, generation: int = 1) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "flux", "generation": generation},
        "spec": {"replicas": 1},
        "status": {
            "observedGeneration": generation,
            "replicas": 1,
            "updatedReplicas": 1,
            "availableReplicas": 1 if available else 0,
            "readyReplicas": 1 if available else 0,
        },
    }


def target(name: str) -> _Target:
    return _Target("apps/v1", ResourceKey("apps", "Deployment", "flux", name))


async def test_health_wait_times_out_on_the_fake_clock_naming_the_objects(
    tmp_path: Path, clock: FakeClock
) -> None:
    kube = FakeKube(deployment("web", available=False))
    ks = parse_kustomization(kustomization(timeout="30s"))
    r = reconciler(kube, clock, tmp_path)
    with pytest.raises(Transient) as caught:
        await r._wait_healthy(ks, [target("web"), target("gone")])
    assert caught.value.reason == "HealthCheckFailed"
    assert "timeout waiting for" in caught.value.message
    assert "Deployment/flux/web status: 'InProgress'" in caught.value.message
    assert "Deployment/flux/gone status: 'NotFound'" in caught.value.message
    assert clock.t == pytest.approx(30.0)


async def test_health_wait_returns_once_everything_is_current(
    tmp_path: Path, clock: FakeClock
) -> None:
    kube = FakeKube(deployment("web", available=False))
    ks = parse_kustomization(kustomization(timeout="30s"))
    r = reconciler(kube, clock, tmp_path)

    async def become_available(seconds: float) -> None:
        clock.t += seconds
        if clock.t >= 3:
            kube.put(deployment("web", available=True))

    r._sleep = become_available
    await r._wait_healthy(ks, [target("web")])
    assert clock.t == pytest.approx(3.0)


async def test_health_judges_an_object_read_this_pass_once_then_reads_it_again(
    tmp_path: Path, clock: FakeClock
) -> None:
    kube = FakeKube(deployment("web", available=True))
    ks = parse_kustomization(kustomization(timeout="30s"))
    r = reconciler(kube, clock, tmp_path)
    known = {target("web").key: deployment("web", available=True)}
    del kube.objects[("Deployment", "flux", "web")]  # a GET would now say NotFound
    await r._wait_healthy(ks, [target("web")], known=known)
    assert clock.t == 0  # judged from the object read this pass, no wait
    with pytest.raises(Transient, match="NotFound"):
        await r._wait_healthy(ks, [target("web")], known={})


@pytest.mark.parametrize(
    ("spec", "deletes"),
    [
        ({"prune": True}, True),
        ({"prune": False}, False),
        ({"prune": False, "deletionPolicy": "Delete"}, True),
        ({"prune": True, "deletionPolicy": "Orphan"}, False),
        ({"prune": False, "deletionPolicy": "WaitForTermination"}, True),
        ({"prune": True, "suspend": True}, False),
    ],
)
def test_deletion_policy_decides_whether_deleting_prunes(spec: Obj, deletes: bool) -> None:
    assert _deletes(parse_kustomization(kustomization(**spec))) is deletes


# -- history ---------------------------------------------------------------------------------------


def test_history_adds_an_entry_per_digest_and_outcome_newest_first(
    tmp_path: Path, clock: FakeClock
) -> None:
    from gitsail.kinds.flux_kustomization_reconciler import _Pass

    r = reconciler(FakeKube(), clock, tmp_path)
    obj = kustomization()
    run = _Pass(started=0.0, digest="sha256:aa", revision="main@sha1:1")
    clock.t = 2.5
    first = r._with_history(obj, {"lastAppliedRevision": "x"}, run, "ReconciliationSucceeded")
    assert first["history"] == [
        {
            "digest": "sha256:aa",
            "firstReconciled": "2026-01-01T00:00:00Z",
            "lastReconciled": "2026-01-01T00:00:00Z",
            "lastReconciledDuration": "2.5s",
            "lastReconciledStatus": "ReconciliationSucceeded",
            "totalReconciliations": 1,
            "metadata": {"revision": "main@sha1:1"},
        }
    ]
    obj["status"] = first
    # Same digest and outcome, nothing else changed: untouched (no write).
    assert r._with_history(obj, dict(first), run, "ReconciliationSucceeded") == first
    # A failure with the same digest is another entry, first in the list.
    failed = r._with_history(obj, {**first, "x": 1}, run, "HealthCheckFailed")
    assert [e["lastReconciledStatus"] for e in failed["history"]] == [
        "HealthCheckFailed",
        "ReconciliationSucceeded",
    ]
    obj["status"] = failed
    again = r._with_history(obj, {**failed, "x": 2}, run, "ReconciliationSucceeded")
    assert again["history"][0]["totalReconciliations"] == 2
    assert len(again["history"]) == 2


def test_history_keeps_five_entries(tmp_path: Path, clock: FakeClock) -> None:
    from gitsail.kinds.flux_kustomization_reconciler import _Pass

    r = reconciler(FakeKube(), clock, tmp_path)
    obj = kustomization()
    status: dict[str, Any] = {}
    for i in range(7):
        status = r._with_history(obj, {**status, "n": i}, _Pass(0.0, f"sha256:{i}"), "X")
        obj["status"] = status
    assert [e["digest"] for e in status["history"]] == [f"sha256:{i}" for i in (6, 5, 4, 3, 2)]


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (2.818583, "2.818583s"), (62.5, "1m2.5s"), (3600, "1h0m0s")]
)
def test_durations_print_as_go_prints_them(seconds: float, text: str) -> None:
    from gitsail.kinds.flux_kustomization_reconciler import _go_duration

    assert _go_duration(seconds) == text


async def test_a_handled_reconcile_request_is_recorded(tmp_path: Path, clock: FakeClock) -> None:
    apps = kustomization()
    apps["metadata"]["annotations"] = {"reconcile.fluxcd.io/requestedAt": "2026-01-01T10:00:00"}
    kube = FakeKube(apps, git_repository(revision=None))
    await reconciler(kube, clock, tmp_path).reconcile(copy.deepcopy(apps))
    stored = await kube.get(KS, "Kustomization", "apps", "flux")
    assert stored is not None
    assert stored["status"]["lastHandledReconcileAt"] == "2026-01-01T10:00:00"
