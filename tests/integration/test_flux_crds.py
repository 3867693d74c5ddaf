"""Flux's CRDs as gitsail installs them: the article's YAML applies verbatim (strict field
validation, so nothing is dropped), v1beta2 objects are served with the same schema, the
schema refuses what Flux's refuses, and the kind adapters parse what the apiserver stored.

The CRDs are cluster-wide (installed idempotently); every object lives in the test's
namespace, which replaces the article's ``flux-system``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import yaml

from gitsail.app.install import crd_manifests, install_crds
from gitsail.dev.cluster import Cluster
from gitsail.kinds import (
    ObjectRef,
    RefKind,
    RevisionRef,
    parse_git_repository,
    parse_kustomization,
)
from gitsail.kube import Invalid, Kube, load_kubeconfig
from gitsail.model import Obj

pytestmark = pytest.mark.integration

# From the article ("Flux", kubernetes-gitops-delivery.md), verbatim.
ARTICLE = """\
# Source: where to get manifests
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: myapp
  namespace: flux-system
spec:
  interval: 1m
  url: https://github.com/myorg/myapp-manifests
  ref:
    branch: main
---
# Kustomization: how to deploy
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: myapp
  namespace: flux-system
spec:
  interval: 10m
  path: ./overlays/production
  prune: true
  sourceRef:
    kind: GitRepository
    name: myapp
  healthChecks:
    - kind: Deployment
      name: myapp
      namespace: myapp
"""

FLUX_CRDS = {
    "alerts.notification.toolkit.fluxcd.io",
    "gitrepositories.source.toolkit.fluxcd.io",
    "helmcharts.source.toolkit.fluxcd.io",
    "helmreleases.helm.toolkit.fluxcd.io",
    "helmrepositories.source.toolkit.fluxcd.io",
    "imagepolicies.image.toolkit.fluxcd.io",
    "imagerepositories.image.toolkit.fluxcd.io",
    "imageupdateautomations.image.toolkit.fluxcd.io",
    "kustomizations.kustomize.toolkit.fluxcd.io",
    "ocirepositories.source.toolkit.fluxcd.io",
    "providers.notification.toolkit.fluxcd.io",
    "receivers.notification.toolkit.fluxcd.io",
}


@pytest.fixture
async def client(cluster: Cluster) -> AsyncIterator[Kube]:
    config = await load_kubeconfig(cluster.kubeconfig)
    async with Kube(config) as kube:
        await install_crds(kube, families=["flux"])
        yield kube


def in_namespace(text: str, namespace: str) -> list[Obj]:
    docs = list(yaml.safe_load_all(text))
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    return docs


async def test_flux_crds_install_idempotently_with_v1_stored(client: Kube) -> None:
    names = await install_crds(client, families=["flux"])  # the fixture installed them once
    assert set(names) == FLUX_CRDS
    for name in names:
        crd = await client.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
        assert crd is not None
        served = {v["name"]: v for v in crd["spec"]["versions"]}
        stored, legacy = (
            ("v2", ["v2beta2", "v2beta1"])
            if name.startswith("helmreleases.")
            else ("v1beta3", ["v1beta2"])  # notifications: v1beta3 is Flux's current API
            if name.startswith(("providers.", "alerts."))
            else ("v1", ["v1beta2"])
        )
        assert served[stored]["storage"] is True
        assert crd["status"]["storedVersions"] == [stored]
        assert all(v["subresources"] == {"status": {}} for v in served.values())
        if "receivers" not in name:
            for version in legacy:
                assert served[version]["deprecated"] is True
                assert served[version]["schema"] == served[stored]["schema"]
    assert {d["metadata"]["name"] for d in crd_manifests(["flux"])} == FLUX_CRDS


async def test_article_gitrepository_and_kustomization_apply_verbatim(
    client: Kube, namespace: str
) -> None:
    repo, ks = in_namespace(ARTICLE, namespace)
    # Strict field validation: an unknown or dropped field would be refused here.
    stored_repo = await client.apply(repo, field_manager="kubectl")
    stored_ks = await client.apply(ks, field_manager="kubectl")

    assert stored_repo["spec"] == {**repo["spec"], "timeout": "60s"}  # Flux's default
    assert stored_ks["spec"] == {**ks["spec"], "force": False}  # Flux's default

    parsed_repo = parse_git_repository(stored_repo)
    assert parsed_repo.source.ref == RevisionRef(RefKind.BRANCH, "main")
    assert (parsed_repo.source.interval, parsed_repo.source.timeout) == (60.0, 60.0)
    parsed_ks = parse_kustomization(stored_ks)
    assert parsed_ks.source == ObjectRef("GitRepository", "myapp", namespace)
    assert parsed_ks.render.path == "overlays/production"
    assert parsed_ks.sync.prune is True
    assert (parsed_ks.sync.timeout, parsed_ks.sync.retry_interval) == (600.0, 600.0)
    assert [(c.kind, c.name, c.namespace) for c in parsed_ks.health_checks] == [
        ("Deployment", "myapp", "myapp")
    ]


async def test_v1beta2_objects_are_served_with_the_same_schema(
    client: Kube, namespace: str
) -> None:
    repo, ks = in_namespace(ARTICLE, namespace)
    repo["apiVersion"] = "source.toolkit.fluxcd.io/v1beta2"
    repo["metadata"]["name"] = "legacy"
    repo["spec"]["gitImplementation"] = "go-git"  # a v1beta2 field still found in repositories
    ks["apiVersion"] = "kustomize.toolkit.fluxcd.io/v1beta2"
    ks["metadata"]["name"] = "legacy"
    ks["spec"]["sourceRef"]["name"] = "legacy"
    await client.apply(repo, field_manager="kubectl")
    await client.apply(ks, field_manager="kubectl")

    as_v1 = await client.get("source.toolkit.fluxcd.io/v1", "GitRepository", "legacy", namespace)
    assert as_v1 is not None
    assert as_v1["spec"]["gitImplementation"] == "go-git"
    assert parse_git_repository(as_v1).source.url == "https://github.com/myorg/myapp-manifests"
    as_beta = await client.get(
        "kustomize.toolkit.fluxcd.io/v1beta2", "Kustomization", "legacy", namespace
    )
    assert as_beta is not None
    assert as_beta["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1beta2"
    assert parse_kustomization(as_beta).source.name == "legacy"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"prune": None}, "prune"),
        ({"interval": "5x"}, "interval"),
        ({"sourceRef": {"kind": "HelmRepository", "name": "x"}}, "sourceRef.kind"),
    ],
)
async def test_schema_refuses_what_flux_refuses(
    client: Kube, namespace: str, change: dict[str, object], message: str
) -> None:
    _, ks = in_namespace(ARTICLE, namespace)
    for key, value in change.items():
        if value is None:
            del ks["spec"][key]
        else:
            ks["spec"][key] = value
    with pytest.raises(Invalid, match=message):
        await client.apply(ks, field_manager="kubectl")
    assert (
        await client.get("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "myapp", namespace)
        is None
    )


async def test_receiver_v1_is_served(client: Kube, namespace: str) -> None:
    receiver = {
        "apiVersion": "notification.toolkit.fluxcd.io/v1",
        "kind": "Receiver",
        "metadata": {"name": "github", "namespace": namespace},
        "spec": {
            "type": "github",
            "events": ["ping", "push"],
            "secretRef": {"name": "webhook-token"},
            "resources": [{"kind": "GitRepository", "name": "myapp"}],
        },
    }
    stored = await client.apply(receiver, field_manager="kubectl")
    assert stored["spec"]["interval"] == "10m"  # Flux's default
    bad = {**receiver, "spec": {**receiver["spec"], "type": "svn"}}
    with pytest.raises(Invalid, match="type"):
        await client.apply(bad, field_manager="kubectl")
