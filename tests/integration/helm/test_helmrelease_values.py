"""A HelmRelease's valuesFrom on the real cluster: Secrets and ConfigMaps, targetPath, optional
references, and a missing required one that changes nothing. Also dependsOn and suspend."""

from __future__ import annotations

import pytest

from tests.integration.helm.releases import (
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


async def test_values_from_secret_configmap_and_target_path(env: Env) -> None:
    await env.kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "base", "namespace": env.ns},
            "data": {"values.yaml": "architecture: replication\nauth: {enabled: false}\n"},
        },
        field_manager="test",
    )
    await env.kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "prod", "namespace": env.ns},
            "stringData": {"auth": "true", "values.yaml": "architecture: standalone\n"},
        },
        field_manager="test",
    )
    release = env.release(
        "valued",
        valuesFrom=[
            {"kind": "ConfigMap", "name": "base"},
            {"kind": "Secret", "name": "prod"},
            {"kind": "Secret", "name": "prod", "valuesKey": "auth", "targetPath": "auth.enabled"},
            {"kind": "ConfigMap", "name": "not-there", "optional": True},
        ],
        values={"extra": "inline"},
    )
    await env.apply(release)
    obj = await env.installed("valued", redis_chart("17.0.0"), "17.0.0")
    assert ready(obj)["status"] == "True", ready(obj)
    assert env.helm_json("get", "values", "valued", "-n", env.ns) == {
        "architecture": "standalone",
        "auth": {"enabled": True},
        "extra": "inline",
    }
    cm = await env.configmap("valued-config")
    assert cm is not None
    assert (cm["data"]["architecture"], cm["data"]["auth"], cm["data"]["extra"]) == (
        "standalone",
        "true",
        "inline",
    )
    # A change of a referenced ConfigMap is a new release.
    await env.kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "not-there", "namespace": env.ns},
            "data": {"values.yaml": "extra: overridden-by-inline\narchitecture: cluster\n"},
        },
        field_manager="test",
    )
    _, obj = await env.reconcile("valued")
    assert ready(obj)["reason"] == "UpgradeSucceeded", ready(obj)
    assert env.helm_json("get", "values", "valued", "-n", env.ns)["architecture"] == "cluster"


async def test_missing_required_values_reference_is_a_clear_error_that_changes_nothing(
    env: Env,
) -> None:
    await env.apply(env.release("needy", values={"extra": "one"}))
    obj = await env.installed("needy", redis_chart("17.0.0"), "17.0.0")
    assert ready(obj)["status"] == "True", ready(obj)
    digest = obj["status"]["history"][0]["configDigest"]
    release = env.release("needy", valuesFrom=[{"kind": "Secret", "name": "missing"}])
    await env.apply(release)
    calls = env.actions.runner.calls
    delay, obj = await env.reconcile("needy")
    assert ready(obj)["status"] == "False"
    assert ready(obj)["reason"] == "ValuesError"
    assert ready(obj)["message"] == "could not find Secret 'missing' (spec.valuesFrom)"
    assert condition(obj, "Reconciling")["status"] == "True"
    assert delay is not None
    assert env.actions.runner.calls == calls  # no helm
    assert obj["status"]["history"][0]["configDigest"] == digest
    assert env.helm_json("list", "-n", env.ns)[0]["revision"] == "1"


async def test_depends_on_waits_for_the_dependency_and_suspend_does_nothing(env: Env) -> None:
    await env.apply(env.release("front", dependsOn=[{"name": "back"}]))
    delay, obj = await env.reconcile("front")
    assert ready(obj)["reason"] == "DependencyNotReady"
    assert ready(obj)["message"].startswith(f"dependency HelmRelease '{env.ns}/back' not found")
    assert delay == 30
    await env.apply(env.release("back"))
    obj = await env.installed("back", redis_chart("17.0.0"), "17.0.0")
    assert ready(obj)["status"] == "True", ready(obj)
    obj = await env.installed("front", redis_chart("17.0.0"), "17.0.0")
    assert ready(obj)["status"] == "True", ready(obj)

    await env.apply(
        env.release("front", dependsOn=[{"name": "back"}], suspend=True, values={"x": 1})
    )
    calls = env.actions.runner.calls
    delay, obj = await env.reconcile("front")
    assert delay is None
    assert env.actions.runner.calls == calls
    assert obj["status"]["observedGeneration"] == 1


async def test_deprecated_fields_are_mapped_with_a_warning_event(env: Env) -> None:
    release = env.release("legacy", install={"skipCRDs": True})
    release["apiVersion"] = "helm.toolkit.fluxcd.io/v2beta1"
    await env.apply(release)
    obj = await env.installed("legacy", redis_chart("17.0.0"), "17.0.0")
    assert ready(obj)["status"] == "True", ready(obj)
    warnings = [(r, m) for t, r, m in env.events if t == "Warning"]
    assert (
        "DeprecatedField",
        f"HelmRelease {env.ns}/legacy: spec.install.skipCRDs is deprecated, use spec.install.crds",
    ) in warnings


async def test_values_from_secrets_never_appear_in_status_or_events(env: Env) -> None:
    leaky = package_chart(
        "redis",
        "17.0.0",
        templates={"fail.yaml": '{{ fail (printf "refusing password %s" .Values.password) }}\n'},
    )
    await env.kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds", "namespace": env.ns},
            "stringData": {"values.yaml": "password: hunter2-s3cret\n"},
        },
        field_manager="test",
    )
    await env.apply(env.release("leaky", valuesFrom=[{"kind": "Secret", "name": "creds"}]))
    obj = await env.installed("leaky", leaky, "17.0.0")
    assert ready(obj)["reason"] == "InstallFailed", ready(obj)
    assert "refusing password ***" in ready(obj)["message"]
    text = str(obj["status"]) + str(env.events)
    assert "hunter2-s3cret" not in text
