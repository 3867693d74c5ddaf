"""Specs read as ESO reads them: defaults in code (none in the CRDs), refusals by path,
store configurations and ClusterSecretStore conditions."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gitsail.app.install import crd_manifests
from gitsail.kinds.errors import SpecError
from gitsail.kinds.externalsecret_spec import parse_external_secret
from gitsail.secrets.external.aws import AWSConfig
from gitsail.secrets.external.provider import ProviderError, safe_path
from gitsail.secrets.external.stores import admits, config_digest, store_config
from gitsail.secrets.external.vault import VaultConfig


def _es(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "external-secrets.io/v1beta1",
        "kind": "ExternalSecret",
        "metadata": {"name": "app", "namespace": "ns", "generation": 2},
        "spec": spec,
    }


def test_esos_defaults_are_applied_when_reading() -> None:
    spec = parse_external_secret(
        _es(
            {
                "secretStoreRef": {"name": "s"},
                "data": [{"secretKey": "k", "remoteRef": {"key": "a"}}],
            }
        )
    )
    assert (spec.refresh_interval, spec.refresh_policy, spec.store_kind) == (
        3600.0,
        "Periodic",
        "SecretStore",
    )
    assert (spec.target_name, spec.creation, spec.deletion) == ("app", "Owner", "Retain")
    ref = spec.data[0].ref
    assert (ref.conversion, ref.decoding, ref.metadata) == ("Default", "None", False)
    assert (
        parse_external_secret(
            _es({"secretStoreRef": {"name": "s"}, "refreshInterval": "0"})
        ).refresh_interval
        == 0
    )


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"secretStoreRef": {"name": "s"}, "syncWindows": {"kind": "allow"}}, "spec.syncWindows"),
        (
            {"secretStoreRef": {"name": "s"}, "target": {"creationPolicy": "CreateOrMerge"}},
            "spec.target.creationPolicy",
        ),
        (
            {
                "secretStoreRef": {"name": "s"},
                "data": [{"secretKey": "a/b", "remoteRef": {"key": "x"}}],
            },
            "spec.data[0].secretKey",
        ),
        ({"secretStoreRef": {"name": "s"}, "dataFrom": [{"rewrite": []}]}, "spec.dataFrom[0]"),
        ({"secretStoreRef": {}}, "spec.secretStoreRef.name"),
    ],
)
def test_what_gitsail_does_not_do_is_refused_by_path(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as exc:
        parse_external_secret(_es(spec))
    assert exc.value.field.startswith(field)


def _store(kind: str, provider: dict[str, Any], **spec: Any) -> dict[str, Any]:
    meta = {"name": "st"} | ({"namespace": "team"} if kind == "SecretStore" else {})
    return {"kind": kind, "metadata": meta, "spec": {"provider": provider, **spec}}


def test_secret_refs_resolve_their_namespace_as_eso_does() -> None:
    vault = {
        "vault": {
            "server": "http://127.0.0.1:8200",
            "auth": {"tokenSecretRef": {"name": "t", "key": "k"}},
        }
    }
    local = store_config(_store("SecretStore", vault), "reader")
    assert isinstance(local, VaultConfig)
    assert local.auth.token is not None
    assert local.auth.token.namespace == "team"  # the store's namespace, not the reader's
    cluster = store_config(_store("ClusterSecretStore", vault), "reader")
    assert isinstance(cluster, VaultConfig)
    assert cluster.auth.token is not None
    assert cluster.auth.token.namespace == "reader"
    assert config_digest(local) != config_digest(cluster)  # no cache sharing across them
    vault["vault"]["auth"]["tokenSecretRef"]["namespace"] = "elsewhere"
    with pytest.raises(ProviderError, match="only a ClusterSecretStore"):
        store_config(_store("SecretStore", vault), "reader")


def test_bad_stores_are_invalid_provider_config() -> None:
    with pytest.raises(ProviderError, match="exactly one provider"):
        store_config(_store("SecretStore", {}), "r")
    with pytest.raises(ProviderError, match="expected an http"):
        store_config(
            _store(
                "SecretStore",
                {
                    "vault": {
                        "server": "file:///etc/passwd",
                        "auth": {"tokenSecretRef": {"name": "t", "key": "k"}},
                    }
                },
            ),
            "r",
        )
    with pytest.raises(ProviderError, match="not implemented"):
        store_config(_store("SecretStore", {"gcpsm": {}}), "r")
    aws = store_config(
        _store(
            "SecretStore",
            {
                "aws": {
                    "service": "SecretsManager",
                    "region": "us-west-2",
                    "auth": {"jwt": {"serviceAccountRef": {"name": "sa"}}},
                }
            },
        ),
        "r",
    )
    assert isinstance(aws, AWSConfig)
    assert aws.auth.service_account == ("team", "sa")


def test_cluster_store_conditions() -> None:
    store = _store(
        "ClusterSecretStore",
        {"fake": {}},
        conditions=[
            {"namespaces": ["a"]},
            {"namespaceRegexes": ["^team-"]},
            {"namespaceSelector": {"matchLabels": {"tier": "prod"}}},
        ],
    )
    assert admits(store, "a", {})
    assert admits(store, "team-x", {})
    assert admits(store, "z", {"tier": "prod"})
    assert not admits(store, "z", {"tier": "dev"})
    assert admits(_store("ClusterSecretStore", {"fake": {}}), "anything", {})


@pytest.mark.parametrize("key", ["../x", "a//b", "a/./b", "a?b", "a#b", "a b", "", "a/%2e%2e"])
def test_unsafe_keys_are_refused(key: str) -> None:
    with pytest.raises(ProviderError):
        safe_path(key)


def test_crds_serve_v1_and_v1beta1_and_declare_no_defaults() -> None:
    crds = crd_manifests(["external-secrets"])
    assert sorted(c["spec"]["names"]["kind"] for c in crds) == [
        "ClusterExternalSecret",
        "ClusterSecretStore",
        "ExternalSecret",
        "SecretStore",
    ]
    for crd in crds:
        versions = {v["name"]: v for v in crd["spec"]["versions"]}
        assert versions["v1"]["served"]
        assert versions["v1"]["storage"]
        assert versions["v1beta1"]["served"]
        assert not versions["v1beta1"]["storage"]
        assert versions["v1"]["schema"] == versions["v1beta1"]["schema"]
        assert '"default"' not in json.dumps(crd)  # nothing for Argo CD / Flux to flap on
