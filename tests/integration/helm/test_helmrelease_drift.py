"""Drift detection of HelmReleases on the real cluster: an edited or deleted object of a
release is corrected (``mode: enabled``) or only reported (``mode: warn``), ignore rules are
honoured, and no helm process runs for any of it. The objects carry helm-controller's owner
labels (gitsail's post-renderer), which is how an edit wakes its release in the controller.
"""

from __future__ import annotations

import pytest

from gitsail.kinds.helm_postrender import NAME_LABEL, NAMESPACE_LABEL
from tests.integration.helm.releases import (
    Env,
    condition,
    env,
    hr_kube,
    ready,
    redis_chart,
)

__all__ = ["env", "hr_kube"]  # fixtures

pytestmark = pytest.mark.integration


async def edit(env: Env, name: str, **data: str) -> None:
    await env.kube.merge_patch(
        "v1", "ConfigMap", name, {"data": data}, env.ns, field_manager="kubectl-edit"
    )


async def test_enabled_drift_detection_corrects_edits_and_deletions_without_helm(env: Env) -> None:
    await env.apply(env.release("healed", driftDetection={"mode": "enabled"}))
    obj = await env.installed("healed", redis_chart("17.0.0"), "17.0.0")
    assert ready(obj)["status"] == "True", ready(obj)
    cm = await env.configmap("healed-config")
    assert cm is not None
    assert cm["metadata"]["labels"][NAME_LABEL] == "healed"
    assert cm["metadata"]["labels"][NAMESPACE_LABEL] == env.ns
    _, obj = await env.reconcile("healed")
    assert condition(obj, "Drifted")["status"] == "False"
    assert env.reconciler.release_objects(env.ns, "healed") == (
        ("v1", "ConfigMap", "healed-config", env.ns),
        ("apps/v1", "Deployment", "healed-app", env.ns),
    )

    calls = env.actions.runner.calls
    await edit(env, "healed-config", architecture="hacked")
    await env.kube.delete("apps/v1", "Deployment", "healed-app", env.ns, propagation="Background")
    _, obj = await env.reconcile("healed")
    assert env.actions.runner.calls == calls  # no helm: server-side apply of the objects
    cm = await env.configmap("healed-config")
    assert cm is not None
    assert cm["data"]["architecture"] == "replication"
    assert await env.kube.get("apps/v1", "Deployment", "healed-app", env.ns) is not None
    assert condition(obj, "Drifted")["status"] == "False"
    assert ready(obj)["status"] == "True"
    corrected = [m for t, r, m in env.events if r == "DriftCorrected"]
    assert corrected == [
        f"Cluster state of release {env.ns}/healed.v1 has been corrected: "
        f"ConfigMap/{env.ns}/healed-config changed, Deployment/{env.ns}/healed-app removed"
    ]
    assert env.helm_json("list", "-n", env.ns)[0]["revision"] == "1"


async def test_warn_mode_reports_drift_and_changes_nothing(env: Env) -> None:
    await env.apply(env.release("watched", driftDetection={"mode": "warn"}))
    obj = await env.installed("watched", redis_chart("17.0.0"), "17.0.0")
    assert ready(obj)["status"] == "True", ready(obj)
    await edit(env, "watched-config", architecture="hacked")
    _, obj = await env.reconcile("watched")
    drifted = condition(obj, "Drifted")
    assert drifted["status"] == "True"
    assert drifted["reason"] == "DriftDetected"
    assert drifted["message"] == (
        f"Cluster state of release {env.ns}/watched.v1 has drifted from the desired state: "
        f"ConfigMap/{env.ns}/watched-config changed"
    )
    assert ready(obj)["status"] == "True"
    cm = await env.configmap("watched-config")
    assert cm is not None
    assert cm["data"]["architecture"] == "hacked"
    assert ("Warning", "DriftDetected") in [(t, r) for t, r, _ in env.events]
    # Reported again, but the status does not change: nothing is written.
    version = obj["metadata"]["resourceVersion"]
    _, obj = await env.reconcile("watched")
    assert obj["metadata"]["resourceVersion"] == version


async def test_ignore_rules_and_the_disabled_annotation_are_honoured(env: Env) -> None:
    drift = {
        "mode": "enabled",
        "ignore": [
            {"paths": ["/data/extra"], "target": {"kind": "ConfigMap", "name": ".*-config"}},
            {"paths": ["/spec/replicas"], "target": {"kind": "Deploy.*"}},
        ],
    }
    await env.apply(env.release("tolerant", driftDetection=drift))
    obj = await env.installed("tolerant", redis_chart("17.0.0"), "17.0.0")
    assert ready(obj)["status"] == "True", ready(obj)
    await edit(env, "tolerant-config", extra="set by hand")
    await env.kube.merge_patch(
        "apps/v1",
        "Deployment",
        "tolerant-app",
        {"spec": {"replicas": 3}},
        env.ns,
        field_manager="hpa",
    )
    _, obj = await env.reconcile("tolerant")
    assert condition(obj, "Drifted")["status"] == "False"
    assert not [r for _, r, _ in env.events if r == "DriftCorrected"]
    cm = await env.configmap("tolerant-config")
    assert cm is not None
    assert cm["data"]["extra"] == "set by hand"
    deployment = await env.kube.get("apps/v1", "Deployment", "tolerant-app", env.ns)
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 3
    # An object marked disabled is never compared.
    await env.kube.merge_patch(
        "v1",
        "ConfigMap",
        "tolerant-config",
        {
            "metadata": {"annotations": {"helm.toolkit.fluxcd.io/driftDetection": "disabled"}},
            "data": {"architecture": "hacked"},
        },
        env.ns,
        field_manager="kubectl-edit",
    )
    _, obj = await env.reconcile("tolerant")
    assert condition(obj, "Drifted")["status"] == "False"
    cm = await env.configmap("tolerant-config")
    assert cm is not None
    assert cm["data"]["architecture"] == "hacked"


async def test_post_renderers_and_common_metadata_shape_the_release(env: Env) -> None:
    patch = (
        "- op: add\n  path: /metadata/annotations/helm.toolkit.fluxcd.io~1driftDetection\n"
        "  value: disabled\n"
    )
    spec = {
        "commonMetadata": {"labels": {"team": "cache"}},
        "postRenderers": [
            {
                "kustomize": {
                    "patches": [{"target": {"kind": "Deployment"}, "patch": patch}],
                    "images": [{"name": "redis", "newName": "mirror.local/redis", "newTag": "7.2"}],
                }
            }
        ],
    }
    await env.apply(env.release("shaped", **spec))
    obj = await env.installed("shaped", redis_chart("17.0.0"), "17.0.0")
    assert ready(obj)["status"] == "True", ready(obj)
    assert obj["status"]["observedPostRenderersDigest"].startswith("sha256:")
    deployment = await env.kube.get("apps/v1", "Deployment", "shaped-app", env.ns)
    assert deployment is not None
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "mirror.local/redis:7.2"
    assert deployment["metadata"]["annotations"]["helm.toolkit.fluxcd.io/driftDetection"] == (
        "disabled"
    )
    labels = deployment["metadata"]["labels"]
    assert (labels["team"], labels[NAME_LABEL]) == ("cache", "shaped")
    # Another post renderer is a new release (helm upgrade), as in Flux.
    spec["postRenderers"][0]["kustomize"]["images"][0]["newTag"] = "7.4"
    await env.apply(env.release("shaped", **spec))
    _, obj = await env.reconcile("shaped")
    assert ready(obj)["reason"] == "UpgradeSucceeded", ready(obj)
    deployment = await env.kube.get("apps/v1", "Deployment", "shaped-app", env.ns)
    assert deployment is not None
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":7.4")
