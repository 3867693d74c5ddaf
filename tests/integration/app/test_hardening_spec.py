"""Issue 7, items 16 and 19, against a real control plane.

- A bad Application spec, an unnamed rendered object or any unexpected failure becomes a
  condition on the app (InvalidSpecError / ComparisonError / UnknownError), written once:
  repeating the reconcile leaves the status as it is.
- The CLI answers a bad spec with one ``error:`` line naming the field and exit 1.
- A failed sync sets Argo CD's ``SyncError`` condition; the next successful sync clears it.
- A child Application counts towards its parent's health only when ``argocd-cm`` restores
  the Application health check.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitsail.app.engine import AppEngine, ComparisonError
from gitsail.controller.events import EventRecorder
from gitsail.controller.metrics import Metrics
from gitsail.controller.reconciler import AppReconciler, ReconcileSettings
from gitsail.dev.cluster import Cluster
from gitsail.dev.gitserver import Workdir
from gitsail.health import APPLICATION_HEALTH_KEY, HealthStatus
from gitsail.kinds.argo_application import API_VERSION
from gitsail.kube import Kube
from gitsail.model import Obj
from tests.integration.app.conftest import ApplicationFactory, configmap, public_url, reload

pytestmark = pytest.mark.integration


def _application(name: str, namespace: str, spec: dict[str, Any]) -> Obj:
    return {
        "apiVersion": API_VERSION,
        "kind": "Application",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def _conditions(obj: Obj) -> dict[str, str]:
    return {
        str(c.get("type")): str(c.get("message"))
        for c in (obj.get("status") or {}).get("conditions") or []
    }


def _reconciler(engine: AppEngine, kube: Kube, namespace: str) -> AppReconciler:
    async def get_application(ns: str, name: str, _fresh: bool) -> Obj | None:
        return await kube.get(API_VERSION, "Application", name, ns)

    return AppReconciler(
        engine,
        settings=ReconcileSettings(control_namespace=namespace),
        metrics=Metrics(),
        events=EventRecorder(kube),
        get_application=get_application,
    )


async def _get(kube: Kube, namespace: str, name: str) -> Obj:
    obj = await kube.get(API_VERSION, "Application", name, namespace)
    assert obj is not None
    return obj


# -- item 16: failures become conditions, once -----------------------------------------------


async def test_a_wrongly_typed_spec_is_an_invalid_spec_condition_written_once(
    engine: AppEngine, kube_client: Kube, namespace: str
) -> None:
    await kube_client.create(
        _application(
            "badspec",
            namespace,
            {
                "project": "default",
                "source": {"repoURL": "https://git.example/r.git"},
                "destination": {"namespace": namespace},
                "revisionHistoryLimit": "abc",
                "syncPolicy": {"retry": {"limit": "x"}},
            },
        )
    )
    reconciler = _reconciler(engine, kube_client, namespace)
    assert await reconciler.reconcile((namespace, "badspec"), frozenset({"added"})) is None
    first = await _get(kube_client, namespace, "badspec")
    message = _conditions(first)["InvalidSpecError"]
    assert 'spec.revisionHistoryLimit: expected integer, got "abc"' in message
    assert 'spec.syncPolicy.retry.limit: expected integer, got "x"' in message

    # The same failure again: no write, so no watch event and no new reconcile.
    await reconciler.reconcile((namespace, "badspec"), frozenset({"changed"}))
    again = await _get(kube_client, namespace, "badspec")
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


async def test_an_unexpected_failure_is_an_unknown_error_condition_then_cleared(
    engine: AppEngine,
    kube_client: Kube,
    namespace: str,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    git_repo.commit_and_push({"app/cm.yaml": configmap("fine", a="1")}, "c")
    await make_app("crashy", {"repoURL": public_url(git_repo), "path": "app"})
    reconciler = _reconciler(engine, kube_client, namespace)
    real_compare = engine.compare

    async def crash(*_args: object, **_kwargs: object) -> None:
        raise KeyError("metadata")

    monkeypatch.setattr(engine, "compare", crash)
    delay = await reconciler.reconcile((namespace, "crashy"), frozenset({"added"}))
    assert delay == reconciler.settings.error_resync  # retried later, not at once
    first = await _get(kube_client, namespace, "crashy")
    assert _conditions(first)["UnknownError"] == "KeyError: 'metadata'"
    await reconciler.reconcile((namespace, "crashy"), frozenset({"requeue"}))
    again = await _get(kube_client, namespace, "crashy")
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]

    monkeypatch.setattr(engine, "compare", real_compare)
    await reconciler.reconcile((namespace, "crashy"), frozenset({"requeue"}))
    healed = await _get(kube_client, namespace, "crashy")
    assert "UnknownError" not in _conditions(healed)
    assert healed["status"]["sync"]["status"] == "OutOfSync"


async def test_a_rendered_object_without_a_name_is_a_comparison_error_naming_it(
    engine: AppEngine,
    kube_client: Kube,
    namespace: str,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
) -> None:
    git_repo.commit_and_push(
        {
            "app/a.yaml": configmap("named", a="1"),
            "app/b.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {x: y}\n",
        },
        "unnamed",
    )
    app = await make_app("noname", {"repoURL": public_url(git_repo), "path": "app"})
    with pytest.raises(ComparisonError, match=r"\(v1 ConfigMap\) has no metadata\.name"):
        await engine.compare(app)
    outcome = await engine.sync(app, prune=True)
    assert outcome.result.phase == "Error"
    assert await kube_client.get("v1", "ConfigMap", "named", namespace) is None
    reconciler = _reconciler(engine, kube_client, namespace)
    await reconciler.reconcile((namespace, "noname"), frozenset({"requeue"}))
    status = await _get(kube_client, namespace, "noname")
    assert "has no metadata.name" in _conditions(status)["ComparisonError"]


def _gitsail(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gitsail", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={
            "KUBECONFIG": str(cluster.kubeconfig),
            "PATH": "/usr/bin:/bin",
            "COLUMNS": "80",
            "HOME": str(Path.home()),
        },
    )


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("syncPolicy", [1], "spec.syncPolicy: expected object, got array"),
        ("destination", "in-cluster", 'spec.destination: expected object, got "in-cluster"'),
    ],
)
async def test_cli_commands_answer_a_bad_spec_with_one_error_line(
    cluster: Cluster,
    kube_client: Kube,
    namespace: str,
    field: str,
    value: object,
    expected: str,
) -> None:
    spec: dict[str, Any] = {
        "project": "default",
        "source": {"repoURL": "https://git.example/r.git"},
        "destination": {"namespace": namespace},
    }
    spec[field] = value
    await kube_client.create(_application("clibad", namespace, spec))
    for command in (["app", "get"], ["app", "diff"], ["app", "sync"], ["app", "history"]):
        proc = _gitsail(cluster, *command, "clibad", "-N", namespace)
        assert proc.returncode == 1, (command, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert proc.stderr.startswith("error: application clibad: ")
        assert expected in proc.stderr


# -- item 19: SyncError, child application health --------------------------------------------

WIDGET = "apiVersion: example.gitsail.dev/v1\nkind: Widget\nmetadata:\n  name: w\n"


async def test_a_failed_sync_sets_sync_error_and_the_next_success_clears_it(
    engine: AppEngine,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
) -> None:
    git_repo.commit_and_push(
        {"app/cm.yaml": configmap("one", a="1"), "app/widget.yaml": WIDGET}, "unserved kind"
    )
    app = await make_app("syncerr", {"repoURL": public_url(git_repo), "path": "app"})
    outcome = await engine.sync(app)
    assert outcome.result.phase in ("Failed", "Error"), outcome.result.message
    app = await reload(engine, app)
    message = _conditions(app.raw)["SyncError"]
    assert message.startswith(f"Failed sync attempt to {outcome.revision}: ")
    assert "Widget" in message

    git_repo.commit_and_push({"app/widget.yaml": None}, "drop the widget")
    outcome = await engine.sync(app)
    assert outcome.result.phase == "Succeeded"
    app = await reload(engine, app)
    assert "SyncError" not in _conditions(app.raw)


async def test_child_application_health_counts_only_when_argocd_cm_restores_the_check(
    engine: AppEngine,
    kube_client: Kube,
    namespace: str,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
) -> None:
    child = _application(
        "child",
        namespace,
        {
            "project": "default",
            "source": {"repoURL": "https://git.example/child.git", "path": "."},
            "destination": {"namespace": namespace},
        },
    )
    git_repo.commit_and_push({"apps/child.yaml": yaml.safe_dump(child)}, "app of apps")
    parent = await make_app("parent", {"repoURL": public_url(git_repo), "path": "apps"})
    assert (await engine.sync(parent)).result.phase == "Succeeded"
    await kube_client.merge_patch(
        API_VERSION,
        "Application",
        "child",
        {"status": {"health": {"status": "Degraded", "message": "crash looping"}}},
        namespace=namespace,
    )

    comparison = await engine.compare(await reload(engine, parent))
    assert comparison.app_health is HealthStatus.Healthy  # Argo CD's default since 1.8

    await kube_client.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "argocd-cm", "namespace": namespace},
            "data": {APPLICATION_HEALTH_KEY: 'hs = {}\nhs.status = "Progressing"\nreturn hs\n'},
        }
    )
    engine.settings_ttl = 0.0  # read argocd-cm again now (it is cached for settings_ttl)
    comparison = await engine.compare(await reload(engine, parent))
    assert comparison.app_health is HealthStatus.Degraded
