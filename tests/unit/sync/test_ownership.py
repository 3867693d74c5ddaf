from __future__ import annotations

import pytest

from gitsail.model import Obj
from gitsail.sync.ownership import (
    FLUX_NAME_LABEL,
    FLUX_NAMESPACE_LABEL,
    TRACKING_ANNOTATION,
    ArgoTracking,
    FluxLabels,
    Owner,
    owners_of,
    shared_resource_warning,
)


def configmap(name: str = "web", namespace: str = "shop") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "web"}},
    }


def test_argo_mark_is_the_tracking_id_of_the_object_on_a_copy() -> None:
    obj = configmap()
    marked = ArgoTracking("argocd_web").mark(obj)
    assert marked["metadata"]["annotations"] == {
        TRACKING_ANNOTATION: "argocd_web:/ConfigMap:shop/web"
    }
    assert "annotations" not in obj["metadata"]  # the input is not changed
    namespace = ArgoTracking("apps").mark(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
    )
    assert namespace["metadata"]["annotations"][TRACKING_ANNOTATION] == "apps:/Namespace:/shop"


def test_argo_owns_only_a_self_referencing_tracking_id() -> None:
    owner = ArgoTracking("web")
    marked = owner.mark(configmap())
    assert owner.owns(marked)
    assert not ArgoTracking("other").owns(marked)
    copied = owner.mark(configmap("original"))
    copied["metadata"]["name"] = "copy"  # created from another object's YAML
    assert not owner.owns(copied)
    assert owners_of(copied) == ()
    assert owner.claimant(copied) is None


def test_flux_mark_sets_both_kustomize_controller_labels_and_keeps_others() -> None:
    obj = configmap()
    marked = FluxLabels("apps", "flux-system").mark(obj)
    assert marked["metadata"]["labels"] == {
        "app": "web",
        FLUX_NAME_LABEL: "apps",
        FLUX_NAMESPACE_LABEL: "flux-system",
    }
    assert obj["metadata"]["labels"] == {"app": "web"}


def test_flux_owns_when_both_labels_match_as_a_selector_even_on_a_copy() -> None:
    owner = FluxLabels("apps", "flux-system")
    marked = owner.mark(configmap())
    assert owner.owns(marked)
    # Flux's labels carry no object identity: a copy matches the selector, as in Flux.
    marked["metadata"]["name"] = "copy"
    assert owner.owns(marked)
    assert not FluxLabels("apps", "other-ns").owns(marked)
    assert not FluxLabels("infra", "flux-system").owns(marked)
    half = configmap()
    half["metadata"]["labels"][FLUX_NAME_LABEL] = "apps"
    assert not owner.owns(half)
    assert owners_of(half) == ()  # one label alone is no claim


def test_claimant_names_another_owner_of_either_kind() -> None:
    argo, flux = ArgoTracking("argocd_web", display="argocd/web"), FluxLabels("apps", "flux")
    by_flux = flux.mark(configmap())
    by_argo = argo.mark(configmap())
    assert argo.claimant(by_flux) == "Kustomization flux/apps"
    assert flux.claimant(by_argo) == "application argocd/web"
    assert flux.claimant(by_flux) is None
    assert argo.claimant(by_argo) is None
    assert FluxLabels("apps", "other").claimant(by_flux) == "Kustomization flux/apps"
    assert ArgoTracking("team_b").claimant(by_argo) == "application argocd/web"
    both = flux.mark(argo.mark(configmap()))
    assert owners_of(both) == (ArgoTracking("argocd_web"), flux)
    assert argo.owns(both)
    assert argo.claimant(both) == "Kustomization flux/apps"


def test_equality_ignores_how_an_app_is_displayed() -> None:
    assert ArgoTracking("argocd_web", display="argocd/web") == ArgoTracking("argocd_web")
    assert FluxLabels("a", "b") != FluxLabels("b", "a")


@pytest.mark.parametrize("bad", ["", "a:b"])
def test_argo_owner_refuses_a_tracking_name_that_cannot_be_parsed_back(bad: str) -> None:
    with pytest.raises(ValueError, match="tracking name"):
        ArgoTracking(bad)


def test_flux_owner_needs_name_and_namespace() -> None:
    with pytest.raises(ValueError, match="name and a namespace"):
        FluxLabels("apps", "")


def test_both_owners_satisfy_the_protocol() -> None:
    owners: list[Owner] = [ArgoTracking("a"), FluxLabels("a", "b")]
    assert all(isinstance(o, Owner) for o in owners)


def test_shared_warning_is_argo_cds_text_between_apps_and_names_both_kinds_otherwise() -> None:
    other_app = ArgoTracking("team_a").mark(configmap())
    mine = ArgoTracking("argocd_b", display="argocd/b")
    assert (
        shared_resource_warning(other_app, mine)
        == "ConfigMap/web is part of applications argocd/b and team/a"
    )
    by_flux = FluxLabels("apps", "flux").mark(configmap())
    assert (
        shared_resource_warning(by_flux, mine)
        == "ConfigMap/web is part of application argocd/b and Kustomization flux/apps"
    )
    assert (
        shared_resource_warning(other_app, FluxLabels("apps", "flux"))
        == "ConfigMap/web is part of Kustomization flux/apps and application team/a"
    )
    assert shared_resource_warning(configmap(), mine) is None
