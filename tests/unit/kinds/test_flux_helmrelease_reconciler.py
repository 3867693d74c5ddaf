"""What a HelmRelease pass decides from the release storage and ``status.history`` (the
helm actions and the cluster are exercised by tests/integration/helm)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from gitsail.kinds.flux_helmrelease import parse_helmrelease
from gitsail.kinds.flux_helmrelease_chart import ChartPackage
from gitsail.kinds.flux_helmrelease_reconciler import HelmReleaseReconciler, _Pass
from gitsail.kinds.helm_actions import HelmActions
from gitsail.kinds.helm_storage import Release, TestHook
from gitsail.kube import Kube
from gitsail.source.artifacts import ArtifactStore

DIGEST = "sha256:values"


def obj(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": "app", "namespace": "ns", "generation": 2},
        "spec": {
            "interval": "10m",
            "chart": {
                "spec": {"chart": "app", "sourceRef": {"kind": "HelmRepository", "name": "r"}}
            },
            **spec,
        },
    }


def release(**changes: Any) -> Release:
    fields: dict[str, Any] = {
        "name": "app",
        "namespace": "ns",
        "version": 2,
        "status": "deployed",
        "chart_name": "app",
        "chart_version": "1.0.0",
        "app_version": "",
        "config_json": "{}",
        "manifest": "",
        "first_deployed": "",
        "last_deployed": "",
        "description": "",
        "digest": "sha256:release",
    }
    fields.update(changes)
    return Release(**fields)


HEAD = {"version": 2, "digest": "sha256:release", "configDigest": DIGEST}


def decide(
    latest: Release | None,
    head: dict[str, Any] = HEAD,
    status: dict[str, Any] | None = None,
    **spec: Any,
) -> str | None:
    reconciler = HelmReleaseReconciler(
        cast(Kube, None), actions=cast(HelmActions, None), artifacts=cast(ArtifactStore, None)
    )
    run = _Pass(hr=parse_helmrelease(obj(**spec)), obj={}, status={})
    run.chart = ChartPackage(Path("x.tgz"), "app", "1.0.0", "", "sha256:c", "ns/ns-app", "1.0.0")
    run.digest = DIGEST
    return reconciler._action(run, latest, head)


def test_nothing_to_do_when_the_release_is_the_one_recorded() -> None:
    assert decide(release()) is None


@pytest.mark.parametrize(
    ("latest", "head", "expected"),
    [
        (None, {}, "install"),
        (release(status="uninstalled"), HEAD, "install"),
        (release(chart_version="0.9.0"), HEAD, "upgrade"),
        (release(chart_name="other"), HEAD, "upgrade"),
        (release(status="failed"), HEAD, "upgrade"),
        (release(version=3, digest="sha256:by-hand"), HEAD, "upgrade"),  # helm rollback by hand
        (release(), {**HEAD, "configDigest": "sha256:old"}, "upgrade"),  # values changed
        (release(), {}, "upgrade"),  # adopted: a release gitsail did not make
    ],
)
def test_install_or_upgrade(latest: Release | None, head: dict[str, Any], expected: str) -> None:
    assert decide(latest, head) == expected


def test_tests_run_once_per_revision() -> None:
    not_run = release(test_hooks=(TestHook("app-test", ""),))
    assert decide(not_run, test={"enable": True}) == "test"
    assert decide(release(), test={"enable": True}) is None  # a chart without tests
    ran = release(test_hooks=(TestHook("app-test", "Succeeded"),))
    assert decide(ran, test={"enable": True}) is None


def test_a_new_force_request_upgrades_once() -> None:
    forced = obj()
    forced["metadata"]["annotations"] = {"reconcile.fluxcd.io/forceAt": "1"}
    reconciler = HelmReleaseReconciler(
        cast(Kube, None), actions=cast(HelmActions, None), artifacts=cast(ArtifactStore, None)
    )
    run = _Pass(hr=parse_helmrelease(forced), obj={}, status={})
    run.chart = ChartPackage(Path("x.tgz"), "app", "1.0.0", "", "sha256:c", "ns/ns-app", "1.0.0")
    run.digest = DIGEST
    assert reconciler._action(run, release(), HEAD) == "upgrade"
    run.status["lastHandledForceAt"] = "1"
    assert reconciler._action(run, release(), HEAD) is None


def test_failure_counters_reset_when_chart_values_or_generation_change() -> None:
    reconciler = HelmReleaseReconciler(
        cast(Kube, None), actions=cast(HelmActions, None), artifacts=cast(ArtifactStore, None)
    )
    attempted = {
        "lastAttemptedRevision": "1.0.0",
        "lastAttemptedConfigDigest": DIGEST,
        "lastAttemptedGeneration": 2,
        "upgradeFailures": 2,
        "failures": 2,
    }
    run = _Pass(hr=parse_helmrelease(obj()), obj={}, status=dict(attempted))
    run.chart = ChartPackage(Path("x.tgz"), "app", "1.0.0", "", "sha256:c", "ns/ns-app", "1.0.0")
    run.digest = DIGEST
    reconciler._reset_counters(run)
    assert run.status["upgradeFailures"] == 2
    run.digest = "sha256:new-values"
    reconciler._reset_counters(run)
    assert "upgradeFailures" not in run.status
    assert "failures" not in run.status
