"""What the Application reconciler keeps of a comparison between reconciles.

One comparison per app stays in memory to re-assess health on status-only news. It must
write the same status as the full comparison, re-assess the same way, and hold no full
copy of an object (the compared forms, the Application as read, a live object the watch
cache has since replaced). In-memory objects; the engine's live lookup is a dict.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from gitsail.app.engine import AppEngine, Comparison
from gitsail.controller.reconciler import _retained
from gitsail.diff import diff_resource
from gitsail.health import resource_health
from gitsail.kinds.argo_application import App
from gitsail.kube import Kube
from gitsail.model import Artifact, Obj, ResourceKey
from gitsail.render import Rendered

MANAGED = [{"manager": "gitsail", "operation": "Apply", "fieldsV1": {"f:spec": {}}}]


def application() -> Obj:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "web", "namespace": "argocd", "managedFields": MANAGED},
        "spec": {
            "source": {"repoURL": "https://git.example/r.git", "path": "web"},
            "destination": {"namespace": "shop"},
        },
        "status": {"history": [{"id": 0, "revision": "a" * 40}]},
    }


def deployment(*, available: bool, generation: int = 1) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "generation": generation,
            "resourceVersion": "7",
            "annotations": {"argocd.argoproj.io/tracking-id": "web:apps/Deployment:shop/web"},
            "managedFields": MANAGED,
        },
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{"image": "web:1"}]}}},
        "status": {
            "observedGeneration": generation,
            "replicas": 1,
            "updatedReplicas": 1,
            "availableReplicas": 1 if available else 0,
        },
    }


def comparison(live: Obj) -> Comparison:
    app = App.from_application(application())
    desired = {k: v for k, v in live.items() if k != "status"}
    desired["metadata"] = {k: v for k, v in live["metadata"].items() if k != "managedFields"}
    key = ResourceKey.of(live)
    return Comparison(
        app=app,
        artifact=Artifact("https://git.example/r.git", "a" * 40, "HEAD", Path("/r"), "web", ""),
        rendered=Rendered((copy.deepcopy(desired),), "directory", "k"),
        desired=(desired,),
        hooks=(),
        diffs=(diff_resource(desired, live),),
        live={key: live},
        owned_live=(live,),
        health={key: resource_health(live)},
    )


def status(app: App, c: Comparison) -> dict[str, Any]:
    written = AppEngine.application_status(app, c)
    written.pop("reconciledAt")
    return written


def test_the_retained_comparison_writes_the_same_status() -> None:
    full = comparison(deployment(available=False))
    app = App.from_application(application())
    assert status(app, _retained(full)) == status(app, full)
    assert _retained(full).app_health == full.app_health
    assert _retained(full).sync_status == full.sync_status


def test_the_retained_comparison_holds_no_full_object() -> None:
    kept = _retained(comparison(deployment(available=False)))
    assert kept.app.origin == {}
    (diff,) = kept.diffs
    assert (diff.desired, diff.live, diff.unified) == (None, None, "")
    (live,) = kept.live.values()
    assert set(live) == {"apiVersion", "kind", "metadata"}
    assert "managedFields" not in live["metadata"]
    assert kept.rendered.manifests == kept.desired


async def test_health_is_reassessed_from_the_retained_comparison() -> None:
    cache: dict[ResourceKey, Obj] = {}

    async def lookup(api_version: str, kind: str, name: str, ns: str | None) -> Obj | None:
        return cache.get(ResourceKey("apps", kind, ns or "", name))

    engine = AppEngine(Kube.__new__(Kube), live=lookup)
    kept = _retained(comparison(deployment(available=False)))
    app = App.from_application(application())
    key = ResourceKey("apps", "Deployment", "shop", "web")

    cache[key] = deployment(available=True)  # a status-only change
    now = await engine.reassess_health(kept, app)
    assert now is not None
    assert str(now.app_health) == "Healthy"
    assert str(kept.app_health) == "Progressing"

    cache[key] = deployment(available=True, generation=2)  # beyond status: compare in full
    assert await engine.reassess_health(kept, app) is None
