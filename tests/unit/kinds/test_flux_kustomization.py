from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitsail.kinds import (
    CommonMetadata,
    DeletionPolicy,
    Dependency,
    ImageOverride,
    Kustomization,
    ObjectRef,
    Patch,
    PatchTarget,
    SpecError,
    SubstituteSource,
    UnsupportedField,
    parse_kustomization,
)
from gitsail.kinds import (
    HealthCheck as Check,
)


def ks(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "interval": "10m",
        "path": "./overlays/production",
        "prune": True,
        "sourceRef": {"kind": "GitRepository", "name": "myapp"},
    }
    base.update(spec)
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": "myapp", "namespace": "flux-system", "generation": 2},
        "spec": {k: v for k, v in base.items() if v is not None},
    }


def test_the_articles_kustomization_parses_with_flux_defaults() -> None:
    parsed = parse_kustomization(
        ks(healthChecks=[{"kind": "Deployment", "name": "myapp", "namespace": "myapp"}])
    )
    assert parsed.source == ObjectRef("GitRepository", "myapp", "flux-system")
    assert parsed.render.path == "overlays/production"
    assert parsed.render.substitution is False
    sync = parsed.sync
    assert (sync.prune, sync.interval, sync.retry_interval, sync.timeout) == (True, 600, 600, 600)
    assert (sync.wait, sync.force, sync.suspend) == (False, False, False)
    assert sync.deletion_policy is DeletionPolicy.MIRROR_PRUNE
    assert parsed.health_checks == (Check(None, "Deployment", "myapp", "myapp"),)


def test_every_field_is_read() -> None:
    parsed = parse_kustomization(
        ks(
            sourceRef={"kind": "GitRepository", "name": "shared", "namespace": "infra"},
            retryInterval="1m",
            timeout="2m",
            wait=True,
            force=True,
            suspend=True,
            deletionPolicy="Orphan",
            serviceAccountName="deployer",
            targetNamespace="prod",
            namePrefix="p-",
            nameSuffix="-s",
            images=[{"name": "podinfo", "newTag": "1.8.0"}],
            patches=[{"patch": "- op: remove\n  path: /x\n", "target": {"kind": "Deployment"}}],
            components=["../ingress"],
            ignoreMissingComponents=True,
            commonMetadata={"labels": {"b": "2", "a": "1"}},
            postBuild={
                "substitute": {"cluster_env": "prod"},
                "substituteFrom": [{"kind": "ConfigMap", "name": "vars", "optional": True}],
            },
            healthCheckExprs=[
                {"apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret", "current": "true"}
            ],
            dependsOn=[
                {"name": "infra"},
                {"name": "db", "namespace": "argocd", "kind": "Application"},
            ],
        )
    )
    assert parsed.source == ObjectRef("GitRepository", "shared", "infra")
    sync = parsed.sync
    assert (sync.retry_interval, sync.timeout, sync.wait, sync.force, sync.suspend) == (
        60,
        120,
        True,
        True,
        True,
    )
    assert sync.deletion_policy is DeletionPolicy.ORPHAN
    assert sync.service_account_name == "deployer"
    render = parsed.render
    assert (render.target_namespace, render.name_prefix, render.name_suffix) == ("prod", "p-", "-s")
    assert render.images == (ImageOverride("podinfo", new_tag="1.8.0"),)
    assert render.patches == (Patch("- op: remove\n  path: /x\n", PatchTarget(kind="Deployment")),)
    assert (render.components, render.ignore_missing_components) == (("../ingress",), True)
    assert render.common_metadata == CommonMetadata(labels=(("a", "1"), ("b", "2")))
    assert render.substitute == (("cluster_env", "prod"),)
    assert render.substitute_from == (SubstituteSource("ConfigMap", "vars", optional=True),)
    assert render.substitution is True
    assert parsed.health_check_exprs[0].current == "true"
    assert parsed.dependencies == (
        Dependency("Kustomization", "flux-system", "infra"),
        Dependency("Application", "argocd", "db"),
    )
    hash(parsed)


@pytest.mark.parametrize(
    ("path", "expected"), [(None, ""), ("", ""), ("./", ""), ("./a/b/", "a/b"), ("/a/../b", "b")]
)
def test_path_is_relative_to_the_artifact_root(path: Any, expected: str) -> None:
    assert parse_kustomization(ks(path=path)).render.path == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"prune": None}, "spec.prune: required"),
        ({"interval": "5x"}, 'spec.interval: not a duration: "5x"'),
        ({"retryInterval": "soon"}, "spec.retryInterval: not a duration"),
        ({"sourceRef": None}, "spec.sourceRef: required"),
        ({"sourceRef": {"kind": "HelmRepository", "name": "x"}}, "spec.sourceRef.kind"),
        ({"sourceRef": {"kind": "GitRepository"}}, "spec.sourceRef.name: required"),
        ({"path": "../../etc"}, "spec.path: must stay inside the artifact"),
        ({"targetNamespace": "Not_A_Namespace"}, "spec.targetNamespace: invalid value"),
        ({"deletionPolicy": "Keep"}, "spec.deletionPolicy"),
        ({"postBuild": {"substitute": {"1bad": "x"}}}, "spec.postBuild.substitute.1bad"),
        ({"postBuild": {"substitute": {"a": 1}}}, "spec.postBuild.substitute.a: expected a string"),
        (
            {"postBuild": {"substituteFrom": [{"name": "v"}]}},
            "spec.postBuild.substituteFrom[0].kind",
        ),
        ({"images": [{"newTag": "1"}]}, "spec.images[0].name: required"),
        ({"patches": [{"target": {}}]}, "spec.patches[0].patch: required"),
        ({"dependsOn": [{"name": "a", "kind": "HelmRelease"}]}, "spec.dependsOn[0].kind"),
        ({"healthChecks": [{"name": "a"}]}, "spec.healthChecks[0].kind: required"),
        ({"prunne": True}, "spec.prunne: unknown field"),
    ],
)
def test_malformed_fields_are_refused_with_their_path(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_kustomization(ks(**spec))
    assert str(err.value).startswith("Kustomization flux-system/myapp: ")
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (
            {"decryption": {"provider": "sops", "serviceAccountName": "kms"}},
            "spec.decryption.serviceAccountName",
        ),
        ({"kubeConfig": {"configMapRef": {"name": "k"}}}, "spec.kubeConfig.configMapRef"),
        ({"sourceRef": {"kind": "Bucket", "name": "x"}}, "spec.sourceRef.kind"),
        ({"patchesStrategicMerge": [{"kind": "X"}]}, "spec.patchesStrategicMerge"),
        ({"patchesJson6902": [{"patch": []}]}, "spec.patchesJson6902"),
    ],
)
def test_fields_gitsail_does_not_implement_are_refused(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(UnsupportedField) as err:
        parse_kustomization(ks(**spec))
    assert err.value.field == field


def test_kube_config_secret_ref_is_read_with_its_optional_key() -> None:
    assert parse_kustomization(ks()).kube_config is None
    parsed = parse_kustomization(ks(kubeConfig={"secretRef": {"name": "target"}}))
    assert parsed.kube_config == ("target", "")
    keyed = parse_kustomization(ks(kubeConfig={"secretRef": {"name": "t", "key": "cfg.yaml"}}))
    assert keyed.kube_config == ("t", "cfg.yaml")
    with pytest.raises(SpecError, match=r"spec\.kubeConfig\.secretRef\.name"):
        parse_kustomization(ks(kubeConfig={"secretRef": {}}))
    with pytest.raises(SpecError, match=r"spec\.kubeConfig\.secretRef"):
        parse_kustomization(ks(kubeConfig={"secretRef": {"name": "t", "extra": 1}}))


def test_v1beta2_is_read_the_same() -> None:
    obj = ks(validation="client")
    obj["apiVersion"] = "kustomize.toolkit.fluxcd.io/v1beta2"
    parsed = parse_kustomization(obj)
    assert (parsed.render, parsed.sync) == (
        parse_kustomization(ks()).render,
        parse_kustomization(ks()).sync,
    )


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["", "5s", "1m", "..", "../x", "GitRepository", "ConfigMap", "a", "Orphan"])
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
ITEM = st.dictionaries(
    st.sampled_from(
        [
            "name",
            "kind",
            "namespace",
            "apiVersion",
            "patch",
            "target",
            "newTag",
            "optional",
            "current",
            "readyExpr",
        ]
    ),
    JSON,
    max_size=4,
)
SPEC_FIELDS = {
    "interval": JSON, "retryInterval": JSON, "timeout": JSON, "prune": JSON, "path": JSON,
    "sourceRef": ITEM, "wait": JSON, "force": JSON, "suspend": JSON, "deletionPolicy": JSON,
    "targetNamespace": JSON, "namePrefix": JSON, "images": st.lists(ITEM, max_size=2),
    "patches": st.lists(ITEM, max_size=2), "components": JSON, "commonMetadata": JSON,
    "postBuild": st.fixed_dictionaries(
        {}, optional={"substitute": JSON, "substituteFrom": st.lists(ITEM, max_size=2)}
    ),
    "healthChecks": st.lists(ITEM, max_size=2), "healthCheckExprs": st.lists(ITEM, max_size=2),
    "dependsOn": st.lists(ITEM, max_size=2), "decryption": JSON, "serviceAccountName": JSON,
}  # fmt: skip


def _parse_or_spec_error(obj: Any) -> Kustomization | None:
    try:
        return parse_kustomization(obj)
    except SpecError:
        return None


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(JSON)
def test_any_value_parses_or_raises_spec_error(value: Any) -> None:
    _parse_or_spec_error(value)
    _parse_or_spec_error({**ks(), "spec": value})


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({}, optional=SPEC_FIELDS))
def test_shaped_specs_parse_or_raise_spec_error(changes: dict[str, Any]) -> None:
    obj = ks()
    obj["spec"].update(changes)
    before = copy.deepcopy(obj)
    parsed = _parse_or_spec_error(obj)
    assert obj == before
    if parsed is not None:
        hash(parsed)
        assert parsed.sync.retry_interval >= 0
        assert parsed.sync.timeout >= 0
        assert not parsed.render.path.startswith(("/", ".."))
