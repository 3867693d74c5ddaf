"""Parsing Flux HelmReleases into records: defaults, legacy versions, refusals."""

from __future__ import annotations

from typing import Any

import pytest

from gitsail.kinds.errors import SpecError, UnsupportedField
from gitsail.kinds.flux_helmrelease import (
    chart_name,
    default_release_name,
    parse_helmrelease,
)
from gitsail.kinds.records import Dependency, ObjectRef


def hr(api: str = "helm.toolkit.fluxcd.io/v2", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "interval": "1h",
        "chart": {
            "spec": {
                "chart": "redis",
                "version": "17.x",
                "sourceRef": {
                    "kind": "HelmRepository",
                    "name": "bitnami",
                    "namespace": "flux-system",
                },
            }
        },
    }
    body.update(spec)
    return {
        "apiVersion": api,
        "kind": "HelmRelease",
        "metadata": {"name": "redis", "namespace": "redis", "generation": 3},
        "spec": {k: v for k, v in body.items() if v is not None},
    }


def test_article_v2beta1_release_gets_flux_defaults() -> None:
    release = parse_helmrelease(
        hr("helm.toolkit.fluxcd.io/v2beta1", values={"architecture": "standalone"})
    )
    assert release.release_name == "redis"
    assert release.target_namespace == release.storage_namespace == "redis"
    assert release.max_history == 5
    assert release.timeout == 300
    assert release.interval == 3600
    assert release.values() == {"architecture": "standalone"}
    assert release.chart is not None
    assert release.chart.version == "17.x"
    assert release.chart.source == ObjectRef("HelmRepository", "bitnami", "flux-system")
    # The HelmChart Flux makes: <ns>-<name> in the source's namespace.
    assert release.chart_object == ObjectRef("HelmChart", "redis-redis", "flux-system")
    assert release.install.remediation.retries == 0
    assert release.install.remediation.strategy == "uninstall"
    assert release.upgrade.remediation.strategy == "rollback"
    assert not release.upgrade.remediation.remediate_last_failure
    assert release.uninstall.deletion_propagation == "background"
    assert release.install.crds == "Create"
    assert release.deprecations == ()


def test_release_name_defaults_to_target_namespace_and_name_shortened_as_flux() -> None:
    assert default_release_name("app", None) == "app"
    assert default_release_name("app", "prod") == "prod-app"
    long = default_release_name("nice-object-name", "a-very-lengthy-target-namespace-with-a")
    # Flux's rule: the first 40 characters, "-", the first 12 hex digits of the SHA-256 of
    # the whole name (its documentation's example has the same hash, with 42 characters).
    assert long == "a-very-lengthy-target-namespace-with-a-n-97af5d7f41f3"
    assert len(long) == 53
    assert chart_name("ns", "app") == "ns-app"


def test_target_namespace_is_also_the_storage_namespace() -> None:
    release = parse_helmrelease(hr(targetNamespace="apps"))
    assert release.release_name == "apps-redis"
    assert release.storage_namespace == "apps"
    with pytest.raises(UnsupportedField, match=r"spec.storageNamespace: .*\"apps\""):
        parse_helmrelease(hr(targetNamespace="apps", storageNamespace="redis"))


def test_upgrade_retries_remediate_the_last_failure_by_default() -> None:
    release = parse_helmrelease(
        hr(upgrade={"remediation": {"retries": 2, "strategy": "uninstall"}, "cleanupOnFail": True})
    )
    remediation = release.upgrade.remediation
    assert (remediation.retries, remediation.strategy) == (2, "uninstall")
    assert remediation.remediate_last_failure
    assert release.upgrade.cleanup_on_fail
    assert not remediation.exhausted(2)
    assert remediation.exhausted(3)
    forever = parse_helmrelease(hr(install={"remediation": {"retries": -1}})).install.remediation
    assert not forever.exhausted(1000)


def test_v2beta1_deprecated_fields_are_mapped_with_a_warning() -> None:
    obj = hr("helm.toolkit.fluxcd.io/v2beta1", install={"skipCRDs": True})
    obj["spec"]["chart"]["spec"]["valuesFile"] = "values-prod.yaml"
    release = parse_helmrelease(obj)
    assert release.install.crds == "Skip"
    assert release.chart is not None
    assert release.chart.values_files == ("values-prod.yaml",)
    assert len(release.deprecations) == 2
    assert all(d.startswith("HelmRelease redis/redis: spec.") for d in release.deprecations)


def test_post_renderers_and_common_metadata() -> None:
    from gitsail.kinds.flux_helmrelease import post_render_config, post_renderers_digest

    release = parse_helmrelease(
        hr(
            commonMetadata={"labels": {"team": "a"}, "annotations": {"x": "y"}},
            postRenderers=[
                {
                    "kustomize": {
                        "patches": [
                            {"patch": "- op: remove\n  path: /x", "target": {"kind": "Job"}}
                        ],
                        "images": [{"name": "redis", "newTag": "7"}],
                    }
                }
            ],
        )
    )
    assert post_render_config(release) == {
        "steps": [
            {
                "patches": [{"patch": "- op: remove\n  path: /x", "target": {"kind": "Job"}}],
                "images": [{"name": "redis", "newTag": "7"}],
            }
        ],
        "labels": {"team": "a"},
        "annotations": {"x": "y"},
    }
    assert post_renderers_digest(release).startswith("sha256:")
    assert post_renderers_digest(parse_helmrelease(hr())) == ""


def test_chart_ref_and_values_from() -> None:
    release = parse_helmrelease(
        hr(
            chart=None,
            chartRef={"kind": "OCIRepository", "name": "podinfo"},
            valuesFrom=[
                {"kind": "ConfigMap", "name": "base"},
                {
                    "kind": "Secret",
                    "name": "tls",
                    "valuesKey": "crt",
                    "targetPath": "tls.crt",
                    "optional": True,
                },
            ],
            dependsOn=[
                {"name": "db"},
                {"name": "infra", "namespace": "flux", "kind": "Kustomization"},
            ],
        )
    )
    assert release.chart is None
    assert release.chart_object == ObjectRef("OCIRepository", "podinfo", "redis")
    assert [(r.kind, r.values_key, r.target_path, r.optional) for r in release.values_from] == [
        ("ConfigMap", "values.yaml", None, False),
        ("Secret", "crt", "tls.crt", True),
    ]
    assert release.dependencies == (
        Dependency("HelmRelease", "redis", "db"),
        Dependency("Kustomization", "flux", "infra"),
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"chart": None}, "exactly one of spec.chart and spec.chartRef"),
        ({"chartRef": {"kind": "HelmChart", "name": "x"}}, "exactly one of"),
        (
            {"postRenderers": [{"kustomize": {"patchesStrategicMerge": [{}]}}]},
            "spec.postRenderers[0].kustomize.patchesStrategicMerge: removed",
        ),
        ({"postRenderers": [{"kustomize": {"images": [{"newTag": "1"}]}}]}, "images[0].name"),
        ({"kubeConfig": {"configMapRef": {"name": "x"}}}, "spec.kubeConfig.configMapRef"),
        ({"kubeConfig": {"secretRef": {}}}, "spec.kubeConfig.secretRef.name"),
        ({"install": {"crds": "CreateReplace"}}, "spec.install.crds: CreateReplace"),
        ({"upgrade": {"preserveValues": True}}, "spec.upgrade.preserveValues"),
        ({"test": {"enable": True, "filters": [{"name": "x"}]}}, "spec.test.filters"),
        ({"releaseName": "Not_Valid"}, 'spec.releaseName: "Not_Valid" is not a valid'),
        ({"maxHistory": -1}, "spec.maxHistory: must be at least 0"),
        ({"timeout": "soon"}, "spec.timeout: not a duration"),
        ({"intervall": "1m"}, "spec.intervall: unknown field"),
        ({"valuesFrom": [{"kind": "Pod", "name": "x"}]}, "spec.valuesFrom[0].kind"),
        ({"values": ["a"]}, "spec.values: expected an object"),
        ({"driftDetection": {"mode": "on"}}, "spec.driftDetection.mode"),
        ({"driftDetection": {"ignore": [{"paths": ["spec/replicas"]}]}}, "not a JSON pointer"),
        ({"dependsOn": [{"name": "x", "readyExpr": "true"}]}, "readyExpr"),
    ],
)
def test_bad_or_unsupported_fields_are_refused_by_path(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=r"^HelmRelease redis/redis: ") as caught:
        parse_helmrelease(hr(**spec))
    assert message in str(caught.value)


@pytest.mark.parametrize("junk", [None, [], "x", {"kind": "HelmRelease"}, {"metadata": 1}])
def test_anything_malformed_is_a_spec_error(junk: Any) -> None:
    with pytest.raises(SpecError):
        parse_helmrelease(junk)


def test_kube_config_secret_ref_is_read() -> None:
    assert parse_helmrelease(hr()).kube_config is None
    parsed = parse_helmrelease(hr(kubeConfig={"secretRef": {"name": "remote", "key": "cfg"}}))
    assert parsed.kube_config == ("remote", "cfg")
