"""Notifications through the REAL controller: Argo CD subscriptions and Flux Alerts deliver
to a receiver on loopback, one notification per event.

Each test starts the in-process controller in the test's namespace, writes what a user writes
(``argocd-notifications-cm`` and an Application with subscription annotations; a Provider,
its Secret and an Alert), makes the event happen in the cluster (a sync that the apiserver
refuses, a Deployment whose pods cannot be scheduled, a Kustomization whose path does not
exist) and waits for the receiver. "Exactly one" is checked after a later notification of
the same object has arrived (a barrier): a duplicate of an earlier event would come before it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gitsail.dev.gitserver import GitServer, Workdir
from gitsail.kube import Kube
from tests.integration.app.conftest import configmap, public_url
from tests.integration.conftest import GIT_USER
from tests.integration.controller.conftest import (
    AUTOMATED,
    RunningController,
    api,
    control_ns,
    crds_installed,
    create_app,
    eventually,
    start_controller,
    stop_controller,
)
from tests.integration.notify.conftest import Receiver

__all__ = ["api", "control_ns", "crds_installed"]  # re-exported fixtures

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

NOTIFY = "notification.toolkit.fluxcd.io/v1beta3"
TOKEN = "hmac-key-0123456789"
CI_TOKEN = "ci-bearer-abcdef"


def catalog(receiver_url: str) -> dict[str, str]:
    """argocd-notifications-cm as a user writes it: Argo's catalog triggers, a webhook."""
    triggers = {
        "on-sync-failed": (
            "app.status.operationState != nil and "
            "app.status.operationState.phase in ['Error', 'Failed']",
            "",
        ),
        "on-sync-succeeded": (
            "app.status.operationState != nil and app.status.operationState.phase in ['Succeeded']",
            "",
        ),
        "on-health-degraded": ("app.status.health.status == 'Degraded'", ""),
        "on-deployed": (
            "app.status.operationState != nil and app.status.operationState.phase in "
            "['Succeeded'] and app.status.health.status == 'Healthy'",
            "app.status.operationState?.syncResult?.revision",
        ),
    }
    data = {
        "service.webhook.ci": (
            f"url: {receiver_url}/argo\n"
            "headers:\n- name: Authorization\n  value: Bearer $ci-token\n"
        ),
        "context": "argocdUrl: https://argocd.example.com\n",
    }
    for name, (when, once) in triggers.items():
        data[f"trigger.{name}"] = json.dumps(
            [{"when": when, "send": [name], **({"oncePer": once} if once else {})}]
        )
        data[f"template.{name}"] = json.dumps(
            {
                "message": "{{.app.metadata.name}}",
                "webhook": {
                    "ci": {
                        "method": "POST",
                        "path": f"/{name}",
                        "body": (
                            f'{{"app": "{{{{.app.metadata.name}}}}", "trigger": "{name}", '
                            '"phase": "{{.app.status.operationState.phase}}", '
                            '"revision": "{{.app.status.operationState.syncResult.revision}}"}'
                        ),
                    }
                },
            }
        )
    return data


# A Deployment none of whose pods can ever be created (its ServiceAccount does not exist, so
# admission refuses every pod): no progress is ever made, so once its 1 s deadline passes it
# is Degraded for good. (A pod the scheduler cannot place is created late on a loaded
# machine: that counts as progress, the Deployment goes Progressing again, then Degraded
# again — a second "degraded" notice Argo CD would send as well.)
NEVER_PROGRESSES = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  progressDeadlineSeconds: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      serviceAccountName: gitsail-test-no-such-account
      containers: [{name: web, image: registry.invalid/web:1}]
"""


@pytest.fixture
async def running(
    api: Kube, control_ns: str, tmp_path: Path, crds_installed: None
) -> AsyncIterator[RunningController]:
    controller = await start_controller(api, control_ns, tmp_path)
    yield controller
    await stop_controller(controller)


async def test_failed_sync_and_degraded_app_each_notify_exactly_once(
    api: Kube, running: RunningController, git_repo: Workdir, control_ns: str, receiver: Receiver
) -> None:
    await api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "argocd-notifications-secret", "namespace": control_ns},
            "stringData": {"ci-token": CI_TOKEN},
        }
    )
    await api.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "argocd-notifications-cm", "namespace": control_ns},
            "data": catalog(receiver.url),
        }
    )
    # The destination namespace does not exist yet: the sync fails (no retries).
    target = f"{control_ns}-later"
    git_repo.commit_and_push({"app/cm.yaml": configmap("first", v="1")}, "first")
    subscribe = "notifications.argoproj.io/subscribe"
    await create_app(
        api,
        control_ns,
        "shop",
        public_url(git_repo),
        destination={"server": "https://kubernetes.default.svc", "namespace": target},
        syncPolicy={**AUTOMATED, "retry": {"limit": 0}},
        metadata={
            "annotations": {
                f"{subscribe}.on-sync-failed.ci": "",
                f"{subscribe}.on-sync-succeeded.ci": "",
                f"{subscribe}.on-health-degraded.ci": "",
            }
        },
    )

    async def count(path: str, n: int) -> list[Any] | None:
        found = receiver.at(f"/argo/{path}")
        return found if len(found) >= n else None

    try:
        await _failed_then_degraded(api, git_repo, control_ns, target, receiver, count)
    except AssertionError:
        app = await api.get("argoproj.io/v1alpha1", "Application", "shop", control_ns)
        app["metadata"].pop("managedFields", None)
        print("the Application when the wait failed:", json.dumps(app, indent=1)[:6000])
        print("the receiver got:", [(r.path, r.body[:200]) for r in receiver.requests])
        raise
    finally:
        await api.delete("v1", "Namespace", target)


async def _failed_then_degraded(
    api: Kube, git_repo: Workdir, control_ns: str, target: str, receiver: Receiver, count: Any
) -> None:
    [failed] = await eventually(lambda: count("on-sync-failed", 1), what="sync failed notice")
    assert failed.json()["app"] == "shop"
    assert failed.json()["phase"] in ("Failed", "Error")
    assert failed.headers["Authorization"] == f"Bearer {CI_TOKEN}"
    assert CI_TOKEN not in failed.body.decode()

    # The fix (the namespace), and a Deployment that never progresses: it degrades.
    await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": target}})
    git_repo.commit_and_push({"app/web.yaml": NEVER_PROGRESSES}, "web")
    await eventually(lambda: count("on-sync-succeeded", 1), timeout=90, what="sync ok notice")
    [degraded] = await eventually(
        lambda: count("on-health-degraded", 1), timeout=90, what="degraded notice"
    )
    assert degraded.json()["app"] == "shop"

    # A later event (another sync) is the barrier: duplicates of the earlier ones come first.
    git_repo.commit_and_push({"app/extra.yaml": configmap("extra", v="1")}, "extra")
    await eventually(lambda: count("on-sync-succeeded", 2), timeout=90, what="second sync")
    assert len(receiver.at("/argo/on-sync-failed")) == 1
    assert len(receiver.at("/argo/on-health-degraded")) == 1
    app = await api.get("argoproj.io/v1alpha1", "Application", "shop", control_ns)
    notified = json.loads(app["metadata"]["annotations"]["notified.notifications.argoproj.io"])
    assert any(key.startswith("on-health-degraded:") for key in notified)


@pytest.fixture
async def flux_running(
    api: Kube,
    control_ns: str,
    git_server: GitServer,
    tmp_path: Path,
    crds_installed: None,
) -> AsyncIterator[RunningController]:
    user, password = GIT_USER
    await api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "git-auth", "namespace": control_ns},
            "stringData": {"username": user, "password": password},
        }
    )
    controller = await start_controller(api, control_ns, tmp_path)
    yield controller
    await stop_controller(controller)


async def test_kustomization_not_ready_sends_one_signed_alert_and_commit_statuses(
    api: Kube,
    flux_running: RunningController,
    git_server: GitServer,
    git_repo: Workdir,
    control_ns: str,
    receiver: Receiver,
) -> None:
    ns = control_ns
    sha = git_repo.commit_and_push({"deploy/cm.yaml": configmap("flux-cm", v="1")}, "v1")
    # The first delivery attempt of the signed webhook fails (503): it is retried.
    receiver.answers.append(("/flux", 503))
    for name, data in (
        ("hmac-key", {"token": TOKEN}),
        ("github-token", {"token": "ghp-test-token"}),
    ):
        await api.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": ns},
                "stringData": data,
            }
        )
    providers = {
        "signed": {
            "type": "generic-hmac",
            "address": f"{receiver.url}/flux",
            "secretRef": {"name": "hmac-key"},
        },
        "status": {
            "type": "github",
            "address": f"{receiver.url}/acme/manifests",
            "secretRef": {"name": "github-token"},
        },
        "gitlab": {
            "type": "gitlab",
            "address": f"{receiver.url}/group/sub/manifests",
            "secretRef": {"name": "github-token"},
        },
    }
    for name, spec in providers.items():
        await api.create(
            {
                "apiVersion": NOTIFY,
                "kind": "Provider",
                "metadata": {"name": name, "namespace": ns},
                "spec": spec,
            }
        )
    alerts = {
        "errors": {
            "providerRef": {"name": "signed"},
            "eventSeverity": "error",
            "summary": "test cluster",
            "eventSources": [{"kind": "Kustomization", "name": "*"}],
        },
        "commits": {
            "providerRef": {"name": "status"},
            "eventSeverity": "info",
            "eventSources": [{"kind": "Kustomization", "name": "app"}],
        },
        "gitlab-commits": {
            "providerRef": {"name": "gitlab"},
            "eventSources": [{"kind": "Kustomization", "name": "app"}],
        },
    }
    for name, spec in alerts.items():
        await api.create(
            {
                "apiVersion": NOTIFY,
                "kind": "Alert",
                "metadata": {"name": name, "namespace": ns},
                "spec": spec,
            }
        )
    name = git_repo.remote.rstrip("/").rsplit("/", 1)[-1]
    await api.create(
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": "repo", "namespace": ns},
            "spec": {
                "interval": "1m",
                "url": git_server.url(name),
                "ref": {"branch": "main"},
                "secretRef": {"name": "git-auth"},
            },
        }
    )

    async def source_ready() -> bool:
        repo = await api.get("source.toolkit.fluxcd.io/v1", "GitRepository", "repo", ns)
        conditions = ((repo or {}).get("status") or {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    # The Kustomization comes once its source is Ready, so its one failure is the path.
    await eventually(source_ready, timeout=60, what="the GitRepository Ready")
    await api.create(
        {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": "app", "namespace": ns},
            "spec": {
                "interval": "10m",
                "prune": True,
                "path": "./no-such-dir",
                "sourceRef": {"kind": "GitRepository", "name": "repo"},
                "targetNamespace": ns,
            },
        }
    )

    async def at(path: str, n: int) -> list[Any] | None:
        found = receiver.at(path)
        return found if len(found) >= n else None

    [alert] = await eventually(lambda: at("/flux", 1), timeout=90, what="the Alert's delivery")
    signature = hmac.new(TOKEN.encode(), alert.body, hashlib.sha256).hexdigest()
    assert alert.headers["X-Signature"] == f"sha256={signature}"
    assert alert.headers["Gotk-Component"] == "kustomize-controller"
    event = alert.json()
    assert event["involvedObject"]["kind"] == "Kustomization"
    assert event["involvedObject"]["name"] == "app"
    assert event["severity"] == "error"
    assert event["reportingController"] == "kustomize-controller"
    assert event["metadata"]["summary"] == "test cluster"
    assert event["metadata"]["kustomize.toolkit.fluxcd.io/revision"] == f"main@sha1:{sha}"
    assert TOKEN not in alert.body.decode()
    [failure] = await eventually(
        lambda: at("/api/v3/repos/acme/manifests/statuses/", 1), what="status"
    )
    assert failure.path == f"/api/v3/repos/acme/manifests/statuses/{sha}"
    assert failure.json()["state"] == "failure"
    assert failure.headers["Authorization"] == "Bearer ghp-test-token"

    # The fix: Ready=True is an info event: a success status (the barrier), no error alert.
    await api.merge_patch(
        "kustomize.toolkit.fluxcd.io/v1", "Kustomization", "app", {"spec": {"path": "./deploy"}}, ns
    )
    statuses = await eventually(
        lambda: at("/api/v3/repos/acme/manifests/statuses/", 2), timeout=90, what="success status"
    )
    assert [s.json()["state"] for s in statuses] == ["failure", "success"]
    assert statuses[1].json()["context"].startswith("kustomization/app/")
    assert len(receiver.at("/flux")) == 1
    gitlab = await eventually(
        lambda: at("/api/v4/projects/group%2Fsub%2Fmanifests/statuses/", 2), what="GitLab"
    )
    assert [g.json()["state"] for g in gitlab] == ["failed", "success"]
    assert gitlab[0].path.endswith(f"/statuses/{sha}")
    assert gitlab[0].headers["PRIVATE-TOKEN"] == "ghp-test-token"
