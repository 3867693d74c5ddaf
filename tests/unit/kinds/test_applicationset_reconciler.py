"""The ApplicationSet reconciler on an in-memory control plane: applications sync policies,
the safety rules (a generator error or a large deletion deletes nothing), one status patch."""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gitsail.kinds.argo_applicationset import RESOURCES_FINALIZER
from gitsail.kinds.argo_applicationset_generators import Cluster
from gitsail.kinds.argo_applicationset_reconciler import ApplicationSetReconciler
from gitsail.kube import NotFound
from gitsail.model import Obj
from gitsail.policy import DEFAULT_POLICY

_uids = itertools.count(1)


class FakeKube:
    def __init__(self) -> None:
        self.apps: dict[str, Obj] = {}
        self.status_patches: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.fail_apply: set[str] = set()

    async def list(
        self, api_version: str, kind: str, namespace: str | None = None, **_: Any
    ) -> list[Obj]:
        assert kind == "Application"
        return [copy.deepcopy(a) for a in self.apps.values()]

    async def apply(self, obj: Obj, field_manager: str = "", force: bool = False, **_: Any) -> Obj:
        assert field_manager == "gitsail-applicationset"
        assert force
        name = obj["metadata"]["name"]
        old = self.apps.get(name)
        new = copy.deepcopy(obj)
        new["metadata"]["uid"] = (old or {}).get("metadata", {}).get("uid") or f"app-{next(_uids)}"
        new["metadata"]["resourceVersion"] = "1"
        if old and "status" in old:
            new["status"] = old["status"]
        self.apps[name] = new
        return copy.deepcopy(new)

    async def merge_patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: dict[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
        **_: Any,
    ) -> Obj:
        if kind == "ApplicationSet":
            assert subresource == "status"
            self.status_patches.append(patch)
            return {}
        app = self.apps[name]
        app["metadata"]["finalizers"] = patch["metadata"]["finalizers"] or []
        return copy.deepcopy(app)

    async def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        propagation: str | None = None,
        dry_run: bool = False,
        *,
        preconditions: Mapping[str, str] | None = None,
    ) -> bool:
        if name not in self.apps:
            raise NotFound(404, "NotFound", "gone", {})
        self.deleted.append(name)
        assert (preconditions or {}).get("uid") == self.apps[name]["metadata"]["uid"]
        if self.apps[name]["metadata"].get("finalizers"):
            self.apps[name]["metadata"]["deletionTimestamp"] = "now"
        else:
            del self.apps[name]
        return True


class FakeSources:
    def __init__(self) -> None:
        self.fail = False

    async def clusters(self) -> list[Cluster]:
        return []

    async def checkout(self, repo_url: str, revision: str) -> Path:
        if self.fail:
            raise OSError("git: could not resolve host")
        raise AssertionError("no git here")


def appset(elements: list[str], **spec: Any) -> Obj:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {"name": "myapp", "namespace": "argocd", "uid": "set-1", "generation": 1},
        "spec": {
            "generators": [{"list": {"elements": [{"cluster": e} for e in elements]}}],
            "template": {
                "metadata": {"name": "myapp-{{cluster}}"},
                "spec": {"project": "default", "source": {"path": "overlays/{{cluster}}"}},
            },
            **spec,
        },
    }


def reconciler(
    kube: FakeKube, sources: FakeSources | None = None, **policy: Any
) -> ApplicationSetReconciler:
    return ApplicationSetReconciler(
        kube,
        sources or FakeSources(),
        policy=dataclasses.replace(DEFAULT_POLICY, **policy),
        clock=lambda: datetime(2026, 1, 1, tzinfo=UTC),
    )


def conditions(kube: FakeKube) -> dict[str, tuple[str, str]]:
    last = kube.status_patches[-1]["status"]["conditions"]
    return {c["type"]: (c["status"], c["reason"]) for c in last}


ENVS = ["development", "staging", "production"]


async def test_the_article_set_creates_one_application_per_element() -> None:
    kube = FakeKube()
    delay = await reconciler(kube).reconcile(appset(ENVS))
    assert sorted(kube.apps) == ["myapp-development", "myapp-production", "myapp-staging"]
    assert kube.apps["myapp-staging"]["spec"]["source"]["path"] == "overlays/staging"
    assert len(kube.status_patches) == 1
    assert conditions(kube) == {
        "ParametersGenerated": ("True", "ParametersGenerated"),
        "ErrorOccurred": ("False", "ApplicationSetUpToDate"),
        "ResourcesUpToDate": ("True", "ApplicationSetUpToDate"),
    }
    resources = kube.status_patches[0]["status"]["resources"]
    assert [r["name"] for r in resources] == [
        "myapp-development",
        "myapp-production",
        "myapp-staging",
    ]
    assert delay is None  # a list generator polls nothing


@pytest.mark.parametrize(
    ("policy", "deleted"),
    [("sync", True), ("create-delete", True), ("create-update", False), ("create-only", False)],
)
async def test_removing_an_element_deletes_its_app_only_when_the_policy_deletes(
    policy: str, deleted: bool
) -> None:
    kube = FakeKube()
    r = reconciler(kube)
    await r.reconcile(appset(ENVS, syncPolicy={"applicationsSync": policy}))
    await r.reconcile(appset(ENVS[1:], syncPolicy={"applicationsSync": policy}))
    assert ("myapp-development" in kube.deleted) is deleted
    assert len(kube.apps) == 3  # the finalizer holds it until the Argo CD path deletes it


async def test_create_only_does_not_update_an_existing_application() -> None:
    kube = FakeKube()
    r = reconciler(kube)
    obj = appset(ENVS[:1], syncPolicy={"applicationsSync": "create-only"})
    await r.reconcile(obj)
    obj["spec"]["template"]["spec"]["project"] = "other"
    await r.reconcile(obj)
    assert kube.apps["myapp-development"]["spec"]["project"] == "default"
    obj["spec"]["syncPolicy"]["applicationsSync"] = "create-update"
    await r.reconcile(obj)
    assert kube.apps["myapp-development"]["spec"]["project"] == "other"


async def test_preserve_resources_removes_the_finalizer_before_deleting() -> None:
    kube = FakeKube()
    r = reconciler(kube)
    await r.reconcile(appset(ENVS))
    assert kube.apps["myapp-development"]["metadata"]["finalizers"] == [RESOURCES_FINALIZER]
    await r.reconcile(appset(ENVS[1:], syncPolicy={"preserveResourcesOnDeletion": True}))
    assert "myapp-development" not in kube.apps  # no finalizer left: gone at once


async def test_a_generator_error_keeps_every_application_and_says_so() -> None:
    kube = FakeKube()
    sources = FakeSources()
    r = reconciler(kube, sources)
    await r.reconcile(appset(ENVS))
    broken = appset(ENVS)
    broken["spec"]["generators"] = [
        {"git": {"repoURL": "https://git.invalid/r", "directories": [{"path": "*"}]}}
    ]
    sources.fail = True
    delay = await r.reconcile(broken)
    assert kube.deleted == []
    assert len(kube.apps) == 3
    found = conditions(kube)
    assert found["ErrorOccurred"] == ("True", "ApplicationGenerationFromParamsError")
    assert found["ParametersGenerated"][0] == "False"
    message = kube.status_patches[-1]["status"]["conditions"][0]["message"]
    assert "could not resolve host" in message
    assert "every existing Application is kept" in message
    assert delay == 60.0


async def test_a_missing_key_under_missingkey_error_is_a_condition_not_an_app() -> None:
    kube = FakeKube()
    obj = appset(ENVS, goTemplate=True, goTemplateOptions=["missingkey=error"])
    obj["spec"]["template"]["metadata"]["name"] = "myapp-{{.cluster}}{{.suffix}}"
    await reconciler(kube).reconcile(obj)
    assert kube.apps == {}
    assert conditions(kube)["ErrorOccurred"] == ("True", "ApplicationValidationError")
    assert 'no entry for key "suffix"' in str(kube.status_patches[-1])


async def test_deleting_more_than_the_share_deletes_nothing_until_a_good_result_returns() -> None:
    kube = FakeKube()
    r = reconciler(kube)
    await r.reconcile(appset(ENVS))
    await r.reconcile(
        appset([]) | {"spec": {**appset([])["spec"], "generators": [{"list": {"elements": []}}]}}
    )
    assert kube.deleted == []
    assert conditions(kube)["ResourcesUpToDate"] == ("False", "DeletionWithheld")
    assert "3 of 3 Applications" in str(kube.status_patches[-1])
    await r.reconcile(appset(ENVS[1:]))  # one of three: within the share
    assert kube.deleted == ["myapp-development"]
    assert conditions(kube)["ResourcesUpToDate"] == ("True", "ApplicationSetUpToDate")


async def test_an_application_the_set_does_not_own_is_left_alone() -> None:
    kube = FakeKube()
    kube.apps["myapp-staging"] = {
        "metadata": {"name": "myapp-staging", "uid": "x"},
        "spec": {"project": "mine"},
    }
    await reconciler(kube).reconcile(appset(ENVS))
    assert kube.apps["myapp-staging"]["spec"] == {"project": "mine"}
    assert "myapp-development" in kube.apps
    assert conditions(kube)["ErrorOccurred"][0] == "True"
    assert "not owned by this ApplicationSet" in str(kube.status_patches[-1])


async def test_an_unchanged_pass_writes_no_status() -> None:
    kube = FakeKube()
    r = reconciler(kube)
    obj = appset(ENVS)
    await r.reconcile(obj)
    obj["status"] = kube.status_patches[0]["status"]
    await r.reconcile(obj)
    assert len(kube.status_patches) == 1


async def test_an_unreadable_spec_is_a_condition_and_touches_nothing() -> None:
    kube = FakeKube()
    obj = appset(ENVS, syncPolicy={"applicationsSync": "sometimes"})
    assert await reconciler(kube).reconcile(obj) is None
    assert kube.apps == {}
    assert conditions(kube)["ErrorOccurred"] == ("True", "ApplicationSetSpecInvalid")
