"""HelmReleases as real Helm releases, on the shared cluster with the pinned ``helm``.

The reconciler is driven one pass at a time, as the controller's registry drives it; the
HelmChart it makes gets its artifact from ``ChartPublisher`` (source-controller's part).
Every object lives in the test's namespace (the article's ``flux-system`` and ``redis``
namespaces become it). What gitsail released is checked with the real ``helm`` CLI.
"""

from __future__ import annotations

import pytest

from gitsail.kinds.flux_helmrelease_reconciler import FINALIZER
from tests.integration.helm.releases import (
    CONFIGMAP,
    DEPLOYMENT,
    FAILING_HOOK,
    FAILING_TEST,
    HR,
    TEST_JOB,
    Env,
    condition,
    env,
    hr_kube,
    package_chart,
    ready,
    redis_chart,
)

__all__ = ["env", "hr_kube"]  # fixtures

pytestmark = pytest.mark.integration

HR_V2BETA1 = "helm.toolkit.fluxcd.io/v2beta1"

ARTICLE = """\
apiVersion: helm.toolkit.fluxcd.io/v2beta1
kind: HelmRelease
metadata:
  name: redis
  namespace: redis
spec:
  interval: 1h
  chart:
    spec:
      chart: redis
      version: "17.x"
      sourceRef:
        kind: HelmRepository
        name: bitnami
        namespace: flux-system
  values:
    architecture: standalone
    auth:
      enabled: true
"""


async def test_article_helmrelease_installs_a_real_helm_release(env: Env) -> None:
    obj = await env.apply(ARTICLE)
    assert obj["apiVersion"] == HR_V2BETA1
    obj = await env.installed("redis", redis_chart("17.0.0"), "17.0.0")

    assert ready(obj)["status"] == "True", ready(obj)
    assert ready(obj)["reason"] == "InstallSucceeded"
    assert condition(obj, "Released")["status"] == "True"
    status = obj["status"]
    assert FINALIZER in obj["metadata"]["finalizers"]
    assert status["helmChart"] == f"{env.ns}/{env.ns}-redis"
    assert status["lastAttemptedRevision"] == "17.0.0"
    assert status["lastAttemptedConfigDigest"].startswith("sha256:")
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert status["storageNamespace"] == env.ns
    head = status["history"][0]
    assert head["name"] == "redis"
    assert head["version"] == 1
    assert head["status"] == "deployed"
    assert (head["chartName"], head["chartVersion"], head["appVersion"]) == (
        "redis",
        "17.0.0",
        "7.0.0",
    )
    # The HelmChart made from the template, as helm-controller makes it.
    chart = await env.kube.get(
        "source.toolkit.fluxcd.io/v1", "HelmChart", f"{env.ns}-redis", env.ns
    )
    assert chart is not None
    assert chart["spec"]["chart"] == "redis"
    assert chart["spec"]["version"] == "17.x"
    assert chart["spec"]["sourceRef"] == {"kind": "HelmRepository", "name": "bitnami"}

    # The real helm sees the release, its revision and its values.
    listed = env.helm_json("list", "-n", env.ns)
    assert [(r["name"], r["revision"], r["status"], r["chart"]) for r in listed] == [
        ("redis", "1", "deployed", "redis-17.0.0")
    ]
    assert env.helm_json("get", "values", "redis", "-n", env.ns) == {
        "architecture": "standalone",
        "auth": {"enabled": True},
    }
    cm = await env.configmap("redis-config")
    assert cm is not None
    assert cm["data"]["architecture"] == "standalone"
    # A Warning Event for the deprecated API is not expected: v2beta1 fields used are current.
    assert ("Normal", "InstallSucceeded") in [(t, r) for t, r, _ in env.events]


async def test_idle_pass_spawns_no_helm_and_writes_nothing(env: Env) -> None:
    await env.apply(env.release("idle"))
    obj = await env.installed("idle", redis_chart("17.0.0"), "17.0.0")
    assert ready(obj)["status"] == "True", ready(obj)
    calls = env.actions.runner.calls
    version = obj["metadata"]["resourceVersion"]
    delay, again = await env.reconcile("idle")
    assert delay == 3600
    assert env.actions.runner.calls == calls  # no helm process
    assert again["metadata"]["resourceVersion"] == version  # no status write


async def test_new_chart_version_upgrades_and_hand_rollback_is_corrected(env: Env) -> None:
    await env.apply(env.release("web", values={"architecture": "standalone"}))
    obj = await env.installed("web", redis_chart("17.0.0"), "17.0.0")
    assert ready(obj)["status"] == "True", ready(obj)

    await env.publish("web", redis_chart("17.1.0"), "17.1.0")
    _, obj = await env.reconcile("web")
    assert ready(obj)["reason"] == "UpgradeSucceeded", ready(obj)
    assert obj["status"]["history"][0]["version"] == 2
    assert obj["status"]["history"][0]["chartVersion"] == "17.1.0"
    assert obj["status"]["history"][1]["status"] == "superseded"
    history = env.helm_json("history", "web", "-n", env.ns)
    assert [(h["revision"], h["status"], h["chart"]) for h in history] == [
        (1, "superseded", "redis-17.0.0"),
        (2, "deployed", "redis-17.1.0"),
    ]

    # Someone rolls back by hand: the release is not the one gitsail made any more.
    env.helm("rollback", "web", "1", "-n", env.ns)
    assert (await env.configmap("web-config"))["data"]["chart"] == "17.0.0"  # type: ignore[index]
    _, obj = await env.reconcile("web")
    assert ready(obj)["status"] == "True", ready(obj)
    assert obj["status"]["history"][0]["version"] == 4
    assert obj["status"]["history"][0]["chartVersion"] == "17.1.0"
    assert (await env.configmap("web-config"))["data"]["chart"] == "17.1.0"  # type: ignore[index]
    assert env.helm_json("list", "-n", env.ns)[0]["revision"] == "4"


async def test_a_release_installed_by_hand_is_adopted(env: Env) -> None:
    package = env.tmp / "redis-17.0.0.tgz"
    package.write_bytes(redis_chart("17.0.0"))
    env.helm("install", "adopted", str(package), "-n", env.ns, "--set", "extra=by-hand")
    await env.apply(env.release("adopted", values={"extra": "declared"}))
    obj = await env.installed("adopted", redis_chart("17.1.0"), "17.1.0")
    assert ready(obj)["reason"] == "UpgradeSucceeded", ready(obj)
    assert obj["status"]["history"][0]["version"] == 2
    assert env.helm_json("get", "values", "adopted", "-n", env.ns) == {"extra": "declared"}


async def test_a_renamed_release_or_chart_is_reinstalled(env: Env) -> None:
    await env.apply(env.release("moving"))
    obj = await env.installed("moving", redis_chart("17.0.0"), "17.0.0")
    assert ready(obj)["status"] == "True", ready(obj)
    await env.apply(env.release("moving", releaseName="moved"))
    _, obj = await env.reconcile("moving")
    assert ready(obj)["reason"] == "InstallSucceeded", ready(obj)
    assert [(r["name"], r["revision"]) for r in env.helm_json("list", "-n", env.ns)] == [
        ("moved", "1")
    ]
    assert await env.configmap("moving-config") is None
    # Another chart name: Flux's default (chartNameChangeStrategy: Reinstall).
    await env.publish("moving", package_chart("valkey", "8.0.0"), "8.0.0")
    _, obj = await env.reconcile("moving")
    assert ready(obj)["reason"] == "InstallSucceeded", ready(obj)
    assert env.helm_json("list", "-n", env.ns)[0]["chart"] == "valkey-8.0.0"
    assert obj["status"]["history"][0]["version"] == 1


async def test_failing_post_upgrade_hook_is_rolled_back_after_the_retries(env: Env) -> None:
    spec = {
        "timeout": "30s",
        "upgrade": {"remediation": {"retries": 1}},
        "values": {"extra": "one"},
    }
    await env.apply(env.release("hooked", **spec))
    obj = await env.installed("hooked", redis_chart("17.0.0"), "17.0.0")
    assert ready(obj)["status"] == "True", ready(obj)
    broken = package_chart(
        "redis",
        "17.2.0",
        templates={
            "configmap.yaml": CONFIGMAP,
            "deployment.yaml": DEPLOYMENT,
            "hook.yaml": FAILING_HOOK,
        },
    )
    await env.publish("hooked", broken, "17.2.0")

    # First attempt fails, is rolled back at once, and will be tried again.
    delay, obj = await env.reconcile("hooked")
    assert ready(obj)["status"] == "False"
    assert ready(obj)["reason"] == "UpgradeFailed", ready(obj)
    assert "post-upgrade" in ready(obj)["message"] or "job" in ready(obj)["message"].lower()
    assert condition(obj, "Remediated")["reason"] == "RollbackSucceeded"
    assert obj["status"]["upgradeFailures"] == 1
    assert delay is not None
    assert delay <= 10
    # Second attempt: retries used up, rolled back (remediateLastFailure), Stalled.
    _, obj = await env.reconcile("hooked")
    assert ready(obj)["status"] == "False"
    assert ready(obj)["reason"] == "UpgradeFailed"
    assert condition(obj, "Stalled")["reason"] == "RetriesExceeded"
    assert condition(obj, "Stalled")["message"] == "Failed to upgrade after 2 attempt(s)"
    assert obj["status"]["upgradeFailures"] == 2
    history = env.helm_json("history", "hooked", "-n", env.ns)
    assert [(h["status"], h["chart"]) for h in history][-1] == ("deployed", "redis-17.0.0")
    # Nothing more is attempted until the chart or values change.
    calls = env.actions.runner.calls
    _, obj = await env.reconcile("hooked")
    assert env.actions.runner.calls == calls
    assert condition(obj, "Stalled")["reason"] == "RetriesExceeded"


async def test_failing_install_is_uninstalled_between_attempts(env: Env) -> None:
    broken = package_chart(
        "redis",
        "17.0.0",
        templates={
            "configmap.yaml": CONFIGMAP,
            "hook.yaml": FAILING_HOOK.replace("post-upgrade", "post-install"),
        },
    )
    spec = {"timeout": "30s", "install": {"remediation": {"retries": 1}}}
    await env.apply(env.release("fresh", **spec))
    obj = await env.installed("fresh", broken, "17.0.0")
    assert ready(obj)["reason"] == "InstallFailed", ready(obj)
    assert condition(obj, "Remediated")["reason"] == "UninstallSucceeded"
    assert obj["status"]["installFailures"] == 1
    assert env.helm_json("list", "-n", env.ns, "--all") == []
    _, obj = await env.reconcile("fresh")
    assert ready(obj)["reason"] == "InstallFailed", ready(obj)
    assert condition(obj, "Stalled")["message"] == "Failed to install after 2 attempt(s)"
    # The last failure is left for inspection (remediateLastFailure defaults to false).
    assert env.helm_json("list", "-n", env.ns, "--all")[0]["status"] == "failed"


async def test_a_failed_values_change_is_rolled_back_and_tried_again(env: Env) -> None:
    hook = "{{ if .Values.failHook }}\n" + FAILING_HOOK + "{{ end }}\n"
    chart = package_chart(
        "redis", "17.0.0", templates={"configmap.yaml": CONFIGMAP, "hook.yaml": hook}
    )
    spec = {"timeout": "30s", "upgrade": {"remediation": {"retries": 1}}}
    await env.apply(env.release("valued", **spec))
    obj = await env.installed("valued", chart, "17.0.0")
    assert ready(obj)["status"] == "True", ready(obj)
    await env.apply(env.release("valued", values={"failHook": True}, **spec))
    _, obj = await env.reconcile("valued")
    assert ready(obj)["reason"] == "UpgradeFailed", ready(obj)
    assert condition(obj, "Remediated")["reason"] == "RollbackSucceeded"
    # The rollback restored the old values: not up to date, the upgrade is tried again.
    _, obj = await env.reconcile("valued")
    assert ready(obj)["reason"] == "UpgradeFailed", ready(obj)
    assert condition(obj, "Stalled")["message"] == "Failed to upgrade after 2 attempt(s)"
    assert env.helm_json("get", "values", "valued", "-n", env.ns) is None  # the old values


async def test_helm_tests_run_and_are_recorded(env: Env) -> None:
    tested = package_chart(
        "redis", "17.0.0", templates={"configmap.yaml": CONFIGMAP, "test.yaml": TEST_JOB}
    )
    await env.apply(env.release("tested", test={"enable": True}))
    obj = await env.installed("tested", tested, "17.0.0")
    assert ready(obj)["reason"] == "TestSucceeded", ready(obj)
    assert condition(obj, "TestSuccess")["status"] == "True"
    hooks = obj["status"]["history"][0]["testHooks"]
    assert list(hooks) == ["tested-test"]
    assert hooks["tested-test"]["phase"] == "Succeeded"


async def test_failed_helm_tests_are_reported_and_fail_the_release_unless_ignored(
    env: Env,
) -> None:
    faulty = package_chart(
        "redis", "17.0.0", templates={"configmap.yaml": CONFIGMAP, "test.yaml": FAILING_TEST}
    )
    await env.apply(
        env.release("ignored", timeout="30s", test={"enable": True, "ignoreFailures": True})
    )
    obj = await env.installed("ignored", faulty, "17.0.0")
    assert ready(obj)["status"] == "True", ready(obj)
    assert condition(obj, "TestSuccess")["status"] == "False"
    assert condition(obj, "TestSuccess")["reason"] == "TestFailed"
    hooks = obj["status"]["history"][0]["testHooks"]
    assert hooks["ignored-fault-test"]["phase"] == "Failed"

    await env.apply(env.release("failing", timeout="30s", test={"enable": True}))
    obj = await env.installed("failing", faulty, "17.0.0")
    assert ready(obj)["status"] == "False"
    assert ready(obj)["reason"] == "TestFailed"
    assert ready(obj)["message"].startswith(
        f"Helm test failed for release {env.ns}/failing.v1 with chart redis@17.0.0: "
    )
    assert condition(obj, "Stalled")["message"] == "Failed to install after 1 attempt(s)"
    assert obj["status"]["installFailures"] == 1
    # Not remediated (install.remediation.remediateLastFailure is false): the release stays.
    assert env.helm_json("list", "-n", env.ns, "--filter", "^failing$")[0]["status"] == "deployed"
    calls, version = env.actions.runner.calls, obj["metadata"]["resourceVersion"]
    _, obj = await env.reconcile("failing")
    assert env.actions.runner.calls == calls
    assert obj["metadata"]["resourceVersion"] == version


async def test_chart_ref_reads_a_helmchart_it_does_not_own(env: Env) -> None:
    await env.kube.apply(
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "HelmChart",
            "metadata": {"name": "shared-redis", "namespace": env.ns},
            "spec": {
                "chart": "redis",
                "interval": "1h",
                "sourceRef": {"kind": "HelmRepository", "name": "charts"},
            },
        },
        field_manager="test",
    )
    await env.publisher.publish(env.ns, "shared-redis", redis_chart("17.1.0"), "17.1.0")
    release = env.release("referring")
    del release["spec"]["chart"]
    release["spec"]["chartRef"] = {"kind": "HelmChart", "name": "shared-redis"}
    await env.apply(release)
    _, obj = await env.reconcile("referring")
    assert ready(obj)["reason"] == "InstallSucceeded", ready(obj)
    assert obj["status"]["helmChart"] == f"{env.ns}/shared-redis"
    assert obj["status"]["lastAttemptedRevision"] == "17.1.0"
    await env.kube.delete(HR, "HelmRelease", "referring", env.ns)
    await env.reconciler.reconcile(await env.get("referring"), ())
    assert await env.kube.get("source.toolkit.fluxcd.io/v1", "HelmChart", "shared-redis", env.ns)
    assert env.helm_json("list", "-n", env.ns) == []


async def test_deletion_uninstalls_and_keep_history_keeps_the_secrets(env: Env) -> None:
    await env.apply(env.release("kept", uninstall={"keepHistory": True}))
    await env.installed("kept", redis_chart("17.0.0"), "17.0.0")
    await env.apply(env.release("gone"))
    await env.installed("gone", redis_chart("17.0.0"), "17.0.0")
    for name in ("kept", "gone"):
        await env.kube.delete(HR, "HelmRelease", name, env.ns)
        obj = await env.get(name)
        assert obj["metadata"].get("deletionTimestamp")
        await env.reconciler.reconcile(obj, ())
        assert await env.kube.get(HR, "HelmRelease", name, env.ns) is None
        chart = await env.kube.get(
            "source.toolkit.fluxcd.io/v1", "HelmChart", f"{env.ns}-{name}", env.ns
        )
        assert chart is None or chart["metadata"].get("deletionTimestamp")
    secrets = await env.kube.list("v1", "Secret", env.ns, label_selector="owner=helm")
    names = {s["metadata"]["labels"]["name"]: s["metadata"]["labels"]["status"] for s in secrets}
    assert names == {"kept": "uninstalled"}
    assert await env.configmap("kept-config") is None
    assert await env.configmap("gone-config") is None
